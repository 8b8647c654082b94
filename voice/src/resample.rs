//! Streaming resampling of one track from the phone's 8 kHz to the 16 kHz speech models expect
//! (rubato's FFT resampler). Frames of any length go in; samples come out continuous across
//! frame borders, delayed by nothing: the resampler's own delay is trimmed from the start.

use rubato::{FftFixedIn, Resampler};

/// Input block the resampler works in: 20 ms at 8 kHz, Twilio's frame.
const BLOCK: usize = 160;

#[derive(Debug, thiserror::Error)]
#[error("resampler failed: {0}")]
pub struct ResampleError(String);

/// One track's resampler; keeps state between frames.
pub struct Upsampler {
    resampler: FftFixedIn<f32>,
    /// Input not yet a whole block.
    pending: Vec<f32>,
    /// Output still to drop (the resampler's delay).
    to_skip: usize,
    /// Input samples taken, to know how much output the end owes.
    input_total: u64,
    output_total: u64,
    ratio: f64,
}

impl Upsampler {
    pub fn new(from_hz: usize, to_hz: usize) -> Result<Self, ResampleError> {
        let resampler = FftFixedIn::<f32>::new(from_hz, to_hz, BLOCK, 1, 1)
            .map_err(|e| ResampleError(e.to_string()))?;
        let to_skip = resampler.output_delay();
        Ok(Self {
            resampler,
            pending: Vec::with_capacity(BLOCK * 2),
            to_skip,
            input_total: 0,
            output_total: 0,
            ratio: to_hz as f64 / from_hz as f64,
        })
    }

    /// The phone-to-model resampler: 8 kHz in, 16 kHz out.
    pub fn phone_to_model() -> Self {
        Self::new(8000, 16_000).expect("8 kHz to 16 kHz is a valid ratio")
    }

    /// Takes 16-bit samples; appends the resampled ones (as -1..1 floats) to `out`.
    pub fn push(&mut self, samples: &[i16], out: &mut Vec<f32>) -> Result<(), ResampleError> {
        self.input_total += samples.len() as u64;
        self.pending
            .extend(samples.iter().map(|&s| s as f32 / 32768.0));
        let mut start = 0;
        while self.pending.len() - start >= BLOCK {
            let block = self
                .resampler
                .process(&[&self.pending[start..start + BLOCK]], None)
                .map_err(|e| ResampleError(e.to_string()))?;
            self.emit(&block[0], out);
            start += BLOCK;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// Ends the track: resamples what is pending and returns every sample still owed.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), ResampleError> {
        let owed = (self.input_total as f64 * self.ratio).round() as u64;
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            let block = self
                .resampler
                .process_partial(Some(&[&pending[..]]), None)
                .map_err(|e| ResampleError(e.to_string()))?;
            self.emit(&block[0], out);
        }
        while self.output_total < owed {
            let block = self
                .resampler
                .process_partial::<&[f32]>(None, None)
                .map_err(|e| ResampleError(e.to_string()))?;
            if block[0].is_empty() {
                break;
            }
            self.emit(&block[0], out);
        }
        // The flush works in whole blocks; what lies past the input's end is silence padding.
        let excess = self.output_total.saturating_sub(owed) as usize;
        out.truncate(out.len().saturating_sub(excess));
        self.output_total -= excess as u64;
        Ok(())
    }

    fn emit(&mut self, samples: &[f32], out: &mut Vec<f32>) {
        let skip = self.to_skip.min(samples.len());
        self.to_skip -= skip;
        out.extend_from_slice(&samples[skip..]);
        self.output_total += (samples.len() - skip) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, amplitude: f32, rate: f32, seconds: f32) -> Vec<i16> {
        (0..(rate * seconds) as usize)
            .map(|i| {
                ((2.0 * std::f32::consts::PI * hz * i as f32 / rate).sin() * amplitude * 32767.0)
                    as i16
            })
            .collect()
    }

    /// Feeds `input` in chunks of the given sizes, in turn.
    fn stream(input: &[i16], sizes: &[usize]) -> Vec<f32> {
        let mut upsampler = Upsampler::phone_to_model();
        let mut out = Vec::new();
        let (mut at, mut turn) = (0, 0);
        while at < input.len() {
            let end = (at + sizes[turn % sizes.len()]).min(input.len());
            upsampler.push(&input[at..end], &mut out).unwrap();
            at = end;
            turn += 1;
        }
        upsampler.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn a_tone_keeps_its_frequency_amplitude_and_length() {
        let input = tone(440.0, 0.5, 8000.0, 1.0);
        let out = stream(&input, &[160]);
        assert_eq!(out.len(), 16_000);
        let steady = &out[2000..14_000];
        // 440 Hz over 0.75 s: 330 rising zero crossings.
        let crossings = steady
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!((328..=332).contains(&crossings), "{crossings}");
        let rms = (steady.iter().map(|s| s * s).sum::<f32>() / steady.len() as f32).sqrt();
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.01, "rms {rms}");
        // Aligned in time: the output's first crossing matches the input's (no leftover delay).
        let first = out.iter().position(|&s| s > 0.25).unwrap();
        let first_in = input
            .iter()
            .position(|&s| s as f32 / 32768.0 > 0.25)
            .unwrap();
        assert!(
            (first as i64 - 2 * first_in as i64).abs() <= 2,
            "{first} vs {}",
            2 * first_in
        );
    }

    #[test]
    fn chunk_borders_leave_no_click() {
        let input = tone(440.0, 0.5, 8000.0, 1.0);
        let whole = stream(&input, &[160]);
        let ragged = stream(&input, &[37, 160, 233, 1, 90]);
        assert_eq!(whole.len(), ragged.len());
        let worst = whole
            .iter()
            .zip(&ragged)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            worst < 1e-4,
            "streaming in ragged chunks changes the output by {worst}"
        );
        // Sample to sample, a 440 Hz sine of amplitude 0.5 at 16 kHz moves at most 2π·440/16000·0.5.
        let step_limit = 2.0 * std::f32::consts::PI * 440.0 / 16_000.0 * 0.5 * 1.05;
        let steady = &ragged[200..15_800];
        let jump = steady
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max);
        assert!(jump <= step_limit, "largest step {jump} > {step_limit}");
    }
}
