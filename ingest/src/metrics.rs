//! Every metric the ingest stage records, defined in one place (names, units, help text) and
//! called from the hot path as one line.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use std::sync::Once;
use std::time::Duration;

const STREAMS_STARTED: &str = "winnerr_ingest_streams_started_total";
const STREAMS_ENDED: &str = "winnerr_ingest_streams_ended_total";
const STREAMS_LIVE: &str = "winnerr_ingest_streams_live";
const MESSAGES: &str = "winnerr_ingest_messages_total";
const FRAMES: &str = "winnerr_ingest_frames_total";
const FRAMES_DROPPED: &str = "winnerr_ingest_frames_dropped_total";
const SEQUENCE_GAPS: &str = "winnerr_ingest_sequence_missing_total";
const BAD_INPUT: &str = "winnerr_ingest_bad_input_total";
const MARKS: &str = "winnerr_ingest_marks_total";
const MESSAGE_SECONDS: &str = "winnerr_ingest_message_duration_seconds";
const WEBHOOKS: &str = "winnerr_ingest_webhooks_total";
const CONSENT_DISCLOSED: &str = "winnerr_ingest_consent_disclosed_total";
const CONSENT_OPT_IN: &str = "winnerr_ingest_consent_opt_in_total";
const CALLS_REFUSED: &str = "winnerr_ingest_calls_refused_total";
const DIALS_REFUSED: &str = "winnerr_ingest_dials_refused_total";
const CAPACITY_USED: &str = "winnerr_ingest_capacity_used";
const SMS: &str = "winnerr_ingest_sms_total";
const SMS_OPT: &str = "winnerr_ingest_sms_opt_keywords_total";
const EMAIL: &str = "winnerr_ingest_email_total";

pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_counter!(
            STREAMS_STARTED,
            "Media streams that started (Twilio streams past `start`, softphone streams)"
        );
        describe_counter!(STREAMS_ENDED, "Media streams that ended, by reason");
        describe_gauge!(STREAMS_LIVE, "Media streams live now (Twilio and softphone)");
        describe_counter!(MESSAGES, "Twilio messages received, by event (unknown included)");
        describe_counter!(FRAMES, "Media frames decoded and accepted, by track");
        describe_counter!(FRAMES_DROPPED, "Decoded media frames dropped (late, backpressure), by reason");
        describe_counter!(SEQUENCE_GAPS, "Sequence numbers that never arrived");
        describe_counter!(
            BAD_INPUT,
            "Bad input, by reason and by action (closed the stream, skipped the message, refused the request)"
        );
        describe_counter!(MARKS, "Mark echoes from Twilio, by whether they matched a sent mark");
        describe_histogram!(
            MESSAGE_SECONDS,
            metrics::Unit::Seconds,
            "Time to parse and handle one Twilio message"
        );
        describe_counter!(WEBHOOKS, "TwiML voice webhooks answered, by outcome");
        describe_counter!(
            CONSENT_DISCLOSED,
            "Calls whose caller heard the recording disclosure before the stream started"
        );
        describe_counter!(
            CONSENT_OPT_IN,
            "Opt-in consent by step: asked, opted_in, declined (another key or none: no stream), \
             refused (a stream without a signed opt-in)"
        );
        describe_counter!(
            DIALS_REFUSED,
            "Numbers the voice webhook did not dial, by reason (do_not_call; unchecked: the list could not be read)"
        );
        describe_counter!(
            CALLS_REFUSED,
            "Calls refused by admission control, by reason (node_full, org_limit)"
        );
        describe_counter!(
            SMS,
            "Inbound SMS webhooks answered, by outcome (ok, duplicate, bad_request, forbidden, unrecorded, unavailable)"
        );
        describe_counter!(
            SMS_OPT,
            "Opt-out and opt-in keywords texted (STOP, START, ...), by change (opted_out, opted_in): the do-not-call list updated"
        );
        describe_counter!(
            EMAIL,
            "Inbound email webhooks answered, by outcome (ok, duplicate, bad_request, forbidden, stale, unrecorded, unavailable)"
        );
        describe_gauge!(
            CAPACITY_USED,
            "Calls admitted now over the calls this node serves at once (WINNERR_MAX_CALLS), 0 to 1"
        );
    });
}

pub(crate) fn stream_started() {
    counter!(STREAMS_STARTED).increment(1);
    gauge!(STREAMS_LIVE).increment(1.0);
}

pub(crate) fn stream_ended(reason: &'static str) {
    counter!(STREAMS_ENDED, "reason" => reason).increment(1);
    gauge!(STREAMS_LIVE).decrement(1.0);
}

pub(crate) fn message(event: &'static str) {
    counter!(MESSAGES, "event" => event).increment(1);
}

pub(crate) fn frame(track: &'static str) {
    counter!(FRAMES, "track" => track).increment(1);
}

pub(crate) fn frame_dropped(reason: &'static str) {
    counter!(FRAMES_DROPPED, "reason" => reason).increment(1);
}

pub(crate) fn sequence_missing(count: u64) {
    counter!(SEQUENCE_GAPS).increment(count);
}

pub(crate) fn bad_input(reason: &'static str, action: &'static str) {
    counter!(BAD_INPUT, "reason" => reason, "action" => action).increment(1);
}

pub(crate) fn mark(result: &'static str) {
    counter!(MARKS, "result" => result).increment(1);
}

pub(crate) fn message_handled(elapsed: Duration) {
    histogram!(MESSAGE_SECONDS).record(elapsed.as_secs_f64());
}

pub(crate) fn consent_disclosed() {
    counter!(CONSENT_DISCLOSED).increment(1);
}

pub(crate) fn consent_opt_in(step: &'static str) {
    counter!(CONSENT_OPT_IN, "step" => step).increment(1);
}

pub(crate) fn webhook(outcome: &'static str) {
    counter!(WEBHOOKS, "outcome" => outcome).increment(1);
}

pub(crate) fn call_refused(reason: &'static str) {
    counter!(CALLS_REFUSED, "reason" => reason).increment(1);
}

pub(crate) fn capacity_used(calls: usize, capacity: usize) {
    gauge!(CAPACITY_USED).set(calls as f64 / capacity.max(1) as f64);
}

pub(crate) fn dial_refused(reason: &'static str) {
    counter!(DIALS_REFUSED, "reason" => reason).increment(1);
}

pub(crate) fn sms(outcome: &'static str) {
    counter!(SMS, "outcome" => outcome).increment(1);
}

pub(crate) fn sms_opt(opted_out: bool) {
    let change = if opted_out { "opted_out" } else { "opted_in" };
    counter!(SMS_OPT, "change" => change).increment(1);
}

pub(crate) fn email(outcome: &'static str) {
    counter!(EMAIL, "outcome" => outcome).increment(1);
}
