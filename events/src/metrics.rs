//! Metrics of the bus, defined in one place so names never drift.

pub(crate) const PUBLISHED: &str = "winnerr_bus_published_total";
pub(crate) const LAGGED: &str = "winnerr_bus_subscriber_lagged_total";

pub(crate) fn describe() {
    metrics::describe_counter!(PUBLISHED, "Events published on the bus, by event type");
    metrics::describe_counter!(
        LAGGED,
        "Events a slow in-process subscriber missed because it fell behind"
    );
}

pub(crate) fn published(kind: &'static str) {
    metrics::counter!(PUBLISHED, "type" => kind).increment(1);
}

pub(crate) fn lagged(missed: u64) {
    metrics::counter!(LAGGED).increment(missed);
}
