//! Metrics of the bus, defined in one place so names never drift.
#![cfg_attr(not(feature = "kafka"), allow(dead_code))]

use std::sync::Once;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

const PUBLISHED: &str = "winnerr_bus_published_total";
const DELIVERED: &str = "winnerr_bus_delivered_total";
const PRODUCE_FAILED: &str = "winnerr_bus_produce_failed_total";
const PRODUCE_RETRIED: &str = "winnerr_bus_produce_retries_total";
const PRODUCE_SECONDS: &str = "winnerr_bus_produce_seconds";
const LAGGED: &str = "winnerr_bus_subscriber_lagged_total";
const CONSUMED: &str = "winnerr_bus_consumed_total";
const HANDLE_SECONDS: &str = "winnerr_bus_handle_seconds";
const HANDLER_FAILED: &str = "winnerr_bus_handler_failures_total";
const UNDECODABLE: &str = "winnerr_bus_undecodable_total";
const DEAD_LETTERED: &str = "winnerr_bus_dead_lettered_total";
const PRODUCER_REPLACED: &str = "winnerr_bus_producer_replaced_total";
const CONSUMER_LAG: &str = "winnerr_bus_consumer_lag";
const GROUP_QUEUED: &str = "winnerr_bus_group_queued";
const PUBLISH_WAITED: &str = "winnerr_bus_publish_waits_total";
const CLOSE_TIMED_OUT: &str = "winnerr_bus_consumer_close_timeouts_total";

pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_counter!(PUBLISHED, "Events published on the bus, by event type");
        describe_counter!(DELIVERED, "Events the broker acknowledged");
        describe_counter!(
            PRODUCE_FAILED,
            "Events the broker never acknowledged (after retries)"
        );
        describe_counter!(
            PRODUCE_RETRIED,
            "Produce requests the Kafka client sent again"
        );
        describe_histogram!(
            PRODUCE_SECONDS,
            metrics::Unit::Seconds,
            "Time from publish to broker acknowledgement"
        );
        describe_counter!(
            LAGGED,
            "Events a slow in-process subscriber missed because it fell behind"
        );
        describe_counter!(CONSUMED, "Events consumed, by consumer (gateway or group)");
        describe_histogram!(
            HANDLE_SECONDS,
            metrics::Unit::Seconds,
            "Time a consumer group spent on one batch of events, effects included"
        );
        describe_counter!(
            HANDLER_FAILED,
            "Failed effects of a consumer group (each is retried), by group"
        );
        describe_counter!(
            UNDECODABLE,
            "Messages a gateway consumer could not read and skipped"
        );
        describe_counter!(DEAD_LETTERED, "Messages moved to the dead-letter topic");
        describe_counter!(PRODUCER_REPLACED, "Producers replaced after a fatal error");
        describe_gauge!(
            CONSUMER_LAG,
            "Events on the log a consumer group has not yet consumed, by group and partition"
        );
        describe_gauge!(
            GROUP_QUEUED,
            "Events an in-process consumer group's queue holds for its worker, by group"
        );
        describe_counter!(
            PUBLISH_WAITED,
            "Events whose publishing waited for an in-process consumer group's full queue, by group"
        );
        describe_counter!(
            CLOSE_TIMED_OUT,
            "Kafka consumers whose close (commit, leave the group) outlasted its deadline, by group"
        );
    });
}

pub(crate) fn published(kind: &'static str) {
    counter!(PUBLISHED, "type" => kind).increment(1);
}

pub(crate) fn delivered(elapsed: Duration) {
    counter!(DELIVERED).increment(1);
    histogram!(PRODUCE_SECONDS).record(elapsed.as_secs_f64());
}

pub(crate) fn produce_failed() {
    counter!(PRODUCE_FAILED).increment(1);
}

pub(crate) fn lagged(missed: u64) {
    counter!(LAGGED).increment(missed);
}

pub(crate) fn consumed(consumer: &str, count: u64, elapsed: Duration) {
    counter!(CONSUMED, "consumer" => consumer.to_owned()).increment(count);
    if !elapsed.is_zero() {
        histogram!(HANDLE_SECONDS, "consumer" => consumer.to_owned()).record(elapsed.as_secs_f64());
    }
}

pub(crate) fn handler_failed(group: &str) {
    counter!(HANDLER_FAILED, "group" => group.to_owned()).increment(1);
}

pub(crate) fn undecodable() {
    counter!(UNDECODABLE).increment(1);
}

pub(crate) fn dead_lettered() {
    counter!(DEAD_LETTERED).increment(1);
}

pub(crate) fn producer_replaced() {
    counter!(PRODUCER_REPLACED).increment(1);
}

pub(crate) fn consumer_lag(group: &str, partition: i32, lag: i64) {
    gauge!(CONSUMER_LAG, "group" => group.to_owned(), "partition" => partition.to_string())
        .set(lag as f64);
}

pub(crate) fn produce_retried(count: u64) {
    counter!(PRODUCE_RETRIED).increment(count);
}

pub(crate) fn group_queued(group: &str) -> metrics::Gauge {
    gauge!(GROUP_QUEUED, "group" => group.to_owned())
}

pub(crate) fn publish_waited(group: &str) {
    counter!(PUBLISH_WAITED, "group" => group.to_owned()).increment(1);
}

pub(crate) fn consumer_close_timed_out(group: &str) {
    counter!(CLOSE_TIMED_OUT, "group" => group.to_owned()).increment(1);
}
