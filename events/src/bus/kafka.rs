//! The bus on Kafka (any Kafka-protocol broker): call events on one topic keyed by call id, so
//! each call's events stay in order on one partition.
//!
//! - Publishing goes through an idempotent producer (`acks=all`, retries without duplicates or
//!   reordering) with a 1 ms linger, and resolves when the broker has the event.
//! - [`Bus::subscribe`] is the gateway-node view: every partition, no consumer group, starting at
//!   the end of the log as of the call, so any node can serve any client.
//! - [`KafkaBus::consume_group`] is the worker view (store writer, scoring): a consumer group that
//!   marks an event done only after its effect, and moves undecodable messages to a dead-letter
//!   topic with the reason.
//!
//! Only what Apache Kafka itself guarantees is used, so production can point at any cluster.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Bus, BusError, Delivery, Subscription};
use crate::event::Envelope;
use crate::metrics;

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

fn backend(context: &str, err: KafkaError) -> BusError {
    BusError::Backend(format!("{context}: {err}"))
}

/// How long blocking metadata calls may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Events a gateway subscription buffers before it stops reading from Kafka.
const SUBSCRIPTION_BUFFER: usize = 4096;

/// The bus on a Kafka cluster; cheap to clone.
#[derive(Clone)]
pub struct KafkaBus {
    config: Arc<KafkaConfig>,
    /// The producer and its generation. An idempotent producer that hits a fatal error (the
    /// broker lost acknowledged data, so sequence numbers no longer line up) must be replaced.
    producer: Arc<RwLock<(u64, EventProducer)>>,
}

type EventProducer = FutureProducer<RetryCounter>;

/// Counts librdkafka's own produce retries, from the statistics it reports every few seconds.
#[derive(Default)]
struct RetryCounter {
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

fn create_producer(config: &KafkaConfig) -> Result<EventProducer, BusError> {
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
        .map_err(|e| backend("cannot create producer", e))
}

impl KafkaBus {
    /// Connects, and creates the topics if they do not exist (idempotent).
    pub async fn connect(config: KafkaConfig) -> Result<Self, BusError> {
        metrics::describe();
        let producer = create_producer(&config)?;
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
            .map_err(|e| backend("cannot flush producer", e))
    }

    fn producer(&self) -> (u64, EventProducer) {
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
    async fn send(&self, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
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

    async fn ensure_topics(&self) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .create()
            .map_err(|e| backend("cannot create admin client", e))?;
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
            .map_err(|e| backend("cannot create topics", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::Backend(format!(
                        "cannot create topic {topic}: {code}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn consumer(&self, group: &str, extra: &[(&str, &str)]) -> Result<StreamConsumer, BusError> {
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
            .map_err(|e| backend("cannot create consumer", e))
    }

    /// Sends `payload` to the dead-letter topic with the reason and where it came from.
    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        reason: &str,
    ) -> Result<(), BusError> {
        let origin = format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "origin",
                value: Some(origin.as_str()),
            });
        let mut record = FutureRecord::to(&self.config.dead_letter_topic)
            .payload(message.payload().unwrap_or_default())
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        self.producer()
            .1
            .send(record, Timeout::Never)
            .await
            .map_err(|(e, _)| backend("cannot dead-letter a message", e))?;
        metrics::dead_lettered();
        Ok(())
    }

    /// Runs a consumer group over the events topic until `shutdown`. Events go to `handle` in
    /// batches of up to `max_batch` (what is waiting, never waiting to fill one), each partition's
    /// in order; a batch is marked done (committed) only after `handle` succeeds, so a crash
    /// redelivers rather than loses. A failing `handle` is retried with backoff; an undecodable
    /// message is moved to the dead-letter topic. On shutdown, what was done is committed before
    /// returning.
    pub async fn consume_group<H, F>(
        &self,
        group: &str,
        max_batch: usize,
        shutdown: CancellationToken,
        mut handle: H,
    ) -> Result<(), BusError>
    where
        H: FnMut(Vec<Arc<Envelope>>) -> F + Send,
        F: Future<Output = Result<(), String>> + Send,
    {
        let consumer = Arc::new(self.consumer(
            group,
            &[
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "200"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
            ],
        )?);
        consumer
            .subscribe(&[&self.config.events_topic])
            .map_err(|e| backend("cannot subscribe", e))?;
        info!(group, topic = %self.config.events_topic, "consumer group started");
        // The sampler stops with this function, however it ends.
        let sampling = shutdown.child_token();
        let _stop_sampling = sampling.clone().drop_guard();
        spawn_lag_sampler(
            consumer.clone(),
            group.to_owned(),
            self.config.events_topic.clone(),
            sampling,
        );
        let max_batch = max_batch.max(1);
        loop {
            let first = tokio::select! {
                message = consumer.recv() => message,
                _ = shutdown.cancelled() => break,
            };
            let mut messages = match first {
                Ok(message) => vec![message],
                Err(err) => {
                    warn!(group, error = %err, "consumer error");
                    continue;
                }
            };
            while messages.len() < max_batch {
                match consumer.recv().now_or_never() {
                    Some(Ok(message)) => messages.push(message),
                    Some(Err(err)) => {
                        warn!(group, error = %err, "consumer error");
                        break;
                    }
                    None => break,
                }
            }
            let started = Instant::now();
            let mut events = Vec::with_capacity(messages.len());
            for message in &messages {
                match decode(message) {
                    Ok(event) => events.push(event),
                    Err(reason) => {
                        warn!(group, partition = message.partition(), offset = message.offset(), %reason, "undecodable message dead-lettered");
                        self.dead_letter(message, &reason).await?;
                    }
                }
            }
            let count = events.len();
            if count > 0 {
                let mut backoff = Duration::from_millis(50);
                while let Err(error) = handle(events.clone()).await {
                    metrics::handler_failed(group);
                    warn!(group, events = count, %error, "handler failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return commit(&consumer, group),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            for message in &messages {
                consumer
                    .store_offset_from_message(message)
                    .map_err(|e| backend("cannot store offset", e))?;
            }
            metrics::consumed(group, count as u64, started.elapsed());
        }
        commit(&consumer, group)
    }
}

/// How often a consumer group's lag is sampled.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Records `group`'s lag per partition (high watermark minus position) until `stop`.
fn spawn_lag_sampler(
    consumer: Arc<StreamConsumer>,
    group: String,
    topic: String,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LAG_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let (consumer, group, topic) = (consumer.clone(), group.clone(), topic.clone());
            let _ =
                tokio::task::spawn_blocking(move || sample_lag(&consumer, &group, &topic)).await;
        }
    });
}

fn sample_lag(consumer: &StreamConsumer, group: &str, topic: &str) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    for element in positions.elements_for_topic(topic) {
        let Offset::Offset(position) = element.offset() else {
            continue;
        };
        if let Ok((_, high)) =
            consumer.fetch_watermarks(topic, element.partition(), Duration::from_secs(2))
        {
            metrics::consumer_lag(group, element.partition(), (high - position).max(0));
        }
    }
}

fn commit(consumer: &StreamConsumer, group: &str) -> Result<(), BusError> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
            info!(group, "consumer group stopped; offsets committed");
            Ok(())
        }
        Err(err) => Err(backend("cannot commit offsets", err)),
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
                    Err(backend("event not delivered", err))
                }
            }
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        let producer = self.producer().1;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(None, Duration::from_secs(1))
                    .map(drop)
                    .map_err(|e| backend("brokers unreachable", e))
            })
            .await
            .map_err(|e| BusError::Backend(e.to_string()))?
        })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, BusError>> {
        Box::pin(async move {
            // A group id of its own: this node reads every partition and commits nothing.
            let group = format!("winnerr-gateway-{}", uuid::Uuid::now_v7());
            // Should the broker lose the log under the assigned offsets (a crash), re-read what
            // it has rather than skip to the end: repeats are dropped by event id downstream.
            let consumer = Arc::new(self.consumer(
                &group,
                &[
                    ("enable.auto.commit", "false"),
                    ("auto.offset.reset", "earliest"),
                ],
            )?);
            let topic = self.config.events_topic.clone();
            // Start exactly at the current end of every partition (blocking metadata calls).
            let assigned = {
                let consumer = consumer.clone();
                tokio::task::spawn_blocking(move || -> Result<(), BusError> {
                    let metadata = consumer
                        .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
                        .map_err(|e| backend("cannot read topic metadata", e))?;
                    let partitions = metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic)
                        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                        .unwrap_or_default();
                    if partitions.is_empty() {
                        return Err(BusError::Backend(format!(
                            "topic {topic} has no partitions"
                        )));
                    }
                    let mut assignment = TopicPartitionList::new();
                    for partition in partitions {
                        let (_, high) = consumer
                            .fetch_watermarks(&topic, partition, METADATA_TIMEOUT)
                            .map_err(|e| backend("cannot read watermarks", e))?;
                        assignment
                            .add_partition_offset(&topic, partition, Offset::Offset(high))
                            .map_err(|e| backend("cannot build assignment", e))?;
                    }
                    consumer
                        .assign(&assignment)
                        .map_err(|e| backend("cannot assign partitions", e))
                })
            };
            assigned
                .await
                .map_err(|e| BusError::Backend(e.to_string()))??;
            let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
            tokio::spawn(forward(consumer, sender));
            let subscription: Subscription =
                Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver));
            Ok(subscription)
        })
    }
}

/// Feeds a gateway subscription until its reader goes away.
async fn forward(consumer: Arc<StreamConsumer>, sender: mpsc::Sender<Delivery>) {
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
