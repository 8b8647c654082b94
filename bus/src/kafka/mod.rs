//! The bus on Kafka (any Kafka-protocol broker): call events on one topic keyed by call id, so
//! each call's events stay in order on one partition.
//!
//! - Publishing goes through an idempotent producer (`acks=all`, retries without duplicates or
//!   reordering) with a 1 ms linger, and resolves when the broker has the event ([`producer`]).
//! - [`Bus::subscribe`] is the gateway-node view: every partition, no consumer group, starting at
//!   the end of the log as of the call, so any node can serve any client ([`tail`]).
//! - [`Bus::join_group`] is the worker view (store writer, scoring): a consumer group that marks
//!   an event done only after its effect, and moves undecodable messages to a dead-letter topic
//!   with the reason ([`group`]); its lag is sampled for the dashboards ([`lag`]).
//!
//! Only what Apache Kafka itself guarantees is used, so production can point at any cluster.

mod admin;
mod group;
mod lag;
mod producer;
mod tail;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rdkafka::Message;
use rdkafka::client::Client;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::Producer;
use tracing::info;
use winnerr_events::Envelope;

use crate::group::{Group, GroupSource};
use crate::{Bus, BusError, Subscription, metrics};

/// Where the bus lives on Kafka.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port,host:port`
    pub brokers: String,
    /// Topic of call events.
    pub events_topic: String,
    /// Topic where undecodable messages go, with the reason in a header.
    pub dead_letter_topic: String,
    /// Partitions of topics this bus creates.
    pub partitions: i32,
    /// Replication factor of topics this bus creates.
    pub replication: i32,
    /// How long the producer keeps retrying an event (through broker restarts) before failing it.
    pub delivery_timeout: Duration,
}

impl KafkaConfig {
    /// Default topic names and sizes for `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            events_topic: "winnerr.call-events.v1".into(),
            dead_letter_topic: "winnerr.dead-letter.v1".into(),
            partitions: 6,
            replication: 1,
            delivery_timeout: Duration::from_secs(120),
        }
    }
}

/// How long blocking metadata calls may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The bus on a Kafka cluster; cheap to clone.
#[derive(Clone)]
pub struct KafkaBus {
    config: Arc<KafkaConfig>,
    /// The producer and its generation. An idempotent producer that hits a fatal error (the
    /// broker lost acknowledged data, so sequence numbers no longer line up) must be replaced.
    producer: Arc<RwLock<(u64, producer::EventProducer)>>,
}

impl KafkaBus {
    /// Connects, and creates the topics if they do not exist (idempotent).
    pub async fn connect(config: KafkaConfig) -> Result<Self, BusError> {
        metrics::describe();
        let producer = producer::create_producer(&config)?;
        let bus = Self {
            config: Arc::new(config),
            producer: Arc::new(RwLock::new((0, producer))),
        };
        bus.ensure_topics().await?;
        info!(brokers = %bus.config.brokers, topic = %bus.config.events_topic, "Kafka bus connected");
        Ok(bus)
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Waits (blocking, up to `timeout`) until every published event is acknowledged; for
    /// graceful shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        self.producer()
            .1
            .flush(timeout)
            .map_err(|e| BusError::backend("cannot flush producer", e))
    }
}

/// Reads one event; the error is the reason it could not be read.
fn decode(message: &BorrowedMessage<'_>) -> Result<Arc<Envelope>, String> {
    let payload = message.payload().ok_or("message has no payload")?;
    serde_json::from_slice::<Envelope>(payload)
        .map(Arc::new)
        .map_err(|err| format!("not a call event: {err}"))
}

impl Bus for KafkaBus {
    fn publish(&self, event: Envelope) -> BoxFuture<'_, Result<(), BusError>> {
        let kind = event.event.kind();
        let payload = serde_json::to_vec(&event).expect("events always serialize");
        Box::pin(async move {
            metrics::published(kind);
            let started = Instant::now();
            match self.send(event.call_id.as_str(), &payload).await {
                Ok(()) => {
                    metrics::delivered(started.elapsed());
                    Ok(())
                }
                Err(err) => {
                    metrics::produce_failed();
                    Err(BusError::backend("event not delivered", err))
                }
            }
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        let producer = self.producer().1;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let client: &Client<_> = producer.client();
                client
                    .fetch_metadata(None, Duration::from_secs(1))
                    .map(drop)
                    .map_err(|e| BusError::backend("brokers unreachable", e))
            })
            .await
            .map_err(|e| BusError::backend("broker check stopped", e))?
        })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, BusError>> {
        Box::pin(tail::subscribe(self))
    }

    fn join_group(&self, group: &Group) -> BoxFuture<'_, Result<Box<dyn GroupSource>, BusError>> {
        let joined = group::KafkaGroup::join(self, group)
            .map(|member| Box::new(member) as Box<dyn GroupSource>);
        Box::pin(std::future::ready(joined))
    }
}
