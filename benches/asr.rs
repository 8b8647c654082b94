//! Speech-to-text speed and accuracy: real-time factor by utterance length (1, 3, 5, 10 s) for
//! Whisper tiny.en (and base when fetched), from stock behaviour through each speed change, with
//! the word error rate of each configuration on the development clips (phone path), in one run.
//!
//! `cargo bench -p winnerr-benches --bench asr` (models from `make models`; base with
//! `winnerr models fetch --base`). Under `cargo test` it runs one configuration on one utterance.

use std::time::Instant;

use winnerr::evaluate::{self, ClipResult};
use winnerr_benches::{is_bench_run, machine, percentile};
use winnerr_models::whisper::Window;
use winnerr_models::{DecodeOptions, ModelDir, Whisper};

const LENGTHS: [f32; 4] = [1.0, 3.0, 5.0, 10.0];

fn main() -> anyhow::Result<()> {
    let full = is_bench_run();
    let dir = ModelDir::from_env();
    let clips = evaluate::read_manifest(&evaluate::speech_manifest())?;
    let phone: Vec<Vec<f32>> = clips
        .iter()
        .map(|c| evaluate::load_phone(&c.path))
        .collect::<Result<_, _>>()?;
    println!(
        "asr: {}; phone path (8 kHz mu-law, upsampled); {} threads",
        machine(),
        rayon_threads()
    );

    let fast = DecodeOptions::default();
    let steps: Vec<(&str, DecodeOptions)> = vec![
        (
            "stock: 30 s window, no KV cache, f32, FFT over padding",
            DecodeOptions::reference(),
        ),
        (
            "+ mel over real samples only",
            DecodeOptions {
                mel_over_padding: false,
                ..DecodeOptions::reference()
            },
        ),
        (
            "+ window max(10 s, len + 1 s)",
            DecodeOptions {
                mel_over_padding: false,
                window: fast.window,
                ..DecodeOptions::reference()
            },
        ),
        (
            "+ decoder KV cache",
            DecodeOptions {
                quantized_decoder: false,
                ..fast.clone()
            },
        ),
        ("+ 8-bit decoder projections (default)", fast.clone()),
        (
            "default, window max(6 s, len + 1 s)",
            DecodeOptions {
                window: Window::Padded {
                    min_s: 6.0,
                    margin_s: 1.0,
                },
                ..fast.clone()
            },
        ),
        (
            "default, window max(4 s, len + 1 s)",
            DecodeOptions {
                window: Window::Padded {
                    min_s: 4.0,
                    margin_s: 1.0,
                },
                ..fast.clone()
            },
        ),
    ];
    let steps = if full {
        steps
    } else {
        steps.into_iter().skip(4).take(1).collect()
    };

    for model in ["tiny.en", "base"] {
        let path = dir.whisper(model);
        if !path.exists() {
            println!("\n{model}: not fetched, skipped");
            continue;
        }
        let whisper = Whisper::load(&path, &dir.mel_filters(), &winnerr_models::device())?;
        println!(
            "\nWhisper {model}: ms per utterance (real-time factor), median of {} runs; WER on {} dev clips",
            runs(full),
            clips.len()
        );
        println!(
            "| configuration | {} | WER |",
            LENGTHS.map(|l| format!("{l} s")).join(" | ")
        );
        println!("|---|{}---|", "---|".repeat(LENGTHS.len()));
        for (name, options) in &steps {
            let mut cells = Vec::new();
            for &seconds in if full { &LENGTHS[..] } else { &LENGTHS[1..2] } {
                let audio = utterance(&phone, seconds);
                let ms = median_ms(&whisper, &audio, options, runs(full))?;
                cells.push(format!("{ms:.0} ({:.3})", ms / 1000.0 / seconds as f64));
            }
            let results: Vec<ClipResult> = if full {
                evaluate::transcribe_clips(&whisper, &clips, true, options)?
            } else {
                Vec::new()
            };
            let wer = if full {
                format!("{:.1}%", 100.0 * evaluate::overall_wer(&results))
            } else {
                "-".into()
            };
            println!("| {name} | {} | {wer} |", cells.join(" | "));
        }
    }
    if full {
        if let Ok(python) = std::env::var("WINNERR_FASTER_WHISPER_PYTHON") {
            faster_whisper(&python, &dir, &clips, &phone)?;
        } else {
            println!(
                "\nfaster-whisper: WINNERR_FASTER_WHISPER_PYTHON not set (`make bench` sets it), skipped"
            );
        }
    }
    Ok(())
}

/// faster-whisper on the same CTranslate2 tiny.en files, the same audio (written as 16-bit WAV),
/// greedy, 2 threads, int8 and float32; WER with our normalization; beside ours as a ratio.
fn faster_whisper(
    python: &str,
    dir: &ModelDir,
    clips: &[evaluate::Clip],
    phone: &[Vec<f32>],
) -> anyhow::Result<()> {
    let model = winnerr_models::fetch::ct2_tiny_en(dir)?;
    let tmp = std::env::temp_dir().join(format!("winnerr-asr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut files = Vec::new();
    let write = |name: &str, audio: &[f32]| -> anyhow::Result<String> {
        let path = tmp.join(format!("{name}.wav"));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec)?;
        for &s in audio {
            w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
        }
        w.finalize()?;
        Ok(path.display().to_string())
    };
    for (clip, audio) in clips.iter().zip(phone) {
        files.push(write(&clip.id, audio)?);
    }
    for seconds in LENGTHS {
        files.push(write(
            &format!("utterance-{seconds}s"),
            &utterance(phone, seconds),
        )?);
    }
    // Ours on the very same 16-bit files, for the ratio.
    let dirs = ModelDir::from_env();
    let whisper = Whisper::load(
        &dirs.whisper("tiny.en"),
        &dirs.mel_filters(),
        &winnerr_models::device(),
    )?;
    let ours: Vec<f64> = LENGTHS
        .iter()
        .map(|&s| {
            median_ms(
                &whisper,
                &evaluate::load_16k(std::path::Path::new(
                    &files[clips.len() + LENGTHS.iter().position(|&l| l == s).unwrap_or(0)],
                ))?,
                &DecodeOptions::default(),
                5,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    println!(
        "\nfaster-whisper 1.2.0 on the same CTranslate2 tiny.en files, greedy, 2 threads, same audio:"
    );
    println!(
        "| system | {} | WER | ours / theirs at 3 s |",
        LENGTHS.map(|l| format!("{l} s")).join(" | ")
    );
    println!("|---|{}---|---|", "---|".repeat(LENGTHS.len()));
    println!(
        "| ours (default) | {} | (above) | 1.00 |",
        ours.iter()
            .map(|ms| format!("{ms:.0}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("run_faster_whisper.py");
    for compute in ["int8", "float32"] {
        let output = std::process::Command::new(python)
            .arg(&script)
            .arg(&model)
            .args([compute, "2", "5"])
            .args(&files)
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "faster-whisper failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let (mut errors, mut words) = (0, 0);
        for (clip, line) in clips.iter().zip(&lines) {
            let (e, w) = winnerr_models::text::word_errors(
                &clip.reference,
                line["text"].as_str().unwrap_or(""),
            );
            errors += e;
            words += w;
        }
        let times: Vec<f64> = lines[clips.len()..]
            .iter()
            .map(|l| l["ms"].as_f64().unwrap_or(f64::NAN))
            .collect();
        println!(
            "| faster-whisper {compute} | {} | {:.1}% | {:.2} |",
            times
                .iter()
                .map(|ms| format!("{ms:.0}"))
                .collect::<Vec<_>>()
                .join(" | "),
            100.0 * errors as f64 / words.max(1) as f64,
            ours[1] / times[1]
        );
    }
    std::fs::remove_dir_all(&tmp).ok();
    Ok(())
}

fn runs(full: bool) -> usize {
    if full { 5 } else { 1 }
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
}

/// `seconds` of speech: the development clips back to back (0.2 s apart), cut to length.
fn utterance(clips: &[Vec<f32>], seconds: f32) -> Vec<f32> {
    let want = (seconds * 16_000.0) as usize;
    let mut out = Vec::with_capacity(want);
    for clip in clips.iter().cycle() {
        out.extend_from_slice(clip);
        out.extend(std::iter::repeat_n(0.0, 3_200));
        if out.len() >= want {
            break;
        }
    }
    out.truncate(want);
    out
}

fn median_ms(
    whisper: &Whisper,
    audio: &[f32],
    options: &DecodeOptions,
    runs: usize,
) -> anyhow::Result<f64> {
    whisper.transcribe(audio, options)?; // warm caches and the allocator
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        whisper.transcribe(audio, options)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(percentile(&times, 0.5))
}
