//! Real service processes for tests and benchmarks: each gets its own broker on a free loopback
//! port with its own data, and can stop, kill and restart it; and its own Postgres database or
//! SQLite file; and background noise to mix into test speech.

mod either;
pub mod noise;
mod postgres;
mod sqlite;

pub use either::{Owner, TestDb};
pub use postgres::TestDatabase;
pub use sqlite::TestSqlite;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Environment variable with the broker binary's path (`deploy/kafka.sh install` prints it;
/// `make test` and `make bench` set it).
pub const BROKER_BIN_VAR: &str = "WINNERR_KAFKA_BROKER_BIN";

/// How long a broker may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A Kafka-protocol broker process on 127.0.0.1.
pub struct Broker {
    bin: PathBuf,
    port: u16,
    data: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Starts the broker at `WINNERR_KAFKA_BROKER_BIN`; `None` when the variable is unset.
    pub async fn start_if_installed() -> Option<Broker> {
        let bin = std::env::var_os(BROKER_BIN_VAR)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let data = std::env::temp_dir().join(format!("winnerr-kafka-{}", uuid::Uuid::now_v7()));
        let mut broker = Broker {
            bin: bin.into(),
            port,
            data,
            child: None,
        };
        broker.spawn().await;
        Some(broker)
    }

    /// Starts the broker at `WINNERR_KAFKA_BROKER_BIN`, failing with instructions when unset.
    pub async fn start() -> Broker {
        Self::start_if_installed().await.unwrap_or_else(|| {
            panic!(
                "{BROKER_BIN_VAR} is not set: run the tests with `make test`, which installs the \
                 broker (or set it to the path `deploy/kafka.sh install` prints)"
            )
        })
    }

    async fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["start", "--only", "kafka", "--host", "127.0.0.1"])
            .args(["--kafka-port", &self.port.to_string()])
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start broker {}: {err}", self.bin.display()));
        self.child = Some(child);
        let listening = tokio::time::timeout(START_TIMEOUT, async {
            while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        listening.await.expect("broker listens");
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker outright (SIGKILL), as a crash would. This broker keeps its log in
    /// memory until it stops, so what it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker with SIGINT: it closes every connection and saves its log.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
