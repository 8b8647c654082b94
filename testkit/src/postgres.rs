//! Fresh Postgres databases on the test server, one per test.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Environment variable naming the test server as `user@host:port` of a role that may create
/// databases and roles (default `postgres@127.0.0.1:5432`, trust auth; `make test` ensures it).
pub const SERVER_VAR: &str = "WINNERR_TEST_POSTGRES";

/// The role the engine connects as; created here ahead of the migrations, because tests that
/// migrate many databases at once would otherwise race to create it.
const SERVICE_ROLE: &str = "winnerr_service";

/// A database of one test, dropped by [`TestDatabase::drop_database`].
pub struct TestDatabase {
    /// URL of the database as a role that owns it (for migrations and inspection).
    pub owner_url: String,
    /// URL of the database as the engine's service role.
    pub service_url: String,
    name: String,
    admin_url: String,
}

fn server() -> (String, String) {
    let spec = std::env::var(SERVER_VAR).unwrap_or_else(|_| "postgres@127.0.0.1:5432".into());
    let (user, host) = spec.split_once('@').unwrap_or(("postgres", spec.as_str()));
    (user.to_owned(), host.to_owned())
}

impl TestDatabase {
    /// A fresh database; fails the test when there is no server.
    pub async fn create() -> TestDatabase {
        Self::try_create()
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// A fresh database, or why there is none.
    pub async fn try_create() -> Result<TestDatabase, String> {
        let (user, host) = server();
        let admin_url = format!("postgres://{user}@{host}/postgres");
        let mut admin = PgConnection::connect(&admin_url).await.map_err(|err| {
            format!("no test Postgres at {admin_url} ({err}); `make test` starts one, or set {SERVER_VAR}")
        })?;
        let name = format!("winnerr_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let created = sqlx::query(&format!("CREATE ROLE {SERVICE_ROLE} LOGIN"))
            .execute(&mut admin)
            .await;
        if let Err(err) = created {
            // Already there (from an earlier test or a concurrent one): fine.
            let code = err
                .as_database_error()
                .and_then(|e| e.code())
                .map(|c| c.to_string());
            assert!(
                matches!(code.as_deref(), Some("42710") | Some("23505")),
                "create role: {err}"
            );
        }
        let _ = admin.close().await;
        Ok(TestDatabase {
            owner_url: format!("postgres://{user}@{host}/{name}"),
            service_url: format!("postgres://{SERVICE_ROLE}@{host}/{name}"),
            name,
            admin_url,
        })
    }

    /// Drops the database (connections to it are ended first).
    pub async fn drop_database(self) {
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
            let _ = admin.close().await;
        }
    }
}
