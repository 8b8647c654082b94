//! Greedy decoding with Whisper's token rules (suppressed tokens, timestamp pairing) and the
//! guards that keep silence, noise and loops out of transcripts.

use std::io::Write;
use std::time::Instant;

use super::model::log_softmax;
use super::{Whisper, mel};
use crate::error::{ModelError, Result};

/// How much audio the encoder sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// Whisper's own 30 s window, whatever the utterance's length (the reference behaviour).
    Full30,
    /// max(`min_s`, length + `margin_s`): a shorter window with the 30 s window's accuracy.
    /// Encoding exactly the utterance's length throws Whisper into repetition loops.
    Padded { min_s: f32, margin_s: f32 },
}

/// Knobs of one transcription; [`DecodeOptions::default`] is the fast path used in production,
/// [`DecodeOptions::reference`] what stock Whisper does, for comparison.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub window: Window,
    /// Keep self-attention keys and values between decoding steps.
    pub kv_cache: bool,
    /// Run the FFT over padding frames too instead of filling them.
    pub mel_over_padding: bool,
    /// Run the decoder's projections with 8-bit weights (per step they are matrix-vector
    /// products, memory-bound and 5-8x faster in 8 bits).
    pub quantized_decoder: bool,
    /// Predict segment timestamps (Whisper's timestamp tokens).
    pub timestamps: bool,
    pub max_tokens: usize,
    /// A window is silent when its no-speech probability is above this...
    pub no_speech_threshold: f32,
    /// ...and its average token log-probability below this; or its no-speech probability is
    /// above `no_speech_alone_threshold` whatever the confidence (Whisper's classic "you" on
    /// silence comes with a no-speech probability near 1 and a fair log-probability).
    pub logprob_threshold: f32,
    pub no_speech_alone_threshold: f32,
    /// Audio whose loudest 20 ms is quieter than this (dBFS) is silence: not decoded at all.
    pub silence_dbfs: f32,
    /// Text whose gzip compression ratio is above this is a loop, not speech.
    pub compression_ratio_threshold: f32,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            window: Window::Padded {
                min_s: 10.0,
                margin_s: 1.0,
            },
            kv_cache: true,
            mel_over_padding: false,
            quantized_decoder: true,
            // Whisper's timestamp tokens need the 30 s window: in a shorter one the model does
            // not close its segment and repeats it. Segments come from the voiced span instead.
            timestamps: false,
            max_tokens: 128,
            no_speech_threshold: 0.6,
            logprob_threshold: -1.0,
            no_speech_alone_threshold: 0.8,
            silence_dbfs: -50.0,
            compression_ratio_threshold: 2.4,
        }
    }
}

impl DecodeOptions {
    /// Stock Whisper: a 30 s window, the whole prefix recomputed each step, the FFT over padding.
    pub fn reference() -> Self {
        Self {
            window: Window::Full30,
            kv_cache: false,
            mel_over_padding: true,
            quantized_decoder: false,
            ..Self::default()
        }
    }
}

/// A stretch of text with its time in the audio.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segment {
    pub start_s: f32,
    pub end_s: f32,
    pub text: String,
}

/// Why a transcription gave no text although the model produced tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejected {
    /// High no-speech probability and low confidence: silence or noise.
    NoSpeech,
    /// The text compresses too well: the decoder looped.
    Repetitive,
}

/// The result of transcribing one stretch of audio.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    pub avg_logprob: f32,
    pub no_speech_prob: f32,
    /// Tokens decoded (text and timestamps), including those of rejected text.
    pub tokens: usize,
    pub rejected: Option<Rejected>,
    /// The decoder stopped a block of tokens repeating and cut it.
    pub loop_cut: bool,
    pub audio_s: f32,
    pub encode_s: f32,
    pub decode_s: f32,
}

impl Transcript {
    /// No text, nothing decoded: for no audio, or audio too quiet to hold speech.
    fn empty(audio_s: f32, rejected: Option<Rejected>) -> Self {
        Self {
            text: String::new(),
            segments: Vec::new(),
            avg_logprob: 0.0,
            no_speech_prob: 1.0,
            tokens: 0,
            rejected,
            loop_cut: false,
            audio_s,
            encode_s: 0.0,
            decode_s: 0.0,
        }
    }
}

const SECONDS_PER_TIMESTAMP: f32 = 0.02;
const WINDOW_SAMPLES: usize = 30 * mel::SAMPLE_RATE;
/// Whisper's cap on the first timestamp (1 s).
const MAX_INITIAL_TIMESTAMP: u32 = 50;

pub(super) fn transcribe(
    whisper: &Whisper,
    samples: &[f32],
    options: &DecodeOptions,
) -> Result<Transcript> {
    if let Some(bad) = samples.iter().position(|s| !s.is_finite()) {
        return Err(ModelError::Input(format!(
            "sample {bad} is not a finite number"
        )));
    }
    let mut total: Option<Transcript> = None;
    for (i, window) in samples.chunks(WINDOW_SAMPLES).enumerate() {
        let mut part = decode_window(whisper, window, options)?;
        let offset = (i * WINDOW_SAMPLES) as f32 / mel::SAMPLE_RATE as f32;
        for s in &mut part.segments {
            s.start_s += offset;
            s.end_s += offset;
        }
        total = Some(match total {
            None => part,
            Some(mut t) => {
                t.text = join_text(&t.text, &part.text);
                t.segments.extend(part.segments);
                t.avg_logprob = t.avg_logprob.min(part.avg_logprob);
                t.no_speech_prob = t.no_speech_prob.min(part.no_speech_prob);
                t.tokens += part.tokens;
                t.loop_cut |= part.loop_cut;
                t.audio_s += part.audio_s;
                t.encode_s += part.encode_s;
                t.decode_s += part.decode_s;
                t
            }
        });
    }
    Ok(total.unwrap_or_else(|| Transcript::empty(0.0, None)))
}

fn join_text(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a} {b}"),
    }
}

fn window_frames(window: Window, audio_s: f32) -> usize {
    let seconds = match window {
        Window::Full30 => 30.0,
        Window::Padded { min_s, margin_s } => min_s.max(audio_s + margin_s).min(30.0),
    };
    let frames = (seconds * mel::FRAMES_PER_SECOND as f32).ceil() as usize;
    frames + frames % 2 // the second convolution halves it
}

fn decode_window(
    whisper: &Whisper,
    samples: &[f32],
    options: &DecodeOptions,
) -> Result<Transcript> {
    let t = &whisper.tokens;
    let audio_s = samples.len() as f32 / mel::SAMPLE_RATE as f32;
    if loudest_dbfs(samples) < options.silence_dbfs {
        return Ok(Transcript::empty(audio_s, Some(Rejected::NoSpeech)));
    }
    let started = Instant::now();
    let frames = window_frames(options.window, audio_s);
    let mel = whisper.mel_tensor(samples, frames, options.mel_over_padding)?;
    let audio = whisper.model.encode(&mel)?;
    let encode_s = started.elapsed().as_secs_f32();

    let started = Instant::now();
    let mut prompt = vec![t.sot];
    if let Some(english) = t.english {
        prompt.extend([english, t.transcribe]);
    }
    if !options.timestamps {
        prompt.push(t.no_timestamps);
    }
    let mut state = whisper.model.start(&audio)?;
    state.exact = !options.quantized_decoder;
    let all = whisper
        .model
        .decode(&mut state, &prompt, true)?
        .squeeze(0)?;
    let no_speech_prob = {
        let first = log_softmax(&all.get(0)?.to_vec1::<f32>()?);
        first[t.no_speech as usize].exp()
    };
    let mut logits = all.get(prompt.len() - 1)?.to_vec1::<f32>()?;
    // The last timestamp that still lies inside the real audio (plus a little slack).
    let last_timestamp =
        t.timestamp_begin + ((audio_s + 0.5) / SECONDS_PER_TIMESTAMP).ceil() as u32;

    let mut tokens: Vec<u32> = Vec::new();
    let mut sum_logprob = 0f32;
    let mut loop_cut = false;
    loop {
        suppress(&mut logits, &t.suppress);
        if tokens.is_empty() {
            suppress(&mut logits, &t.suppress_at_begin);
        }
        if options.timestamps {
            timestamp_rules(
                &mut logits,
                &tokens,
                t.timestamp_begin,
                t.eot,
                last_timestamp,
            );
        }
        let logprobs = log_softmax(&logits);
        let (next, logprob) = argmax(&logprobs);
        sum_logprob += logprob;
        if next == t.eot {
            break;
        }
        tokens.push(next);
        if let Some(cut) = repeated_tail(&tokens, t.eot) {
            tokens.truncate(cut);
            loop_cut = true;
            break;
        }
        if tokens.len() >= options.max_tokens
            || prompt.len() + tokens.len() >= whisper.config().max_target_positions
        {
            break;
        }
        let step = if options.kv_cache {
            whisper.model.decode(&mut state, &[next], false)?
        } else {
            state.reset_tokens();
            let all: Vec<u32> = prompt.iter().chain(&tokens).copied().collect();
            whisper.model.decode(&mut state, &all, false)?
        };
        logits = step.squeeze(0)?.to_vec1::<f32>()?;
        tracing::trace!(step = tokens.len(), token = next, elapsed = ?started.elapsed(), "decoded");
    }
    let avg_logprob = sum_logprob / (tokens.len() + 1) as f32;
    let segments = segments(whisper, &tokens, voiced_span(samples))?;
    let text = segments
        .iter()
        .map(|s| s.text.as_str())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let no_speech = no_speech_prob > options.no_speech_alone_threshold
        || (no_speech_prob > options.no_speech_threshold
            && avg_logprob < options.logprob_threshold);
    let rejected = if no_speech {
        Some(Rejected::NoSpeech)
    } else if compression_ratio(&text) > options.compression_ratio_threshold {
        Some(Rejected::Repetitive)
    } else {
        None
    };
    let (text, segments) = if rejected.is_some() {
        (String::new(), Vec::new())
    } else {
        (text, segments)
    };
    Ok(Transcript {
        text,
        segments,
        avg_logprob,
        no_speech_prob,
        tokens: tokens.len(),
        rejected,
        loop_cut,
        audio_s,
        encode_s,
        decode_s: started.elapsed().as_secs_f32(),
    })
}

fn suppress(logits: &mut [f32], ids: &[u32]) {
    for &id in ids {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
}

fn argmax(values: &[f32]) -> (u32, f32) {
    let (i, v) = values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        });
    (i as u32, v)
}

/// Whisper's `ApplyTimestampRules`: timestamps come in pairs, never go back, the first token is a
/// timestamp within 1 s, and a timestamp is forced when timestamps together outweigh any text
/// token. Timestamps past the end of the real audio are suppressed too.
fn timestamp_rules(
    logits: &mut [f32],
    tokens: &[u32],
    ts_begin: u32,
    eot: u32,
    last_timestamp: u32,
) {
    let ts = ts_begin as usize;
    let is_ts = |t: u32| t >= ts_begin;
    let last_was_ts = tokens.last().is_some_and(|&t| is_ts(t));
    let penultimate_was_ts = tokens.len() < 2 || is_ts(tokens[tokens.len() - 2]);
    let neg = f32::NEG_INFINITY;
    if last_was_ts {
        if penultimate_was_ts {
            logits[ts..].fill(neg); // a closed pair: text (or the end) must follow
        } else {
            logits[..eot as usize].fill(neg); // an open pair: close it or end
        }
    }
    if let Some(&last) = tokens.iter().rev().find(|&&t| is_ts(t)) {
        // Never go back in time; after a closing timestamp, move strictly forward.
        let floor = if last_was_ts && !penultimate_was_ts {
            last
        } else {
            last + 1
        };
        let floor = (floor as usize).min(logits.len());
        logits[ts..floor].fill(neg);
    }
    if tokens.is_empty() {
        logits[..ts].fill(neg);
        let max_initial = (ts_begin + MAX_INITIAL_TIMESTAMP + 1) as usize;
        if max_initial < logits.len() {
            logits[max_initial..].fill(neg);
        }
    }
    let beyond = (last_timestamp as usize + 1).min(logits.len());
    logits[beyond..].fill(neg);
    let logprobs = log_softmax(logits);
    let ts_mass = log_sum_exp(&logprobs[ts..]);
    let best_text = logprobs[..ts].iter().copied().fold(neg, f32::max);
    if ts_mass > best_text {
        logits[..ts].fill(neg);
    }
}

fn log_sum_exp(values: &[f32]) -> f32 {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
}

/// Where to cut when the text tokens end in a block repeated three times (four for a single
/// token, since "no no no" is speech): returns the length that keeps the first occurrence.
fn repeated_tail(tokens: &[u32], eot: u32) -> Option<usize> {
    let text: Vec<(usize, u32)> = tokens
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, t)| t < eot)
        .collect();
    for block in 1..=16 {
        let repeats = if block == 1 { 4 } else { 3 };
        if text.len() < block * repeats {
            break;
        }
        let tail = &text[text.len() - block * repeats..];
        let first: Vec<u32> = tail[..block].iter().map(|&(_, t)| t).collect();
        if tail
            .chunks(block)
            .all(|c| c.iter().map(|&(_, t)| t).eq(first.iter().copied()))
        {
            return Some(tail[block].0);
        }
    }
    None
}

fn compression_ratio(text: &str) -> f32 {
    if text.len() < 32 {
        return 0.0; // too short to judge; gzip's header dominates
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = encoder
        .write_all(text.as_bytes())
        .and_then(|()| encoder.finish());
    compressed.map_or(0.0, |c| text.len() as f32 / c.len() as f32)
}

/// Level of the loudest 20 ms of the audio, in dBFS (-120 for digital silence).
fn loudest_dbfs(samples: &[f32]) -> f32 {
    let loudest = samples
        .chunks(mel::SAMPLE_RATE / 50)
        .map(|f| f.iter().map(|s| s * s).sum::<f32>() / f.len() as f32)
        .fold(0.0, f32::max);
    (10.0 * loudest.max(1e-12).log10()).max(-120.0)
}

/// Where speech starts and ends in the audio (20 ms frames louder than a tenth of the loudest
/// frame's RMS): the segment times when the decoder predicts no timestamps.
fn voiced_span(samples: &[f32]) -> (f32, f32) {
    const FRAME: usize = mel::SAMPLE_RATE / 50;
    let rms: Vec<f32> = samples
        .chunks(FRAME)
        .map(|f| (f.iter().map(|s| s * s).sum::<f32>() / f.len() as f32).sqrt())
        .collect();
    let threshold = rms.iter().copied().fold(0.0, f32::max) * 0.1;
    let first = rms.iter().position(|&r| r > threshold && r > 0.0);
    let last = rms.iter().rposition(|&r| r > threshold && r > 0.0);
    match (first, last) {
        (Some(first), Some(last)) => (
            first as f32 * 0.02,
            ((last + 1) * FRAME).min(samples.len()) as f32 / mel::SAMPLE_RATE as f32,
        ),
        _ => (0.0, samples.len() as f32 / mel::SAMPLE_RATE as f32),
    }
}

/// Splits decoded tokens into timed segments of text; text outside timestamp pairs spans
/// `voiced` (start, end in seconds).
fn segments(whisper: &Whisper, tokens: &[u32], voiced: (f32, f32)) -> Result<Vec<Segment>> {
    let audio_s = voiced.1;
    let t = &whisper.tokens;
    let time = |tok: u32| (tok - t.timestamp_begin) as f32 * SECONDS_PER_TIMESTAMP;
    let mut segments = Vec::new();
    let mut start = None;
    let mut text: Vec<u32> = Vec::new();
    for &tok in tokens {
        if tok >= t.timestamp_begin {
            match start {
                Some(s) if !text.is_empty() => {
                    let words = whisper.detokenize(&text)?.trim().to_string();
                    segments.push(Segment {
                        start_s: s,
                        end_s: time(tok).min(audio_s),
                        text: words,
                    });
                    text.clear();
                    start = None;
                }
                _ => start = Some(time(tok)),
            }
        } else if tok < t.eot {
            text.push(tok);
        }
    }
    if !text.is_empty() {
        let words = whisper.detokenize(&text)?.trim().to_string();
        segments.push(Segment {
            start_s: start.unwrap_or(voiced.0),
            end_s: voiced.1,
            text: words,
        });
    }
    segments.retain(|s| !s.text.is_empty());
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_repeated_three_times_is_cut_after_its_first_occurrence() {
        let tokens = [5, 1, 2, 3, 1, 2, 3, 1, 2, 3];
        assert_eq!(repeated_tail(&tokens, 100), Some(4));
        assert_eq!(
            repeated_tail(&[7, 7, 7], 100),
            None,
            "three of one token can be speech"
        );
        assert_eq!(repeated_tail(&[7, 7, 7, 7], 100), Some(1));
        assert_eq!(repeated_tail(&[1, 2, 3, 4, 5, 6], 100), None);
    }

    #[test]
    fn the_voiced_span_leaves_out_leading_and_trailing_silence() {
        let mut audio = vec![0.0f32; 16_000];
        audio.extend((0..8_000).map(|i| (i as f32 * 0.05).sin() * 0.5));
        audio.extend(vec![0.0f32; 4_000]);
        let (start, end) = voiced_span(&audio);
        assert!((start - 1.0).abs() < 0.021, "{start}");
        assert!((end - 1.5).abs() < 0.021, "{end}");
        assert_eq!(
            voiced_span(&[0.0; 800]),
            (0.0, 0.05),
            "silence: the whole stretch"
        );
    }

    #[test]
    fn windows_are_padded_to_at_least_ten_seconds_and_even() {
        let fast = Window::Padded {
            min_s: 10.0,
            margin_s: 1.0,
        };
        assert_eq!(window_frames(fast, 3.0), 1000);
        assert_eq!(window_frames(fast, 12.005), 1302);
        assert_eq!(window_frames(fast, 40.0), 3000);
        assert_eq!(window_frames(Window::Full30, 1.0), 3000);
    }

    #[test]
    fn the_first_token_is_a_timestamp_and_pairs_close() {
        let (ts, eot) = (10u32, 8u32);
        let mut logits = vec![1.0f32; 80];
        timestamp_rules(&mut logits, &[], ts, eot, 70);
        assert!(
            logits[..10].iter().all(|l| l.is_infinite()),
            "no text first"
        );
        assert!(
            logits[61..].iter().all(|l| l.is_infinite()),
            "first timestamp within 1 s"
        );
        // Text after an opening timestamp, then a timestamp: the pair is open, text cannot follow.
        let mut logits = vec![1.0f32; 80];
        timestamp_rules(&mut logits, &[12, 3, 20], ts, eot, 70);
        assert!(logits[..8].iter().all(|l| l.is_infinite()));
        assert!(
            logits[10..20].iter().all(|l| l.is_infinite()),
            "never back in time"
        );
        assert!(
            logits[71..].iter().all(|l| l.is_infinite()),
            "nothing past the audio"
        );
    }
}
