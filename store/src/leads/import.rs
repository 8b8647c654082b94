//! Importing a set of leads with their histories (`winnerr scoring seed`): on Postgres as a few
//! `unnest` inserts, on SQLite a statement per row.

use std::collections::HashSet;

use sqlx::{Postgres, Sqlite, Transaction};
use winnerr_events::OrgId;

use super::{DealOutcome, ImportedLead};
use crate::StoreError;
use crate::crypto::Keyring;
use crate::writer::seal_utterance;

/// Imports the leads of `leads` that `org` does not have yet; returns (leads imported,
/// utterances written).
pub(super) async fn postgres(
    tx: &mut Transaction<'static, Postgres>,
    org: &OrgId,
    leads: &[ImportedLead],
    keys: &Keyring,
) -> Result<(usize, usize), StoreError> {
    let ids: Vec<&str> = leads.iter().map(|l| l.id.as_str()).collect();
    let new: HashSet<String> = sqlx::query_scalar(
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
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    let leads: Vec<&ImportedLead> = leads.iter().filter(|l| new.contains(&l.id)).collect();

    let mut properties = Rows::new(2);
    let mut activity = Rows::new(2);
    for lead in &leads {
        for (i, row) in lead.activity.iter().enumerate() {
            let property = (row.kind == "property_view").then(|| format!("{}-view-{i}", lead.id));
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
    .execute(&mut **tx)
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
    .execute(&mut **tx)
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
                let seal = crate::writer::seal_utterance(keys, org, &call.id, &id, text);
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
    .execute(&mut **tx)
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
    .execute(&mut **tx)
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
    .execute(&mut **tx)
    .await?;

    Ok((leads.len(), sealed.len()))
}

/// As [`postgres`], on SQLite.
pub(super) async fn sqlite(
    tx: &mut Transaction<'static, Sqlite>,
    org: &OrgId,
    leads: &[ImportedLead],
    keys: &Keyring,
) -> Result<(usize, usize), StoreError> {
    let org_id = org.as_str();
    let mut imported = 0;
    let mut utterances = 0;
    for lead in leads {
        let new = sqlx::query(
            "INSERT INTO people (organization_id, id, first_name, source, location, budget_min, budget_max) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (organization_id, id) DO NOTHING",
        )
        .bind(org_id)
        .bind(&lead.id)
        .bind(&lead.first_name)
        .bind(&lead.source)
        .bind(&lead.location)
        .bind(lead.budget_min)
        .bind(lead.budget_max)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if new == 0 {
            continue;
        }
        imported += 1;
        for (i, row) in lead.activity.iter().enumerate() {
            let property = (row.kind == "property_view").then(|| format!("{}-view-{i}", lead.id));
            if let Some(property) = &property {
                sqlx::query(
                    "INSERT INTO properties (organization_id, id, address, price, location) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(org_id)
                .bind(property)
                .bind(format!("Listing {property}"))
                .bind(row.price)
                .bind(&row.location)
                .execute(&mut **tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO activity (organization_id, person_id, kind, property_id, at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(org_id)
            .bind(&lead.id)
            .bind(&row.kind)
            .bind(&property)
            .bind(row.at_ms)
            .execute(&mut **tx)
            .await?;
        }
        for call in &lead.calls {
            let talk = call.inbound_talk_ms + call.outbound_talk_ms;
            sqlx::query(
                "INSERT INTO calls (organization_id, id, lead_id, direction, status, started_at, started_ms, \
                                    ended_at, duration_ms, inbound_talk_ms, outbound_talk_ms) \
                 VALUES ($1, $2, $3, 'outbound', 'completed', $4, $4, $5, $6, $7, $8)",
            )
            .bind(org_id)
            .bind(&call.id)
            .bind(&lead.id)
            .bind(call.started_ms)
            .bind(call.started_ms + talk)
            .bind(talk)
            .bind(call.inbound_talk_ms)
            .bind(call.outbound_talk_ms)
            .execute(&mut **tx)
            .await?;
            for (i, (text, score)) in call.customer.iter().enumerate() {
                let id = format!("inbound-{i:05}");
                let seal = seal_utterance(keys, org, &call.id, &id, text);
                let start = i as i64 * 10_000;
                sqlx::query(
                    "INSERT INTO utterances (organization_id, call_id, id, track, start_ms, end_ms, \
                                             text_ciphertext, text_key_id, sentiment, sentiment_score) \
                     VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7, $8, $9)",
                )
                .bind(org_id)
                .bind(&call.id)
                .bind(&id)
                .bind(start)
                .bind(start + 8000)
                .bind(seal.bytes)
                .bind(seal.key_id)
                .bind(score.map(sentiment_label))
                .bind(score)
                .execute(&mut **tx)
                .await?;
                utterances += 1;
            }
        }
        if let Some(DealOutcome { won, closed_ms }) = lead.deal {
            sqlx::query(
                "INSERT INTO deals (organization_id, id, person_id, stage, created_at, closed_at) \
                 VALUES ($1, 'deal-' || $2, $2, $3, $4, $4)",
            )
            .bind(org_id)
            .bind(&lead.id)
            .bind(if won { "won" } else { "lost" })
            .bind(closed_ms)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok((imported, utterances))
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
