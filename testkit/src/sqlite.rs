//! Fresh SQLite database files, one per test.

use std::path::PathBuf;

/// A SQLite file of one test in the system's temporary folder, removed by
/// [`TestSqlite::remove`].
pub struct TestSqlite {
    /// The file.
    pub path: PathBuf,
    /// Its URL, as `DATABASE_URL` takes it.
    pub url: String,
}

impl TestSqlite {
    /// A name for a new database file (the store creates it when it opens).
    pub fn new() -> TestSqlite {
        let path =
            std::env::temp_dir().join(format!("winnerr-test-{}.db", uuid::Uuid::now_v7().simple()));
        let url = format!("sqlite://{}", path.display());
        TestSqlite { path, url }
    }

    /// Removes the file and its write-ahead log.
    pub fn remove(self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Default for TestSqlite {
    fn default() -> Self {
        Self::new()
    }
}
