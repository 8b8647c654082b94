//! The bus that carries call events between stages, and the contract of the workers on it.
//!
//! [`InProcessBus`] is the embedded default (one process runs every role); [`KafkaBus`] (feature
//! `kafka`) lets ingest/voice nodes, workers and gateway nodes scale apart. Publishing keeps
//! per-call order. A bus has two views:
//!
//! - [`Bus::subscribe`], the live view of a gateway node: every event published after it
//!   subscribed, or word of how many it missed ([`Delivery::Lagged`]) — a feed must not wait.
//! - [`Bus::join_group`], the view of a worker (the store writer, the lead scorer): a consumer
//!   group that gets every event once, in batches, and marks them done only after their effect;
//!   [`run_group`] is the one loop, on either bus, that batches, retries and sets aside.

mod group;
mod in_process;
#[cfg(feature = "kafka")]
pub mod kafka;
mod metrics;
mod recent;

pub use group::{
    Batch, Group, GroupSource, Undecodable, Worker, WorkerError, run_group, worker_fn,
};
pub use in_process::InProcessBus;
#[cfg(feature = "kafka")]
pub use kafka::{KafkaBus, KafkaConfig};
pub use recent::RecentIds;

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use winnerr_events::Envelope;

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus is closed")]
    Closed,
    #[error("{context}: {source}")]
    Backend {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("consumer group {0} is already running in this process")]
    GroupTaken(String),
}

impl BusError {
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn backend(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BusError::Backend {
            context,
            source: source.into(),
        }
    }
}

/// What a live subscriber receives.
#[derive(Debug, Clone)]
pub enum Delivery {
    Event(Arc<Envelope>),
    /// The subscriber fell behind; this many events were dropped for it.
    Lagged(u64),
}

/// A live subscription: every event published from the moment of subscribing.
pub type Subscription = Pin<Box<dyn Stream<Item = Delivery> + Send>>;

/// Carries call events between stages.
pub trait Bus: Send + Sync + 'static {
    /// Publishes one event. Events of one call are delivered in the order they were published.
    /// It resolves once every consumer group will get the event (on Kafka: the broker has it;
    /// in-process: each group's queue took it, which waits while a group's queue is full).
    fn publish(&self, event: Envelope) -> BoxFuture<'_, Result<(), BusError>>;

    /// Subscribes to every event published from now on (once the future resolves).
    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, BusError>>;

    /// Joins consumer group `group`: from the moment this resolves, every event the group wants
    /// is kept for it until a [`run_group`] loop over the source marks it done (on Kafka the log
    /// keeps it, from the group's last commit; in-process a bounded queue of the group's own).
    fn join_group(&self, group: &Group) -> BoxFuture<'_, Result<Box<dyn GroupSource>, BusError>>;

    /// Whether other processes hear what is published here (Kafka does). The in-process bus
    /// reaches only this process, so traffic between nodes (their presence) stays off it and
    /// cannot crowd out call events.
    fn reaches_other_processes(&self) -> bool {
        true
    }

    /// Whether the bus can carry events now (for readiness); the in-process bus always can.
    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}
