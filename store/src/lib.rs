//! CRM records in Postgres: migrations, tenant isolation by row-level security, and the store
//! writer that turns call events into rows.
//!
//! The engine connects as `winnerr_service`, a role that owns no table, and names the
//! organization of every transaction ([`Store::begin_for`]); the database's policies then keep
//! each organization's rows to itself even where a query forgets to filter.

pub mod audit;
pub mod calls;
pub mod crypto;
pub mod leads;
mod metrics;
pub mod people;
mod rotate;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use winnerr_events::OrgId;

pub use audit::{AuditCheck, AuditEntry, AuditHead};
pub use calls::{CallFilter, CallSummary, Deal, LeadScore, Page, Utterance};
pub use crypto::{CryptoError, Keyring};
pub use leads::{ActivityRow, DealOutcome, ImportedLead, LeadRecord, PastCall, StoredModel};
pub use people::{Person, PersonFields};
pub use writer::StoreWriter;

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The role the engine connects as (created by the first migration).
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

/// Brings the schema at `owner_url` (a role that may create tables and roles) up to date.
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

/// The CRM database, as the service role, with the keys of its encrypted fields.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    keys: Arc<Keyring>,
}

impl Store {
    /// Connects to `service_url`, which must name a role that owns no table (row-level security
    /// does not apply to owners and superusers): refused otherwise.
    pub async fn connect(
        service_url: &str,
        max_connections: u32,
        keys: Keyring,
    ) -> Result<Self, StoreError> {
        metrics::describe();
        let options: PgConnectOptions = service_url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let (superuser, bypass): (bool, bool) = sqlx::query_as(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&pool)
        .await?;
        if superuser || bypass {
            return Err(StoreError::Config(
                "DATABASE_URL must name a role without SUPERUSER or BYPASSRLS (e.g. winnerr_service): \
                 row-level security would not apply to it"
                    .into(),
            ));
        }
        Ok(Self {
            pool,
            keys: Arc::new(keys),
        })
    }

    /// The keys of encrypted fields.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// A transaction in which every statement sees and writes only `org`'s rows.
    pub async fn begin_for(
        &self,
        org: &OrgId,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        set_organization(&mut tx, org).await?;
        Ok(tx)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database answers (for readiness).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// Creates `org`'s row if this is the first record of it (within `tx`, whose organization is `org`).
pub(crate) async fn ensure_organization(
    tx: &mut Transaction<'static, Postgres>,
    org: &OrgId,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO organizations (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
        .bind(org.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Names the organization of the rest of `tx`.
pub(crate) async fn set_organization(
    tx: &mut Transaction<'static, Postgres>,
    org: &OrgId,
) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('app.current_organization', $1, true)")
        .bind(org.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
