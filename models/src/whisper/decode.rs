//! Greedy decoding with Whisper's token rules (suppressed tokens, timestamp pairing) and the
//! guards that keep silence, noise and loops out of transcripts.

use std::io::Write;
use std::time::Instant;

use candle_core::Tensor;

use super::model::log_softmax;
use super::{Prompt, Whisper, mel, numbers};
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
    /// What stops a decoder that repeats itself.
    pub loop_guard: LoopGuard,
    /// Temperatures tried in turn while a decode loops (a runaway, text that compresses too well,
    /// a block of words repeated): 0 is greedy, higher samples. A low log-probability alone
    /// does not trigger a fallback (Whisper's does): on noisy phone audio it would multiply the
    /// decoding time and sampling seldom helps there.
    pub temperatures: Vec<f32>,
    /// An end of text less likely than this is doubted...
    pub doubtful_end_prob: f32,
    /// ...and passed over for the best other token when that one's log-probability is within
    /// this of the end's (at most [`MAX_DOUBTED_ENDS`] times): a caller who pauses after "let
    /// me read it to you," is not done, and greedy decoding would stop there and lose the number.
    pub doubtful_end_margin: f32,
    /// Give the expected words ([`super::Prompt`]) to the decoder as its previous text (each
    /// prompt token costs about a tenth of a decoding step).
    pub keyterm_prompt: bool,
    /// The logit bonus for the expected words' tokens.
    pub keyterm_bonus: KeytermBonus,
}

/// A bounded logit bonus for the expected words' tokens: `start` for a term's first token,
/// `next` for the token that goes on with a term whose first tokens were just decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeytermBonus {
    pub start: f32,
    pub next: f32,
}

impl KeytermBonus {
    pub const NONE: Self = Self {
        start: 0.0,
        next: 0.0,
    };
    /// What did best on the keyterm test set (`benches/keyterms.rs`): no bonus to start a term
    /// (one of 1 already put the prompt's names where none were said), 6 to go on with one the
    /// model started ("Kin" → "nick" "inn" "ic" rather than "Kinacinic").
    pub const DEFAULT: Self = Self {
        start: 0.0,
        next: 6.0,
    };
}

/// How many doubtful ends one decode may pass over.
pub const MAX_DOUBTED_ENDS: usize = 3;

/// How decoding deals with a decoder that repeats itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoopGuard {
    /// Cut at a block of tokens repeated three times (four for one token) and publish the first
    /// occurrence: the guard before issue 24. It cuts legitimate repeats ("1111 1111 1111", "four
    /// one one one, one one one one") and with them the digits after; kept for the comparison
    /// bench.
    CutAtThirdRepeat,
    /// Stop only a runaway (a block repeated `min_repeats` times over at least `min_tokens`
    /// tokens: far past any digit string) and decode again at the next temperature, as Whisper
    /// does for text that compresses too well. Only when every temperature loops is the greedy
    /// text cut at its repetition.
    Fallback {
        min_repeats: usize,
        min_tokens: usize,
    },
}

impl LoopGuard {
    /// The default guard.
    pub const FALLBACK: Self = Self::Fallback {
        min_repeats: 4,
        min_tokens: 24,
    };
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
            loop_guard: LoopGuard::FALLBACK,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            doubtful_end_prob: 0.7,
            doubtful_end_margin: 1.5,
            keyterm_prompt: true,
            keyterm_bonus: KeytermBonus::DEFAULT,
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

    /// The engine's decoding before issue 24: greedy only, loops cut at the third repeat, every
    /// end of text taken.
    pub fn before_fallback() -> Self {
        Self {
            loop_guard: LoopGuard::CutAtThirdRepeat,
            temperatures: vec![0.0],
            doubtful_end_prob: 0.0,
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
    /// The temperature of the decode whose text this is (0 unless a fallback was needed).
    pub temperature: f32,
    /// The call's words were left out: decoded with them, the text said a phrase twice.
    pub without_prompt: bool,
    /// Decodes run for this window (1 without a fallback).
    pub attempts: usize,
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
            temperature: 0.0,
            without_prompt: false,
            attempts: 0,
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
    prompt: &Prompt,
) -> Result<Transcript> {
    if let Some(bad) = samples.iter().position(|s| !s.is_finite()) {
        return Err(ModelError::Input(format!(
            "sample {bad} is not a finite number"
        )));
    }
    let mut total: Option<Transcript> = None;
    for (i, window) in samples.chunks(WINDOW_SAMPLES).enumerate() {
        let mut part = decode_window(whisper, window, options, prompt)?;
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
                t.temperature = t.temperature.max(part.temperature);
                t.without_prompt |= part.without_prompt;
                t.attempts += part.attempts;
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

/// Decodes one window expecting the call's words; when that text says a phrase twice in a row,
/// decodes the same encoded audio again without them and keeps that. A prompt of keyterms makes
/// Whisper repeat itself on short utterances ("10 of clubs, 10 of clubs," for "ten of clubs";
/// gone without the prompt), and a phrase the caller did say twice is heard twice without it too.
fn decode_window(
    whisper: &Whisper,
    samples: &[f32],
    options: &DecodeOptions,
    words: &Prompt,
) -> Result<Transcript> {
    let audio_s = samples.len() as f32 / mel::SAMPLE_RATE as f32;
    if loudest_dbfs(samples) < options.silence_dbfs {
        return Ok(Transcript::empty(audio_s, Some(Rejected::NoSpeech)));
    }
    let started = Instant::now();
    let frames = window_frames(options.window, audio_s);
    let mel = whisper.mel_tensor(samples, frames, options.mel_over_padding)?;
    let encoded = whisper.model.encode(&mel)?;
    let encode_s = started.elapsed().as_secs_f32();
    let prompted = Transcript {
        encode_s,
        ..decode_encoded(whisper, samples, &encoded, options, words)?
    };
    if words.is_empty() || !says_a_phrase_twice(&prompted.text) {
        return Ok(prompted);
    }
    let plain = decode_encoded(whisper, samples, &encoded, options, &Prompt::default())?;
    Ok(Transcript {
        without_prompt: true,
        attempts: plain.attempts + prompted.attempts,
        encode_s,
        decode_s: plain.decode_s + prompted.decode_s,
        ..plain
    })
}

/// Whether the words of `text` hold a block of two to eight words said twice in a row, not all
/// of them numbers (digits read out repeat: "five five", "1111 1111").
fn says_a_phrase_twice(text: &str) -> bool {
    const NUMBERS: [&str; 13] = [
        "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
        "ten", "double",
    ];
    let numeric =
        |w: &String| w.chars().all(|c| c.is_ascii_digit()) || NUMBERS.contains(&w.as_str());
    let words = crate::text::bare_words(text);
    (2..=8).any(|block| {
        2 * block <= words.len()
            && (0..=words.len() - 2 * block).any(|start| {
                let (first, second) = words[start..start + 2 * block].split_at(block);
                first == second && !first.iter().all(numeric)
            })
    })
}

/// Decodes the window `samples`, whose encoder output is `audio`, expecting `words` (its
/// `encode_s` is left at 0 for the caller, who encoded it).
fn decode_encoded(
    whisper: &Whisper,
    samples: &[f32],
    audio: &Tensor,
    options: &DecodeOptions,
    words: &Prompt,
) -> Result<Transcript> {
    let t = &whisper.tokens;
    let audio_s = samples.len() as f32 / mel::SAMPLE_RATE as f32;
    let started = Instant::now();
    // The previous-text prompt (the words to expect), then the start of the transcript.
    let mut prompt = if options.keyterm_prompt {
        words.tokens().to_vec()
    } else {
        Vec::new()
    };
    let sot_at = prompt.len();
    prompt.push(t.sot);
    if let Some(english) = t.english {
        prompt.extend([english, t.transcribe]);
    }
    if !options.timestamps {
        prompt.push(t.no_timestamps);
    }
    let mut state = whisper.model.start(audio)?;
    state.exact = !options.quantized_decoder;
    let all = whisper
        .model
        .decode(&mut state, &prompt, Some(sot_at))?
        .squeeze(0)?;
    let no_speech_prob = {
        let first = log_softmax(&all.get(0)?.to_vec1::<f32>()?);
        first[t.no_speech as usize].exp()
    };
    let first_logits = all.get(prompt.len() - 1 - sot_at)?.to_vec1::<f32>()?;
    // The last timestamp that still lies inside the real audio (plus a little slack).
    let last_timestamp =
        t.timestamp_begin + ((audio_s + 0.5) / SECONDS_PER_TIMESTAMP).ceil() as u32;
    let voiced = voiced_span(samples);
    let temperatures: &[f32] = if options.temperatures.is_empty() {
        &[0.0]
    } else {
        &options.temperatures
    };
    let mut rng = XorShift::seeded(samples.len() as u64);
    // The greedy decode, and the first sampled one that passes when greedy does not.
    let mut greedy: Option<Attempt> = None;
    let mut passed: Option<Attempt> = None;
    let mut attempts = 0;
    for &temperature in temperatures {
        if attempts > 0 {
            state.reset_tokens();
            whisper.model.decode(&mut state, &prompt, None)?;
        }
        attempts += 1;
        let run = Greedy {
            whisper,
            options,
            words,
            prompt: &prompt,
            last_timestamp,
            temperature,
        };
        let (tokens, sum_logprob, outcome) =
            run.decode(&mut state, first_logits.clone(), &mut rng)?;
        let attempt = Attempt::new(whisper, tokens, sum_logprob, outcome, temperature, voiced)?;
        // Silence is silence at any temperature: no fallback for it (Whisper's rule).
        let silent = no_speech_prob > options.no_speech_threshold
            && attempt.avg_logprob < options.logprob_threshold;
        let looped = outcome == Outcome::RanAway
            || compression_ratio(&attempt.text) > options.compression_ratio_threshold
            || word_loop(&attempt.text);
        if greedy.is_none() {
            if !looped || silent {
                passed = Some(attempt);
                break;
            }
            greedy = Some(attempt);
        } else if !looped && attempt.avg_logprob >= options.logprob_threshold {
            // A sampled decode must also be one the model believes (Whisper's own fallback
            // rule): at a high temperature, text that neither repeats nor compresses can still
            // be words drawn at random.
            passed = Some(attempt);
            break;
        }
    }
    let all_looped = passed.is_none();
    let best = match (passed, greedy) {
        (Some(passed), _) => passed,
        // Every temperature looped: the greedy text up to its repetition, never the loop itself.
        (None, Some(mut greedy)) => {
            let cut = repeated_tail(&greedy.tokens, t.eot).unwrap_or(greedy.tokens.len());
            greedy.tokens.truncate(cut);
            greedy.segments = segments(whisper, &greedy.tokens, voiced)?;
            greedy.text = join_segments(&greedy.segments);
            greedy.outcome = Outcome::Cut;
            greedy
        }
        (None, None) => unreachable!("at least one temperature is tried"),
    };
    let avg_logprob = best.avg_logprob;
    // A decoder that loops at every temperature on audio the model likely hears no speech in
    // is making words up: with a prompt of expected words, noise gets "aye, aye, aye" at a
    // fair log-probability and a no-speech probability under the threshold alone.
    let no_speech = no_speech_prob > options.no_speech_alone_threshold
        || (no_speech_prob > options.no_speech_threshold
            && (avg_logprob < options.logprob_threshold || all_looped));
    let rejected = if no_speech {
        Some(Rejected::NoSpeech)
    } else if compression_ratio(&best.text) > options.compression_ratio_threshold {
        Some(Rejected::Repetitive)
    } else {
        None
    };
    let (text, segments) = if rejected.is_some() {
        (String::new(), Vec::new())
    } else {
        let segments: Vec<Segment> = best
            .segments
            .into_iter()
            .map(|s| Segment {
                text: numbers::format_numbers(&s.text),
                ..s
            })
            .collect();
        (join_segments(&segments), segments)
    };
    Ok(Transcript {
        text,
        segments,
        avg_logprob,
        no_speech_prob,
        tokens: best.tokens.len(),
        rejected,
        loop_cut: best.outcome != Outcome::Ended,
        temperature: best.temperature,
        without_prompt: false,
        attempts,
        audio_s,
        encode_s: 0.0,
        decode_s: started.elapsed().as_secs_f32(),
    })
}

fn join_segments(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| s.text.as_str())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// How one decode stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The model ended the text (or the token budget did).
    Ended,
    /// [`LoopGuard::CutAtThirdRepeat`] cut a repetition.
    Cut,
    /// A runaway repetition stopped it ([`LoopGuard::Fallback`]).
    RanAway,
}

/// One decode at one temperature.
struct Attempt {
    tokens: Vec<u32>,
    text: String,
    segments: Vec<Segment>,
    avg_logprob: f32,
    outcome: Outcome,
    temperature: f32,
}

impl Attempt {
    fn new(
        whisper: &Whisper,
        tokens: Vec<u32>,
        sum_logprob: f32,
        outcome: Outcome,
        temperature: f32,
        voiced: (f32, f32),
    ) -> Result<Self> {
        let segments = segments(whisper, &tokens, voiced)?;
        Ok(Self {
            avg_logprob: sum_logprob / (tokens.len() + 1) as f32,
            text: join_segments(&segments),
            segments,
            tokens,
            outcome,
            temperature,
        })
    }
}

/// The decoding loop over one window's audio at one temperature.
struct Greedy<'a> {
    whisper: &'a Whisper,
    options: &'a DecodeOptions,
    words: &'a Prompt,
    prompt: &'a [u32],
    last_timestamp: u32,
    temperature: f32,
}

impl Greedy<'_> {
    /// Decodes from the logits after the prompt; returns the tokens, their summed
    /// log-probability (the end token's included) and how it stopped.
    fn decode(
        &self,
        state: &mut super::model::DecoderState,
        mut logits: Vec<f32>,
        rng: &mut XorShift,
    ) -> Result<(Vec<u32>, f32, Outcome)> {
        let (whisper, options) = (self.whisper, self.options);
        let t = &whisper.tokens;
        let mut tokens: Vec<u32> = Vec::new();
        let mut sum_logprob = 0f32;
        let mut outcome = Outcome::Ended;
        let mut doubted_ends = 0;
        loop {
            suppress(&mut logits, &t.suppress);
            if tokens.is_empty() {
                suppress(&mut logits, &t.suppress_at_begin);
            }
            boost(
                &mut logits,
                &tokens,
                self.words.terms(),
                options.keyterm_bonus,
            );
            if options.timestamps {
                timestamp_rules(
                    &mut logits,
                    &tokens,
                    t.timestamp_begin,
                    t.eot,
                    self.last_timestamp,
                );
            }
            let logprobs = log_softmax(&logits);
            let mut next = if self.temperature > 0.0 {
                sample(&logits, self.temperature, rng)
            } else {
                argmax(&logprobs).0
            };
            if next == t.eot && doubted_ends < MAX_DOUBTED_ENDS {
                if let Some(other) = self.doubted_end(&logprobs, &tokens) {
                    next = other;
                    doubted_ends += 1;
                }
            }
            sum_logprob += logprobs[next as usize];
            if next == t.eot {
                break;
            }
            tokens.push(next);
            match options.loop_guard {
                LoopGuard::CutAtThirdRepeat => {
                    if let Some(cut) = repeated_tail(&tokens, t.eot) {
                        tokens.truncate(cut);
                        outcome = Outcome::Cut;
                        break;
                    }
                }
                LoopGuard::Fallback {
                    min_repeats,
                    min_tokens,
                } => {
                    if runaway(&tokens, t.eot, min_repeats, min_tokens) {
                        outcome = Outcome::RanAway;
                        break;
                    }
                }
            }
            if tokens.len() >= options.max_tokens
                || self.prompt.len() + tokens.len() >= whisper.config().max_target_positions
            {
                break;
            }
            let step = if options.kv_cache {
                whisper.model.decode(state, &[next], None)?
            } else {
                state.reset_tokens();
                let all: Vec<u32> = self.prompt.iter().chain(&tokens).copied().collect();
                whisper.model.decode(state, &all, None)?
            };
            logits = step.squeeze(0)?.to_vec1::<f32>()?;
        }
        Ok((tokens, sum_logprob, outcome))
    }
}

impl Greedy<'_> {
    /// The token to take instead of an end of text that is doubtful (see
    /// [`DecodeOptions::doubtful_end_prob`]); never a restart of the text from its first token,
    /// which is how Whisper goes on after a real end.
    fn doubted_end(&self, logprobs: &[f32], tokens: &[u32]) -> Option<u32> {
        let eot = self.whisper.tokens.eot;
        let end = logprobs[eot as usize];
        if tokens.is_empty() || end.exp() >= self.options.doubtful_end_prob {
            return None;
        }
        let (other, logprob) = logprobs
            .iter()
            .enumerate()
            .filter(|&(i, _)| i as u32 != eot)
            .fold((0u32, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 { (i as u32, l) } else { best }
            });
        let restart = tokens.iter().find(|&&t| t < eot) == Some(&other);
        (logprob >= end - self.options.doubtful_end_margin && other < eot && !restart)
            .then_some(other)
    }
}

/// A small deterministic generator for sampling: the same audio decodes to the same text.
struct XorShift(u64);

impl XorShift {
    fn seeded(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// A uniform value in [0, 1).
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A token drawn from softmax(logits / temperature).
fn sample(logits: &[f32], temperature: f32, rng: &mut XorShift) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f32> = logits
        .iter()
        .map(|&l| ((l - max) / temperature).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let mut target = rng.next() * total;
    for (i, w) in weights.iter().enumerate() {
        target -= w;
        if target <= 0.0 && *w > 0.0 {
            return i as u32;
        }
    }
    argmax(logits).0
}

/// Whether the words of `text` (lower case, without punctuation) hold a block of two to eight
/// words repeated three times in a row, or one word six times: a loop, even when sampling varies
/// its tokens ("4 Queen of Claws, 4 queen of claws,"). Digit groups read out repeat less than
/// that ("1111 1111 1111 1111").
fn word_loop(text: &str) -> bool {
    let words = crate::text::bare_words(text);
    (1..=8).any(|block| {
        let repeats = if block == 1 { 6 } else { 3 };
        let span = block * repeats;
        span <= words.len()
            && (0..=words.len() - span).any(|start| {
                let first = &words[start..start + block];
                words[start..start + span].chunks(block).all(|c| c == first)
            })
    })
}

/// Whether the text tokens end in a block repeated at least `min_repeats` times over at least
/// `min_tokens` tokens: a decoder in a loop, not a number read out.
fn runaway(tokens: &[u32], eot: u32, min_repeats: usize, min_tokens: usize) -> bool {
    let text: Vec<u32> = tokens.iter().copied().filter(|&t| t < eot).collect();
    (1..=16).any(|block| {
        let repeats = min_repeats.max(min_tokens.div_ceil(block));
        let span = block * repeats;
        span <= text.len() && {
            let tail = &text[text.len() - span..];
            tail.chunks(block).all(|c| c == &tail[..block])
        }
    })
}

/// Adds `bonus` to the logits of the expected words' tokens: the next token of each term whose
/// first tokens `tokens` ends with, else the term's first token (each token boosted once, by the
/// larger bonus).
fn boost(logits: &mut [f32], tokens: &[u32], terms: &[Vec<u32>], bonus: KeytermBonus) {
    if bonus == KeytermBonus::NONE {
        return;
    }
    let mut boosted: Vec<(u32, f32)> = Vec::new();
    for term in terms.iter().filter(|t| !t.is_empty()) {
        let mut matched = (term.len() - 1).min(tokens.len());
        while matched > 0 && !tokens.ends_with(&term[..matched]) {
            matched -= 1;
        }
        let (id, b) = if matched > 0 {
            (term[matched], bonus.next)
        } else {
            (term[0], bonus.start)
        };
        match boosted.iter_mut().find(|(i, _)| *i == id) {
            Some((_, best)) => *best = best.max(b),
            None => boosted.push((id, b)),
        }
    }
    for (id, b) in boosted {
        if let Some(l) = logits.get_mut(id as usize) {
            *l += b;
        }
    }
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
    fn a_phrase_said_twice_is_told_from_numbers_and_words_read_out() {
        assert!(says_a_phrase_twice("10 of clubs, 10 of clubs,"));
        assert!(says_a_phrase_twice("Queen of close? Queen of close?"));
        assert!(says_a_phrase_twice(
            "seven of clubs, seven of clubs, 7 of clubs"
        ));
        assert!(!says_a_phrase_twice("5, 5, 5,"), "five five");
        assert!(!says_a_phrase_twice(
            "My card number is 4111 1111 1111 1111."
        ));
        assert!(!says_a_phrase_twice("one one one one, one one one one"));
        assert!(!says_a_phrase_twice("no, no, I said no"));
        assert!(!says_a_phrase_twice("Go forward 10 meters."));
    }

    #[test]
    fn runaways_and_word_loops_are_told_from_numbers_read_out() {
        let eot = 100;
        assert!(
            !runaway(&[1, 2, 1, 2, 1, 2, 1, 2], eot, 4, 24),
            "1111 1111 1111 1111"
        );
        assert!(runaway(&[5, 6, 7].repeat(8), eot, 4, 24));
        assert!(runaway(&[9; 24], eot, 4, 24));
        assert!(!word_loop("My card number is 4111 1111 1111 1111."));
        assert!(!word_loop("no, no, no, no, I said no"));
        assert!(word_loop(
            "4 queen of clusters, 4 Queen of Claws, 4 queen of Claws, 4 Queen of Claws,"
        ));
        assert!(word_loop("I'm sorry. I'm sorry. I'm sorry."));
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
