//! Sentiment speed: ms per sentence one at a time (as the speech worker classifies each final)
//! and per sentence in batches of 8 and 32, on utterance-like sentences.
//!
//! `cargo bench -p winnerr-benches --bench sentiment` (models from `make models`).

use std::time::Instant;

use winnerr_benches::{is_bench_run, machine, percentile};
use winnerr_models::{ModelDir, SentimentModel};

const SENTENCES: [&str; 8] = [
    "Hi, this is Sam from Winnerr Realty, thanks for calling about the house on Maple Street.",
    "We love the photos, is it still available?",
    "Honestly the price is too expensive for us and I am really disappointed.",
    "That sounds wonderful, we are pre-approved and our lease ends next month.",
    "Can you send me the inspection report by Friday?",
    "No.",
    "I am not interested anymore, please stop calling me.",
    "Great, see you on Saturday at ten.",
];

fn main() -> anyhow::Result<()> {
    let full = is_bench_run();
    let dir = ModelDir::from_env();
    // WINNERR_SENTIMENT_HEAD: another fine-tuned file to time (an earlier one, say).
    let head = std::env::var_os("WINNERR_SENTIMENT_HEAD")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(SentimentModel::head_file);
    let model = SentimentModel::load(&dir.minilm(), &head, &winnerr_models::device())?;
    let rounds = if full { 20 } else { 1 };
    println!(
        "sentiment: {}; MiniLM-L6 fine-tuned + head ({})",
        machine(),
        head.display()
    );
    println!("| batch | ms per batch (p50) | ms per sentence |");
    println!("|---|---|---|");
    for batch in [1usize, 8, 32] {
        let texts: Vec<&str> = SENTENCES.iter().cycle().take(batch).copied().collect();
        model.classify(&texts)?;
        let mut times = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            model.classify(&texts)?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let p50 = percentile(&times, 0.5);
        println!("| {batch} | {p50:.1} | {:.1} |", p50 / batch as f64);
    }
    Ok(())
}
