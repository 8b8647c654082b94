//! The gateway view on Kafka: every partition from the end of the log, no consumer group.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::warn;

use super::admin::OwnedConsumer;
use super::{KafkaBus, METADATA_TIMEOUT, decode};
use crate::{BusError, Delivery, Subscription, metrics};

/// Events a gateway subscription buffers before it stops reading from Kafka.
const SUBSCRIPTION_BUFFER: usize = 4096;

/// A topic with no partition to read.
#[derive(Debug, thiserror::Error)]
#[error("topic {0} has no partitions")]
struct NoPartitions(String);

/// Follows every partition of the events topic from its current end.
pub(super) async fn subscribe(bus: &KafkaBus) -> Result<Subscription, BusError> {
    // A group id of its own: this node reads every partition and commits nothing.
    let group = format!("winnerr-gateway-{}", uuid::Uuid::now_v7());
    // Should the broker lose the log under the assigned offsets (a crash), re-read what it has
    // rather than skip to the end: repeats are dropped by event id downstream.
    let consumer = bus.consumer(
        &group,
        &[
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
        ],
    )?;
    let topic = bus.config.events_topic.clone();
    let consumer =
        tokio::task::spawn_blocking(move || assign_at_end(&consumer, &topic).map(|()| consumer))
            .await
            .map_err(|e| BusError::backend("assigning partitions stopped", e))??;
    let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
    tokio::spawn(forward(consumer, sender));
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
        receiver,
    )))
}

/// Assigns every partition of `topic` at its high watermark (blocking metadata calls).
fn assign_at_end(consumer: &StreamConsumer, topic: &str) -> Result<(), BusError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| BusError::backend("cannot read topic metadata", e))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(BusError::backend(
            "cannot follow the events",
            NoPartitions(topic.to_owned()),
        ));
    }
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            .map_err(|e| BusError::backend("cannot read watermarks", e))?;
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(high))
            .map_err(|e| BusError::backend("cannot build assignment", e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| BusError::backend("cannot assign partitions", e))
}

/// Feeds a gateway subscription until its reader goes away.
async fn forward(consumer: OwnedConsumer, sender: mpsc::Sender<Delivery>) {
    loop {
        let message = tokio::select! {
            message = consumer.recv() => message,
            _ = sender.closed() => return,
        };
        let message = match message {
            Ok(message) => message,
            Err(err) => {
                warn!(error = %err, "gateway consumer error");
                continue;
            }
        };
        match decode(&message) {
            Ok(event) => {
                metrics::consumed("gateway", 1, Duration::ZERO);
                if sender.send(Delivery::Event(event)).await.is_err() {
                    return;
                }
            }
            Err(reason) => {
                // Worker groups dead-letter these; a gateway only skips them.
                metrics::undecodable();
                warn!(partition = message.partition(), offset = message.offset(), %reason, "undecodable message skipped");
            }
        }
    }
}
