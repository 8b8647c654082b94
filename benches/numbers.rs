//! Numbers through decoding (issue 24): the share of digit strings transcribed whole (every digit,
//! in order, in one run of digits) on the committed number test set, 125 synthesized callers
//! reading cards, phone numbers, addresses, prices, dates and codes through the phone path, per
//! class, for stock Whisper decoding, the engine's decoding before the fix (loops cut at the third
//! repeat, greedy only) and the engine's decoding now (runaways stopped, temperature fallback), in
//! one run; with the word error rate on the development clips and the decoding time per
//! utterance of each.
//!
//! `cargo bench -p winnerr-benches --bench numbers` (models from `make models`). Under
//! `cargo test` it runs one utterance of each class.

use std::collections::BTreeMap;
use std::time::Instant;

use winnerr::evaluate::{self, NumberClip};
use winnerr_benches::{is_bench_run, machine};
use winnerr_models::{DecodeOptions, ModelDir, Whisper};

/// One decoding's results over the set.
#[derive(Default)]
struct Tally {
    /// Per class: digit strings, whole ones, utterances with every string whole.
    by_class: BTreeMap<String, (usize, usize, usize, usize)>,
    /// Per utterance: how many of its strings were whole, and the transcript.
    per_clip: Vec<usize>,
    texts: Vec<String>,
    seconds: f64,
    fallbacks: usize,
}

fn main() -> anyhow::Result<()> {
    let full = is_bench_run();
    let whisper = Whisper::open(&ModelDir::from_env(), "tiny.en")?;
    let mut clips = evaluate::read_number_manifest(&evaluate::numbers_manifest())?;
    if !full {
        let mut seen = std::collections::HashSet::new();
        clips.retain(|c| seen.insert(c.class.clone()));
    }
    let audio: Vec<Vec<f32>> = clips
        .iter()
        .map(|c| evaluate::load_phone(&c.clip.path))
        .collect::<Result<_, _>>()?;
    println!(
        "numbers: {}; {} utterances, phone path (8 kHz mu-law, upsampled), Whisper tiny.en",
        machine(),
        clips.len()
    );
    let decodings = [
        ("stock Whisper", DecodeOptions::reference()),
        ("engine before", DecodeOptions::before_fallback()),
        ("engine now", DecodeOptions::default()),
    ];
    let mut tallies = Vec::new();
    for (name, options) in &decodings {
        let tally = run(&whisper, &clips, &audio, options)?;
        if full {
            for ((clip, &whole), text) in clips.iter().zip(&tally.per_clip).zip(&tally.texts) {
                if whole < clip.digits.len() {
                    println!(
                        "  {name} missed {:?} in {}: {text:?}",
                        clip.digits, clip.clip.id
                    );
                }
            }
        }
        tallies.push(tally);
    }

    println!("\nDigit strings whole, by class (strings whole / strings; utterances all whole)");
    println!(
        "| class | strings | {} |",
        decodings
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(decodings.len()));
    let classes: Vec<String> = tallies[0].by_class.keys().cloned().collect();
    let mut totals = vec![(0usize, 0usize); decodings.len()];
    for class in &classes {
        let mut cells = Vec::new();
        let mut strings = 0;
        for (i, tally) in tallies.iter().enumerate() {
            let (n, whole, utterances, all_whole) = tally.by_class[class];
            strings = n;
            totals[i].0 += n;
            totals[i].1 += whole;
            cells.push(format!(
                "{:.1}% ({whole}/{n}; {all_whole}/{utterances})",
                100.0 * whole as f64 / n.max(1) as f64
            ));
        }
        println!("| {class} | {strings} | {} |", cells.join(" | "));
    }
    let overall: Vec<String> = totals
        .iter()
        .map(|(n, w)| {
            format!(
                "**{:.1}%** ({w}/{n})",
                100.0 * *w as f64 / (*n).max(1) as f64
            )
        })
        .collect();
    println!("| all | {} | {} |", totals[0].0, overall.join(" | "));

    // Against stock decoding, utterance by utterance: where does the engine keep fewer strings?
    let worse: Vec<&str> = clips
        .iter()
        .zip(tallies[2].per_clip.iter().zip(&tallies[0].per_clip))
        .filter(|(_, (now, stock))| now < stock)
        .map(|(c, _)| c.clip.id.as_str())
        .collect();
    println!(
        "\nutterances where the engine now keeps fewer digit strings than stock decoding: {} {:?}",
        worse.len(),
        worse
    );
    println!("\nDecoding time per utterance (mean) and fallbacks");
    for ((name, _), tally) in decodings.iter().zip(&tallies) {
        println!(
            "  {name}: {:.1} ms, {} utterances decoded more than once",
            1000.0 * tally.seconds / clips.len() as f64,
            tally.fallbacks
        );
    }
    println!(
        "  engine now / engine before: {:.3}x",
        tallies[2].seconds / tallies[1].seconds
    );
    if full {
        let dev = evaluate::read_manifest(&evaluate::speech_manifest())?;
        println!("\nWER on the {} development clips (phone path)", dev.len());
        for (name, options) in &decodings[1..] {
            let results = evaluate::transcribe_clips(&whisper, &dev, true, options)?;
            let seconds: f32 = results.iter().map(|r| r.seconds).sum();
            println!(
                "  {name}: {:.1}%, {:.1} ms per clip",
                100.0 * evaluate::overall_wer(&results),
                1000.0 * seconds / results.len() as f32
            );
        }
    }
    Ok(())
}

fn run(
    whisper: &Whisper,
    clips: &[NumberClip],
    audio: &[Vec<f32>],
    options: &DecodeOptions,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    for (clip, audio) in clips.iter().zip(audio) {
        let started = Instant::now();
        let transcript = whisper.transcribe(audio, options)?;
        tally.seconds += started.elapsed().as_secs_f64();
        tally.fallbacks += usize::from(transcript.attempts > 1);
        let whole = evaluate::digit_strings_whole(&transcript.text, &clip.digits);
        let entry = tally.by_class.entry(clip.class.clone()).or_default();
        entry.0 += clip.digits.len();
        entry.1 += whole;
        entry.2 += 1;
        entry.3 += usize::from(whole == clip.digits.len());
        tally.per_clip.push(whole);
        tally.texts.push(transcript.text);
    }
    Ok(tally)
}
