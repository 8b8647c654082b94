//! Silero VAD in Candle against onnxruntime's probabilities for the same ONNX file
//! (`tests/data/silero_reference.json`, made by `tests/data/silero_reference.py`), on a committed
//! 8 kHz phone clip and a 16 kHz clip: each chunk's probability within a small tolerance, with the
//! state carried across the whole clip.

use winnerr_models::{ModelDir, SileroVad, VadRate, VadState, vad};

mod common;
use common::{fetched, samples};

#[derive(serde::Deserialize)]
struct Reference {
    clip: String,
    rate: u32,
    probabilities: Vec<f32>,
}

fn model() -> SileroVad {
    let dir = fetched(ModelDir::from_env().root, vad::WEIGHTS_FILE);
    SileroVad::load(&dir.join(vad::WEIGHTS_FILE), &candle_core::Device::Cpu).unwrap()
}

#[test]
fn speech_probabilities_match_onnxruntime_at_both_rates() {
    let model = model();
    let text = include_str!("data/silero_reference.json");
    let references: Vec<Reference> = serde_json::from_str(text).unwrap();
    assert_eq!(references.len(), 2);
    for reference in references {
        let rate = VadRate::from_hz(reference.rate).unwrap();
        let audio = samples(&reference.clip);
        let mut state = VadState::new(rate);
        let ours: Vec<f32> = audio
            .chunks_exact(rate.chunk())
            .map(|chunk| model.probability(&mut state, chunk).unwrap())
            .collect();
        assert_eq!(
            ours.len(),
            reference.probabilities.len(),
            "{}",
            reference.clip
        );
        let worst = ours
            .iter()
            .zip(&reference.probabilities)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-3,
            "{}: largest difference {worst}",
            reference.clip
        );
        let speech = ours.iter().filter(|&&p| p > 0.5).count();
        assert!(
            speech > ours.len() / 3,
            "{}: speech is found",
            reference.clip
        );
    }
}

#[test]
fn a_chunk_of_the_wrong_length_is_an_error_not_a_panic() {
    let model = model();
    let mut state = VadState::new(VadRate::Phone8k);
    assert!(model.probability(&mut state, &[0.0; 100]).is_err());
}
