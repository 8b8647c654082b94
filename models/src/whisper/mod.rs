//! Whisper speech-to-text: load a converted model folder and transcribe 16 kHz audio.

mod decode;
pub mod mel;
pub mod model;
pub mod numbers;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

pub use decode::{DecodeOptions, KeytermBonus, Rejected, Segment, Transcript, Window};
use mel::MelSpectrogram;
use model::WhisperModel;

use crate::error::{ModelError, Result};

/// The architecture, in the field names of `candle_transformers::models::whisper::Config` so
/// either implementation loads the same folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhisperConfig {
    pub num_mel_bins: usize,
    pub max_source_positions: usize,
    pub d_model: usize,
    pub encoder_attention_heads: usize,
    pub encoder_layers: usize,
    pub vocab_size: usize,
    pub max_target_positions: usize,
    pub decoder_attention_heads: usize,
    pub decoder_layers: usize,
}

/// Token ids that steer decoding, read from the tokenizer and the CTranslate2 config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpecialTokens {
    pub sot: u32,
    pub eot: u32,
    pub transcribe: u32,
    pub no_timestamps: u32,
    pub no_speech: u32,
    pub timestamp_begin: u32,
    /// Tokens never produced (punctuation-like noise Whisper was trained to avoid).
    pub suppress: Vec<u32>,
    /// Tokens not allowed as the first sampled token (a bare space, end of text).
    pub suppress_at_begin: Vec<u32>,
    /// Set for multilingual models: the prompt gets `<|en|>` after the start token.
    pub english: Option<u32>,
}

/// The files of one converted Whisper model.
pub struct WhisperFiles {
    pub dir: PathBuf,
}

impl WhisperFiles {
    pub const WEIGHTS: &'static str = "model.safetensors";
    pub const CONFIG: &'static str = "config.json";
    pub const TOKENS: &'static str = "special_tokens.json";
    pub const TOKENIZER: &'static str = "tokenizer.json";

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// A loaded Whisper model with its tokenizer and mel filters; shared by all transcriptions.
pub struct Whisper {
    model: WhisperModel,
    tokenizer: tokenizers::Tokenizer,
    mel: MelSpectrogram,
    tokens: SpecialTokens,
    /// `<|startofprev|>`: what a previous-text prompt starts with.
    start_of_prev: u32,
    name: String,
}

/// Words decoding should expect: given to Whisper as its previous-text prompt
/// (`<|startofprev|>` and the words), after which the model spells names and terms it hears the
/// way the prompt spells them, and as token sequences whose next token gets a bounded bonus
/// while decoding (see [`DecodeOptions::keyterm_bonus`]). Empty: no words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompt {
    tokens: Vec<u32>,
    /// Each term's tokens as it is written inside a sentence (after a space).
    terms: Vec<Vec<u32>>,
}

impl Prompt {
    /// Whisper's limit on a prompt: half its text context, less one.
    pub const MAX_TOKENS: usize = 223;

    /// The tokens that go before `<|startoftranscript|>` (none for an empty prompt).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Each term's tokens as written inside a sentence.
    pub fn terms(&self) -> &[Vec<u32>] {
        &self.terms
    }
}

impl Whisper {
    /// Loads `dir` (as written by `winnerr models fetch`) and the mel filters at `mel_filters`.
    pub fn load(dir: &Path, mel_filters: &Path, device: &Device) -> Result<Self> {
        let files = WhisperFiles {
            dir: dir.to_path_buf(),
        };
        let config: WhisperConfig = read_json(&files.path(WhisperFiles::CONFIG), "Whisper config")?;
        let tokens: SpecialTokens =
            read_json(&files.path(WhisperFiles::TOKENS), "special token list")?;
        let weights = files.path(WhisperFiles::WEIGHTS);
        if !weights.exists() {
            return Err(ModelError::Missing { path: weights });
        }
        // Safety: the file is mapped read-only and not changed while the model lives; a
        // truncated or corrupt file is reported by the safetensors header check.
        let vb = unsafe {
            candle_nn::VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device)
        }
        .map_err(|e| ModelError::corrupt(&weights, "safetensors file", e))?;
        let model = WhisperModel::load(vb, config.clone())
            .map_err(|e| ModelError::corrupt(&weights, "Whisper weight file", e))?;
        let tokenizer_path = files.path(WhisperFiles::TOKENIZER);
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            ModelError::Tokenizer {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            }
        })?;
        let start_of_prev =
            tokenizer
                .token_to_id("<|startofprev|>")
                .ok_or_else(|| ModelError::Tokenizer {
                    path: tokenizer_path,
                    reason: "has no <|startofprev|>".into(),
                })?;
        let mel = MelSpectrogram::load(mel_filters, config.num_mel_bins)?;
        let name = dir
            .file_name()
            .map_or_else(|| "whisper".into(), |n| n.to_string_lossy().into_owned());
        Ok(Self {
            model,
            tokenizer,
            mel,
            tokens,
            start_of_prev,
            name,
        })
    }

    /// Whisper `name` (`tiny.en`) as `winnerr models fetch` wrote it into `dir`, with its mel
    /// filters, on the default device.
    pub fn open(dir: &crate::ModelDir, name: &str) -> Result<Self> {
        Self::load(&dir.whisper(name), &dir.mel_filters(), &crate::device())
    }

    /// The model folder's name, e.g. `whisper-tiny.en`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &WhisperConfig {
        &self.model.config
    }

    /// Transcribes mono 16 kHz samples in [-1, 1]. Audio longer than 30 s is cut into 30 s windows.
    pub fn transcribe(&self, samples: &[f32], options: &DecodeOptions) -> Result<Transcript> {
        self.transcribe_with(samples, options, &Prompt::default())
    }

    /// [`Whisper::transcribe`] expecting the words of `prompt` (see [`Whisper::keyterm_prompt`]).
    pub fn transcribe_with(
        &self,
        samples: &[f32],
        options: &DecodeOptions,
        prompt: &Prompt,
    ) -> Result<Transcript> {
        let transcript = decode::transcribe(self, samples, options, prompt)?;
        crate::metrics::transcribed(&self.name, &transcript);
        Ok(transcript)
    }

    /// The words of `terms` (names, places, the trade's words), most important first: as many
    /// whole terms as fit in `prompt_tokens` (at most [`Prompt::MAX_TOKENS`]) go into the prompt,
    /// written as a comma-separated list, and every term gets the decoding bonus. Blank terms
    /// are skipped; no terms give an empty prompt.
    pub fn keyterm_prompt<S: AsRef<str>>(
        &self,
        terms: &[S],
        prompt_tokens: usize,
    ) -> Result<Prompt> {
        let limit = prompt_tokens.min(Prompt::MAX_TOKENS);
        // ", B" is "," and " B": words are never merged with the punctuation before them.
        let comma = self.tokenize(",")?;
        let mut tokens = vec![self.start_of_prev];
        let mut sequences = Vec::new();
        let mut full = false;
        for term in terms
            .iter()
            .map(|t| t.as_ref().trim())
            .filter(|t| !t.is_empty())
        {
            let ids = self.tokenize(&format!(" {term}"))?;
            let separator: &[u32] = if tokens.len() == 1 { &[] } else { &comma };
            if !full && tokens.len() + separator.len() + ids.len() <= limit {
                tokens.extend(separator);
                tokens.extend(&ids);
            } else {
                full = true;
            }
            sequences.push(ids);
        }
        if tokens.len() == 1 {
            tokens.clear();
        }
        Ok(Prompt {
            tokens,
            terms: sequences,
        })
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenizer {
                path: self.name.clone().into(),
                reason: e.to_string(),
            })
    }

    /// Decodes token ids to text, leaving out special tokens.
    pub fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer {
                path: self.name.clone().into(),
                reason: e.to_string(),
            })
    }

    fn mel_tensor(&self, samples: &[f32], frames: usize, compute_padding: bool) -> Result<Tensor> {
        let mel = self.mel.compute(samples, frames, compute_padding);
        Ok(Tensor::from_vec(
            mel,
            (1, self.mel.n_mels(), frames),
            self.model.device(),
        )?)
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::corrupt(path, what, e))
}
