//! Every metric the models record, defined in one place.

use std::sync::Once;

use metrics::{counter, describe_counter, describe_histogram, histogram};

const TRANSCRIBE_SECONDS: &str = "winnerr_models_transcribe_seconds";
const TRANSCRIBE_RTF: &str = "winnerr_models_transcribe_real_time_factor";
const REJECTED: &str = "winnerr_models_transcripts_rejected_total";
const SENTIMENT_SECONDS: &str = "winnerr_models_sentiment_seconds";
const FALLBACKS: &str = "winnerr_models_decode_fallbacks_total";
const LOOPS_CUT: &str = "winnerr_models_loops_cut_total";
const WITHOUT_PROMPT: &str = "winnerr_models_decoded_without_prompt_total";

fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_histogram!(
            TRANSCRIBE_SECONDS,
            metrics::Unit::Seconds,
            "Time to transcribe one stretch of audio, by model"
        );
        describe_histogram!(
            TRANSCRIBE_RTF,
            "Transcription time over audio duration, by model"
        );
        describe_counter!(
            REJECTED,
            "Transcripts dropped as silence, noise or a loop, by reason"
        );
        describe_counter!(
            FALLBACKS,
            "Transcriptions decoded again at a higher temperature because the first looped"
        );
        describe_counter!(
            LOOPS_CUT,
            "Transcriptions whose every temperature looped, cut after the first repetition"
        );
        describe_counter!(
            WITHOUT_PROMPT,
            "Transcriptions decoded again without the call's words: with them a phrase came twice"
        );
        describe_histogram!(
            SENTIMENT_SECONDS,
            metrics::Unit::Seconds,
            "Time to classify one batch of texts"
        );
    });
}

pub(crate) fn transcribed(model: &str, transcript: &crate::Transcript) {
    describe();
    let seconds = transcript.encode_s + transcript.decode_s;
    histogram!(TRANSCRIBE_SECONDS, "model" => model.to_string()).record(f64::from(seconds));
    if transcript.audio_s > 0.0 {
        histogram!(TRANSCRIBE_RTF, "model" => model.to_string())
            .record(f64::from(seconds / transcript.audio_s));
    }
    if transcript.attempts > 1 {
        counter!(FALLBACKS).increment(1);
    }
    if transcript.loop_cut {
        counter!(LOOPS_CUT).increment(1);
    }
    if transcript.without_prompt {
        counter!(WITHOUT_PROMPT).increment(1);
    }
    if let Some(reason) = transcript.rejected {
        let reason = match reason {
            crate::whisper::Rejected::NoSpeech => "no_speech",
            crate::whisper::Rejected::Repetitive => "repetitive",
        };
        counter!(REJECTED, "reason" => reason).increment(1);
    }
}

pub(crate) fn classified(seconds: f64) {
    describe();
    histogram!(SENTIMENT_SECONDS).record(seconds);
}
