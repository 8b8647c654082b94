//! The store writer: call events in, call rows out. Each event is applied at most once — its id
//! goes into `applied_events` in the same transaction as its effect — so replays and bus
//! redeliveries leave the rows as they were. Events are written in batches, one transaction each.

use std::sync::Arc;
use std::time::Instant;

use futures_util::{FutureExt, StreamExt};
use sqlx::{Postgres, Transaction};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use winnerr_events::{
    ActivityState, Delivery, EndReason, Envelope, Event, OrgId, Subscription, Track,
};

use crate::{Store, StoreError, metrics, set_organization};

/// Most events written in one transaction.
pub const MAX_BATCH: usize = 512;

/// Writes call events into the store.
#[derive(Clone, Debug)]
pub struct StoreWriter {
    store: Store,
}

fn status(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Completed => "completed",
        EndReason::Abandoned => "abandoned",
        EndReason::Rejected => "rejected",
        EndReason::Shutdown => "shutdown",
    }
}

impl StoreWriter {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Applies `events` in one transaction, skipping any applied before; returns how many were
    /// new. Nothing is written if any fails.
    pub async fn apply(&self, events: &[Arc<Envelope>]) -> Result<usize, StoreError> {
        let started = Instant::now();
        let mut tx = self.store.pool().begin().await?;
        let mut current: Option<&OrgId> = None;
        let mut applied = 0;
        for event in events {
            if current != Some(&event.org_id) {
                set_organization(&mut tx, &event.org_id).await?;
                sqlx::query(
                    "INSERT INTO organizations (id) VALUES ($1) ON CONFLICT (id) DO NOTHING",
                )
                .bind(event.org_id.as_str())
                .execute(&mut *tx)
                .await?;
                current = Some(&event.org_id);
            }
            let first_time = sqlx::query(
                "INSERT INTO applied_events (organization_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(event.org_id.as_str())
            .bind(event.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !first_time {
                metrics::repeated();
                continue;
            }
            apply_one(&mut tx, event).await?;
            metrics::applied(event.event.kind());
            applied += 1;
        }
        tx.commit().await?;
        metrics::batch(events.len(), started.elapsed());
        Ok(applied)
    }

    /// Writes everything `subscription` delivers until `shutdown` (and what was already
    /// delivered by then), batching what is waiting. A batch that fails is retried, so nothing is
    /// lost while the database is away.
    pub fn spawn(
        self,
        mut subscription: Subscription,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            loop {
                // Biased: what is already published is written before a shutdown is noticed.
                let first = tokio::select! {
                    biased;
                    delivery = subscription.next() => delivery,
                    _ = shutdown.cancelled() => break,
                };
                match first {
                    Some(delivery) => push(&mut batch, delivery),
                    None => break,
                }
                while batch.len() < MAX_BATCH {
                    match subscription.next().now_or_never() {
                        Some(Some(delivery)) => push(&mut batch, delivery),
                        _ => break,
                    }
                }
                self.write_until_done(&batch, &shutdown).await;
                batch.clear();
            }
        })
    }

    async fn write_until_done(&self, batch: &[Arc<Envelope>], shutdown: &CancellationToken) {
        let mut backoff = std::time::Duration::from_millis(50);
        loop {
            match self.apply(batch).await {
                Ok(_) => return,
                Err(err) => {
                    metrics::write_failed();
                    warn!(events = batch.len(), error = %err, "store write failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
        }
    }
}

fn push(batch: &mut Vec<Arc<Envelope>>, delivery: Delivery) {
    match delivery {
        Delivery::Event(event) => batch.push(event),
        Delivery::Lagged(missed) => {
            metrics::write_failed();
            warn!(
                missed,
                "store writer fell behind the in-process bus; events lost"
            );
        }
    }
}

async fn apply_one(
    tx: &mut Transaction<'static, Postgres>,
    event: &Envelope,
) -> Result<(), StoreError> {
    let org = event.org_id.as_str();
    let call = event.call_id.as_str();
    let at = event.ts_ms as f64 / 1000.0;
    match &event.event {
        Event::CallStarted(started) => {
            sqlx::query(
                "INSERT INTO calls (organization_id, id, stream_sid, account_sid, agent_id, lead_id, status, started_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'live', to_timestamp($7)) \
                 ON CONFLICT (organization_id, id) DO UPDATE SET stream_sid = EXCLUDED.stream_sid, \
                 account_sid = EXCLUDED.account_sid, agent_id = EXCLUDED.agent_id, lead_id = EXCLUDED.lead_id, \
                 started_at = EXCLUDED.started_at",
            )
            .bind(org)
            .bind(call)
            .bind(&started.stream_sid)
            .bind(&started.account_sid)
            .bind(event.agent_id.as_ref().map(|a| a.as_str()))
            .bind(started.lead_id.as_ref().map(|l| l.as_str()))
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Event::AudioActivity(activity) => {
            let (ActivityState::Silent, Some(spoken)) = (activity.state, activity.spoken_ms) else {
                return Ok(());
            };
            let column = match activity.track {
                Track::Inbound => "inbound_talk_ms",
                Track::Outbound => "outbound_talk_ms",
            };
            sqlx::query(&format!(
                "UPDATE calls SET {column} = {column} + $3 WHERE organization_id = $1 AND id = $2"
            ))
            .bind(org)
            .bind(call)
            .bind(spoken as i64)
            .execute(&mut **tx)
            .await?;
        }
        Event::Dtmf(dtmf) => {
            sqlx::query(
                "UPDATE calls SET dtmf_digits = dtmf_digits || $3 WHERE organization_id = $1 AND id = $2",
            )
            .bind(org)
            .bind(call)
            .bind(dtmf.digit.to_string())
            .execute(&mut **tx)
            .await?;
        }
        Event::CallEnded(ended) => {
            let stats = serde_json::to_value(&ended.stats).expect("stats serialize");
            sqlx::query(
                "INSERT INTO calls (organization_id, id, agent_id, status, ended_at, duration_ms, stream_stats) \
                 VALUES ($1, $2, $3, $4, to_timestamp($5), $6, $7) \
                 ON CONFLICT (organization_id, id) DO UPDATE SET status = EXCLUDED.status, \
                 ended_at = EXCLUDED.ended_at, duration_ms = EXCLUDED.duration_ms, stream_stats = EXCLUDED.stream_stats",
            )
            .bind(org)
            .bind(call)
            .bind(event.agent_id.as_ref().map(|a| a.as_str()))
            .bind(status(ended.reason))
            .bind(at)
            .bind(ended.duration_ms as i64)
            .bind(stats)
            .execute(&mut **tx)
            .await?;
        }
        Event::Unknown => {}
    }
    Ok(())
}
