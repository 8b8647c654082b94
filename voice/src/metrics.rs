//! Every metric the voice stage records, defined in one place.

use std::sync::Once;

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

const CALLS_LIVE: &str = "winnerr_voice_calls_live";
const FRAMES: &str = "winnerr_voice_frames_total";
const EVENTS: &str = "winnerr_voice_events_emitted_total";
const REDACTIONS: &str = "winnerr_voice_redactions_total";
const PUBLISH_ERRORS: &str = "winnerr_voice_publish_errors_total";
const UTTERANCES: &str = "winnerr_voice_utterances_total";
const UTTERANCE_SECONDS: &str = "winnerr_voice_utterance_seconds";
const EMPTY_FINALS: &str = "winnerr_voice_empty_finals_total";
const COACHING_ALERTS: &str = "winnerr_voice_coaching_alerts_total";
const KEYTERM_FAILURES: &str = "winnerr_voice_keyterm_failures_total";
const ASR_QUEUE: &str = "winnerr_voice_asr_queue_depth";
const ASR_DROPPED: &str = "winnerr_voice_asr_dropped_total";
const ASR_WAIT: &str = "winnerr_voice_asr_wait_seconds";
const ASR_SECONDS: &str = "winnerr_voice_asr_seconds";
const ASR_RTF: &str = "winnerr_voice_asr_real_time_factor";
const ASR_ERRORS: &str = "winnerr_voice_asr_errors_total";
const VAD_SECONDS: &str = "winnerr_voice_vad_seconds";
const VAD_ERRORS: &str = "winnerr_voice_vad_errors_total";
const TURN_SECONDS: &str = "winnerr_voice_turn_seconds";
const TURN_WAIT: &str = "winnerr_voice_turn_wait_seconds";
const TURN_DECISIONS: &str = "winnerr_voice_turn_decisions_total";
const TURN_ERRORS: &str = "winnerr_voice_turn_errors_total";
const SPECULATIVE: &str = "winnerr_voice_speculative_finals_total";
const MESSAGES: &str = "winnerr_voice_messages_total";
const MESSAGE_BATCH_SECONDS: &str = "winnerr_voice_message_batch_seconds";
const MESSAGE_SENTIMENT_ERRORS: &str = "winnerr_voice_message_sentiment_errors_total";
const MESSAGES_UNSCORED: &str = "winnerr_voice_messages_unscored_total";

pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_gauge!(CALLS_LIVE, "Calls the voice stage is processing now");
        describe_counter!(FRAMES, "Audio frames processed, by track");
        describe_histogram!(
            VAD_SECONDS,
            metrics::Unit::Seconds,
            "Time the neural speech detector took for one 32 ms chunk"
        );
        describe_counter!(VAD_ERRORS, "Chunks the neural speech detector failed on");
        describe_histogram!(
            TURN_SECONDS,
            metrics::Unit::Seconds,
            "Time the turn model took for one decision"
        );
        describe_histogram!(
            TURN_WAIT,
            metrics::Unit::Seconds,
            "Time from a pause to the turn model's decision, waiting included"
        );
        describe_counter!(
            TURN_DECISIONS,
            "Pauses decided, by outcome: complete (the utterance ends), not_yet (it waits), \
             fallback (the end-of-utterance silence ended it after a not_yet), superseded (a newer \
             pause of the track came before the model answered)"
        );
        describe_counter!(TURN_ERRORS, "Pauses the turn model failed on");
        describe_counter!(
            SPECULATIVE,
            "Finals decoded from a pause before the utterance ended, by outcome: used (it was the \
             final), wasted (speech went on), busy (not started: the speech worker had work)"
        );
        describe_counter!(EVENTS, "Events the voice stage published, by type");
        describe_counter!(MESSAGES, "Inbound messages (SMS, email) analysed");
        describe_histogram!(
            MESSAGE_BATCH_SECONDS,
            metrics::Unit::Seconds,
            "Time to analyse one batch of inbound messages (redaction, sentiment, watch list)"
        );
        describe_counter!(
            MESSAGES_UNSCORED,
            "Inbound messages published without sentiment because too many were waiting for the model"
        );
        describe_counter!(
            MESSAGE_SENTIMENT_ERRORS,
            "Batches of messages published without sentiment because the model failed"
        );
        describe_counter!(
            REDACTIONS,
            "Card numbers, social security numbers, phones and emails masked in transcripts before they left the voice stage, by kind and by transcript (interim, final)"
        );
        describe_counter!(PUBLISH_ERRORS, "Events the bus refused, by type");
        describe_counter!(UTTERANCES, "Utterances cut from tracks, by track");
        describe_histogram!(
            UTTERANCE_SECONDS,
            metrics::Unit::Seconds,
            "Length of utterances sent for a final transcript"
        );
        describe_counter!(
            EMPTY_FINALS,
            "Utterances whose final transcript was empty (noise, or rejected as no speech)"
        );
        describe_counter!(
            COACHING_ALERTS,
            "Coaching alerts raised from calls' talk signals, by kind (monologue, talk_ratio, customer_silent, interruptions)"
        );
        describe_counter!(
            KEYTERM_FAILURES,
            "Calls whose keyterms could not be read or made into a prompt (they get the trade's words, or none)"
        );
        describe_gauge!(
            ASR_QUEUE,
            "Speech jobs waiting for the worker, by kind (final, speculative, interim)"
        );
        describe_counter!(
            ASR_DROPPED,
            "Interim speech jobs dropped, by reason (superseded, overload, call_ended)"
        );
        describe_histogram!(
            ASR_WAIT,
            metrics::Unit::Seconds,
            "Time speech jobs waited in the queue, by kind"
        );
        describe_histogram!(
            ASR_SECONDS,
            metrics::Unit::Seconds,
            "Time to transcribe (and classify) a speech job, by kind"
        );
        describe_histogram!(
            ASR_RTF,
            "Transcription time over audio length, by kind: above 1 the worker falls behind"
        );
        describe_counter!(ASR_ERRORS, "Speech jobs that failed, by kind");
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

pub(crate) fn redacted(kind: &'static str, transcript: &'static str) {
    counter!(REDACTIONS, "kind" => kind, "transcript" => transcript).increment(1);
}

pub(crate) fn emitted(kind: &'static str) {
    counter!(EVENTS, "type" => kind).increment(1);
}

pub(crate) fn publish_failed(kind: &'static str) {
    counter!(PUBLISH_ERRORS, "type" => kind).increment(1);
}

pub(crate) fn utterance(track: &'static str, seconds: f64) {
    counter!(UTTERANCES, "track" => track).increment(1);
    histogram!(UTTERANCE_SECONDS).record(seconds);
}

pub(crate) fn coaching_alert(kind: &'static str) {
    counter!(COACHING_ALERTS, "kind" => kind).increment(1);
}

/// A call's keyterms could not be read or made into a prompt: `what` it goes on with.
pub(crate) fn keyterms_failed(call: &winnerr_events::CallContext, what: &str, error: &str) {
    counter!(KEYTERM_FAILURES).increment(1);
    tracing::warn!(call_id = %call.call_id, org_id = %call.org_id, %error, "{what}");
}

pub(crate) fn empty_final(track: &'static str) {
    counter!(EMPTY_FINALS, "track" => track).increment(1);
}

pub(crate) fn asr_queue(finals: usize, speculative: usize, interims: usize) {
    gauge!(ASR_QUEUE, "kind" => "final").set(finals as f64);
    gauge!(ASR_QUEUE, "kind" => "speculative").set(speculative as f64);
    gauge!(ASR_QUEUE, "kind" => "interim").set(interims as f64);
}

pub(crate) fn asr_dropped(reason: &'static str) {
    counter!(ASR_DROPPED, "reason" => reason).increment(1);
}

pub(crate) fn asr_done(
    kind: &'static str,
    waited: Duration,
    took: Duration,
    audio_s: f64,
    failed: bool,
) {
    histogram!(ASR_WAIT, "kind" => kind).record(waited.as_secs_f64());
    histogram!(ASR_SECONDS, "kind" => kind).record(took.as_secs_f64());
    if audio_s > 0.0 {
        histogram!(ASR_RTF, "kind" => kind).record(took.as_secs_f64() / audio_s);
    }
    if failed {
        counter!(ASR_ERRORS, "kind" => kind).increment(1);
    }
}

/// One chunk through the neural speech detector.
pub(crate) fn vad_chunk(took: Duration) {
    histogram!(VAD_SECONDS).record(took.as_secs_f64());
}

/// The neural speech detector failed on a chunk (the frame keeps the last probability).
pub(crate) fn vad_failed(error: &str) {
    counter!(VAD_ERRORS).increment(1);
    tracing::warn!(%error, "speech detector failed on a chunk");
}

/// The turn model answered a pause after waiting `waited` in all, of which `took` in the model.
pub(crate) fn turn_decided(waited: Duration, took: Duration, outcome: &'static str) {
    histogram!(TURN_SECONDS).record(took.as_secs_f64());
    histogram!(TURN_WAIT).record(waited.as_secs_f64());
    turn_decision(outcome);
}

/// What became of a pause's speculative final.
pub(crate) fn speculative(outcome: &'static str) {
    counter!(SPECULATIVE, "outcome" => outcome).increment(1);
}

pub(crate) fn turn_decision(outcome: &'static str) {
    counter!(TURN_DECISIONS, "outcome" => outcome).increment(1);
}

/// The turn model failed on a pause (the fallback silence will end the utterance).
pub(crate) fn turn_failed(call: &winnerr_events::CallId, error: &str) {
    counter!(TURN_ERRORS).increment(1);
    tracing::warn!(call_id = %call, %error, "turn model failed on a pause");
}

pub(crate) fn messages_analysed(count: usize, took: Duration) {
    counter!(MESSAGES).increment(count as u64);
    histogram!(MESSAGE_BATCH_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn message_sentiment_failed() {
    counter!(MESSAGE_SENTIMENT_ERRORS).increment(1);
}

pub(crate) fn messages_unscored(count: usize) {
    counter!(MESSAGES_UNSCORED).increment(count as u64);
}
