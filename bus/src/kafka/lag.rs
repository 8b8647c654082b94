//! A consumer group's lag, sampled for the dashboards.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::Offset;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// How often a consumer group's lag is sampled.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Records `group`'s lag per partition (high watermark minus position) until `stop`.
pub(super) fn spawn_sampler(
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
