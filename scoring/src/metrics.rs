//! Every metric the scorer records, defined in one place.

use std::sync::Once;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

const RECEIVED: &str = "winnerr_scoring_events_received_total";
const SKIPPED: &str = "winnerr_scoring_events_skipped_total";
const REPEATED: &str = "winnerr_scoring_events_repeated_total";
const PUBLISHED: &str = "winnerr_scoring_scores_published_total";
const UNCHANGED: &str = "winnerr_scoring_scores_unchanged_total";
const PUBLISH_ERRORS: &str = "winnerr_scoring_publish_errors_total";
const HISTORY_ERRORS: &str = "winnerr_scoring_history_errors_total";
const HISTORY_SECONDS: &str = "winnerr_scoring_history_seconds";
const SCORE_SECONDS: &str = "winnerr_scoring_score_seconds";
const DELAY_SECONDS: &str = "winnerr_scoring_delay_seconds";
const LIVE_LEADS: &str = "winnerr_scoring_live_leads";

pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_counter!(
            RECEIVED,
            "Call events that can move a lead's score, by type"
        );
        describe_counter!(
            SKIPPED,
            "Events of calls with no lead to score (or that started before this scorer)"
        );
        describe_counter!(
            REPEATED,
            "Events the bus delivered again, which the scorer skipped"
        );
        describe_counter!(PUBLISHED, "Lead score events published");
        describe_counter!(
            UNCHANGED,
            "Re-scores whose score and reasons were unchanged, so nothing was published"
        );
        describe_counter!(
            PUBLISH_ERRORS,
            "Lead score events that could not be published"
        );
        describe_counter!(
            HISTORY_ERRORS,
            "Lead histories or organization models that could not be loaded"
        );
        describe_histogram!(
            HISTORY_SECONDS,
            metrics::Unit::Seconds,
            "Time to load a lead's history when its call starts"
        );
        describe_histogram!(
            SCORE_SECONDS,
            metrics::Unit::Seconds,
            "Time to apply one event and re-score its lead"
        );
        describe_histogram!(
            DELAY_SECONDS,
            metrics::Unit::Seconds,
            "From the event that moved a score to its score event being published"
        );
        describe_gauge!(LIVE_LEADS, "Leads with a live call held by the scorer");
    });
}

pub(crate) fn received(kind: &'static str) {
    counter!(RECEIVED, "type" => kind).increment(1);
}

pub(crate) fn skipped() {
    counter!(SKIPPED).increment(1);
}

pub(crate) fn repeated() {
    counter!(REPEATED).increment(1);
}

pub(crate) fn unchanged() {
    counter!(UNCHANGED).increment(1);
}

pub(crate) fn publish_failed() {
    counter!(PUBLISH_ERRORS).increment(1);
}

pub(crate) fn history_failed() {
    counter!(HISTORY_ERRORS).increment(1);
}

pub(crate) fn history_loaded(elapsed: Duration) {
    histogram!(HISTORY_SECONDS).record(elapsed.as_secs_f64());
}

pub(crate) fn scored(elapsed: Duration) {
    histogram!(SCORE_SECONDS).record(elapsed.as_secs_f64());
}

pub(crate) fn published(delay: Duration) {
    counter!(PUBLISHED).increment(1);
    histogram!(DELAY_SECONDS).record(delay.as_secs_f64());
}

pub(crate) fn live_leads(count: usize) {
    gauge!(LIVE_LEADS).set(count as f64);
}
