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
/// and the won/lost record of the organization's other leads, for the lead's source and overall.
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
             WHERE a.person_id = $1 AND a.at <= to_timestamp($3::float8 / 1000) \
               AND a.at > to_timestamp($3::float8 / 1000) - make_interval(days => $2) \
             ORDER BY a.at DESC LIMIT 5000",
        )
        .bind(lead_id)
        .bind(ACTIVITY_DAYS)
        .bind(as_of_ms)
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
             WHERE lead_id = $1 AND status <> 'live' AND started_ms < $3 \
             ORDER BY started_ms DESC LIMIT $2",
        )
        .bind(lead_id)
        .bind(MAX_CALLS)
        .bind(as_of_ms)
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
             WHERE d.stage IN ('won', 'lost') AND d.person_id <> $2 \
               AND d.closed_at <= to_timestamp($3::float8 / 1000)",
        )
        .bind(&record.source)
        .bind(lead_id)
        .bind(as_of_ms)
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

    /// Every lead of `org` whose deal closed won or lost, with how and when (a lead with several
    /// closed deals counts once, by its latest).
    pub async fn closed_deals(
        &self,
        org: &OrgId,
    ) -> Result<Vec<(String, DealOutcome)>, StoreError> {
        let mut tx = self.begin_for(org).await?;
        let rows = sqlx::query_as::<_, (String, bool, i64)>(
            "SELECT DISTINCT ON (person_id) person_id, stage = 'won', \
                    (extract(epoch FROM closed_at) * 1000)::bigint \
             FROM deals WHERE stage IN ('won', 'lost') AND closed_at IS NOT NULL \
             ORDER BY person_id, closed_at DESC, id DESC",
        )
        .fetch_all(&mut *tx)
        .await?;
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
        let mut tx = self.begin_for(org).await?;
        crate::ensure_organization(&mut tx, org).await?;
        let ids: Vec<&str> = leads.iter().map(|l| l.id.as_str()).collect();
        let new: std::collections::HashSet<String> = sqlx::query_scalar(
            "INSERT INTO people (organization_id, id, first_name, source, location, budget_min, budget_max) \
             SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[]) \
                 AS u(id, first_name, source, location, budget_min, budget_max) \
             ON CONFLICT (organization_id, id) DO NOTHING RETURNING id",
        )
        .bind(org.as_str())
        .bind(&ids)
        .bind(leads.iter().map(|l| l.first_name.as_str()).collect::<Vec<_>>())
        .bind(leads.iter().map(|l| l.source.as_deref()).collect::<Vec<_>>())
        .bind(leads.iter().map(|l| l.location.as_deref()).collect::<Vec<_>>())
        .bind(leads.iter().map(|l| l.budget_min).collect::<Vec<_>>())
        .bind(leads.iter().map(|l| l.budget_max).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let leads: Vec<&ImportedLead> = leads.iter().filter(|l| new.contains(&l.id)).collect();

        let mut properties = Rows::new(2);
        let mut activity = Rows::new(2);
        for lead in &leads {
            for (i, row) in lead.activity.iter().enumerate() {
                let property =
                    (row.kind == "property_view").then(|| format!("{}-view-{i}", lead.id));
                if let Some(property) = &property {
                    properties.push(&[property, &format!("Listing {property}")]);
                    properties.ints.push(row.price);
                    properties.more.push(row.location.clone());
                }
                activity.push(&[&lead.id, &row.kind]);
                activity.more.push(property);
                activity.ints.push(Some(row.at_ms));
            }
        }
        sqlx::query(
            "INSERT INTO properties (organization_id, id, address, price, location) \
             SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::int8[], $5::text[]) \
                 AS u(id, address, price, location)",
        )
        .bind(org.as_str())
        .bind(&properties.columns[0])
        .bind(&properties.columns[1])
        .bind(&properties.ints)
        .bind(&properties.more)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO activity (organization_id, person_id, kind, property_id, at) \
             SELECT $1, u.person, u.kind, u.property, to_timestamp(u.at::float8 / 1000) \
             FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[]) AS u(person, kind, property, at)",
        )
        .bind(org.as_str())
        .bind(&activity.columns[0])
        .bind(&activity.columns[1])
        .bind(&activity.more)
        .bind(&activity.ints)
        .execute(&mut *tx)
        .await?;

        let mut calls = Rows::new(2);
        let mut talk: [Vec<i64>; 3] = Default::default();
        let mut lines = Rows::new(3);
        let mut sealed: Vec<Vec<u8>> = Vec::new();
        let mut scores: Vec<Option<f32>> = Vec::new();
        for lead in &leads {
            for call in &lead.calls {
                calls.push(&[&call.id, &lead.id]);
                talk[0].push(call.started_ms);
                talk[1].push(call.inbound_talk_ms);
                talk[2].push(call.outbound_talk_ms);
                for (i, (text, score)) in call.customer.iter().enumerate() {
                    let id = format!("inbound-{i:05}");
                    let seal = crate::writer::seal_utterance(self.keys(), org, &call.id, &id, text);
                    lines.push(&[&call.id, &id, &seal.key_id]);
                    lines
                        .more
                        .push(score.map(|s| sentiment_label(s).to_owned()));
                    lines.ints.push(Some(i as i64 * 10_000));
                    sealed.push(seal.bytes);
                    scores.push(*score);
                }
            }
        }
        sqlx::query(
            "INSERT INTO calls (organization_id, id, lead_id, direction, status, started_at, started_ms, \
                                ended_at, duration_ms, inbound_talk_ms, outbound_talk_ms) \
             SELECT $1, u.id, u.lead, 'outbound', 'completed', to_timestamp(u.started::float8 / 1000), u.started, \
                    to_timestamp((u.started + u.inbound + u.outbound)::float8 / 1000), u.inbound + u.outbound, \
                    u.inbound, u.outbound \
             FROM unnest($2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[]) \
                 AS u(id, lead, started, inbound, outbound)",
        )
        .bind(org.as_str())
        .bind(&calls.columns[0])
        .bind(&calls.columns[1])
        .bind(&talk[0])
        .bind(&talk[1])
        .bind(&talk[2])
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO utterances (organization_id, call_id, id, track, start_ms, end_ms, \
                                     text_ciphertext, text_key_id, sentiment, sentiment_score) \
             SELECT $1, u.call, u.id, 'inbound', u.start, u.start + 8000, u.bytes, u.key, u.label, u.score \
             FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::bytea[], $7::text[], $8::real[]) \
                 AS u(call, id, key, start, bytes, label, score)",
        )
        .bind(org.as_str())
        .bind(&lines.columns[0])
        .bind(&lines.columns[1])
        .bind(&lines.columns[2])
        .bind(&lines.ints)
        .bind(&sealed)
        .bind(&lines.more)
        .bind(&scores)
        .execute(&mut *tx)
        .await?;

        let closed: Vec<(&str, &DealOutcome)> = leads
            .iter()
            .filter_map(|l| l.deal.as_ref().map(|d| (l.id.as_str(), d)))
            .collect();
        sqlx::query(
            "INSERT INTO deals (organization_id, id, person_id, stage, created_at, closed_at) \
             SELECT $1, 'deal-' || u.person, u.person, CASE WHEN u.won THEN 'won' ELSE 'lost' END, \
                    to_timestamp(u.closed::float8 / 1000), to_timestamp(u.closed::float8 / 1000) \
             FROM unnest($2::text[], $3::bool[], $4::int8[]) AS u(person, won, closed)",
        )
        .bind(org.as_str())
        .bind(closed.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind(closed.iter().map(|c| c.1.won).collect::<Vec<_>>())
        .bind(closed.iter().map(|c| c.1.closed_ms).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;

        let entry = AuditEntry {
            actor,
            action: "leads.import",
            subject: org.as_str(),
            detail: serde_json::json!({ "leads": leads.len(), "utterances": sealed.len() })
                .to_string(),
        };
        audit::append(&mut tx, org, &entry).await?;
        tx.commit().await?;
        Ok(leads.len())
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

/// Column arrays of a bulk insert: text columns, and one optional integer and text column.
struct Rows {
    columns: Vec<Vec<String>>,
    ints: Vec<Option<i64>>,
    more: Vec<Option<String>>,
}

impl Rows {
    fn new(text_columns: usize) -> Self {
        Self {
            columns: vec![Vec::new(); text_columns],
            ints: Vec::new(),
            more: Vec::new(),
        }
    }

    fn push(&mut self, texts: &[&str]) {
        debug_assert_eq!(texts.len(), self.columns.len());
        for (column, text) in self.columns.iter_mut().zip(texts) {
            column.push((*text).to_owned());
        }
    }
}

/// The label the sentiment model would give a score (−1…1).
fn sentiment_label(score: f32) -> &'static str {
    if score > 0.3 {
        "positive"
    } else if score < -0.3 {
        "negative"
    } else {
        "neutral"
    }
}
