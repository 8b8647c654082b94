//! Consumer groups: the worker contract and the one loop that runs a worker on either bus.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use winnerr_events::{Envelope, Event};

use crate::{BusError, metrics};

/// A consumer group: its name (on Kafka, the group id) and what it takes.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// Most events handed to the worker at once.
    pub max_batch: usize,
    /// The events the group wants; the others never reach its worker (in-process they never
    /// take room in its queue). A worker that publishes must not want what it publishes, or
    /// in-process its own full queue would stop it.
    pub wants: fn(&Event) -> bool,
}

impl Group {
    /// Group `name` taking every event except nodes' presence, which is no call's record.
    pub fn new(name: impl Into<String>, max_batch: usize) -> Self {
        Self {
            name: name.into(),
            max_batch: max_batch.max(1),
            wants: |event| !matches!(event, Event::Presence(_)),
        }
    }

    /// The same group taking only what `wants` says yes to.
    pub fn wanting(mut self, wants: fn(&Event) -> bool) -> Self {
        self.wants = wants;
        self
    }
}

/// Why a worker could not handle a batch (it is handed the same batch again).
pub type WorkerError = Box<dyn std::error::Error + Send + Sync>;

/// A worker of a consumer group: the store writer, the lead scorer.
pub trait Worker: Send {
    /// Applies the effect of `events` (each call's in order). An error has the same batch
    /// handed again, after a backoff, until it succeeds or the group stops; a worker that can
    /// tell one bad event from an outage sets the bad one aside itself and succeeds.
    fn handle<'a>(
        &'a mut self,
        events: &'a [Arc<Envelope>],
    ) -> BoxFuture<'a, Result<(), WorkerError>>;
}

/// A worker from a closure over each batch.
pub fn worker_fn<F, Fut, E>(handle: F) -> impl Worker
where
    F: FnMut(Vec<Arc<Envelope>>) -> Fut + Send,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<WorkerError>,
{
    struct FnWorker<F>(F);
    impl<F, Fut, E> Worker for FnWorker<F>
    where
        F: FnMut(Vec<Arc<Envelope>>) -> Fut + Send,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<WorkerError>,
    {
        fn handle<'a>(
            &'a mut self,
            events: &'a [Arc<Envelope>],
        ) -> BoxFuture<'a, Result<(), WorkerError>> {
            let done = (self.0)(events.to_vec());
            Box::pin(async move { done.await.map_err(Into::into) })
        }
    }
    FnWorker(handle)
}

/// What a group's source hands over at once.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Arc<Envelope>>,
    /// Messages that are not call events (from another producer, or corrupted), with why.
    pub undecodable: Vec<Undecodable>,
}

/// A message on the bus that is not a call event.
#[derive(Debug)]
pub struct Undecodable {
    /// Where it was (topic/partition/offset).
    pub origin: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub reason: String,
}

/// A bus's side of a consumer group, driven by [`run_group`].
pub trait GroupSource: Send {
    /// The next batch: up to `max` of what is waiting (never waiting to fill one); `None` once
    /// the bus is gone.
    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Option<Batch>>;

    /// Up to `max` of what this process already holds, without waiting: what a stopping group
    /// still handles. On Kafka nothing (the log keeps it, from the group's commit).
    fn ready(&mut self, max: usize) -> Option<Batch>;

    /// Moves `message` aside with its reason (Kafka's dead-letter topic).
    fn set_aside<'a>(&'a mut self, message: &'a Undecodable)
    -> BoxFuture<'a, Result<(), BusError>>;

    /// Whether what is not marked done comes again to the group's next member (a log's does;
    /// a queue in this process is gone with it, so a stopping group finishes its batches).
    fn redelivers(&self) -> bool;

    /// Marks the last batch done: its effect is applied.
    fn done(&mut self) -> Result<(), BusError>;

    /// Leaves the group, committing what was done (on Kafka waiting a bounded time for it).
    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>>;
}

/// First wait after a worker fails a batch; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs `worker` over `source` until `shutdown`, then handles what this process already holds
/// and leaves the group. Each batch goes to the worker whole (the events the group wants) and is
/// marked done only after the worker succeeds; a failing worker gets the same batch again with
/// backoff, so an outage delays events and loses none (in-process, a stopping group keeps
/// trying: bound the wait for it); undecodable messages are set aside with the reason. Fails
/// only when the bus itself does (a batch could not be marked done).
pub async fn run_group(
    mut source: Box<dyn GroupSource>,
    group: Group,
    mut worker: impl Worker,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    info!(group = %group.name, "consumer group started");
    loop {
        let batch = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            batch = source.next_batch(group.max_batch) => batch,
        };
        let Some(batch) = batch else { break };
        if !handle(source.as_mut(), &group, &mut worker, batch, &shutdown).await? {
            return source.close().await;
        }
    }
    while let Some(batch) = source.ready(group.max_batch) {
        if !handle(source.as_mut(), &group, &mut worker, batch, &shutdown).await? {
            break;
        }
    }
    let closed = source.close().await;
    info!(group = %group.name, "consumer group stopped");
    closed
}

/// Handles one batch to the end; false when the group stopped before its worker succeeded (the
/// batch is then not marked done, and the bus delivers it again).
async fn handle(
    source: &mut dyn GroupSource,
    group: &Group,
    worker: &mut impl Worker,
    batch: Batch,
    shutdown: &CancellationToken,
) -> Result<bool, BusError> {
    let started = Instant::now();
    for message in &batch.undecodable {
        warn!(group = %group.name, origin = %message.origin, reason = %message.reason, "undecodable message set aside");
        source.set_aside(message).await?;
    }
    let events: Vec<Arc<Envelope>> = batch
        .events
        .into_iter()
        .filter(|event| (group.wants)(&event.event))
        .collect();
    if !events.is_empty() {
        let mut backoff = FIRST_BACKOFF;
        while let Err(error) = worker.handle(&events).await {
            metrics::handler_failed(&group.name);
            warn!(group = %group.name, events = events.len(), %error, "worker failed a batch; retrying");
            // Stopping, a group whose bus redelivers leaves the batch to its next member; one
            // whose bus does not keeps trying (the caller bounds how long it waits for that).
            let stopped = shutdown.cancelled();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped, if source.redelivers() => {
                    warn!(group = %group.name, events = events.len(), "group stopped with a batch not done; it is delivered again");
                    return Ok(false);
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    source.done()?;
    metrics::consumed(&group.name, events.len() as u64, started.elapsed());
    Ok(true)
}
