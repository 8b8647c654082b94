//! Candle models that know nothing of calls: Whisper speech-to-text, Silero speech detection,
//! Smart Turn's end-of-turn classifier, the sentiment classifier and
//! the lead-score model, with weight fetching and conversion, and the text normalization used to score them.

pub mod ct2;
pub mod error;
pub mod fetch;
pub mod leadscore;
pub mod metrics;
pub mod onnx;
pub(crate) mod ops;
pub mod sentiment;
pub mod text;
pub mod turn;
pub mod vad;
pub mod whisper;

pub use candle_core::Device;
pub use error::{ModelError, Result};
pub use fetch::ModelDir;
pub use leadscore::{LeadModel, Scored, TrainOptions};
pub use sentiment::{Sentiment, SentimentLabel, SentimentModel};
pub use turn::SmartTurn;
pub use vad::{SileroVad, VadRate, VadState};
pub use whisper::{DecodeOptions, Prompt, Transcript, Whisper};

/// The device models run on: the first CUDA GPU when built with `cuda` and one is present.
pub fn device() -> candle_core::Device {
    #[cfg(feature = "cuda")]
    if let Ok(device) = candle_core::Device::new_cuda(0) {
        return device;
    }
    candle_core::Device::Cpu
}
