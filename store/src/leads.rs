//! What the CRM knows of a lead, as lead scoring reads it when the lead's call starts (or a
//! message from them comes), and the
//! lead-score models trained per organization.

use winnerr_events::OrgId;

use crate::audit::{self, AuditEntry};
use crate::writer::open_utterance;
use crate::{Sql, Store, StoreError, Tx, on_tx};

mod import;

/// Activity older than this is not read (scoring looks at the last 30 days).
const ACTIVITY_DAYS: i32 = 90;
/// At most this many of a lead's past calls are read, newest first.
const MAX_CALLS: i64 = 200;
/// At most this many of a lead's messages are read, newest first.
const MAX_MESSAGES: i64 = 200;

/// A lead's record: profile, recent activity, finished calls and what the customer said on them,
/// their messages,
/// and the won/lost record of the organization's other leads, for the lead's source and overall.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadRecord {
    pub source: Option<String>,
    pub location: Option<String>,
    pub budget_min: Option<i64>,
    pub budget_max: Option<i64>,
    pub activity: Vec<ActivityRow>,
    pub calls: Vec<PastCall>,
    /// Messages from the lead (SMS, email), oldest first.
    pub messages: Vec<PastMessage>,
    pub source_won: i64,
    pub source_lost: i64,
    pub org_won: i64,
    pub org_lost: i64,
}

/// One recorded activity; for a property view, the property's price and location.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRow {
    pub kind: String,
    pub at_ms: i64,
    pub price: Option<i64>,
    pub location: Option<String>,
}

/// A finished call with the lead, oldest first; the customer's utterances in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PastCall {
    pub id: String,
    pub started_ms: i64,
    pub inbound_talk_ms: i64,
    pub outbound_talk_ms: i64,
    /// Text and sentiment score of each inbound utterance.
    pub customer: Vec<(String, Option<f32>)>,
}

/// A stored message of the lead as read: id, arrival, sealed body, key id, sentiment score.
type MessageRow = (String, i64, Vec<u8>, String, Option<f32>);

/// A message from the lead: when it came, its text and its sentiment score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PastMessage {
    pub received_ms: i64,
    pub text: String,
    pub sentiment: Option<f32>,
}

/// How a lead's deal closed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DealOutcome {
    pub won: bool,
    pub closed_ms: i64,
}

/// A lead's history to import into an organization (`winnerr scoring seed` writes the synthetic
/// organization this way). Each property view becomes a property of its own; each past call's
/// customer lines become its inbound utterances, encrypted as the store writer would.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportedLead {
    pub id: String,
    pub first_name: String,
    pub source: Option<String>,
    pub location: Option<String>,
    pub budget_min: Option<i64>,
    pub budget_max: Option<i64>,
    pub activity: Vec<ActivityRow>,
    pub calls: Vec<PastCall>,
    /// The lead's closed deal, if it closed.
    pub deal: Option<DealOutcome>,
}

/// A stored lead-score model (its JSON as the models crate writes it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModel {
    pub version: String,
    pub model: String,
}

impl Store {
    /// What is recorded of lead `lead_id` in `org`, or `None` for a lead with no record. The
    /// customer's words are decrypted for `reader`, and the read is audited.
    pub async fn lead_record(
        &self,
        org: &OrgId,
        lead_id: &str,
        reader: &str,
    ) -> Result<Option<LeadRecord>, StoreError> {
        let now = i64::try_from(winnerr_events::event::now_ms()).unwrap_or(i64::MAX);
        self.lead_record_as_of(org, lead_id, now, reader).await
    }

    /// What was recorded of lead `lead_id` in `org` at `as_of_ms`: activity and calls before
    /// then, and the deals of other leads closed by then. What training reads for a deal as of
    /// its close, so no model learns from what happened after.
    pub async fn lead_record_as_of(
        &self,
        org: &OrgId,
        lead_id: &str,
        as_of_ms: i64,
        reader: &str,
    ) -> Result<Option<LeadRecord>, StoreError> {
        type Profile = (Option<String>, Option<String>, Option<i64>, Option<i64>);
        const ACTIVITY: Sql = Sql {
            postgres: "SELECT a.kind, (extract(epoch FROM a.at) * 1000)::bigint, p.price, p.location \
                 FROM activity a LEFT JOIN properties p \
                   ON p.organization_id = a.organization_id AND p.id = a.property_id \
                 WHERE a.organization_id = $1 AND a.person_id = $2 \
                   AND a.at <= to_timestamp($4::float8 / 1000) \
                   AND a.at > to_timestamp($4::float8 / 1000) - make_interval(days => $3) \
                 ORDER BY a.at DESC LIMIT 5000",
            sqlite: "SELECT a.kind, a.at, p.price, p.location \
                 FROM activity a LEFT JOIN properties p \
                   ON p.organization_id = a.organization_id AND p.id = a.property_id \
                 WHERE a.organization_id = $1 AND a.person_id = $2 \
                   AND a.at <= $4 AND a.at > $4 - $3 * 86400000 \
                 ORDER BY a.at DESC LIMIT 5000",
        };
        let mut tx = self.begin(org).await?;
        let person: Option<Profile> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(
                "SELECT source, location, budget_min, budget_max FROM people \
                 WHERE organization_id = $1 AND id = $2",
            )
            .bind(org.as_str())
            .bind(lead_id)
            .fetch_optional(conn)
            .await?
        });
        let mut record = LeadRecord::default();
        let known_person = person.is_some();
        if let Some((source, location, budget_min, budget_max)) = person {
            (record.source, record.location) = (source, location);
            (record.budget_min, record.budget_max) = (budget_min, budget_max);
        }
        let activity: Vec<(String, i64, Option<i64>, Option<String>)> =
            on_tx!(&mut tx, |conn, dialect| {
                sqlx::query_as(ACTIVITY.of(dialect))
                    .bind(org.as_str())
                    .bind(lead_id)
                    .bind(ACTIVITY_DAYS)
                    .bind(as_of_ms)
                    .fetch_all(conn)
                    .await?
            });
        record.activity = activity
            .into_iter()
            .map(|(kind, at_ms, price, location)| ActivityRow {
                kind,
                at_ms,
                price,
                location,
            })
            .collect();
        // Live calls are the scorer's own to follow; only finished ones are history.
        let calls: Vec<(String, i64, i64, i64)> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(
                "SELECT id, started_ms, inbound_talk_ms, outbound_talk_ms FROM calls \
                 WHERE organization_id = $1 AND lead_id = $2 AND status <> 'live' AND started_ms < $4 \
                 ORDER BY started_ms DESC LIMIT $3",
            )
            .bind(org.as_str())
            .bind(lead_id)
            .bind(MAX_CALLS)
            .bind(as_of_ms)
            .fetch_all(conn)
            .await?
        });
        let mut calls: Vec<PastCall> = calls
            .into_iter()
            .map(
                |(id, started_ms, inbound_talk_ms, outbound_talk_ms)| PastCall {
                    id,
                    started_ms,
                    inbound_talk_ms,
                    outbound_talk_ms,
                    customer: Vec::new(),
                },
            )
            .collect();
        calls.reverse();
        if !known_person && calls.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        let lines = customer_lines(&mut tx, org, &ids).await?;
        let read = lines.len();
        for (call_id, id, bytes, key_id, score) in lines {
            let Some(text) = open_utterance(self.keys(), org, &call_id, &id, &key_id, &bytes)
            else {
                continue;
            };
            if let Some(call) = calls.iter_mut().find(|c| c.id == call_id) {
                call.customer.push((text, score));
            }
        }
        const RECORDS: Sql = Sql {
            postgres: "SELECT count(*) FILTER (WHERE d.stage = 'won' AND p.source IS NOT DISTINCT FROM $2), \
                    count(*) FILTER (WHERE d.stage = 'lost' AND p.source IS NOT DISTINCT FROM $2), \
                    count(*) FILTER (WHERE d.stage = 'won'), count(*) FILTER (WHERE d.stage = 'lost') \
                 FROM deals d JOIN people p ON p.organization_id = d.organization_id AND p.id = d.person_id \
                 WHERE d.organization_id = $1 AND d.stage IN ('won', 'lost') AND d.person_id <> $3 \
                   AND d.closed_at <= to_timestamp($4::float8 / 1000)",
            sqlite: "SELECT count(*) FILTER (WHERE d.stage = 'won' AND p.source IS NOT DISTINCT FROM $2), \
                    count(*) FILTER (WHERE d.stage = 'lost' AND p.source IS NOT DISTINCT FROM $2), \
                    count(*) FILTER (WHERE d.stage = 'won'), count(*) FILTER (WHERE d.stage = 'lost') \
                 FROM deals d JOIN people p ON p.organization_id = d.organization_id AND p.id = d.person_id \
                 WHERE d.organization_id = $1 AND d.stage IN ('won', 'lost') AND d.person_id <> $3 \
                   AND d.closed_at <= $4",
        };
        let (source_won, source_lost, org_won, org_lost): (i64, i64, i64, i64) =
            on_tx!(&mut tx, |conn, dialect| {
                sqlx::query_as(RECORDS.of(dialect))
                    .bind(org.as_str())
                    .bind(&record.source)
                    .bind(lead_id)
                    .bind(as_of_ms)
                    .fetch_one(conn)
                    .await?
            });
        let messages: Vec<MessageRow> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(
                    "SELECT id, received_ms, body_ciphertext, body_key_id, sentiment_score FROM messages \
                     WHERE organization_id = $1 AND person_id = $2 AND direction = 'inbound' \
                       AND body_ciphertext IS NOT NULL AND received_ms < $4 \
                     ORDER BY received_ms DESC LIMIT $3",
                )
                .bind(org.as_str())
                .bind(lead_id)
                .bind(MAX_MESSAGES)
                .bind(as_of_ms)
                .fetch_all(conn)
                .await?
        });
        let messages_read = messages.len();
        record.messages = messages
            .into_iter()
            .rev()
            .filter_map(|(id, received_ms, bytes, key_id, sentiment)| {
                let place = crate::messages::body_place(org, &id);
                let text = self.keys().decrypt(&key_id, &bytes, place).ok()?;
                Some(PastMessage {
                    received_ms,
                    text,
                    sentiment,
                })
            })
            .collect();
        record.calls = calls;
        (record.source_won, record.source_lost) = (source_won, source_lost);
        (record.org_won, record.org_lost) = (org_won, org_lost);
        if read > 0 || messages_read > 0 {
            let entry = AuditEntry {
                actor: reader,
                action: "lead.history.read",
                subject: lead_id,
                detail: serde_json::json!({ "utterances": read, "messages": messages_read })
                    .to_string(),
            };
            audit::append(&mut tx, org, &entry).await?;
        }
        tx.commit().await?;
        Ok(Some(record))
    }

    /// Every lead of `org` whose deal closed won or lost, with how and when (a lead with several
    /// closed deals counts once, by its latest).
    pub async fn closed_deals(
        &self,
        org: &OrgId,
    ) -> Result<Vec<(String, DealOutcome)>, StoreError> {
        const CLOSED: Sql = Sql {
            postgres: "SELECT DISTINCT ON (person_id) person_id, stage = 'won', \
                    (extract(epoch FROM closed_at) * 1000)::bigint \
                 FROM deals WHERE organization_id = $1 AND stage IN ('won', 'lost') AND closed_at IS NOT NULL \
                 ORDER BY person_id, closed_at DESC, id DESC",
            sqlite: "SELECT person_id, won, closed_at FROM ( \
                   SELECT person_id, stage = 'won' AS won, closed_at, row_number() OVER \
                     (PARTITION BY person_id ORDER BY closed_at DESC, id DESC) AS newest \
                   FROM deals WHERE organization_id = $1 AND stage IN ('won', 'lost') AND closed_at IS NOT NULL) \
                 WHERE newest = 1 ORDER BY person_id",
        };
        let mut tx = self.begin(org).await?;
        let rows: Vec<(String, bool, i64)> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(CLOSED.of(dialect))
                .bind(org.as_str())
                .fetch_all(conn)
                .await?
        });
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(person, won, closed_ms)| (person, DealOutcome { won, closed_ms }))
            .collect())
    }

    /// Imports `leads` into `org` in one transaction, audited as `actor`. Leads that already
    /// exist are left as they are, so importing twice changes nothing; returns how many were new.
    pub async fn import_leads(
        &self,
        org: &OrgId,
        leads: &[ImportedLead],
        actor: &str,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin(org).await?;
        crate::ensure_organization(&mut tx, org).await?;
        let (new, utterances) = match &mut tx {
            Tx::Postgres(tx) => import::postgres(tx, org, leads, self.keys()).await?,
            Tx::Sqlite(tx) => import::sqlite(tx, org, leads, self.keys()).await?,
        };
        let entry = AuditEntry {
            actor,
            action: "leads.import",
            subject: org.as_str(),
            detail: serde_json::json!({ "leads": new, "utterances": utterances }).to_string(),
        };
        audit::append(&mut tx, org, &entry).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// `org`'s newest trained lead-score model, if any.
    pub async fn lead_model(&self, org: &OrgId) -> Result<Option<StoredModel>, StoreError> {
        const NEWEST: Sql = Sql {
            postgres: "SELECT version, model::text FROM lead_models WHERE organization_id = $1 \
                 ORDER BY trained_at DESC, version DESC LIMIT 1",
            sqlite: "SELECT version, model FROM lead_models WHERE organization_id = $1 \
                 ORDER BY trained_at DESC, version DESC LIMIT 1",
        };
        let mut tx = self.begin(org).await?;
        let model: Option<(String, String)> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(NEWEST.of(dialect))
                .bind(org.as_str())
                .fetch_optional(conn)
                .await?
        });
        let model = model.map(|(version, model)| StoredModel { version, model });
        tx.commit().await?;
        Ok(model)
    }

    /// Saves a model trained for `org` on `examples` deals; it scores the organization's leads
    /// from the next time the scorer asks.
    pub async fn save_lead_model(
        &self,
        org: &OrgId,
        version: &str,
        model_json: &str,
        examples: i32,
        held_out_auc: Option<f32>,
        actor: &str,
    ) -> Result<(), StoreError> {
        const INSERT: Sql = Sql {
            postgres: "INSERT INTO lead_models (organization_id, version, model, examples, held_out_auc) \
                 VALUES ($1, $2, $3::jsonb, $4, $5)",
            sqlite: "INSERT INTO lead_models (organization_id, version, model, examples, held_out_auc) \
                 VALUES ($1, $2, json($3), $4, $5)",
        };
        let mut tx = self.begin(org).await?;
        crate::ensure_organization(&mut tx, org).await?;
        on_tx!(&mut tx, |conn, dialect| {
            sqlx::query(INSERT.of(dialect))
                .bind(org.as_str())
                .bind(version)
                .bind(model_json)
                .bind(examples)
                .bind(held_out_auc)
                .execute(conn)
                .await
                .map(drop)?
        });
        let entry = AuditEntry {
            actor,
            action: "lead_model.train",
            subject: version,
            detail: serde_json::json!({ "examples": examples, "held_out_auc": held_out_auc })
                .to_string(),
        };
        audit::append(&mut tx, org, &entry).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The inbound utterances of calls `ids`, in order: (call, id, ciphertext, key id, score).
async fn customer_lines(
    tx: &mut Tx,
    org: &OrgId,
    ids: &[&str],
) -> Result<Vec<(String, String, Vec<u8>, String, Option<f32>)>, StoreError> {
    Ok(match tx {
        Tx::Postgres(tx) => {
            sqlx::query_as(
                "SELECT call_id, id, text_ciphertext, text_key_id, sentiment_score FROM utterances \
                 WHERE organization_id = $1 AND call_id = ANY($2) AND track = 'inbound' \
                 ORDER BY call_id, start_ms, id",
            )
            .bind(org.as_str())
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?
        }
        Tx::Sqlite(tx) => {
            sqlx::query_as(
                "SELECT call_id, id, text_ciphertext, text_key_id, sentiment_score FROM utterances \
                 WHERE organization_id = $1 AND call_id IN (SELECT value FROM json_each($2)) \
                   AND track = 'inbound' ORDER BY call_id, start_ms, id",
            )
            .bind(org.as_str())
            .bind(serde_json::to_string(ids).expect("ids serialize"))
            .fetch_all(&mut **tx)
            .await?
        }
    })
}
