//! Trains the sentiment file as `winnerr models train-sentiment` does, on the device
//! `winnerr_models::device()` picks (the GPU when built with `--features cuda`), then measures it on
//! the held-out clear cases, so a GPU run can be compared with the committed CPU one.
//!
//! `cargo run -p winnerr-models --features cuda --example train_sentiment -- DATA_DIR OUT`

use std::path::PathBuf;
use std::time::Instant;

use winnerr_models::sentiment::data::{self, Split};
use winnerr_models::sentiment::train::{self, TrainOptions};
use winnerr_models::{ModelDir, SentimentModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data_dir, out] = &args[..] else {
        return Err("usage: train_sentiment DATA_DIR OUT".into());
    };
    let sentences = data::load_dir(&PathBuf::from(data_dir))?;
    let dir = ModelDir::from_env();
    let device = winnerr_models::device();
    let options = TrainOptions::default();
    println!("training on {device:?} with {options:?}");
    let started = Instant::now();
    let trained = train::train(&dir.minilm(), &sentences, &options, &PathBuf::from(out))?;
    println!(
        "trained on {trained} sentences in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let model = SentimentModel::load(&dir.minilm(), &PathBuf::from(out), &device)?;
    let clear: Vec<_> = sentences
        .iter()
        .filter(|s| s.split() == Split::HeldOut)
        .filter_map(|s| Some((s.text.as_str(), s.clear_label()?)))
        .collect();
    let started = Instant::now();
    let mut right = 0;
    for batch in clear.chunks(64) {
        let texts: Vec<&str> = batch.iter().map(|(t, _)| *t).collect();
        let predicted = model.classify(&texts)?;
        right += batch
            .iter()
            .zip(predicted)
            .filter(|((_, truth), p)| p.label == *truth)
            .count();
    }
    println!(
        "held-out clear cases: {right} of {} right ({:.3}), classified in {:.1} s",
        clear.len(),
        right as f64 / clear.len() as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
