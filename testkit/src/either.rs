//! A fresh database of either kind, for tests that run on both, and a connection to it with
//! every right.

use sqlx::Connection;

use crate::{TestDatabase, TestSqlite};

/// A fresh Postgres database or SQLite file.
pub enum TestDb {
    Postgres(TestDatabase),
    Sqlite(TestSqlite),
}

impl TestDb {
    /// A fresh Postgres database (not migrated: the engine or the test does it).
    pub async fn postgres() -> TestDb {
        TestDb::Postgres(TestDatabase::create().await)
    }

    /// A fresh SQLite file (created and migrated by the store that opens it).
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(TestSqlite::new())
    }

    /// The URL the engine is given: Postgres's service role, or the file.
    pub fn url(&self) -> String {
        match self {
            TestDb::Postgres(db) => db.service_url.clone(),
            TestDb::Sqlite(file) => file.url.clone(),
        }
    }

    /// A connection with every right: the schema's owner, or the file itself.
    pub async fn owner(&self) -> Owner {
        match self {
            TestDb::Postgres(db) => {
                Owner::Postgres(sqlx::PgConnection::connect(&db.owner_url).await.unwrap())
            }
            TestDb::Sqlite(file) => {
                Owner::Sqlite(sqlx::SqliteConnection::connect(&file.url).await.unwrap())
            }
        }
    }

    pub async fn remove(self) {
        match self {
            TestDb::Postgres(db) => db.drop_database().await,
            TestDb::Sqlite(file) => file.remove(),
        }
    }
}

/// See [`TestDb::owner`]; [`raw!`](crate::raw) runs a statement on it.
pub enum Owner {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Owner {
    /// Runs `sql`; returns the rows it touched.
    pub async fn execute(&mut self, sql: &str) -> u64 {
        crate::raw!(self, |conn| sqlx::query(sql)
            .execute(conn)
            .await
            .unwrap()
            .rows_affected())
    }
}

/// Runs `$body` with `$conn` the [`Owner`]'s connection, whichever database it is (the body is
/// compiled for each).
#[macro_export]
macro_rules! raw {
    ($owner:expr, |$conn:ident| $body:expr) => {
        match $owner {
            $crate::Owner::Postgres($conn) => $body,
            $crate::Owner::Sqlite($conn) => $body,
        }
    };
}
