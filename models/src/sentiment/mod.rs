//! Three-class sentiment (negative, neutral, positive): MiniLM sentence embeddings (mean-pooled,
//! L2-normalized, as sentence-transformers computes them) and a small classifier head trained
//! with Candle on human-rated sentences (`winnerr models train-sentiment`).
//!
//! What training changed (MiniLM's last layers and the head, f16) is a committed file
//! (`models/assets/sentiment-head.safetensors`) applied over the downloaded all-MiniLM-L6-v2; the
//! file says by its `layer.{i}` names which layers it replaces.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::error::{ModelError, Result};

pub mod data;
pub mod train;

/// The fine-tuned layers and the head, shipped with the code.
pub const HEAD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/sentiment-head.safetensors"
);
/// Tokens per sentence; an utterance longer than this is judged on its start.
const MAX_TOKENS: usize = 128;
/// Hidden units of the head.
pub const HIDDEN: usize = 128;

/// The three classes, in the order of the head's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SentimentLabel {
    Negative,
    Neutral,
    Positive,
}

impl SentimentLabel {
    pub const ALL: [SentimentLabel; 3] = [Self::Negative, Self::Neutral, Self::Positive];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Negative => "negative",
            Self::Neutral => "neutral",
            Self::Positive => "positive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// The sentiment of one text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sentiment {
    pub label: SentimentLabel,
    /// Probabilities of negative, neutral, positive (they sum to 1).
    pub probabilities: [f32; 3],
}

impl Sentiment {
    /// A score in [-1, 1]: P(positive) − P(negative).
    pub fn score(&self) -> f32 {
        self.probabilities[2] - self.probabilities[0]
    }
}

/// MiniLM's encoder layers; fine-tuning changes the last few, the others stay frozen.
pub const MINILM_LAYERS: usize = 6;
const HEADS: usize = 12;
const LAYER_NORM_EPS: f32 = 1e-12;

/// One BERT encoder layer whose weights can be trained: Candle's fused layer norm has no backward
/// pass (gradients would silently stop there), so a layer built for training normalizes with
/// differentiable tensor operations, and one built for inference with the fused kernel.
pub struct BertLayer {
    differentiable: bool,
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: (Tensor, Tensor),
    intermediate: Linear,
    output: Linear,
    output_norm: (Tensor, Tensor),
}

impl BertLayer {
    /// Loads `encoder.layer.{i}` names (as in MiniLM's file) from `vb`; `differentiable` for
    /// training.
    pub fn load(vb: VarBuilder, differentiable: bool) -> candle_core::Result<Self> {
        let a = vb.pp("attention");
        let norm = |vb: VarBuilder| -> candle_core::Result<(Tensor, Tensor)> {
            Ok((vb.get(384, "weight")?, vb.get(384, "bias")?))
        };
        Ok(Self {
            differentiable,
            query: candle_nn::linear(384, 384, a.pp("self.query"))?,
            key: candle_nn::linear(384, 384, a.pp("self.key"))?,
            value: candle_nn::linear(384, 384, a.pp("self.value"))?,
            attention_out: candle_nn::linear(384, 384, a.pp("output.dense"))?,
            attention_norm: norm(a.pp("output.LayerNorm"))?,
            intermediate: candle_nn::linear(384, 1536, vb.pp("intermediate.dense"))?,
            output: candle_nn::linear(1536, 384, vb.pp("output.dense"))?,
            output_norm: norm(vb.pp("output.LayerNorm"))?,
        })
    }

    /// `x` [batch, tokens, 384]; `mask` additive [batch, 1, 1, tokens].
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let heads = |y: Tensor| {
            y.reshape((b, t, HEADS, 384 / HEADS))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.query.forward(x)?)?;
        let k = heads(self.key.forward(x)?)?;
        let v = heads(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / ((384 / HEADS) as f64).sqrt())?.broadcast_add(mask)?;
        let weights = if self.differentiable {
            candle_nn::ops::softmax(&scores, candle_core::D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let context = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, t, 384))?;
        let x = self.norm(
            &(x + self.attention_out.forward(&context)?)?,
            &self.attention_norm,
        )?;
        let h = self.intermediate.forward(&x)?;
        // Training needs the gradient, which only Candle's own GELU has.
        let h = if self.differentiable {
            h.gelu_erf()?
        } else {
            crate::ops::gelu(&h)?
        };
        let h = self.output.forward(&h)?;
        self.norm(&(x + h)?, &self.output_norm)
    }

    fn norm(&self, x: &Tensor, (w, bias): &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        if self.differentiable {
            candle_nn::ops::layer_norm_slow(x, w, bias, LAYER_NORM_EPS)
        } else {
            candle_nn::ops::layer_norm(x, w, bias, LAYER_NORM_EPS)
        }
    }
}

/// Token ids turned into the frozen trunk's output: hidden states and the attention mask.
pub struct TrunkOutput {
    pub hidden: Tensor,
    /// 1 for real tokens, 0 for padding: [batch, tokens].
    pub mask: Tensor,
}

/// MiniLM with its tokenizer: text to normalized 384-dimensional embeddings. The frozen first
/// layers run as Candle's BERT; the tuned last ones are [`BertLayer`]s, fine-tuned or original.
pub struct SentenceEncoder {
    trunk: BertModel,
    tuned: Vec<BertLayer>,
    tokenizer: Tokenizer,
    device: Device,
}

impl SentenceEncoder {
    /// Loads the folder `winnerr models fetch` writes (`model.safetensors`, `config.json`,
    /// `tokenizer.json`). The last `tuned_layers` layers run as [`BertLayer`]s: from `tuned`
    /// (fine-tuned, named `layer.{i}.…`), or MiniLM's own with `None`.
    pub fn load(
        dir: &Path,
        device: &Device,
        tuned: Option<(VarBuilder, &Path)>,
        tuned_layers: usize,
    ) -> Result<Self> {
        if !(1..=MINILM_LAYERS).contains(&tuned_layers) {
            return Err(ModelError::Input(format!(
                "MiniLM has {MINILM_LAYERS} layers: cannot tune {tuned_layers}"
            )));
        }
        let mut config: BertConfig =
            crate::whisper::read_json(&dir.join("config.json"), "BERT config")?;
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(ModelError::Missing { path: weights });
        }
        config.num_hidden_layers = MINILM_LAYERS - tuned_layers;
        // Safety: mapped read-only; the safetensors header is checked on open.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .map_err(|e| ModelError::corrupt(&weights, "safetensors file", e))?;
        let bad = |e: candle_core::Error| ModelError::corrupt(&weights, "MiniLM weight file", e);
        let trunk = BertModel::load(vb.clone(), &config).map_err(bad)?;
        let (source, prefix, file, what) = match tuned {
            Some((tuned, file)) => (tuned, "layer", file, "fine-tuned sentiment file"),
            None => (vb, "encoder.layer", weights.as_path(), "MiniLM weight file"),
        };
        let tuned = (MINILM_LAYERS - tuned_layers..MINILM_LAYERS)
            .map(|i| BertLayer::load(source.pp(format!("{prefix}.{i}")), false))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(|e| ModelError::corrupt(file, what, e))?;
        let path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| ModelError::Tokenizer {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| ModelError::Tokenizer {
                path,
                reason: e.to_string(),
            })?;
        Ok(Self {
            trunk,
            tuned,
            tokenizer,
            device: device.clone(),
        })
    }

    /// The frozen first layers over a batch of texts.
    pub fn trunk(&self, texts: &[&str]) -> Result<TrunkOutput> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ModelError::Input(format!("tokenizing: {e}")))?;
        let ids: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &self.device))
            .collect::<candle_core::Result<_>>()?;
        let mask: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
            .collect::<candle_core::Result<_>>()?;
        let ids = Tensor::stack(&ids, 0)?;
        let mask = Tensor::stack(&mask, 0)?;
        let hidden = self.trunk.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
        Ok(TrunkOutput {
            hidden,
            mask: mask.to_dtype(DType::F32)?,
        })
    }

    /// The tuned layers, mean pooling over real tokens and L2 normalization: [batch, 384].
    pub fn top(layers: &[BertLayer], trunk: &TrunkOutput) -> candle_core::Result<Tensor> {
        let additive = ((trunk.mask.ones_like()? - &trunk.mask)? * -10_000.0)?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        let mut x = trunk.hidden.clone();
        for layer in layers {
            x = layer.forward(&x, &additive)?;
        }
        let mask = trunk.mask.unsqueeze(2)?;
        let pooled = x
            .broadcast_mul(&mask)?
            .sum(1)?
            .broadcast_div(&mask.sum(1)?)?;
        let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?;
        pooled.broadcast_div(&norm)
    }

    /// Embeddings [texts, 384], mean-pooled over real tokens and L2-normalized.
    pub fn embed(&self, texts: &[&str]) -> Result<Tensor> {
        let trunk = self.trunk(texts)?;
        Ok(Self::top(&self.tuned, &trunk)?)
    }
}

/// The classifier head: embedding → hidden (ReLU) → three logits.
pub struct SentimentHead {
    hidden: Linear,
    out: Linear,
}

impl SentimentHead {
    pub fn load(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            hidden: candle_nn::linear(384, HIDDEN, vb.pp("hidden"))?,
            out: candle_nn::linear(HIDDEN, 3, vb.pp("out"))?,
        })
    }

    /// Logits [n, 3] for embeddings [n, 384].
    pub fn logits(&self, embeddings: &Tensor) -> candle_core::Result<Tensor> {
        self.out.forward(&self.hidden.forward(embeddings)?.relu()?)
    }
}

/// The sentiment model: encoder and head.
pub struct SentimentModel {
    encoder: SentenceEncoder,
    head: SentimentHead,
}

impl SentimentModel {
    /// Loads MiniLM from `minilm_dir` and the head from `head_file` (normally [`HEAD_FILE`]).
    pub fn load(minilm_dir: &Path, head_file: &Path, device: &Device) -> Result<Self> {
        if !head_file.exists() {
            return Err(ModelError::Missing {
                path: head_file.to_path_buf(),
            });
        }
        let tensors = candle_core::safetensors::load(head_file, device)
            .map_err(|e| ModelError::corrupt(head_file, "sentiment head", e))?;
        let tuned_layers = tuned_layers(tensors.keys())
            .map_err(|e| ModelError::corrupt(head_file, "sentiment head", e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let encoder = SentenceEncoder::load(
            minilm_dir,
            device,
            Some((vb.clone(), head_file)),
            tuned_layers,
        )?;
        let head = SentimentHead::load(vb)
            .map_err(|e| ModelError::corrupt(head_file, "sentiment head", e))?;
        Ok(Self { encoder, head })
    }

    /// The default head file path.
    pub fn head_file() -> PathBuf {
        PathBuf::from(HEAD_FILE)
    }

    /// Sentiment of each text, in one pass.
    pub fn classify(&self, texts: &[&str]) -> Result<Vec<Sentiment>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        let embeddings = self.encoder.embed(texts)?;
        let probabilities =
            candle_nn::ops::softmax_last_dim(&self.head.logits(&embeddings)?)?.to_vec2::<f32>()?;
        crate::metrics::classified(started.elapsed().as_secs_f64());
        Ok(probabilities
            .into_iter()
            .map(|p| {
                let probabilities = [p[0], p[1], p[2]];
                let best = (0..3).fold(0, |b, i| {
                    if probabilities[i] > probabilities[b] {
                        i
                    } else {
                        b
                    }
                });
                Sentiment {
                    label: SentimentLabel::ALL[best],
                    probabilities,
                }
            })
            .collect())
    }

    pub fn encoder(&self) -> &SentenceEncoder {
        &self.encoder
    }
}

/// How many last layers a fine-tuned file replaces, from its `layer.{i}.…` names: they must be
/// MiniLM's last ones, without a gap.
fn tuned_layers<'a>(names: impl Iterator<Item = &'a String>) -> std::result::Result<usize, String> {
    let mut layers: Vec<usize> = names
        .filter_map(|n| n.strip_prefix("layer.")?.split('.').next()?.parse().ok())
        .collect();
    layers.sort_unstable();
    layers.dedup();
    let expected: Vec<usize> = match layers.first() {
        Some(&first) if first < MINILM_LAYERS => (first..MINILM_LAYERS).collect(),
        _ => {
            return Err(format!(
                "no tuned layers among MiniLM's {MINILM_LAYERS} ({layers:?})"
            ));
        }
    };
    if layers != expected {
        return Err(format!(
            "tuned layers {layers:?} are not MiniLM's last ones ({expected:?})"
        ));
    }
    Ok(layers.len())
}

#[cfg(test)]
mod tests {
    use super::tuned_layers;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_tuned_layers_are_read_from_the_file_names() {
        let file = names(&[
            "layer.4.output.dense.weight",
            "layer.5.intermediate.dense.bias",
            "hidden.weight",
        ]);
        assert_eq!(tuned_layers(file.iter()), Ok(2));
        let all = names(&[
            "layer.0.x",
            "layer.1.x",
            "layer.2.x",
            "layer.3.x",
            "layer.4.x",
            "layer.5.x",
        ]);
        assert_eq!(tuned_layers(all.iter()), Ok(6));
        assert!(tuned_layers(names(&["hidden.weight"]).iter()).is_err());
        assert!(tuned_layers(names(&["layer.3.x", "layer.5.x"]).iter()).is_err());
        assert!(tuned_layers(names(&["layer.6.x"]).iter()).is_err());
    }
}
