//! Smart Turn v3.2 (pipecat's end-of-turn model, BSD-2): whether a speaker who has just paused
//! has finished their turn, from the sound of the last 8 s (intonation, a trailing "and…", a
//! question's rise), not from the words.
//!
//! The network is Whisper tiny's encoder (4 layers, 384 wide, 6 heads) over 800 log-mel frames
//! (400 positions), attention pooling over time (384 → 256, tanh, → 1, softmax) and a classifier
//! (384 → 256, LayerNorm, GELU, → 64, GELU, → 1, sigmoid). The features are Hugging Face's Whisper
//! features of the last 8 s at 16 kHz, zero-padded at the front, the waveform first normalized to
//! zero mean and unit variance.
//!
//! The file ships as QDQ int8 ONNX (`pipecat-ai==1.14.0`). [`convert_onnx`] dequantizes every
//! weight once into float safetensors under the PyTorch module names; activations run in f32, so
//! the probabilities differ a little from onnxruntime's int8 run (bounded in `tests/turn.rs`).

mod convert;

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};

pub use convert::convert_onnx;

use crate::error::{ModelError, Result};
use crate::whisper::WhisperConfig;
use crate::whisper::mel::{MelSpectrogram, SAMPLE_RATE};
use crate::whisper::model::Encoder;

/// The converted file's name in the model folder.
pub const WEIGHTS_FILE: &str = "smart_turn_v3.safetensors";
/// Seconds of audio the model hears: the end of the turn.
pub const WINDOW_SECONDS: usize = 8;
const WINDOW: usize = WINDOW_SECONDS * SAMPLE_RATE;
const FRAMES: usize = 800;
const N_MELS: usize = 80;
const D_MODEL: usize = 384;
/// Added to the variance when the waveform is normalized (as Hugging Face's extractor does).
const NORM_EPS: f32 = 1e-7;

/// Whisper tiny's encoder at Smart Turn's 8 s window.
fn encoder_shape() -> WhisperConfig {
    WhisperConfig {
        num_mel_bins: N_MELS,
        max_source_positions: FRAMES / 2,
        d_model: D_MODEL,
        encoder_attention_heads: 6,
        encoder_layers: 4,
        vocab_size: 0,
        max_target_positions: 0,
        decoder_attention_heads: 0,
        decoder_layers: 0,
    }
}

/// The end-of-turn classifier, loaded once and shared by every track.
pub struct SmartTurn {
    mel: MelSpectrogram,
    encoder: Encoder,
    pool_hidden: Linear,
    pool_score: Linear,
    head_in: Linear,
    head_norm: LayerNorm,
    head_mid: Linear,
    head_out: Linear,
    device: Device,
}

impl SmartTurn {
    /// Loads the converted weights (`winnerr models fetch` writes them) and Whisper's mel filters.
    pub fn load(weights: &Path, mel_filters: &Path, device: &Device) -> Result<Self> {
        if !weights.exists() {
            return Err(ModelError::Missing {
                path: weights.to_path_buf(),
            });
        }
        let mel = MelSpectrogram::load(mel_filters, N_MELS)?;
        // SAFETY: the file is memory-mapped read-only and not modified while the model lives.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device)? };
        let linear = |inp: usize, out: usize, name: &str| -> candle_core::Result<Linear> {
            let vb = vb.pp(name);
            Ok(Linear::new(
                vb.get((out, inp), "weight")?,
                Some(vb.get(out, "bias")?),
            ))
        };
        let corrupt = |e: candle_core::Error| ModelError::corrupt(weights, "Smart Turn weights", e);
        let head_norm = vb.pp("classifier.1");
        Ok(Self {
            mel,
            encoder: Encoder::load(vb.pp("encoder"), &encoder_shape()).map_err(corrupt)?,
            pool_hidden: linear(D_MODEL, 256, "pool_attention.0").map_err(corrupt)?,
            pool_score: linear(256, 1, "pool_attention.2").map_err(corrupt)?,
            head_in: linear(D_MODEL, 256, "classifier.0").map_err(corrupt)?,
            head_norm: LayerNorm::new(
                head_norm.get(256, "weight").map_err(corrupt)?,
                head_norm.get(256, "bias").map_err(corrupt)?,
                1e-5,
            ),
            head_mid: linear(256, 64, "classifier.4").map_err(corrupt)?,
            head_out: linear(64, 1, "classifier.6").map_err(corrupt)?,
            device: device.clone(),
        })
    }

    /// The model's input for a turn's 16 kHz audio: the last 8 s, zero-padded at the front,
    /// normalized, as [n_mels × frames] row-major.
    pub fn features(&self, audio: &[f32]) -> Vec<f32> {
        let tail = &audio[audio.len().saturating_sub(WINDOW)..];
        let mut window = vec![0f32; WINDOW - tail.len()];
        window.extend_from_slice(tail);
        let mean = window.iter().sum::<f32>() / WINDOW as f32;
        let variance = window.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / WINDOW as f32;
        let scale = 1.0 / (variance + NORM_EPS).sqrt();
        for x in &mut window {
            *x = (*x - mean) * scale;
        }
        self.mel.compute_reflected(&window, FRAMES)
    }

    /// The probability that the turn whose 16 kHz audio ends with `audio` is complete.
    pub fn probability(&self, audio: &[f32]) -> Result<f32> {
        let features = self.features(audio);
        let mel = Tensor::from_vec(features, (1, N_MELS, FRAMES), &self.device)?;
        Ok(self.classify(&mel)?)
    }

    fn classify(&self, mel: &Tensor) -> candle_core::Result<f32> {
        let hidden = self.encoder.forward(mel)?; // [1, 400, 384]
        let scores = self
            .pool_score
            .forward(&self.pool_hidden.forward(&hidden)?.tanh()?)?; // [1, 400, 1]
        let weights = candle_nn::ops::softmax(&scores, 1)?;
        let pooled = hidden.broadcast_mul(&weights)?.sum(1)?; // [1, 384]
        let x = self
            .head_norm
            .forward(&self.head_in.forward(&pooled)?)?
            .gelu_erf()?;
        let x = self.head_mid.forward(&x)?.gelu_erf()?;
        let p = candle_nn::ops::sigmoid(&self.head_out.forward(&x)?)?
            .flatten_all()?
            .get(0)?
            .to_scalar::<f32>()?;
        if !p.is_finite() {
            candle_core::bail!("the classifier gave {p}, not a probability");
        }
        Ok(p)
    }
}

// One model serves every track's decisions from the turn worker's threads.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<SmartTurn>();
};
