//! Keyterms through decoding (issue 21): how many of an organization's own words — its name, its
//! agents' and leads' names, street and neighbourhood names, the trade's terms — the recognizer
//! writes as the organization spells them, without and with the organization's list given to
//! Whisper as the words to expect, on the committed keyterm test set (121 synthesized
//! utterances through the phone path, a fifth of them holding no keyterm); with the word error
//! rate, the list's terms written where no one said them, and the decoding time of each, in one
//! run.
//!
//! `cargo bench -p winnerr-benches --bench keyterms` (models from `make models`). Under
//! `cargo test` it runs a few utterances.

use std::time::Instant;

use winnerr::evaluate::{self, KeytermClip};
use winnerr_benches::{is_bench_run, machine};
use winnerr_models::text::word_errors;
use winnerr_models::whisper::KeytermBonus;
use winnerr_models::{DecodeOptions, ModelDir, Prompt, Whisper};
use winnerr_voice::asr::KEYTERM_PROMPT_TOKENS;
use winnerr_voice::keyterms;

/// One decoding's results over the set.
#[derive(Default)]
struct Tally {
    said: usize,
    heard: usize,
    /// List terms in a transcript that its reference does not hold.
    inserted: usize,
    errors: usize,
    words: usize,
    /// The same, on the sentences that hold no keyterm.
    plain_errors: usize,
    plain_words: usize,
    seconds: f64,
    /// Of which encoding, and decodes run (more than one per utterance on a fallback).
    encode_s: f64,
    attempts: usize,
    texts: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let full = is_bench_run();
    let whisper = Whisper::open(&ModelDir::from_env(), "tiny.en")?;
    let (mut clips, sources) = evaluate::read_keyterm_set(&evaluate::keyterms_manifest())?;
    if !full {
        clips.truncate(6);
    }
    let audio: Vec<Vec<f32>> = clips
        .iter()
        .map(|c| evaluate::load_phone(&c.clip.path))
        .collect::<Result<_, _>>()?;
    // Each utterance is a call's: what the CRM knows of the call (the lead and the streets the
    // sentence names; a sentence that names none is a call with another lead), then the
    // organization's list, then the trade's words, as the engine orders them.
    let per_call: Vec<Vec<String>> = clips
        .iter()
        .enumerate()
        .map(|(i, clip)| {
            let mut own: Vec<String> = clip
                .keyterms
                .iter()
                .filter(|t| sources.call.contains(t))
                .cloned()
                .collect();
            if own.is_empty() {
                own.push(sources.call[i % sources.call.len()].clone());
            }
            keyterms::merged([&own[..], &sources.org[..], &keyterms::trade_terms()[..]])
        })
        .collect();
    // Terms that count when heard: every call's and the organization's.
    let terms = keyterms::merged([
        &sources.call[..],
        &sources.org[..],
        &keyterms::trade_terms()[..],
    ]);
    let said: usize = clips.iter().map(|c| c.keyterms.len()).sum();
    println!(
        "keyterms: {}; {} utterances ({} keyterms said, {} without any), phone path (8 kHz \
         mu-law, upsampled), Whisper tiny.en; a call's terms: its own then the organization's \
         {} and the trade's ({} in all)",
        machine(),
        clips.len(),
        said,
        clips.iter().filter(|c| c.keyterms.is_empty()).count(),
        sources.org.len(),
        per_call[0].len(),
    );
    let prompts = |size: usize| -> anyhow::Result<Vec<Prompt>> {
        per_call
            .iter()
            .map(|t| Ok(whisper.keyterm_prompt(t, size)?))
            .collect()
    };
    let with = |keyterm_prompt: bool, start: f32, next: f32| DecodeOptions {
        keyterm_prompt,
        keyterm_bonus: KeytermBonus { start, next },
        ..DecodeOptions::default()
    };
    let none = vec![Prompt::default(); clips.len()];
    let bonus = KeytermBonus::DEFAULT;
    let mut runs: Vec<(String, Vec<Prompt>, DecodeOptions)> = vec![
        ("without".into(), none, DecodeOptions::default()),
        (
            format!(
                "whole list as prompt ({} tokens), no bonus",
                Prompt::MAX_TOKENS
            ),
            prompts(Prompt::MAX_TOKENS)?,
            with(true, 0.0, 0.0),
        ),
        (
            "bonus only, no prompt".into(),
            prompts(0)?,
            with(false, bonus.start, bonus.next),
        ),
        (
            format!("engine: prompt of {KEYTERM_PROMPT_TOKENS} tokens and bonus"),
            prompts(KEYTERM_PROMPT_TOKENS)?,
            DecodeOptions::default(),
        ),
    ];
    // Other settings side by side: KEYTERM_SWEEP="p64,1,6;p0,0,8" (prompt tokens, start bonus,
    // next bonus), each against "without".
    let sweep = std::env::var("KEYTERM_SWEEP").unwrap_or_default();
    if !sweep.is_empty() {
        runs.truncate(1);
    }
    for spec in sweep.split(';').filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = spec.split(',').collect();
        anyhow::ensure!(parts.len() == 3, "{spec:?} is not pTOKENS,START,NEXT");
        let size: usize = parts[0].trim_start_matches('p').parse()?;
        let (start, next): (f32, f32) = (parts[1].parse()?, parts[2].parse()?);
        runs.push((
            spec.to_string(),
            prompts(size)?,
            with(size > 0, start, next),
        ));
    }
    let mut tallies = Vec::new();
    for (name, prompt, options) in &runs {
        let tally = run(&whisper, &clips, &audio, options, prompt, &terms)?;
        if full {
            for (clip, text) in clips.iter().zip(&tally.texts) {
                let got = keyterms::heard(text, &terms);
                let missed: Vec<&String> = clip
                    .keyterms
                    .iter()
                    .filter(|t| !got.contains(&t.as_str()))
                    .collect();
                let expected = keyterms::heard(&clip.clip.reference, &terms);
                let extra: Vec<&&str> = got.iter().filter(|t| !expected.contains(t)).collect();
                if !missed.is_empty() || !extra.is_empty() {
                    println!(
                        "  {name}: {} missed {missed:?} inserted {extra:?}: {text:?}",
                        clip.clip.id
                    );
                }
            }
        }
        tallies.push(tally);
    }
    println!(
        "\n| decoding | keyterm recall | terms inserted | WER | WER, no-keyterm sentences | ms per utterance (encoding) | decodes |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((name, ..), t) in runs.iter().zip(&tallies) {
        println!(
            "| {name} | **{:.3}** ({}/{}) | {} | {:.1}% | {:.1}% | {:.0} ({:.0}) | {} |",
            t.heard as f64 / t.said.max(1) as f64,
            t.heard,
            t.said,
            t.inserted,
            100.0 * t.errors as f64 / t.words.max(1) as f64,
            100.0 * t.plain_errors as f64 / t.plain_words.max(1) as f64,
            1000.0 * t.seconds / clips.len() as f64,
            1000.0 * t.encode_s / clips.len() as f64,
            t.attempts,
        );
    }
    for ((name, ..), t) in runs.iter().zip(&tallies).skip(1) {
        println!(
            "decoding time, {name} / without: {:.3}x",
            t.seconds / tallies[0].seconds
        );
    }
    Ok(())
}

fn run(
    whisper: &Whisper,
    clips: &[KeytermClip],
    audio: &[Vec<f32>],
    options: &DecodeOptions,
    prompts: &[Prompt],
    terms: &[String],
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    for ((clip, audio), prompt) in clips.iter().zip(audio).zip(prompts) {
        let started = Instant::now();
        let transcript = whisper.transcribe_with(audio, options, prompt)?;
        tally.seconds += started.elapsed().as_secs_f64();
        tally.encode_s += transcript.encode_s as f64;
        tally.attempts += transcript.attempts;
        let got = keyterms::heard(&transcript.text, terms);
        let expected = keyterms::heard(&clip.clip.reference, terms);
        tally.said += clip.keyterms.len();
        tally.heard += clip
            .keyterms
            .iter()
            .filter(|t| got.contains(&t.as_str()))
            .count();
        tally.inserted += got.iter().filter(|t| !expected.contains(t)).count();
        let (errors, words) = word_errors(&clip.clip.reference, &transcript.text);
        tally.errors += errors;
        tally.words += words;
        if clip.keyterms.is_empty() {
            tally.plain_errors += errors;
            tally.plain_words += words;
        }
        tally.texts.push(transcript.text);
    }
    Ok(tally)
}
