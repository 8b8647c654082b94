//! The per-call voice pipeline: takes each call's decoded audio from ingest and turns it into the
//! events agents and managers watch — speech activity, interim and final transcripts with
//! sentiment, alerts — with one shared speech worker serving every call.

pub mod activity;
pub mod alerts;
pub mod asr;
pub mod keyterms;
pub mod messages;
mod metrics;
mod pipeline;
pub mod redact;
pub mod resample;
pub mod signals;
mod tap;
pub mod turn;
pub mod utterance;
pub mod vad;

pub use activity::{ActivityConfig, ActivityDetector};
pub use alerts::AlertConfig;
pub use asr::{AsrConfig, AsrWorker, Models, SpeechModels};
pub use messages::{MESSAGE_QUEUE, spawn_messages};
pub use pipeline::{VoiceConfig, spawn};
pub use redact::RedactionConfig;
pub use resample::Upsampler;
pub use signals::Coaching;
pub use tap::{NEW_CALL_QUEUE, tap_calls};
pub use turn::{TurnConfig, TurnDetector, TurnModel};
pub use utterance::UtteranceConfig;
pub use vad::SpeechDetector;
