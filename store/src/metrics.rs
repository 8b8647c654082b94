//! Every metric the store records, defined in one place.

use std::sync::Once;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_histogram, histogram};

const APPLIED: &str = "winnerr_store_events_applied_total";
const REPEATED: &str = "winnerr_store_events_repeated_total";
const WRITE_ERRORS: &str = "winnerr_store_write_errors_total";
const BATCH_SECONDS: &str = "winnerr_store_batch_seconds";
const BATCH_EVENTS: &str = "winnerr_store_batch_events";
const UNREADABLE: &str = "winnerr_store_unreadable_total";
const DEAD_LETTERS: &str = "winnerr_store_dead_letters_total";
const ERASED: &str = "winnerr_store_people_erased_total";
const PURGED: &str = "winnerr_store_purged_total";
const PURGE_FAILED: &str = "winnerr_store_purge_failures_total";

pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_counter!(APPLIED, "Call events the store writer applied, by type");
        describe_counter!(
            REPEATED,
            "Call events the store writer had applied before and skipped"
        );
        describe_counter!(WRITE_ERRORS, "Batches the store writer failed to write");
        describe_histogram!(
            BATCH_SECONDS,
            metrics::Unit::Seconds,
            "Time to write one batch of events"
        );
        describe_histogram!(BATCH_EVENTS, "Events per batch the store writer wrote");
        describe_counter!(
            DEAD_LETTERS,
            "Call events the database refused, set aside in dead_letters (by type) so later ones are still stored"
        );
        describe_counter!(ERASED, "People erased on request, with their calls' transcripts");
        describe_counter!(
            PURGED,
            "Rows deleted (or DTMF digits cleared) by retention purges, by kind"
        );
        describe_counter!(PURGE_FAILED, "Organizations whose retention purge failed");
        describe_counter!(
            UNREADABLE,
            "Encrypted values that did not decrypt (unknown key, tampered or moved), by field; left out of what was read"
        );
    });
}

pub(crate) fn set_aside(kind: &'static str) {
    counter!(DEAD_LETTERS, "type" => kind).increment(1);
}

pub(crate) fn unreadable(field: &'static str) {
    counter!(UNREADABLE, "field" => field).increment(1);
}

pub(crate) fn applied(kind: &'static str) {
    counter!(APPLIED, "type" => kind).increment(1);
}

pub(crate) fn repeated() {
    counter!(REPEATED).increment(1);
}

pub(crate) fn write_failed() {
    counter!(WRITE_ERRORS).increment(1);
}

pub(crate) fn batch(events: usize, elapsed: Duration) {
    histogram!(BATCH_SECONDS).record(elapsed.as_secs_f64());
    histogram!(BATCH_EVENTS).record(events as f64);
}

pub(crate) fn erased() {
    counter!(ERASED).increment(1);
}

pub(crate) fn purged(purged: &crate::retention::Purged) {
    for (kind, rows) in [
        ("utterances", purged.utterances),
        ("dead_letters", purged.dead_letters),
        ("dtmf", purged.dtmf_cleared),
        ("scores", purged.scores),
    ] {
        counter!(PURGED, "kind" => kind).increment(rows);
    }
}

pub(crate) fn purge_failed() {
    counter!(PURGE_FAILED).increment(1);
}
