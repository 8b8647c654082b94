//! Transcribes 16 kHz WAV files with Whisper on the CPU and on the device `winnerr_models::device()`
//! picks (the first CUDA GPU when built with `--features cuda`), and prints each transcript and
//! the median time of three runs on both, so the GPU path is checked against the CPU's.
//!
//! `cargo run -p winnerr-models --features cuda --example gpu_check -- [--model tiny.en] a.wav …`

use std::time::Instant;

use winnerr_models::{DecodeOptions, Device, ModelDir, Whisper};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut model = "tiny.en".to_string();
    if args.first().is_some_and(|a| a == "--model") && args.len() > 1 {
        model = args.remove(1);
        args.remove(0);
    }
    let clips = args
        .iter()
        .map(|path| {
            let mut reader = hound::WavReader::open(path)?;
            if reader.spec().sample_rate != 16_000 || reader.spec().channels != 1 {
                return Err(format!("{path}: expected 16 kHz mono").into());
            }
            let audio = reader
                .samples::<i16>()
                .map(|s| s.map(|s| f32::from(s) / 32768.0))
                .collect::<Result<Vec<f32>, _>>()?;
            Ok((path.clone(), audio))
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let dir = ModelDir::from_env();
    let accelerated = winnerr_models::device();
    println!("device: {accelerated:?}");
    let mut transcripts: Vec<Vec<String>> = Vec::new();
    for device in [Device::Cpu, accelerated] {
        let started = Instant::now();
        let whisper = Whisper::load(&dir.whisper(&model), &dir.mel_filters(), &device)?;
        println!("\n{model} on {device:?}: loaded in {:.0} ms", ms(started));
        let options = DecodeOptions::default();
        whisper.transcribe(&clips[0].1, &options)?; // warm-up
        let mut texts = Vec::new();
        for (path, audio) in &clips {
            let mut times = Vec::new();
            let mut text = String::new();
            for _ in 0..3 {
                let started = Instant::now();
                text = whisper.transcribe(audio, &options)?.text;
                times.push(ms(started));
            }
            times.sort_by(f64::total_cmp);
            println!(
                "  {:>5.2} s audio  {:>7.1} ms  {path}: {text}",
                audio.len() as f64 / 16_000.0,
                times[1]
            );
            texts.push(text);
        }
        transcripts.push(texts);
    }
    let same = transcripts[0] == transcripts[1];
    println!("\ntranscripts identical on both devices: {same}");
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
