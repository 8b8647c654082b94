//! Helpers shared by the model tests.
#![allow(dead_code)] // each test binary uses some of these

use candle_core::Tensor;

/// `dir`, once `file` is in it: the model tests need `make models` to have run.
pub fn fetched(dir: std::path::PathBuf, file: &str) -> std::path::PathBuf {
    assert!(
        dir.join(file).exists(),
        "{} is missing: run `make models`",
        dir.display()
    );
    dir
}

/// The samples of a committed 16-bit WAV file, `clip` relative to the repository, as f32.
pub fn samples(clip: &str) -> Vec<f32> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(clip);
    let mut reader = hound::WavReader::open(&path).unwrap();
    reader
        .samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect()
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
