//! What the CRM knows of a lead, as lead scoring reads it when the lead's call starts, and the
//! lead-score models trained per organization.

use sqlx::Row;
use winnerr_events::OrgId;

use crate::audit::{self, AuditEntry};
use crate::writer::open_utterance;
use crate::{Store, StoreError};

/// Activity older than this is not read (scoring looks at the last 30 days).
const ACTIVITY_DAYS: i32 = 90;
/// At most this many of a lead's past calls are read, newest first.
const MAX_CALLS: i64 = 200;

/// A lead's record: profile, recent activity, finished calls and what the customer said on them,
/// and the organization's won/lost record for the lead's source and overall.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadRecord {
    pub source: Option<String>,
    pub location: Option<String>,
    pub budget_min: Option<i64>,
    pub budget_max: Option<i64>,
    pub activity: Vec<ActivityRow>,
    pub calls: Vec<PastCall>,
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
        let mut tx = self.begin_for(org).await?;
        let person = sqlx::query(
            "SELECT source, location, budget_min, budget_max FROM people WHERE id = $1",
        )
        .bind(lead_id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut record = LeadRecord::default();
        if let Some(person) = &person {
            record.source = person.try_get("source")?;
            record.location = person.try_get("location")?;
            record.budget_min = person.try_get("budget_min")?;
            record.budget_max = person.try_get("budget_max")?;
        }
        record.activity = sqlx::query_as::<_, (String, i64, Option<i64>, Option<String>)>(
            "SELECT a.kind, (extract(epoch FROM a.at) * 1000)::bigint, p.price, p.location \
             FROM activity a LEFT JOIN properties p \
               ON p.organization_id = a.organization_id AND p.id = a.property_id \
             WHERE a.person_id = $1 AND a.at > now() - make_interval(days => $2) \
             ORDER BY a.at DESC LIMIT 5000",
        )
        .bind(lead_id)
        .bind(ACTIVITY_DAYS)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(kind, at_ms, price, location)| ActivityRow {
            kind,
            at_ms,
            price,
            location,
        })
        .collect();
        // Live calls are the scorer's own to follow; only finished ones are history.
        let mut calls: Vec<PastCall> = sqlx::query_as::<_, (String, i64, i64, i64)>(
            "SELECT id, started_ms, inbound_talk_ms, outbound_talk_ms FROM calls \
             WHERE lead_id = $1 AND status <> 'live' ORDER BY started_ms DESC LIMIT $2",
        )
        .bind(lead_id)
        .bind(MAX_CALLS)
        .fetch_all(&mut *tx)
        .await?
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
        if person.is_none() && calls.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        let lines = sqlx::query_as::<_, (String, String, Vec<u8>, String, Option<f32>)>(
            "SELECT call_id, id, text_ciphertext, text_key_id, sentiment_score FROM utterances \
             WHERE call_id = ANY($1) AND track = 'inbound' ORDER BY call_id, start_ms, id",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let read = lines.len();
        for (call_id, id, bytes, key_id, score) in lines {
            let text = open_utterance(self.keys(), org, &call_id, &id, &key_id, &bytes)?;
            if let Some(call) = calls.iter_mut().find(|c| c.id == call_id) {
                call.customer.push((text, score));
            }
        }
        let (source_won, source_lost, org_won, org_lost): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE d.stage = 'won' AND p.source IS NOT DISTINCT FROM $1), \
                    count(*) FILTER (WHERE d.stage = 'lost' AND p.source IS NOT DISTINCT FROM $1), \
                    count(*) FILTER (WHERE d.stage = 'won'), count(*) FILTER (WHERE d.stage = 'lost') \
             FROM deals d JOIN people p ON p.organization_id = d.organization_id AND p.id = d.person_id \
             WHERE d.stage IN ('won', 'lost')",
        )
        .bind(&record.source)
        .fetch_one(&mut *tx)
        .await?;
        record.calls = calls;
        (record.source_won, record.source_lost) = (source_won, source_lost);
        (record.org_won, record.org_lost) = (org_won, org_lost);
        if read > 0 {
            let entry = AuditEntry {
                actor: reader,
                action: "lead.history.read",
                subject: lead_id,
                detail: serde_json::json!({ "utterances": read }).to_string(),
            };
            audit::append(&mut tx, org, &entry).await?;
        }
        tx.commit().await?;
        Ok(Some(record))
    }

    /// `org`'s newest trained lead-score model, if any.
    pub async fn lead_model(&self, org: &OrgId) -> Result<Option<StoredModel>, StoreError> {
        let mut tx = self.begin_for(org).await?;
        let model = sqlx::query_as::<_, (String, String)>(
            "SELECT version, model::text FROM lead_models ORDER BY trained_at DESC, version DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?
        .map(|(version, model)| StoredModel { version, model });
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
        let mut tx = self.begin_for(org).await?;
        crate::ensure_organization(&mut tx, org).await?;
        sqlx::query(
            "INSERT INTO lead_models (organization_id, version, model, examples, held_out_auc) \
             VALUES ($1, $2, $3::jsonb, $4, $5)",
        )
        .bind(org.as_str())
        .bind(version)
        .bind(model_json)
        .bind(examples)
        .bind(held_out_auc)
        .execute(&mut *tx)
        .await?;
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
