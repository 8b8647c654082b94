//! The audit log: every sensitive operation (reading a transcript, exporting, changing roles,
//! rotating keys) appends a row whose hash covers the row and the hash of the row before it, per
//! organization. The service role may only append; [`Store::verify_audit`] finds any row that was
//! edited, and any gap where rows were deleted.

use serde::Serialize;
use sha2::{Digest, Sha256};
use winnerr_events::OrgId;

use crate::{Store, StoreError, Tx, on_tx};

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
    /// The chain's last row, to record outside the database (see [`AuditHead`]).
    pub head: Option<AuditHead>,
}

/// A row of an organization's audit chain by its sequence number and hash (`seq:hex`). The chain
/// alone cannot show that its last rows were deleted; a head recorded outside the database (an
/// anchor) can: a later check finds that row, with that hash, or says what is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

impl std::fmt::Display for AuditHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for AuditHead {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (seq, hash) = text
            .split_once(':')
            .ok_or_else(|| format!("audit head {text:?}: expected SEQ:HASH"))?;
        let seq = seq
            .parse()
            .map_err(|_| format!("audit head {text:?}: {seq:?} is not a sequence number"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "audit head {text:?}: the hash is not 64 hex digits"
            ));
        }
        Ok(Self {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
pub(crate) async fn append(
    tx: &mut Tx,
    org: &OrgId,
    entry: &AuditEntry<'_>,
) -> Result<(), StoreError> {
    // One writer per organization's chain at a time (SQLite's single connection writes one
    // transaction at a time anyway).
    if let Tx::Postgres(tx) = tx {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('winnerr.audit:' || $1))")
            .bind(org.as_str())
            .execute(&mut **tx)
            .await?;
    }
    let last: Option<(i64, Vec<u8>)> = on_tx!(tx, |conn, dialect| {
        sqlx::query_as(
            "SELECT seq, hash FROM audit_log WHERE organization_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(org.as_str())
        .fetch_optional(conn)
        .await?
    });
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
    on_tx!(tx, |conn, dialect| {
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
    .execute(conn)
    .await
    .map(drop)?
    });
    Ok(())
}

type AuditRow = (i64, i64, String, String, String, String, Vec<u8>, Vec<u8>);

impl Store {
    /// Appends one entry to `org`'s audit log.
    pub async fn audit(&self, org: &OrgId, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin(org).await?;
        crate::ensure_organization(&mut tx, org).await?;
        append(&mut tx, org, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Re-computes `org`'s whole chain.
    pub async fn verify_audit(&self, org: &OrgId) -> Result<AuditCheck, StoreError> {
        self.verify_audit_against(org, None).await
    }

    /// Re-computes `org`'s whole chain and, with `anchor` (a head recorded earlier, outside the
    /// database), checks that the chain still holds that row unchanged: rows deleted from the
    /// end, which the chain alone cannot show, are found.
    pub async fn verify_audit_against(
        &self,
        org: &OrgId,
        anchor: Option<&AuditHead>,
    ) -> Result<AuditCheck, StoreError> {
        let mut tx = self.begin(org).await?;
        let rows: Vec<AuditRow> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(
                "SELECT seq, at_ms, actor, action, subject, detail, prev_hash, hash FROM audit_log \
                 WHERE organization_id = $1 ORDER BY seq",
            )
            .bind(org.as_str())
            .fetch_all(conn)
            .await?
        });
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
            } else if anchor.is_some_and(|a| a.seq == *seq && a.hash != hex(hash)) {
                Some("is not the row that was anchored".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Ok(AuditCheck {
                    rows: rows.len() as u64,
                    problem: Some((*seq, problem)),
                    head: None,
                });
            }
            prev = hash.clone();
        }
        let head = rows.last().map(|(seq, .., hash)| AuditHead {
            seq: *seq,
            hash: hex(hash),
        });
        let last = head.as_ref().map_or(0, |h| h.seq);
        let problem = anchor.filter(|a| a.seq > last).map(|a| {
            (
                last + 1,
                format!(
                    "and the rows after it are missing: the chain ends at row {last}, it was anchored at row {}",
                    a.seq
                ),
            )
        });
        Ok(AuditCheck {
            rows: rows.len() as u64,
            problem,
            head,
        })
    }
}
