//! Topics and consumers: what the bus creates on the cluster.

use std::ops::Deref;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::util::Timeout;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{KafkaBus, METADATA_TIMEOUT};
use crate::BusError;

/// A topic the cluster would not create.
#[derive(Debug, thiserror::Error)]
#[error("topic {topic}: {code}")]
struct TopicRefused {
    topic: String,
    code: RDKafkaErrorCode,
}

impl KafkaBus {
    /// Creates the events and dead-letter topics if they do not exist (idempotent).
    pub(super) async fn ensure_topics(&self) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .create()
            .map_err(|e| BusError::backend("cannot create admin client", e))?;
        let replication = || TopicReplication::Fixed(self.config.replication);
        let topics = [
            NewTopic::new(
                &self.config.events_topic,
                self.config.partitions,
                replication(),
            ),
            NewTopic::new(&self.config.dead_letter_topic, 1, replication()),
        ];
        let options = AdminOptions::new().operation_timeout(Some(Timeout::After(METADATA_TIMEOUT)));
        let results = admin
            .create_topics(&topics, &options)
            .await
            .map_err(|e| BusError::backend("cannot create topics", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::backend(
                        "cannot create topic",
                        TopicRefused { topic, code },
                    ));
                }
            }
        }
        Ok(())
    }

    /// A consumer of group `group` with the bus's common settings and `extra`.
    pub(super) fn consumer(
        &self,
        group: &str,
        extra: &[(&str, &str)],
    ) -> Result<OwnedConsumer, BusError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.config.brokers)
            .set("group.id", group)
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "5");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        let consumer = config
            .create()
            .map_err(|e| BusError::backend("cannot create consumer", e))?;
        Ok(OwnedConsumer {
            consumer: Some(Arc::new(consumer)),
            group: group.to_owned(),
        })
    }
}

/// A consumer that closes on a thread of its own. librdkafka's close (leaving the group,
/// committing what auto-commit holds) waits for the group's coordinator, forever while no broker
/// answers; run on a task, it would hold that thread and then the runtime's shutdown. Dropped,
/// it closes without anyone waiting; [`OwnedConsumer::close`] lets its owner wait with a bound.
pub(super) struct OwnedConsumer {
    /// Taken only by `close` and `drop`.
    consumer: Option<Arc<StreamConsumer>>,
    group: String,
}

impl OwnedConsumer {
    /// A handle for helpers (the lag sampler) that must not keep the consumer from closing.
    pub(super) fn watch(&self) -> Weak<StreamConsumer> {
        Arc::downgrade(self.shared())
    }

    /// Commits what was stored, leaves the group and frees the client, waiting at most
    /// `deadline`. After it the close goes on apart; the log keeps what was not committed.
    pub(super) async fn close(mut self, deadline: Duration) -> Result<(), BusError> {
        let consumer = self.consumer.take().expect("taken only here and on drop");
        let group = std::mem::take(&mut self.group);
        match tokio::time::timeout(deadline, close_apart(consumer, group.clone(), true)).await {
            // Nothing stored since the last commit.
            Ok(Ok(Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)))) => Ok(()),
            Ok(Ok(Err(err))) => Err(BusError::backend("cannot commit offsets", err)),
            Ok(Err(gone)) => Err(BusError::backend("consumer close stopped", gone)),
            Err(late) => {
                crate::metrics::consumer_close_timed_out(&group);
                warn!(%group, ?deadline, "consumer close timed out (no broker answers?); it goes on apart");
                Err(BusError::backend("consumer close timed out", late))
            }
        }
    }

    fn shared(&self) -> &Arc<StreamConsumer> {
        self.consumer
            .as_ref()
            .expect("taken only on close and drop")
    }
}

impl Deref for OwnedConsumer {
    type Target = StreamConsumer;

    fn deref(&self) -> &StreamConsumer {
        self.shared()
    }
}

impl Drop for OwnedConsumer {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            drop(close_apart(
                consumer,
                std::mem::take(&mut self.group),
                false,
            ));
        }
    }
}

/// Closes `consumer` on a new thread once no helper holds it (a lag sample may, for a moment),
/// first committing its stored offsets when `commit`; the receiver has the commit's outcome once
/// the close is done.
fn close_apart(
    mut consumer: Arc<StreamConsumer>,
    group: String,
    commit: bool,
) -> oneshot::Receiver<KafkaResult<()>> {
    let (closed, outcome) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            let consumer = loop {
                match Arc::try_unwrap(consumer) {
                    Ok(consumer) => break consumer,
                    Err(shared) => {
                        consumer = shared;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            };
            let committed = if commit {
                consumer.commit_consumer_state(CommitMode::Sync)
            } else {
                Ok(())
            };
            drop(consumer);
            info!(%group, "consumer closed");
            let _ = closed.send(committed);
        });
    if let Err(err) = spawned {
        // The consumer was dropped with the closure, here.
        warn!(error = %err, "no thread to close a consumer on");
    }
    outcome
}
