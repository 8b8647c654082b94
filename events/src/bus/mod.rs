//! The bus that carries events between stages.
//!
//! [`InProcessBus`] is the embedded default (one process runs every role); [`KafkaBus`] lets
//! ingest/voice nodes, consumers and gateway nodes scale apart. Publishing keeps per-call order; a
//! subscriber sees every event published after it subscribed, or learns how many it missed
//! ([`Delivery::Lagged`]).

mod in_process;
pub mod kafka;
mod recent;

pub use in_process::InProcessBus;
pub use kafka::{KafkaBus, KafkaConfig};
pub use recent::RecentIds;

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use futures_util::future::BoxFuture;

use crate::event::Envelope;

/// Why an event could not be published.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus is closed")]
    Closed,
    #[error("bus backend failed: {0}")]
    Backend(String),
}

/// What a subscriber receives.
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
    fn publish(&self, event: Envelope) -> BoxFuture<'_, Result<(), BusError>>;

    /// Subscribes to every event published from now on (once the future resolves).
    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, BusError>>;

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
