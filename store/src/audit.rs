//! The audit log: every sensitive operation (reading a transcript, exporting, changing roles,
//! rotating keys) appends a row whose hash covers the row and the hash of the row before it, per
//! organization. The service role may only append; [`Store::verify_audit`] finds any row that was
//! edited, and any gap where rows were deleted.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Postgres, Transaction};
use winnerr_events::OrgId;

use crate::{Store, StoreError};

/// The `prev_hash` of an organization's first row.
const GENESIS: [u8; 32] = [0; 32];

/// One sensitive operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry<'a> {
    /// Who did it (a user id, or `system`).
    pub actor: &'a str,
    /// What, e.g. `transcript.read`, `person.export`, `user.role_change`, `keys.rotate`.
    pub action: &'a str,
    /// On what, e.g. a call or person id.
    pub subject: &'a str,
    /// Anything else worth keeping, as JSON text.
    pub detail: String,
}

/// What [`Store::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheck {
    /// Rows read.
    pub rows: u64,
    /// The first problem, with the row's sequence number.
    pub problem: Option<(i64, String)>,
}

fn row_hash(
    prev: &[u8],
    seq: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(prev);
    hash.update(seq.to_be_bytes());
    hash.update(at_ms.to_be_bytes());
    for field in [actor, action, subject, detail] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field.as_bytes());
    }
    hash.finalize().to_vec()
}

/// Appends `entry` to `org`'s audit log inside `tx` (whose organization must be `org`).
pub async fn append(
    tx: &mut Transaction<'static, Postgres>,
    org: &OrgId,
    entry: &AuditEntry<'_>,
) -> Result<(), StoreError> {
    // One writer per organization's chain at a time.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('winnerr.audit:' || $1))")
        .bind(org.as_str())
        .execute(&mut **tx)
        .await?;
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_vec()),
    };
    let at_ms = winnerr_events::event::now_ms() as i64;
    let hash = row_hash(
        &prev,
        seq,
        at_ms,
        entry.actor,
        entry.action,
        entry.subject,
        &entry.detail,
    );
    sqlx::query(
        "INSERT INTO audit_log (organization_id, seq, at_ms, actor, action, subject, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(org.as_str())
    .bind(seq)
    .bind(at_ms)
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.subject)
    .bind(&entry.detail)
    .bind(prev)
    .bind(hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

type AuditRow = (i64, i64, String, String, String, String, Vec<u8>, Vec<u8>);

impl Store {
    /// Appends one entry to `org`'s audit log.
    pub async fn audit(&self, org: &OrgId, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin_for(org).await?;
        crate::ensure_organization(&mut tx, org).await?;
        append(&mut tx, org, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Re-computes `org`'s whole chain.
    pub async fn verify_audit(&self, org: &OrgId) -> Result<AuditCheck, StoreError> {
        let mut tx = self.begin_for(org).await?;
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT seq, at_ms, actor, action, subject, detail, prev_hash, hash FROM audit_log ORDER BY seq",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut prev = GENESIS.to_vec();
        for (expected_seq, (seq, at_ms, actor, action, subject, detail, prev_hash, hash)) in
            (1..).zip(&rows)
        {
            let problem = if *seq != expected_seq {
                Some(format!("row {expected_seq} is missing"))
            } else if *prev_hash != prev {
                Some("does not follow the row before it".to_owned())
            } else if *hash != row_hash(prev_hash, *seq, *at_ms, actor, action, subject, detail) {
                Some("was changed after it was written".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Ok(AuditCheck {
                    rows: rows.len() as u64,
                    problem: Some((*seq, problem)),
                });
            }
            prev = hash.clone();
        }
        Ok(AuditCheck {
            rows: rows.len() as u64,
            problem: None,
        })
    }
}
