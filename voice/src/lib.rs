//! The per-call audio pipeline: takes each call's decoded audio from ingest and turns it into the
//! events agents and managers watch. Today it detects speech activity per track and passes DTMF
//! and the call's start and end through, in the order they happened.

pub mod activity;
mod metrics;
mod pipeline;
pub mod resample;

pub use activity::{ActivityConfig, ActivityDetector};
pub use pipeline::{VoiceConfig, spawn};
pub use resample::Upsampler;
