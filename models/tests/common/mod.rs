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
