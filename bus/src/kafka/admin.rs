//! Topics and consumers: what the bus creates on the cluster.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::util::Timeout;

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
    ) -> Result<StreamConsumer, BusError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.config.brokers)
            .set("group.id", group)
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "5");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config
            .create()
            .map_err(|e| BusError::backend("cannot create consumer", e))
    }
}
