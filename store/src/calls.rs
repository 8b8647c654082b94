//! Reading calls back for the CRM: lists with filters and keyset pagination, one call, its
//! utterances (decrypted, and the read audited), a person's calls and scores, deals.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use winnerr_events::{OrgId, ScoreFactor, UserId};

use crate::audit::{self, AuditEntry};
use crate::writer::open_utterance;
use crate::{Sql, Store, StoreError, on_tx};

/// A call as the CRM lists it. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct CallSummary {
    pub id: String,
    pub status: String,
    pub agent_id: Option<String>,
    pub lead_id: Option<String>,
    pub stream_sid: Option<String>,
    /// How consent to record was obtained (`disclosed`, `opted_in`); absent where the policy
    /// asked nothing.
    pub consent: Option<String>,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub inbound_talk_ms: i64,
    pub outbound_talk_ms: i64,
    pub dtmf_digits: String,
    /// Who talked how much (the latest `call_signals` of the call); absent before its first.
    pub signals: Option<sqlx::types::Json<winnerr_events::CallSignals>>,
    /// What the call came to (its `call_summary`); absent before it ends.
    pub summary: Option<sqlx::types::Json<winnerr_events::PostCallSummary>>,
    /// How the call moved its lead's score (one call's read only; absent without a lead or a
    /// score during the call).
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreChange>,
}

/// How a call moved its lead's score: the lead's last score before the call, its last by the
/// call's end (the scorer's last comes just after it), and that score's top reasons in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreChange {
    pub before: Option<i16>,
    pub after: i16,
    /// What raises it most, largest first (at most three).
    pub raising: Vec<String>,
    /// What lowers it most, largest first (at most three).
    pub lowering: Vec<String>,
}

/// How long after a call's end a score still counts as the call's.
const SCORE_GRACE_MS: i64 = 30_000;

/// Which calls to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// `Some(true)`: live calls only; `Some(false)`: ended calls only.
    pub live: Option<bool>,
    pub agent_id: Option<String>,
    pub lead_id: Option<String>,
}

/// One page of a list, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A transcript line, decrypted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Utterance {
    pub id: String,
    pub track: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The words; empty where the stored text does not decrypt (`unreadable`).
    pub text: String,
    pub sentiment: Option<String>,
    pub sentiment_score: Option<f32>,
    /// Whether the stored text did not decrypt (unknown key, tampered or moved): the rest of
    /// the transcript is still returned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreadable: bool,
}

/// A lead score as it was computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct LeadScore {
    pub scored_at_ms: i64,
    pub score: i16,
    pub factors: serde_json::Value,
    pub model_version: String,
}

/// A deal in the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct Deal {
    pub id: String,
    pub person_id: String,
    pub property_id: Option<String>,
    pub stage: String,
    pub amount: Option<i64>,
    pub commission: Option<i64>,
}

/// Most items one page may hold.
pub const MAX_PAGE: i64 = 200;

/// The columns of a [`CallSummary`], given the dialect's expression of `ended_at` in milliseconds.
macro_rules! call_columns {
    ($ended_ms:literal) => {
        concat!(
            "id, status, agent_id, lead_id, stream_sid, consent, NULLIF(started_ms, 0) AS started_at_ms, ",
            $ended_ms,
            " AS ended_at_ms, duration_ms, inbound_talk_ms, outbound_talk_ms, dtmf_digits, signals, summary"
        )
    };
}

const LIST_CALLS: Sql = Sql {
    postgres: concat!(
        "SELECT ",
        call_columns!("(extract(epoch FROM ended_at) * 1000)::bigint"),
        " FROM calls WHERE organization_id = $1 \
           AND ($2::bool IS NULL OR (status = 'live') = $2) \
           AND ($3::text IS NULL OR agent_id = $3) \
           AND ($4::text IS NULL OR lead_id = $4) \
           AND ($5::text IS NULL OR agent_id = $5) \
           AND ($6::bigint IS NULL OR (started_ms, id) < ($6, $7)) \
         ORDER BY started_ms DESC, id DESC LIMIT $8"
    ),
    sqlite: concat!(
        "SELECT ",
        call_columns!("ended_at"),
        " FROM calls WHERE organization_id = $1 \
           AND ($2 IS NULL OR (status = 'live') = $2) \
           AND ($3 IS NULL OR agent_id = $3) \
           AND ($4 IS NULL OR lead_id = $4) \
           AND ($5 IS NULL OR agent_id = $5) \
           AND ($6 IS NULL OR (started_ms, id) < ($6, $7)) \
         ORDER BY started_ms DESC, id DESC LIMIT $8"
    ),
};

const GET_CALL: Sql = Sql {
    postgres: concat!(
        "SELECT ",
        call_columns!("(extract(epoch FROM ended_at) * 1000)::bigint"),
        " FROM calls WHERE organization_id = $1 AND id = $2 AND ($3::text IS NULL OR agent_id = $3)"
    ),
    sqlite: concat!(
        "SELECT ",
        call_columns!("ended_at"),
        " FROM calls WHERE organization_id = $1 AND id = $2 AND ($3 IS NULL OR agent_id = $3)"
    ),
};

fn encode_cursor(call: &CallSummary) -> String {
    cursor_at(call.started_at_ms.unwrap_or(0), &call.id)
}

/// The cursor of a page that ends on the item at `at_ms` with `id`.
pub(crate) fn cursor_at(at_ms: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at_ms}:{id}"))
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    let invalid = || StoreError::Invalid("cursor is not one this API returned".into());
    let text = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(text).map_err(|_| invalid())?;
    let (at, id) = text.split_once(':').ok_or_else(invalid)?;
    Ok((at.parse().map_err(|_| invalid())?, id.to_owned()))
}

impl Store {
    /// A page of `org`'s calls, newest first. `only_agent` restricts it to one agent's calls.
    pub async fn list_calls(
        &self,
        org: &OrgId,
        filter: &CallFilter,
        only_agent: Option<&UserId>,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Page<CallSummary>, StoreError> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(StoreError::Invalid(format!(
                "limit must be 1 to {MAX_PAGE}"
            )));
        }
        let after = cursor.map(decode_cursor).transpose()?;
        let mut tx = self.begin(org).await?;
        let mut items: Vec<CallSummary> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(LIST_CALLS.of(dialect))
                .bind(org.as_str())
                .bind(filter.live)
                .bind(&filter.agent_id)
                .bind(&filter.lead_id)
                .bind(only_agent.map(UserId::as_str))
                .bind(after.as_ref().map(|(at, _)| *at))
                .bind(after.as_ref().map(|(_, id)| id.as_str()))
                .bind(limit + 1)
                .fetch_all(conn)
                .await?
        });
        tx.commit().await?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(encode_cursor)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// One call of `org` (of `only_agent`, when given).
    pub async fn get_call(
        &self,
        org: &OrgId,
        id: &str,
        only_agent: Option<&UserId>,
    ) -> Result<Option<CallSummary>, StoreError> {
        let mut tx = self.begin(org).await?;
        let call: Option<CallSummary> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(GET_CALL.of(dialect))
                .bind(org.as_str())
                .bind(id)
                .bind(only_agent.map(UserId::as_str))
                .fetch_optional(conn)
                .await?
        });
        let Some(mut call) = call else {
            tx.commit().await?;
            return Ok(None);
        };
        if let (Some(lead), Some(start)) = (call.lead_id.clone(), call.started_at_ms) {
            let end = call
                .ended_at_ms
                .map_or(i64::MAX, |end| end.saturating_add(SCORE_GRACE_MS));
            call.score = score_change(&mut tx, org, &lead, start, end).await?;
        }
        tx.commit().await?;
        Ok(Some(call))
    }

    /// A call's transcript, decrypted; the read is written to the audit log by `reader`.
    pub async fn read_transcript(
        &self,
        org: &OrgId,
        call_id: &str,
        reader: &UserId,
    ) -> Result<Vec<Utterance>, StoreError> {
        self.transcript_for(org, call_id, reader, "transcript.read")
            .await
    }

    /// A call's transcript for export (a copy that leaves the CRM), audited as `call.export`.
    pub async fn export_transcript(
        &self,
        org: &OrgId,
        call_id: &str,
        reader: &UserId,
    ) -> Result<Vec<Utterance>, StoreError> {
        self.transcript_for(org, call_id, reader, "call.export")
            .await
    }

    async fn transcript_for(
        &self,
        org: &OrgId,
        call_id: &str,
        reader: &UserId,
        action: &str,
    ) -> Result<Vec<Utterance>, StoreError> {
        type Row = (
            String,
            String,
            i64,
            i64,
            Vec<u8>,
            String,
            Option<String>,
            Option<f32>,
        );
        let mut tx = self.begin(org).await?;
        let rows: Vec<Row> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(
                "SELECT id, track, start_ms, end_ms, text_ciphertext, text_key_id, sentiment, sentiment_score \
                 FROM utterances WHERE organization_id = $1 AND call_id = $2 ORDER BY start_ms, id",
            )
            .bind(org.as_str())
            .bind(call_id)
            .fetch_all(conn)
            .await?
        });
        let entry = AuditEntry {
            actor: reader.as_str(),
            action,
            subject: call_id,
            detail: serde_json::json!({ "utterances": rows.len() }).to_string(),
        };
        audit::append(&mut tx, org, &entry).await?;
        tx.commit().await?;
        let utterances = rows
            .into_iter()
            .map(
                |(id, track, start_ms, end_ms, bytes, key_id, sentiment, sentiment_score)| {
                    let text = open_utterance(self.keys(), org, call_id, &id, &key_id, &bytes);
                    Utterance {
                        unreadable: text.is_none(),
                        text: text.unwrap_or_default(),
                        id,
                        track,
                        start_ms,
                        end_ms,
                        sentiment,
                        sentiment_score,
                    }
                },
            )
            .collect();
        Ok(utterances)
    }

    /// A person's lead scores, newest first.
    pub async fn person_scores(
        &self,
        org: &OrgId,
        person_id: &str,
    ) -> Result<Vec<LeadScore>, StoreError> {
        const SCORES: Sql = Sql {
            postgres: "SELECT (extract(epoch FROM scored_at) * 1000)::bigint AS scored_at_ms, score, factors, model_version \
                 FROM lead_scores WHERE organization_id = $1 AND person_id = $2 ORDER BY scored_at DESC LIMIT 100",
            sqlite: "SELECT scored_at AS scored_at_ms, score, factors, model_version \
                 FROM lead_scores WHERE organization_id = $1 AND person_id = $2 ORDER BY scored_at DESC LIMIT 100",
        };
        let mut tx = self.begin(org).await?;
        let scores = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(SCORES.of(dialect))
                .bind(org.as_str())
                .bind(person_id)
                .fetch_all(conn)
                .await?
        });
        tx.commit().await?;
        Ok(scores)
    }

    /// Deals of `org`, optionally of one person.
    pub async fn list_deals(
        &self,
        org: &OrgId,
        person_id: Option<&str>,
    ) -> Result<Vec<Deal>, StoreError> {
        const DEALS: Sql = Sql {
            postgres: "SELECT id, person_id, property_id, stage, amount, commission FROM deals \
                 WHERE organization_id = $1 AND ($2::text IS NULL OR person_id = $2) \
                 ORDER BY created_at DESC, id LIMIT 500",
            sqlite: "SELECT id, person_id, property_id, stage, amount, commission FROM deals \
                 WHERE organization_id = $1 AND ($2 IS NULL OR person_id = $2) \
                 ORDER BY created_at DESC, id LIMIT 500",
        };
        let mut tx = self.begin(org).await?;
        let deals = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(DEALS.of(dialect))
                .bind(org.as_str())
                .bind(person_id)
                .fetch_all(conn)
                .await?
        });
        tx.commit().await?;
        Ok(deals)
    }
}

/// `lead`'s last score before `start_ms` and its last from then to `end_ms`, as a change.
async fn score_change(
    tx: &mut crate::Tx,
    org: &OrgId,
    lead: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<Option<ScoreChange>, StoreError> {
    const BEFORE: Sql = Sql {
        postgres: "SELECT score FROM lead_scores WHERE organization_id = $1 AND person_id = $2 \
             AND scored_at < to_timestamp($3::float8 / 1000) ORDER BY scored_at DESC LIMIT 1",
        sqlite: "SELECT score FROM lead_scores WHERE organization_id = $1 AND person_id = $2 \
             AND scored_at < $3 ORDER BY scored_at DESC LIMIT 1",
    };
    const DURING: Sql = Sql {
        postgres: "SELECT score, factors FROM lead_scores WHERE organization_id = $1 AND person_id = $2 \
             AND scored_at >= to_timestamp($3::float8 / 1000) AND scored_at <= to_timestamp($4::float8 / 1000) \
             ORDER BY scored_at DESC LIMIT 1",
        sqlite: "SELECT score, factors FROM lead_scores WHERE organization_id = $1 AND person_id = $2 \
             AND scored_at >= $3 AND scored_at <= $4 ORDER BY scored_at DESC LIMIT 1",
    };
    // A live call's window is open: its newest score so far (clamped to the year 9999).
    let end_ms = end_ms.min(253_402_300_799_000);
    let before: Option<i16> = on_tx!(tx, |conn, dialect| {
        sqlx::query_scalar(BEFORE.of(dialect))
            .bind(org.as_str())
            .bind(lead)
            .bind(start_ms)
            .fetch_optional(conn)
            .await?
    });
    let during: Option<(i16, serde_json::Value)> = on_tx!(tx, |conn, dialect| {
        sqlx::query_as(DURING.of(dialect))
            .bind(org.as_str())
            .bind(lead)
            .bind(start_ms)
            .bind(end_ms)
            .fetch_optional(conn)
            .await?
    });
    // Stored as the score event had them: highest contribution first. A row that does not
    // read as factors gives no reasons rather than failing the call's read.
    let names = |factors: &mut dyn Iterator<Item = &ScoreFactor>| {
        factors.map(|f| f.name().to_owned()).collect()
    };
    Ok(during.map(|(after, factors)| {
        let factors: Vec<ScoreFactor> = serde_json::from_value(factors).unwrap_or_default();
        ScoreChange {
            before,
            after,
            raising: names(&mut ScoreFactor::raising(&factors, 3)),
            lowering: names(&mut ScoreFactor::lowering(&factors, 3)),
        }
    }))
}
