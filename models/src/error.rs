//! The models crate's error type: every failure names the file or step it came from.

use std::path::PathBuf;

/// What can go wrong fetching, converting, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model file {path} is missing; run `make models` (or `winnerr models fetch`) first")]
    Missing { path: PathBuf },
    #[error("{path} is not a valid {what}: {reason}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("checksum of {path} is {actual}, expected {expected} (a changed or damaged download)")]
    Checksum {
        path: PathBuf,
        expected: &'static str,
        actual: String,
    },
    #[error("fetching {what} failed: {reason}")]
    Fetch { what: String, reason: String },
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("bad input: {0}")]
    Input(String),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    /// An I/O error on `path`; a missing file gets the message that says how to fetch it.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelError::Missing { path }
        } else {
            ModelError::Io { path, source }
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        what: &'static str,
        reason: impl ToString,
    ) -> Self {
        ModelError::Corrupt {
            path: path.into(),
            what,
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
