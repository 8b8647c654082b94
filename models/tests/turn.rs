//! Smart Turn in Candle (weights dequantized from the int8 file, activations in f32) against
//! onnxruntime's runs of the same ONNX file (`tests/data/smart_turn_reference.json`, made by
//! `tests/data/smart_turn_reference.py` with pipecat's own feature code): within a small tolerance
//! of the same graph with float activations (the same computation), and the same decision at 0.5
//! as the file as shipped (int8 activations) on every committed case.

use winnerr_models::{ModelDir, SmartTurn, turn};

mod common;
use common::{fetched, samples};

/// How far our probabilities may be from onnxruntime's run of the same weights with float
/// activations: the features' float rounding and summation order (measured: at most 0.015).
const TOLERANCE: f32 = 0.03;

#[derive(serde::Deserialize)]
struct Reference {
    clip: String,
    fraction: f64,
    features_mean: f32,
    /// The file as shipped: every activation quantized to 8 bits by onnxruntime.
    probability: f32,
    /// The same weights with float activations.
    float_probability: f32,
}

fn model() -> SmartTurn {
    let dir = ModelDir::from_env();
    fetched(dir.root.clone(), turn::WEIGHTS_FILE);
    SmartTurn::load(
        &dir.smart_turn(),
        &dir.mel_filters(),
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

#[test]
fn end_of_turn_probabilities_match_onnxruntime() {
    let model = model();
    let references: Vec<Reference> =
        serde_json::from_str(include_str!("data/smart_turn_reference.json")).unwrap();
    assert_eq!(references.len(), 16);
    let (mut worst, mut worst_int8) = (0f32, 0f32);
    let mut failures = Vec::new();
    for r in &references {
        let clip = samples(&r.clip);
        let mut audio = clip[..(clip.len() as f64 * r.fraction) as usize].to_vec();
        audio.extend([0.0; 3_200]);
        let features = model.features(&audio);
        let mean = features.iter().sum::<f32>() / features.len() as f32;
        assert!(
            (mean - r.features_mean).abs() < 1e-3,
            "{} at {}: features' mean {mean} against {}",
            r.clip,
            r.fraction,
            r.features_mean
        );
        let p = model.probability(&audio).unwrap();
        let difference = (p - r.float_probability).abs();
        worst = worst.max(difference);
        worst_int8 = worst_int8.max((p - r.probability).abs());
        if difference >= TOLERANCE {
            failures.push(format!(
                "{} at {}: {p} against {} with float activations",
                r.clip, r.fraction, r.float_probability
            ));
        }
        if (p > 0.5) != (r.probability > 0.5) {
            failures.push(format!(
                "{} at {}: {p} decides otherwise than the int8 file's {}",
                r.clip, r.fraction, r.probability
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The cases hold both answers, so the test tells a working model from a constant.
    assert!(references.iter().any(|r| r.probability < 0.1));
    assert!(references.iter().any(|r| r.probability > 0.9));
    eprintln!(
        "largest difference from onnxruntime: {worst:.4} (float activations), \
         {worst_int8:.4} (int8 activations)"
    );
}

#[test]
fn short_long_and_silent_audio_give_probabilities() {
    let model = model();
    for audio in [vec![], vec![0.0; 160], vec![0.0; 16_000 * 20]] {
        let p = model.probability(&audio).unwrap();
        assert!((0.0..=1.0).contains(&p), "{p}");
    }
}
