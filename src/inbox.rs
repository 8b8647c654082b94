//! Ingest's inbox backed by the store: an inbound message is recorded once by its provider's id,
//! and its sender is the organization's person with that number, or a new lead.
//!
//! Webhooks arrive in bursts; each recorded in a transaction of its own would cost a commit
//! each, and on the embedded SQLite store (one connection) they would queue behind each other.
//! So the inbox records them in batches: one task takes every arrival waiting (up to [`BATCH`])
//! and records them in one transaction, answering each webhook with its own outcome.

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use winnerr_events::{LeadId, MessageChannel, OrgId, UserId};
use winnerr_ingest::{Arrival, Inbox, InboxError, Received, Sender};
use winnerr_store::{MessageSender, Store, StoreError};

/// Most arrivals recorded in one transaction.
pub const BATCH: usize = 256;
/// Arrivals waiting for the recording task (a webhook waits when it is full).
const QUEUE: usize = 4_096;

/// An arrival waiting to be recorded, and where its outcome goes.
struct Waiting {
    org: OrgId,
    channel: MessageChannel,
    id: String,
    from: String,
    received_ms: u64,
    outcome: oneshot::Sender<Result<Option<MessageSender>, std::sync::Arc<StoreError>>>,
}

pub struct StoreInbox {
    store: Store,
    waiting: mpsc::Sender<Waiting>,
}

impl StoreInbox {
    /// The inbox, with its recording task on `store` (it ends when the inbox is dropped).
    pub fn start(store: Store) -> Self {
        let (waiting, mut arrivals) = mpsc::channel::<Waiting>(QUEUE);
        let recorder = store.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while arrivals.recv_many(&mut batch, BATCH).await > 0 {
                record(&recorder, std::mem::take(&mut batch)).await;
            }
        });
        Self { store, waiting }
    }
}

/// Records `batch` in one transaction and tells each webhook its outcome.
async fn record(store: &Store, batch: Vec<Waiting>) {
    let arrivals: Vec<winnerr_store::Arrival<'_>> = batch
        .iter()
        .map(|w| winnerr_store::Arrival {
            org: &w.org,
            channel: w.channel,
            id: &w.id,
            from: &w.from,
            received_ms: w.received_ms,
        })
        .collect();
    let recorded = store.receive_messages(&arrivals).await;
    drop(arrivals);
    match recorded {
        Ok(senders) => {
            for (waiting, sender) in batch.into_iter().zip(senders) {
                let _ = waiting.outcome.send(Ok(sender));
            }
        }
        Err(err) => {
            warn!(messages = batch.len(), error = %err, "inbound messages not recorded");
            let err = std::sync::Arc::new(err);
            for waiting in batch {
                let _ = waiting.outcome.send(Err(err.clone()));
            }
        }
    }
}

fn inbox_error(err: impl std::error::Error + Send + Sync + 'static) -> InboxError {
    InboxError(Box::new(err))
}

/// The recording task stopped (the server is stopping).
#[derive(Debug, thiserror::Error)]
#[error("the inbox is closed")]
struct Closed;

impl Inbox for StoreInbox {
    fn receive<'a>(&'a self, arrival: Arrival<'a>) -> BoxFuture<'a, Result<Received, InboxError>> {
        Box::pin(async move {
            let (outcome, recorded) = oneshot::channel();
            let waiting = Waiting {
                org: arrival.org.clone(),
                channel: arrival.channel,
                id: arrival.id.as_str().to_owned(),
                from: arrival.from.to_owned(),
                received_ms: arrival.received_at_ms,
                outcome,
            };
            self.waiting
                .send(waiting)
                .await
                .map_err(|_| inbox_error(Closed))?;
            let sender = recorded
                .await
                .map_err(|_| inbox_error(Closed))?
                .map_err(|err| InboxError(Box::new(SharedStoreError(err))))?;
            let Some(sender) = sender else {
                return Ok(Received::Again);
            };
            Ok(Received::First(Sender {
                lead_id: LeadId::parse(&sender.person_id).map_err(inbox_error)?,
                // An owner id the store holds is checked when written; one that is not an id
                // now is left out rather than refusing the message.
                agent_id: sender.agent_id.and_then(|a| UserId::parse(a).ok()),
                new_lead: sender.created,
            }))
        })
    }

    fn forget<'a>(
        &'a self,
        org: &'a OrgId,
        id: &'a winnerr_events::CallId,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move {
            self.store
                .forget_message(org, id.as_str())
                .await
                .map_err(inbox_error)
        })
    }

    fn set_opted_out<'a>(
        &'a self,
        org: &'a OrgId,
        from: &'a str,
        opted_out: bool,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(async move { self.opt(org, from, opted_out).await.map_err(inbox_error) })
    }
}

impl StoreInbox {
    async fn opt(&self, org: &OrgId, from: &str, opted_out: bool) -> Result<(), StoreError> {
        if opted_out {
            self.store
                .add_do_not_call(org, from, Some("texted an opt-out keyword"), SMS_ACTOR)
                .await
                .map(drop)
        } else {
            self.store
                .remove_do_not_call_number(org, from, SMS_ACTOR)
                .await
                .map(drop)
        }
    }
}

/// Who changed the do-not-call list, in the audit log, when a number texted a keyword.
const SMS_ACTOR: &str = "sms-keyword";

/// A store error shared by every webhook of the batch it failed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct SharedStoreError(std::sync::Arc<StoreError>);
