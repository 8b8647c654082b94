//! The store writer's statements on SQLite: one per row, in the batch's transaction. The rows and
//! their order are those of the Postgres statements: starts, talk time and keys, utterances,
//! scores, ends.

use std::collections::HashSet;

use sqlx::{Sqlite, Transaction};
use uuid::Uuid;
use winnerr_events::OrgId;

use super::{CallChanges, seal_utterance, status, utterance_id};
use crate::StoreError;
use crate::crypto::Keyring;

/// Marks `ids` applied in `org`; returns those that were not before.
pub(super) async fn mark_applied(
    tx: &mut Transaction<'static, Sqlite>,
    org: &OrgId,
    ids: &[Uuid],
) -> Result<HashSet<Uuid>, StoreError> {
    let mut new = HashSet::with_capacity(ids.len());
    for id in ids {
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO applied_events (organization_id, event_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING RETURNING event_id",
        )
        .bind(org.as_str())
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        new.extend(inserted);
    }
    Ok(new)
}

/// Applies one organization's new events.
pub(super) async fn apply_all(
    tx: &mut Transaction<'static, Sqlite>,
    org: &OrgId,
    changes: &CallChanges<'_>,
    keys: &Keyring,
) -> Result<(), StoreError> {
    let org_id = org.as_str();
    for (call, (event, started)) in &changes.started {
        sqlx::query(
            "INSERT INTO calls (organization_id, id, stream_sid, account_sid, agent_id, lead_id, status, \
             started_at, started_ms) VALUES ($1, $2, $3, $4, $5, $6, 'live', $7, $7) \
             ON CONFLICT (organization_id, id) DO UPDATE SET stream_sid = excluded.stream_sid, \
             account_sid = excluded.account_sid, agent_id = excluded.agent_id, lead_id = excluded.lead_id, \
             started_at = excluded.started_at, started_ms = excluded.started_ms",
        )
        .bind(org_id)
        .bind(call)
        .bind(&started.stream_sid)
        .bind(&started.account_sid)
        .bind(event.agent_id.as_ref().map(|a| a.as_str()))
        .bind(started.lead_id.as_ref().map(|l| l.as_str()))
        .bind(event.ts_ms as i64)
        .execute(&mut **tx)
        .await?;
    }
    for (call, (inbound, outbound)) in &changes.talk {
        sqlx::query(
            "UPDATE calls SET inbound_talk_ms = inbound_talk_ms + $3, outbound_talk_ms = outbound_talk_ms + $4 \
             WHERE organization_id = $1 AND id = $2",
        )
        .bind(org_id)
        .bind(call)
        .bind(inbound)
        .bind(outbound)
        .execute(&mut **tx)
        .await?;
    }
    for (call, digits) in &changes.digits {
        sqlx::query(
            "UPDATE calls SET dtmf_digits = dtmf_digits || $3 WHERE organization_id = $1 AND id = $2",
        )
        .bind(org_id)
        .bind(call)
        .bind(digits)
        .execute(&mut **tx)
        .await?;
    }
    // Finals of a call this store never saw start are left out, as on Postgres.
    for (call, t) in &changes.utterances {
        let id = utterance_id(t);
        let sealed = seal_utterance(keys, org, call, &id, &t.text);
        sqlx::query(
            "INSERT INTO utterances (organization_id, call_id, id, track, start_ms, end_ms, text_ciphertext, \
             text_key_id, sentiment, sentiment_score) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
             WHERE EXISTS (SELECT 1 FROM calls c WHERE c.organization_id = $1 AND c.id = $2) \
             ON CONFLICT (organization_id, call_id, id) DO UPDATE SET start_ms = excluded.start_ms, \
             end_ms = excluded.end_ms, text_ciphertext = excluded.text_ciphertext, \
             text_key_id = excluded.text_key_id, sentiment = excluded.sentiment, \
             sentiment_score = excluded.sentiment_score",
        )
        .bind(org_id)
        .bind(call)
        .bind(&id)
        .bind(t.track.as_str())
        .bind(t.start_ms as i64)
        .bind(t.end_ms as i64)
        .bind(sealed.bytes)
        .bind(sealed.key_id)
        .bind(t.sentiment.as_ref().map(|s| s.label.as_str()))
        .bind(t.sentiment.as_ref().map(|s| s.score))
        .execute(&mut **tx)
        .await?;
    }
    for ((lead, ts_ms), score) in &changes.scores {
        sqlx::query(
            "INSERT INTO lead_scores (organization_id, person_id, scored_at, score, factors, model_version) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (organization_id, person_id, scored_at) DO UPDATE SET score = excluded.score, \
             factors = excluded.factors, model_version = excluded.model_version",
        )
        .bind(org_id)
        .bind(lead)
        .bind(*ts_ms as i64)
        .bind(i16::from(score.score))
        .bind(serde_json::to_string(&score.factors).expect("factors serialize"))
        .bind(&score.model_version)
        .execute(&mut **tx)
        .await?;
    }
    for (call, (event, ended)) in &changes.ended {
        sqlx::query(
            "INSERT INTO calls (organization_id, id, agent_id, status, ended_at, duration_ms, stream_stats) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (organization_id, id) DO UPDATE SET status = excluded.status, \
             ended_at = excluded.ended_at, duration_ms = excluded.duration_ms, \
             stream_stats = excluded.stream_stats",
        )
        .bind(org_id)
        .bind(call)
        .bind(event.agent_id.as_ref().map(|a| a.as_str()))
        .bind(status(ended.reason))
        .bind(event.ts_ms as i64)
        .bind(ended.duration_ms as i64)
        .bind(serde_json::to_string(&ended.stats).expect("stats serialize"))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
