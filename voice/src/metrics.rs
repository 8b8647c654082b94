//! Every metric the voice stage records, defined in one place.

use std::sync::Once;

use metrics::{counter, describe_counter, describe_gauge, gauge};

const CALLS_LIVE: &str = "winnerr_voice_calls_live";
const FRAMES: &str = "winnerr_voice_frames_total";
const EVENTS: &str = "winnerr_voice_events_emitted_total";
const PUBLISH_ERRORS: &str = "winnerr_voice_publish_errors_total";

pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_gauge!(CALLS_LIVE, "Calls the voice stage is processing now");
        describe_counter!(FRAMES, "Audio frames processed, by track");
        describe_counter!(EVENTS, "Events the voice stage published, by type");
        describe_counter!(PUBLISH_ERRORS, "Events the bus refused, by type");
    });
}

pub(crate) fn call_started() {
    gauge!(CALLS_LIVE).increment(1.0);
}

pub(crate) fn call_ended() {
    gauge!(CALLS_LIVE).decrement(1.0);
}

pub(crate) fn frame(track: &'static str) {
    counter!(FRAMES, "track" => track).increment(1);
}

pub(crate) fn emitted(kind: &'static str) {
    counter!(EVENTS, "type" => kind).increment(1);
}

pub(crate) fn publish_failed(kind: &'static str) {
    counter!(PUBLISH_ERRORS, "type" => kind).increment(1);
}
