//! The store writer's statements on SQLite. As on Postgres, each organization's events of a batch
//! take a handful of set-based statements, whatever their number: the rows travel as one JSON
//! array bound to the statement and unpacked by `json_each` (SQLite's `unnest`), binary values
//! as hex for `unhex()`. A statement per row cost a round trip to the driver's thread each, and
//! wrote under half as many events a second.

use std::collections::HashSet;

use serde_json::{Value, json};
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;
use winnerr_events::{ConsentRecord, OrgId};

use super::{CallChanges, MessageRows, ms, seal_utterance, status, utterance_id};
use crate::StoreError;
use crate::audit::hex;
use crate::crypto::Keyring;

/// Marks `ids` applied in `org`; returns those that were not before.
pub(super) async fn mark_applied(
    tx: &mut Transaction<'static, Sqlite>,
    org: &OrgId,
    ids: &[Uuid],
) -> Result<HashSet<Uuid>, StoreError> {
    let ids: Vec<String> = ids.iter().map(|id| hex(id.as_bytes())).collect();
    let new: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO applied_events (organization_id, event_id) \
         SELECT $1, unhex(value) FROM json_each($2) WHERE true \
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(org.as_str())
    .bind(Value::from(ids).to_string())
    .fetch_all(&mut **tx)
    .await?;
    Ok(new.into_iter().collect())
}

/// Applies one organization's new events: starts, then talk time and keys, utterances, scores,
/// then ends (the order of the Postgres statements).
pub(super) async fn apply_all(
    tx: &mut Transaction<'static, Sqlite>,
    org: &OrgId,
    changes: &CallChanges<'_>,
    keys: &Keyring,
) -> Result<(), StoreError> {
    if !changes.started.is_empty() {
        let rows: Vec<Value> = changes
            .started
            .iter()
            .map(|(call, (event, started))| {
                json!([
                    call,
                    started.stream_sid,
                    started.account_sid,
                    event.agent_id.as_ref().map(|a| a.as_str()),
                    started.lead_id.as_ref().map(|l| l.as_str()),
                    ms(event.ts_ms),
                    started.consent.map(ConsentRecord::as_str),
                ])
            })
            .collect();
        execute(
            tx,
            org,
            rows,
            "INSERT INTO calls (organization_id, id, stream_sid, account_sid, agent_id, lead_id, consent, \
             status, started_at, started_ms) \
             SELECT $1, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 6, \
                    'live', value ->> 5, value ->> 5 \
             FROM json_each($2) WHERE true \
             ON CONFLICT (organization_id, id) DO UPDATE SET stream_sid = excluded.stream_sid, \
             account_sid = excluded.account_sid, agent_id = excluded.agent_id, lead_id = excluded.lead_id, \
             consent = excluded.consent, started_at = excluded.started_at, started_ms = excluded.started_ms",
        )
        .await?;
    }
    if !changes.talk.is_empty() {
        let rows: Vec<Value> = changes
            .talk
            .iter()
            .map(|(call, (inbound, outbound))| json!([call, inbound, outbound]))
            .collect();
        execute(
            tx,
            org,
            rows,
            "UPDATE calls SET inbound_talk_ms = inbound_talk_ms + (u.value ->> 1), \
             outbound_talk_ms = outbound_talk_ms + (u.value ->> 2) \
             FROM json_each($2) AS u WHERE calls.organization_id = $1 AND calls.id = u.value ->> 0",
        )
        .await?;
    }
    if !changes.digits.is_empty() {
        let rows: Vec<Value> = changes
            .digits
            .iter()
            .map(|(call, digits)| json!([call, digits]))
            .collect();
        execute(
            tx,
            org,
            rows,
            "UPDATE calls SET dtmf_digits = dtmf_digits || (u.value ->> 1) \
             FROM json_each($2) AS u WHERE calls.organization_id = $1 AND calls.id = u.value ->> 0",
        )
        .await?;
    }
    if !changes.summaries.is_empty() {
        let rows: Vec<Value> = changes
            .summaries
            .iter()
            .map(|(call, summary)| json!([call, super::json_text(summary)]))
            .collect();
        execute(
            tx,
            org,
            rows,
            "UPDATE calls SET summary = (u.value ->> 1) \
             FROM json_each($2) AS u WHERE calls.organization_id = $1 AND calls.id = u.value ->> 0",
        )
        .await?;
    }
    if !changes.signals.is_empty() {
        let rows: Vec<Value> = changes
            .signals
            .iter()
            .map(|(call, signals)| json!([call, super::json_text(signals)]))
            .collect();
        // A redelivered older report does not replace a newer one.
        execute(
            tx,
            org,
            rows,
            "UPDATE calls SET signals = (u.value ->> 1) \
             FROM json_each($2) AS u WHERE calls.organization_id = $1 AND calls.id = u.value ->> 0 \
               AND (calls.signals IS NULL OR calls.signals ->> 'at_ms' <= (u.value ->> 1) ->> 'at_ms')",
        )
        .await?;
    }
    if !changes.utterances.is_empty() {
        let rows: Vec<Value> = changes
            .utterances
            .iter()
            .map(|(call, t)| {
                let id = utterance_id(t);
                let sealed = seal_utterance(keys, org, call, &id, &t.text);
                json!([
                    call,
                    id,
                    t.track.as_str(),
                    ms(t.start_ms),
                    ms(t.end_ms),
                    hex(&sealed.bytes),
                    sealed.key_id,
                    t.sentiment.as_ref().map(|s| s.label.as_str()),
                    t.sentiment.as_ref().map(|s| s.score),
                ])
            })
            .collect();
        // Finals of a call this store never saw start are left out, as on Postgres.
        execute(
            tx,
            org,
            rows,
            "INSERT INTO utterances (organization_id, call_id, id, track, start_ms, end_ms, text_ciphertext, \
             text_key_id, sentiment, sentiment_score) \
             SELECT $1, u.value ->> 0, u.value ->> 1, u.value ->> 2, u.value ->> 3, u.value ->> 4, \
                    unhex(u.value ->> 5), u.value ->> 6, u.value ->> 7, u.value ->> 8 \
             FROM json_each($2) AS u \
             WHERE EXISTS (SELECT 1 FROM calls c WHERE c.organization_id = $1 AND c.id = u.value ->> 0) \
             ON CONFLICT (organization_id, call_id, id) DO UPDATE SET start_ms = excluded.start_ms, \
             end_ms = excluded.end_ms, text_ciphertext = excluded.text_ciphertext, \
             text_key_id = excluded.text_key_id, sentiment = excluded.sentiment, \
             sentiment_score = excluded.sentiment_score",
        )
        .await?;
    }
    if !changes.scores.is_empty() {
        let rows: Vec<Value> = changes
            .scores
            .iter()
            .map(|((lead, ts_ms), score)| {
                json!([
                    lead,
                    ms(*ts_ms),
                    score.score,
                    serde_json::to_string(&score.factors).expect("factors serialize"),
                    score.model_version,
                ])
            })
            .collect();
        execute(
            tx,
            org,
            rows,
            "INSERT INTO lead_scores (organization_id, person_id, scored_at, score, factors, model_version) \
             SELECT $1, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
             FROM json_each($2) WHERE true \
             ON CONFLICT (organization_id, person_id, scored_at) DO UPDATE SET score = excluded.score, \
             factors = excluded.factors, model_version = excluded.model_version",
        )
        .await?;
    }
    if !changes.messages.is_empty() {
        let columns = MessageRows::of(org, &changes.messages, keys);
        let rows: Vec<Value> = (0..columns.ids.len())
            .map(|i| {
                json!([
                    columns.ids[i],
                    columns.channels[i],
                    columns.directions[i],
                    columns.people[i],
                    columns.agents[i],
                    columns.received[i],
                    hex(&columns.ciphertexts[i]),
                    columns.key_ids[i],
                    columns.labels[i],
                    columns.scores[i],
                ])
            })
            .collect();
        execute(
            tx,
            org,
            rows,
            "INSERT INTO messages (organization_id, id, channel, direction, person_id, agent_id, received_ms, \
             body_ciphertext, body_key_id, sentiment, sentiment_score) \
             SELECT $1, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
                    unhex(value ->> 6), value ->> 7, value ->> 8, value ->> 9 \
             FROM json_each($2) WHERE true \
             ON CONFLICT (organization_id, id) DO UPDATE SET body_ciphertext = excluded.body_ciphertext, \
             body_key_id = excluded.body_key_id, sentiment = excluded.sentiment, sentiment_score = excluded.sentiment_score, \
             person_id = coalesce(messages.person_id, excluded.person_id), agent_id = coalesce(messages.agent_id, excluded.agent_id)",
        )
        .await?;
    }
    if !changes.ended.is_empty() {
        let rows: Vec<Value> = changes
            .ended
            .iter()
            .map(|(call, (event, ended))| {
                json!([
                    call,
                    event.agent_id.as_ref().map(|a| a.as_str()),
                    status(ended.reason),
                    ms(event.ts_ms),
                    ms(ended.duration_ms),
                    serde_json::to_string(&ended.stats).expect("stats serialize"),
                ])
            })
            .collect();
        execute(
            tx,
            org,
            rows,
            "INSERT INTO calls (organization_id, id, agent_id, status, ended_at, duration_ms, stream_stats) \
             SELECT $1, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
             FROM json_each($2) WHERE true \
             ON CONFLICT (organization_id, id) DO UPDATE SET status = excluded.status, \
             ended_at = excluded.ended_at, duration_ms = excluded.duration_ms, \
             stream_stats = excluded.stream_stats",
        )
        .await?;
    }
    Ok(())
}

/// Runs `sql` with `$1` the organization and `$2` the JSON array of `rows`.
async fn execute(
    tx: &mut Transaction<'static, Sqlite>,
    org: &OrgId,
    rows: Vec<Value>,
    sql: &str,
) -> Result<(), StoreError> {
    sqlx::query(sql)
        .bind(org.as_str())
        .bind(Value::from(rows).to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
