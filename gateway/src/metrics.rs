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
const FEED_CLOSED: &str = "winnerr_gateway_feed_closed_total";
const FEED_RECOVERIES: &str = "winnerr_gateway_feed_recoveries_total";
const FEED_REJECTED: &str = "winnerr_gateway_feed_requests_rejected_total";
const PRESENCE_MEMBERS: &str = "winnerr_gateway_presence_members";
const PRESENCE_CHANGES: &str = "winnerr_gateway_presence_changes_total";
const LISTENERS: &str = "winnerr_gateway_listeners";
const LISTEN_PACKETS: &str = "winnerr_gateway_listen_packets_total";
const LISTEN_DROPPED: &str = "winnerr_gateway_listen_dropped_frames_total";
const BUILD_INFO: &str = "winnerr_build_info";
const CONNECTIONS: &str = "winnerr_gateway_connections";
const CONNECTIONS_REFUSED: &str = "winnerr_gateway_connections_refused_total";

pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_gauge!(FEED_CONNECTIONS, "Feed WebSocket clients connected now");
        describe_counter!(FEED_MESSAGES, "Event messages sent to feed clients");
        describe_counter!(
            FEED_DROPPED,
            "Feed messages not delivered, by reason: interim transcripts spared a slow client's queue (interim), a client behind its room (lagged), the gateway behind the bus (gateway_lagged)"
        );
        describe_counter!(
            FEED_CLOSED,
            "Feed connections the gateway closed, by reason (too_slow, heartbeat, token_expired, shutdown)"
        );
        describe_counter!(
            FEED_RECOVERIES,
            "Subscriptions with a position to resume from, by result (recovered, unrecoverable)"
        );
        describe_counter!(
            FEED_REJECTED,
            "Feed client requests refused, by code (bad_request, unknown_channel, forbidden, bad_token, too_many_subscriptions, rate_limited)"
        );
        describe_gauge!(
            CONNECTIONS,
            "TCP connections the server holds now (HTTP, WebSocket, Twilio), under its caps"
        );
        describe_counter!(
            CONNECTIONS_REFUSED,
            "TCP connections refused at accept, by cap (total, per_address)"
        );
        describe_gauge!(LISTENERS, "Listen-in sockets open now");
        describe_counter!(LISTEN_PACKETS, "Opus packets sent to listen-in sockets");
        describe_counter!(
            LISTEN_DROPPED,
            "Audio frames listen-in sockets missed by falling behind their call"
        );
        describe_gauge!(PRESENCE_MEMBERS, "People online in the rooms of this gateway node");
        describe_counter!(PRESENCE_CHANGES, "Presence joins, updates and leaves, by change");
        describe_histogram!(
            FEED_DELIVERY_SECONDS,
            metrics::Unit::Seconds,
            "Delay from an event's creation to its delivery to a feed client"
        );
        describe_gauge!(ROOMS, "Organization rooms on this gateway node (with clients, or idle for under 10 minutes)");
        describe_histogram!(
            SPEECH_DELAY,
            metrics::Unit::Seconds,
            "Delay from an utterance's last voiced frame to its transcript or alert reaching a feed client, by type (finals include the end-of-utterance silence); for a message, from its webhook's arrival"
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

pub(crate) fn feed_dropped(reason: &'static str, count: u64) {
    counter!(FEED_DROPPED, "reason" => reason).increment(count);
}

pub(crate) fn feed_closed(reason: &'static str) {
    counter!(FEED_CLOSED, "reason" => reason).increment(1);
}

pub(crate) fn recovery(recovered: bool) {
    let result = if recovered {
        "recovered"
    } else {
        "unrecoverable"
    };
    counter!(FEED_RECOVERIES, "result" => result).increment(1);
}

pub(crate) fn request_rejected(code: winnerr_events::ErrorCode) {
    let code = match code {
        winnerr_events::ErrorCode::BadRequest => "bad_request",
        winnerr_events::ErrorCode::UnknownChannel => "unknown_channel",
        winnerr_events::ErrorCode::Forbidden => "forbidden",
        winnerr_events::ErrorCode::BadToken => "bad_token",
        winnerr_events::ErrorCode::TooManySubscriptions => "too_many_subscriptions",
        winnerr_events::ErrorCode::RateLimited => "rate_limited",
    };
    counter!(FEED_REJECTED, "code" => code).increment(1);
}

pub(crate) fn presence(members: usize) {
    gauge!(PRESENCE_MEMBERS).set(members as f64);
}

pub(crate) fn presence_changed(change: winnerr_events::PresenceChange) {
    let change = match change {
        winnerr_events::PresenceChange::Join => "join",
        winnerr_events::PresenceChange::Update => "update",
        winnerr_events::PresenceChange::Leave => "leave",
    };
    counter!(PRESENCE_CHANGES, "change" => change).increment(1);
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

pub(crate) fn listeners(change: f64) {
    gauge!(LISTENERS).increment(change);
}

pub(crate) fn listen_packet() {
    counter!(LISTEN_PACKETS).increment(1);
}

pub(crate) fn listen_dropped(frames: u64) {
    counter!(LISTEN_DROPPED).increment(frames);
}

pub(crate) fn connections_held(count: usize) {
    gauge!(CONNECTIONS).set(count as f64);
}

pub(crate) fn connection_refused(cap: &'static str) {
    counter!(CONNECTIONS_REFUSED, "cap" => cap).increment(1);
}
