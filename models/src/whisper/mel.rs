//! Whisper's log-mel spectrogram, computed over the real samples only.
//!
//! Matches `whisper.audio.log_mel_spectrogram` (400-point periodic Hann window, hop 160, centred
//! frames with reflect padding, power spectrum, the official 80-bin filters, log10, a floor 8 below
//! the maximum, then `(x + 4) / 4`). Whisper pads audio with zeros to its window; a frame of zeros
//! is known without an FFT (log10 of the 1e-10 clamp), so padding frames are filled, not computed.

use std::path::Path;
use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use crate::error::{ModelError, Result};

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
/// Mel frames per second of audio.
pub const FRAMES_PER_SECOND: usize = SAMPLE_RATE / HOP;
const FREQ_BINS: usize = N_FFT / 2 + 1;
const ZERO_FRAME: f32 = -10.0; // log10(1e-10)

/// The mel filter bank and an FFT plan, built once and shared.
pub struct MelSpectrogram {
    filters: Vec<f32>,
    n_mels: usize,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl MelSpectrogram {
    /// Loads `mel_80` (or `mel_128`) from Whisper's `mel_filters.npz`.
    pub fn load(path: &Path, n_mels: usize) -> Result<Self> {
        if !path.exists() {
            return Err(ModelError::Missing {
                path: path.to_path_buf(),
            });
        }
        let name = format!("mel_{n_mels}");
        let tensors = candle_core::Tensor::read_npz_by_name(path, &[&name])
            .map_err(|e| ModelError::corrupt(path, "mel filter file", e))?;
        let filters = tensors[0]
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| ModelError::corrupt(path, "mel filter file", e))?;
        Self::new(filters, n_mels)
            .map_err(|reason| ModelError::corrupt(path, "mel filter file", reason))
    }

    /// From a filter bank [n_mels × 201], row-major.
    pub fn new(filters: Vec<f32>, n_mels: usize) -> Result<Self, String> {
        if filters.len() != n_mels * FREQ_BINS {
            return Err(format!(
                "{} values, expected {n_mels} × {FREQ_BINS}",
                filters.len()
            ));
        }
        let window = (0..N_FFT)
            .map(|i| 0.5 * (1.0 - (2.0 * std::f32::consts::PI * i as f32 / N_FFT as f32).cos()))
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        Ok(Self {
            filters,
            n_mels,
            window,
            fft,
        })
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The spectrogram of `samples` (16 kHz) as if zero-padded to `frames` frames:
    /// row-major [n_mels × frames]. With `compute_padding` every frame goes through the FFT (the
    /// reference behaviour, for comparison); otherwise frames of pure padding are filled.
    pub fn compute(&self, samples: &[f32], frames: usize, compute_padding: bool) -> Vec<f32> {
        self.compute_with(samples, frames, compute_padding, false)
    }

    /// The spectrogram of exactly `samples` (16 kHz), every frame computed, reflect-padded at both
    /// ends as Hugging Face's Whisper feature extractor pads (Smart Turn's features): row-major
    /// [n_mels × frames].
    pub fn compute_reflected(&self, samples: &[f32], frames: usize) -> Vec<f32> {
        self.compute_with(samples, frames, true, true)
    }

    fn compute_with(
        &self,
        samples: &[f32],
        frames: usize,
        compute_padding: bool,
        reflect_end: bool,
    ) -> Vec<f32> {
        let mut mel = vec![ZERO_FRAME; self.n_mels * frames];
        let half = N_FFT / 2;
        // Frames whose window reaches a real sample; later ones see only padding.
        let real_frames = if compute_padding {
            frames
        } else {
            ((samples.len() + half) / HOP + 1).min(frames)
        };
        let last = samples.len() as isize - 1;
        let sample_at = |i: isize| -> f32 {
            // Reflect padding at the start; after the end zeros (Whisper pads with zeros first)
            // or, for `reflect_end`, reflected samples.
            let i = if i < 0 { -i } else { i };
            let i = if reflect_end && i > last {
                2 * last - i
            } else {
                i
            };
            samples.get(i.max(0) as usize).copied().unwrap_or(0.0)
        };
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f32; FREQ_BINS];
        for frame in 0..real_frames {
            let start = (frame * HOP) as isize - half as isize;
            for (j, x) in input.iter_mut().enumerate() {
                *x = self.window[j] * sample_at(start + j as isize);
            }
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_err()
            {
                continue; // lengths come from the plan itself; cannot fail
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for m in 0..self.n_mels {
                let row = &self.filters[m * FREQ_BINS..(m + 1) * FREQ_BINS];
                let energy: f32 = row.iter().zip(&power).map(|(f, p)| f * p).sum();
                mel[m * frames + frame] = energy.max(1e-10).log10();
            }
        }
        let floor = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max) - 8.0;
        for v in &mut mel {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        mel
    }
}
