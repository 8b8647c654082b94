//! The producer: idempotent, `acks=all`, replaced when it hits a fatal error.

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::util::Timeout;
use tracing::warn;

use super::{KafkaBus, KafkaConfig};
use crate::{BusError, metrics};

pub(super) type EventProducer = FutureProducer<RetryCounter>;

/// Counts librdkafka's own produce retries, from the statistics it reports every few seconds.
#[derive(Default)]
pub(super) struct RetryCounter {
    reported: AtomicU64,
}

impl ClientContext for RetryCounter {
    fn stats(&self, statistics: Statistics) {
        let retries: u64 = statistics
            .brokers
            .values()
            .map(|broker| broker.txretries)
            .sum();
        let before = self.reported.swap(retries, Ordering::Relaxed);
        if retries > before {
            metrics::produce_retried(retries - before);
        }
    }
}

pub(super) fn create_producer(config: &KafkaConfig) -> Result<EventProducer, BusError> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("statistics.interval.ms", "5000")
        .set(
            "message.timeout.ms",
            config.delivery_timeout.as_millis().to_string(),
        )
        .create_with_context(RetryCounter::default())
        .map_err(|e| BusError::backend("cannot create producer", e))
}

impl KafkaBus {
    pub(super) fn producer(&self) -> (u64, EventProducer) {
        self.producer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces producer `generation` after a fatal error (once, however many callers saw it).
    fn replace_producer(&self, generation: u64) -> Result<(), BusError> {
        let mut current = self
            .producer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.0 == generation {
            *current = (generation + 1, create_producer(&self.config)?);
            metrics::producer_replaced();
            warn!(
                generation = generation + 1,
                "Kafka producer hit a fatal error and was replaced"
            );
        }
        Ok(())
    }

    /// Sends one record and waits for the broker's acknowledgement; replaces a producer that hit
    /// a fatal error and tries once more (the event may then be on the log twice: consumers drop
    /// repeats by event id).
    pub(super) async fn send(&self, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        let mut retried = false;
        loop {
            let (generation, producer) = self.producer();
            let record = FutureRecord::to(&self.config.events_topic)
                .key(key)
                .payload(payload);
            match producer.send(record, Timeout::Never).await {
                Ok(_) => return Ok(()),
                Err((err, _)) if !retried && producer.client().fatal_error().is_some() => {
                    retried = true;
                    if self.replace_producer(generation).is_err() {
                        return Err(err);
                    }
                }
                Err((err, _)) => return Err(err),
            }
        }
    }
}
