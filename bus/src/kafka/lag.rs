//! A consumer group's lag, sampled for the dashboards.

use std::sync::Weak;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::Offset;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// How often a consumer group's lag is sampled.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Records `group`'s lag per partition (high watermark minus position) until `stop` or until
/// the consumer is gone (the sampler never keeps it from closing).
pub(super) fn spawn_sampler(
    consumer: Weak<StreamConsumer>,
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
            let Some(consumer) = consumer.upgrade() else {
                return;
            };
            let (group, topic) = (group.clone(), topic.clone());
            let _ = tokio::task::spawn_blocking(move || sample(&consumer, &group, &topic)).await;
        }
    });
}

fn sample(consumer: &StreamConsumer, group: &str, topic: &str) {
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
