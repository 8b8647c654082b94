//! A person erased on request: their profile and what the CRM holds from them (the transcripts
//! of their calls, events of those calls set aside, scores, activity, deals, messages) deleted in one
//! transaction, with an audit row that says who erased whom and how much went.
//!
//! Rows are deleted, not crypto-shredded: field keys belong to an organization and rotate (one
//! key seals many people), so destroying a key would erase others. What deletion cannot reach is
//! named where it lives: database backups until they age out, and the events topic on Kafka
//! until its retention (its transcript text is already redacted).

use serde::Serialize;
use winnerr_events::OrgId;

use crate::audit::{self, AuditEntry};
use crate::{Store, StoreError, on_tx};

/// A call reported `live` longer ago than this is left over from a node that stopped without
/// ending it, and does not hold an erasure back.
const LIVE_CALL_HOURS: i64 = 12;

/// What an erasure removed (counts only: the audit row keeps these and nothing of the person).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// Calls with the person, kept as calls of no one (agent, times, status), their DTMF and
    /// their summary (which names the keyterms heard: the person's name, the homes they viewed)
    /// cleared.
    pub calls: u64,
    pub utterances: u64,
    pub dead_letters: u64,
    pub scores: u64,
    pub activity: u64,
    pub deals: u64,
    /// SMS and emails to and from them.
    pub messages: u64,
}

/// The outcome of [`Store::erase_person`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    Erased(Erased),
    /// No such person in the organization.
    NotFound,
    /// The person is on this live call: what it still sends would be stored after the erasure.
    OnLiveCall(String),
}

/// The person's calls, as a subquery on `$1` (organization) and `$2` (person).
const THEIR_CALLS: &str = "SELECT id FROM calls WHERE organization_id = $1 AND lead_id = $2";

impl Store {
    /// Erases person `id` of `org` for `actor` (see the module's note); the audit chain gains a
    /// `person.erase` row with the counts.
    pub async fn erase_person(
        &self,
        org: &OrgId,
        id: &str,
        actor: &str,
    ) -> Result<Erasure, StoreError> {
        let mut tx = self.begin(org).await?;
        let exists: Option<i32> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_scalar("SELECT 1 FROM people WHERE organization_id = $1 AND id = $2")
                .bind(org.as_str())
                .bind(id)
                .fetch_optional(conn)
                .await?
        });
        if exists.is_none() {
            return Ok(Erasure::NotFound);
        }
        let recent_ms = winnerr_events::now_ms() as i64 - LIVE_CALL_HOURS * 3_600_000;
        let live: Option<String> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_scalar(
                "SELECT id FROM calls WHERE organization_id = $1 AND lead_id = $2 \
                 AND status = 'live' AND started_ms > $3 LIMIT 1",
            )
            .bind(org.as_str())
            .bind(id)
            .bind(recent_ms)
            .fetch_optional(conn)
            .await?
        });
        if let Some(call) = live {
            return Ok(Erasure::OnLiveCall(call));
        }
        let mut erased = Erased::default();
        for (count, sql) in [
            (
                &mut erased.utterances,
                format!("DELETE FROM utterances WHERE organization_id = $1 AND call_id IN ({THEIR_CALLS})"),
            ),
            (
                &mut erased.dead_letters,
                format!("DELETE FROM dead_letters WHERE organization_id = $1 AND call_id IN ({THEIR_CALLS})"),
            ),
            (
                &mut erased.calls,
                "UPDATE calls SET lead_id = NULL, dtmf_digits = '', summary = NULL WHERE organization_id = $1 AND lead_id = $2"
                    .to_owned(),
            ),
            (
                &mut erased.scores,
                "DELETE FROM lead_scores WHERE organization_id = $1 AND person_id = $2".to_owned(),
            ),
            (
                &mut erased.activity,
                "DELETE FROM activity WHERE organization_id = $1 AND person_id = $2".to_owned(),
            ),
            (
                &mut erased.deals,
                "DELETE FROM deals WHERE organization_id = $1 AND person_id = $2".to_owned(),
            ),
            (
                &mut erased.messages,
                "DELETE FROM messages WHERE organization_id = $1 AND person_id = $2".to_owned(),
            ),
            (
                &mut 0,
                "DELETE FROM people WHERE organization_id = $1 AND id = $2".to_owned(),
            ),
        ] {
            *count = on_tx!(&mut tx, |conn, dialect| {
                sqlx::query(&sql)
                    .bind(org.as_str())
                    .bind(id)
                    .execute(conn)
                    .await?
                    .rows_affected()
            });
        }
        let entry = AuditEntry {
            actor,
            action: "person.erase",
            subject: id,
            detail: serde_json::to_string(&erased).expect("counts serialize"),
        };
        audit::append(&mut tx, org, &entry).await?;
        tx.commit().await?;
        crate::metrics::erased();
        Ok(Erasure::Erased(erased))
    }
}
