//! CRM records: migrations, tenant isolation, and the store writer that turns call events into
//! rows, in Postgres or in an embedded SQLite file.
//!
//! On Postgres the engine connects as `winnerr_service`, a role that owns no table, and names the
//! organization of every transaction; the database's row-level security policies then keep each
//! organization's rows to itself even where a query forgets to filter. SQLite has no such
//! policies: there, every statement names its organization (the statements do on Postgres too).

pub mod audit;
pub mod calls;
pub mod crypto;
pub mod do_not_call;
pub mod erasure;
pub mod keyterms;
pub mod leads;
pub mod messages;
mod metrics;
pub mod people;
pub mod retention;
mod rotate;
pub mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{PgPool, Postgres, Sqlite, Transaction};
use winnerr_events::OrgId;

pub use audit::{AuditCheck, AuditEntry, AuditHead};
pub use calls::{CallFilter, CallSummary, Deal, LeadScore, Page, ScoreChange, Utterance};
pub use crypto::{CryptoError, Keyring};
pub use do_not_call::DoNotCallEntry;
pub use erasure::{Erased, Erasure};
pub use leads::{
    ActivityRow, DealOutcome, ImportedLead, LeadRecord, PastCall, PastMessage, StoredModel,
};
pub use messages::{Arrival, MessageSender, StoredMessage, TimelineItem};
pub use people::{Person, PersonFields};
pub use retention::{Purged, Retention, RetentionPolicy};
pub use writer::StoreWriter;

/// The Postgres schema migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite schema migrations (the same tables), run whenever a SQLite store opens.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

/// The role the engine connects as on Postgres (created by the first migration).
pub const SERVICE_ROLE: &str = "winnerr_service";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Config(String),
    /// Input that breaks a rule of the domain (a 4xx for API callers).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Whether `url` names a SQLite database (`sqlite://FILE`, `sqlite::memory:`) rather than Postgres.
pub fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Brings the Postgres schema at `owner_url` (a role that may create tables and roles) up to date.
/// (A SQLite store migrates itself when it opens.)
pub async fn migrate(owner_url: &str) -> Result<(), StoreError> {
    let options: PgConnectOptions = owner_url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// The database behind a [`Store`].
#[derive(Clone, Debug)]
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Which SQL a statement is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

/// A statement whose text differs between the databases.
pub(crate) struct Sql {
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

impl Sql {
    pub(crate) fn of(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Postgres => self.postgres,
            Dialect::Sqlite => self.sqlite,
        }
    }
}

/// A transaction of one organization's statements, on either database.
pub(crate) enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Postgres(_) => Dialect::Postgres,
            Tx::Sqlite(_) => Dialect::Sqlite,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Runs `$body` with `$conn` the connection of transaction `$tx` and `$dialect` its SQL dialect:
/// the body is compiled once per database, so what it binds and reads must suit both.
macro_rules! on_tx {
    ($tx:expr, |$conn:ident, $dialect:ident| $body:expr) => {
        match $tx {
            $crate::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                #[allow(unused_variables)]
                let $dialect = $crate::Dialect::Postgres;
                $body
            }
            $crate::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                #[allow(unused_variables)]
                let $dialect = $crate::Dialect::Sqlite;
                $body
            }
        }
    };
}
pub(crate) use on_tx;

/// The CRM database, with the keys of its encrypted fields.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    keys: Arc<Keyring>,
}

impl Store {
    /// Opens the store at `url`. `postgres://…` must name a role that owns no table (row-level
    /// security does not apply to owners and superusers): refused otherwise. `sqlite://FILE`
    /// creates the file (and its folder) if missing and brings its schema up to date.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        keys: Keyring,
    ) -> Result<Self, StoreError> {
        metrics::describe();
        let db = if is_sqlite_url(url) {
            Db::Sqlite(open_sqlite(url).await?)
        } else {
            Db::Postgres(connect_postgres(url, max_connections).await?)
        };
        Ok(Self {
            db,
            keys: Arc::new(keys),
        })
    }

    /// The keys of encrypted fields.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// A transaction of `org`'s statements (on Postgres, one the policies hold to `org`'s rows).
    pub(crate) async fn begin(&self, org: &OrgId) -> Result<Tx, StoreError> {
        let mut tx = self.begin_any().await?;
        set_organization(&mut tx, org).await?;
        Ok(tx)
    }

    /// A transaction with no organization named yet (see [`set_organization`]).
    pub(crate) async fn begin_any(&self) -> Result<Tx, StoreError> {
        Ok(match &self.db {
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
        })
    }

    /// On Postgres, a transaction in which every statement sees and writes only `org`'s rows,
    /// for inspecting the database's own isolation; refused on SQLite, which has none.
    pub async fn begin_for(
        &self,
        org: &OrgId,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        match self.begin(org).await? {
            Tx::Postgres(tx) => Ok(tx),
            Tx::Sqlite(_) => Err(StoreError::Config(
                "SQLite has no row-level security: there is no organization's transaction to hand out".into(),
            )),
        }
    }

    /// The Postgres pool, if the store is on Postgres.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.db {
            Db::Postgres(pool) => Some(pool),
            Db::Sqlite(_) => None,
        }
    }

    /// Where the records are, for logs: `postgres host:port/db` or `sqlite FILE` (no credentials).
    pub fn location(&self) -> String {
        match &self.db {
            Db::Postgres(pool) => {
                let options = pool.connect_options();
                format!(
                    "postgres {}:{}/{}",
                    options.get_host(),
                    options.get_port(),
                    options.get_database().unwrap_or_default()
                )
            }
            Db::Sqlite(pool) => {
                format!("sqlite {}", pool.connect_options().get_filename().display())
            }
        }
    }

    /// Whether the database answers (for readiness).
    pub async fn ping(&self) -> bool {
        match &self.db {
            Db::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.is_ok(),
            Db::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.is_ok(),
        }
    }
}

async fn connect_postgres(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&pool)
            .await?;
    if superuser || bypass {
        return Err(StoreError::Config(
            "DATABASE_URL must name a role without SUPERUSER or BYPASSRLS (e.g. winnerr_service): \
             row-level security would not apply to it"
                .into(),
        ));
    }
    Ok(pool)
}

/// Opens (creating if missing) and migrates the SQLite database at `url`. One connection: SQLite
/// writes one transaction at a time anyway, and a single connection never meets a lock held by
/// another of its own (an audit append reads the chain's end, then writes after it). An
/// in-memory database lives as long as its connection, so that one is never closed.
async fn open_sqlite(url: &str) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let file = options.get_filename();
    if let Some(folder) = file.parent().filter(|f| !f.as_os_str().is_empty()) {
        if !url.contains(":memory:") && !folder.exists() {
            std::fs::create_dir_all(folder).map_err(|err| {
                StoreError::Config(format!("cannot create {}: {err}", folder.display()))
            })?;
        }
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    SQLITE_MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Creates `org`'s row if this is the first record of it (within `tx`, whose organization is `org`).
pub(crate) async fn ensure_organization(tx: &mut Tx, org: &OrgId) -> Result<(), StoreError> {
    on_tx!(tx, |conn, dialect| {
        sqlx::query("INSERT INTO organizations (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
            .bind(org.as_str())
            .execute(conn)
            .await
            .map(drop)?
    });
    Ok(())
}

/// Names the organization of the rest of `tx`, for Postgres's policies (SQLite's statements
/// name it themselves).
pub(crate) async fn set_organization(tx: &mut Tx, org: &OrgId) -> Result<(), StoreError> {
    if let Tx::Postgres(tx) = tx {
        sqlx::query("SELECT set_config('app.current_organization', $1, true)")
            .bind(org.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
