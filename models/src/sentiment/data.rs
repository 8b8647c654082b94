//! Human-rated sentences (`text, label, score, source_id` TSV files) and their fixed split.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::SentimentLabel;
use crate::error::{ModelError, Result};

/// One sentence with the mean of its human ratings (-4..+4).
#[derive(Debug, Clone)]
pub struct RatedSentence {
    pub text: String,
    pub label: SentimentLabel,
    pub score: f32,
    pub source_id: String,
}

/// Which side of the fixed split a sentence is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    /// One sentence in five, chosen by a hash of its source id: never trained on.
    HeldOut,
}

impl RatedSentence {
    pub fn split(&self) -> Split {
        let hash = Sha256::digest(self.source_id.as_bytes());
        if hash[0] % 5 == 0 {
            Split::HeldOut
        } else {
            Split::Train
        }
    }

    /// The label of a clear case (raters agreed on a direction: |score| ≥ 1.0, or neutral within
    /// 0.3 of zero); `None` for borderline ratings near a label cut-off.
    pub fn clear_label(&self) -> Option<SentimentLabel> {
        if self.score >= 1.0 {
            Some(SentimentLabel::Positive)
        } else if self.score <= -1.0 {
            Some(SentimentLabel::Negative)
        } else if self.score.abs() <= 0.3 {
            Some(SentimentLabel::Neutral)
        } else {
            None
        }
    }
}

/// Every `*.tsv` in `dir`, in file-name order.
pub fn load_dir(dir: &Path) -> Result<Vec<RatedSentence>> {
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
        .collect();
    files.sort();
    let mut sentences = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| ModelError::io(&file, e))?;
        for (n, line) in text.lines().enumerate().skip(1) {
            let fields: Vec<&str> = line.split('\t').collect();
            let bad = |why: &str| {
                ModelError::corrupt(
                    &file,
                    "rated sentence file",
                    format!("line {}: {why}", n + 1),
                )
            };
            let [text, label, score, source_id] = fields[..] else {
                return Err(bad("expected 4 tab-separated fields"));
            };
            sentences.push(RatedSentence {
                text: text.to_string(),
                label: SentimentLabel::parse(label).ok_or_else(|| bad("unknown label"))?,
                score: score.parse().map_err(|_| bad("score is not a number"))?,
                source_id: source_id.to_string(),
            });
        }
    }
    Ok(sentences)
}
