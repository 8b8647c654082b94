//! Every metric the gateway records, defined in one place.

use std::sync::Once;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

const FEED_CONNECTIONS: &str = "winnerr_gateway_feed_connections";
const FEED_MESSAGES: &str = "winnerr_gateway_feed_messages_total";
const FEED_DROPPED: &str = "winnerr_gateway_feed_dropped_total";
const FEED_DELIVERY_SECONDS: &str = "winnerr_gateway_feed_delivery_seconds";
const ROOMS: &str = "winnerr_gateway_rooms";
const SPEECH_DELAY: &str = "winnerr_gateway_speech_delivery_seconds";
const AUTH_FAILURES: &str = "winnerr_gateway_auth_failures_total";
const FEED_DUPLICATES: &str = "winnerr_gateway_feed_duplicates_total";
const BUILD_INFO: &str = "winnerr_build_info";

pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_gauge!(FEED_CONNECTIONS, "Feed WebSocket clients connected now");
        describe_counter!(FEED_MESSAGES, "Event messages sent to feed clients");
        describe_counter!(
            FEED_DROPPED,
            "Event messages dropped for feed clients that fell behind"
        );
        describe_histogram!(
            FEED_DELIVERY_SECONDS,
            metrics::Unit::Seconds,
            "Delay from an event's creation to its delivery to a feed client"
        );
        describe_gauge!(ROOMS, "Organization rooms with at least one feed client");
        describe_histogram!(
            SPEECH_DELAY,
            metrics::Unit::Seconds,
            "Delay from an utterance's last voiced frame to its transcript or alert reaching a feed client, by type (finals include the end-of-utterance silence)"
        );
        describe_gauge!(
            BUILD_INFO,
            "Always 1; the version of the running engine is its label"
        );
        describe_counter!(
            AUTH_FAILURES,
            "Requests refused for a missing, expired or invalid token"
        );
        describe_counter!(
            FEED_DUPLICATES,
            "Events the bus delivered again, dropped before the feed"
        );
    });
}

pub(crate) fn feed_connected() {
    gauge!(FEED_CONNECTIONS).increment(1.0);
}

pub(crate) fn feed_disconnected() {
    gauge!(FEED_CONNECTIONS).decrement(1.0);
}

pub(crate) fn feed_sent(delay_seconds: f64) {
    counter!(FEED_MESSAGES).increment(1);
    histogram!(FEED_DELIVERY_SECONDS).record(delay_seconds);
}

pub(crate) fn speech_delivered(kind: &'static str, delay_seconds: f64) {
    histogram!(SPEECH_DELAY, "type" => kind).record(delay_seconds);
}

pub(crate) fn feed_dropped(count: u64) {
    counter!(FEED_DROPPED).increment(count);
}

pub(crate) fn rooms(count: usize) {
    gauge!(ROOMS).set(count as f64);
}

pub(crate) fn auth_failed(reason: &'static str) {
    counter!(AUTH_FAILURES, "reason" => reason).increment(1);
}

pub(crate) fn feed_duplicate() {
    counter!(FEED_DUPLICATES).increment(1);
}

/// Marks the process as up, with its version (a series that exists from the first scrape).
pub(crate) fn build_info() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
