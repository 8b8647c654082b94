//! Which frames are speech. The neural detector (Silero VAD, run per track at the call's own rate:
//! 8 kHz for Twilio, no resampling, 16 kHz for softphones) tells speech from steady noise, a
//! babble of voices, music and tones, where the energy gate it replaced hears "loud" and never
//! sees the end of an utterance. The energy gate stays for `WINNERR_VAD=energy` and for nodes
//! without the model files.

use std::sync::Arc;
use std::time::Instant;

use winnerr_models::{SileroVad, VadRate, VadState};

use crate::activity::level_dbfs;
use crate::metrics;

/// The detector a voice stage uses for every track.
#[derive(Clone, Default)]
pub enum SpeechDetector {
    /// Frames louder than the activity threshold are speech.
    #[default]
    Energy,
    /// Silero VAD: a 32 ms chunk is speech when its probability is at least `threshold`; once in
    /// speech, until it falls below `threshold - 0.15` (Silero's own hysteresis).
    Silero {
        model: Arc<SileroVad>,
        threshold: f32,
    },
}

impl std::fmt::Debug for SpeechDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Energy => f.write_str("Energy"),
            Self::Silero { threshold, .. } => write!(f, "Silero {{ threshold: {threshold} }}"),
        }
    }
}

impl SpeechDetector {
    /// The name in settings, logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Energy => "energy",
            Self::Silero { .. } => "silero",
        }
    }
}

/// How far below the threshold speech may fall before it ends.
const HYSTERESIS: f32 = 0.15;

/// One track's gate: judges each frame.
pub(crate) enum Gate {
    Energy {
        threshold_dbfs: f32,
    },
    Silero {
        model: Arc<SileroVad>,
        threshold: f32,
        /// The energy threshold, for a rate the model has no weights for.
        threshold_dbfs: f32,
        /// Created at the first frame, for its rate.
        state: Option<VadState>,
        /// Samples not yet in a whole chunk.
        pending: Vec<f32>,
        probability: f32,
    },
}

impl Gate {
    pub(crate) fn new(detector: &SpeechDetector, threshold_dbfs: f32) -> Self {
        match detector {
            SpeechDetector::Energy => Self::Energy { threshold_dbfs },
            SpeechDetector::Silero { model, threshold } => Self::Silero {
                model: model.clone(),
                threshold: *threshold,
                threshold_dbfs,
                state: None,
                pending: Vec::with_capacity(1024),
                probability: 0.0,
            },
        }
    }

    /// Whether this frame is speech; `speaking` is whether the track is in speech now.
    pub(crate) fn voiced(&mut self, samples: &[i16], sample_rate: u32, speaking: bool) -> bool {
        match self {
            Self::Energy { threshold_dbfs } => level_dbfs(samples) > *threshold_dbfs,
            Self::Silero {
                model,
                threshold,
                threshold_dbfs,
                state,
                pending,
                probability,
            } => {
                let Some(rate) = VadRate::from_hz(sample_rate) else {
                    // No weights for this rate (ingest accepts 8 and 16 kHz only).
                    return level_dbfs(samples) > *threshold_dbfs;
                };
                let state = state.get_or_insert_with(|| VadState::new(rate));
                pending.extend(samples.iter().map(|&s| f32::from(s) / 32768.0));
                let chunk = rate.chunk();
                let mut used = 0;
                while pending.len() - used >= chunk {
                    let started = Instant::now();
                    match model.probability(state, &pending[used..used + chunk]) {
                        Ok(p) => *probability = p,
                        Err(error) => metrics::vad_failed(&error.to_string()),
                    }
                    metrics::vad_chunk(started.elapsed());
                    used += chunk;
                }
                pending.drain(..used);
                let bar = if speaking {
                    *threshold - HYSTERESIS
                } else {
                    *threshold
                };
                *probability >= bar
            }
        }
    }
}
