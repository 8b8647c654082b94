//! The worker view on Kafka: a consumer group that stores a batch's offsets only once its worker
//! is done with it, and moves undecodable messages to the dead-letter topic.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{info, warn};

use super::admin::OwnedConsumer;
use super::{KafkaBus, decode, lag};
use crate::group::{Batch, Group, GroupSource, Undecodable};
use crate::{BusError, metrics};

/// How long a stopping group waits for its consumer to commit and leave; past it the close goes
/// on apart, and what it did not commit comes again to the group's next member.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

/// One member of a consumer group over the events topic.
pub(super) struct KafkaGroup {
    bus: KafkaBus,
    consumer: OwnedConsumer,
    group: String,
    /// Partition and offset of each message of the last batch, stored by `done`.
    pending: Vec<(i32, i64)>,
    /// Stops the lag sampler with the group, however it ends.
    _sampling: DropGuard,
}

impl KafkaGroup {
    pub(super) fn join(bus: &KafkaBus, group: &Group) -> Result<Self, BusError> {
        let consumer = bus.consumer(
            &group.name,
            &[
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "200"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
            ],
        )?;
        let topic = &bus.config.events_topic;
        consumer
            .subscribe(&[topic])
            .map_err(|e| BusError::backend("cannot subscribe", e))?;
        info!(group = %group.name, %topic, "joined consumer group");
        let sampling = CancellationToken::new();
        lag::spawn_sampler(
            consumer.watch(),
            group.name.clone(),
            topic.clone(),
            sampling.clone(),
        );
        Ok(Self {
            bus: bus.clone(),
            consumer,
            group: group.name.clone(),
            pending: Vec::new(),
            _sampling: sampling.drop_guard(),
        })
    }
}

/// Adds `message` to `batch`, as an event or as what could not be read.
fn take(batch: &mut Batch, pending: &mut Vec<(i32, i64)>, message: &BorrowedMessage<'_>) {
    pending.push((message.partition(), message.offset()));
    match decode(message) {
        Ok(event) => batch.events.push(event),
        Err(reason) => batch.undecodable.push(Undecodable {
            origin: format!(
                "{}/{}/{}",
                message.topic(),
                message.partition(),
                message.offset()
            ),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            reason,
        }),
    }
}

impl GroupSource for KafkaGroup {
    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Option<Batch>> {
        Box::pin(async move {
            self.pending.clear();
            let mut batch = Batch::default();
            while batch.events.is_empty() && batch.undecodable.is_empty() {
                match self.consumer.recv().await {
                    Ok(message) => take(&mut batch, &mut self.pending, &message),
                    Err(err) => warn!(group = %self.group, error = %err, "consumer error"),
                }
            }
            while self.pending.len() < max {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => take(&mut batch, &mut self.pending, &message),
                    Some(Err(err)) => {
                        warn!(group = %self.group, error = %err, "consumer error");
                        break;
                    }
                    None => break,
                }
            }
            Some(batch)
        })
    }

    fn ready(&mut self, _max: usize) -> Option<Batch> {
        // The log keeps what was not handled; the group's next member starts at the commit.
        None
    }

    fn set_aside<'a>(
        &'a mut self,
        message: &'a Undecodable,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "reason",
                    value: Some(message.reason.as_str()),
                })
                .insert(Header {
                    key: "origin",
                    value: Some(message.origin.as_str()),
                });
            let mut record = FutureRecord::to(&self.bus.config.dead_letter_topic)
                .payload(&message.payload)
                .headers(headers);
            if let Some(key) = &message.key {
                record = record.key(key);
            }
            self.bus
                .producer()
                .1
                .send(record, Timeout::Never)
                .await
                .map_err(|(e, _)| BusError::backend("cannot dead-letter a message", e))?;
            metrics::dead_lettered();
            Ok(())
        })
    }

    fn redelivers(&self) -> bool {
        true
    }

    fn done(&mut self) -> Result<(), BusError> {
        let topic = &self.bus.config.events_topic;
        for &(partition, offset) in &self.pending {
            self.consumer
                .store_offset(topic, partition, offset)
                .map_err(|e| BusError::backend("cannot store offset", e))?;
        }
        self.pending.clear();
        Ok(())
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        let KafkaGroup {
            consumer, group, ..
        } = *self;
        Box::pin(async move {
            consumer.close(CLOSE_DEADLINE).await?;
            info!(%group, "left consumer group; offsets committed");
            Ok(())
        })
    }
}
