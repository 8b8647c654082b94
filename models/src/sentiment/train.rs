//! Fine-tuning MiniLM's last layers with the classifier head, with Candle
//! (`winnerr models train-sentiment`): the frozen trunk runs once over every training sentence,
//! then a few epochs train the top layers and the head with a cross entropy (class-weighted if
//! asked) and AdamW, the learning rates warming up linearly over the first steps and decaying
//! linearly to zero. Deterministic: fixed split, fixed batch order and initialization from `seed`.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};

use super::data::{RatedSentence, Split};
use super::{BertLayer, MINILM_LAYERS, SentenceEncoder, SentimentHead, TrunkOutput};
use crate::error::{ModelError, Result};

/// Training settings; the defaults produced the committed file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainOptions {
    /// MiniLM's last layers that are fine-tuned (1–6); the others stay frozen.
    pub tuned_layers: usize,
    pub epochs: usize,
    pub batch: usize,
    pub layer_learning_rate: f64,
    pub head_learning_rate: f64,
    pub weight_decay: f64,
    /// Share of the steps over which the learning rates rise from zero (then fall linearly).
    pub warmup: f64,
    /// Weigh each class by the inverse of its frequency (favours recall of rare classes over
    /// accuracy).
    pub class_weighted: bool,
    pub seed: u64,
    /// Train only on clear cases (borderline ratings near a cut-off are label noise).
    pub clear_only: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            tuned_layers: 6,
            epochs: 2,
            batch: 32,
            layer_learning_rate: 1e-4,
            head_learning_rate: 1e-3,
            weight_decay: 1e-2,
            warmup: 0.06,
            class_weighted: false,
            seed: 7,
            clear_only: true,
        }
    }
}

struct Batch {
    trunk: TrunkOutput,
    labels: Tensor,
    weights: Tensor,
}

/// Fine-tunes on the train split and writes the tuned layers and head to `out` (f16).
/// Returns how many sentences it trained on.
pub fn train(
    minilm_dir: &Path,
    sentences: &[RatedSentence],
    options: &TrainOptions,
    out: &Path,
) -> Result<usize> {
    // The GPU when built with `cuda` and one is present: Candle's CPU training does not scale
    // past a few threads.
    let device = crate::device();
    let mut train: Vec<(&str, u32)> = sentences
        .iter()
        .filter(|s| s.split() == Split::Train)
        .filter_map(|s| {
            let label = if options.clear_only {
                s.clear_label()?
            } else {
                s.label
            };
            Some((s.text.as_str(), label.index() as u32))
        })
        .collect();
    if train.is_empty() {
        return Err(ModelError::Input("no training sentences".into()));
    }
    // Batches of similar length waste little on padding.
    train.sort_by_key(|(t, _)| t.len());
    let mut counts = [0usize; 3];
    train.iter().for_each(|&(_, l)| counts[l as usize] += 1);
    let class_weight = |l: u32| {
        if options.class_weighted {
            train.len() as f32 / (3.0 * counts[l as usize].max(1) as f32)
        } else {
            1.0
        }
    };

    let encoder = SentenceEncoder::load(minilm_dir, &device, None, options.tuned_layers)?;
    tracing::info!(
        sentences = train.len(),
        "running the frozen layers over the training sentences"
    );
    let batches = train
        .chunks(options.batch)
        .map(|chunk| {
            let texts: Vec<&str> = chunk.iter().map(|(t, _)| *t).collect();
            let labels: Vec<u32> = chunk.iter().map(|&(_, l)| l).collect();
            let weights: Vec<f32> = labels.iter().map(|&l| class_weight(l)).collect();
            Ok(Batch {
                trunk: encoder.trunk(&texts)?,
                labels: Tensor::new(labels.as_slice(), &device)?,
                weights: Tensor::new(weights.as_slice(), &device)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    // Trainable copies of MiniLM's last layers, and a freshly initialized head.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let layers = (MINILM_LAYERS - options.tuned_layers..MINILM_LAYERS)
        .map(|i| BertLayer::load(vb.pp(format!("layer.{i}")), true))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let head = SentimentHead::load(vb.clone())?;
    let original = candle_core::safetensors::load(minilm_dir.join("model.safetensors"), &device)?;
    let mut rng = SplitMix(options.seed);
    {
        let vars = varmap.data().lock().expect("varmap lock");
        for (name, var) in vars.iter() {
            let value = if let Some(rest) = name.strip_prefix("layer.") {
                let key = format!("encoder.layer.{rest}");
                let t = original
                    .get(&key)
                    .or_else(|| original.get(&format!("bert.{key}")));
                t.ok_or_else(|| ModelError::Input(format!("MiniLM has no {key}")))?
                    .to_dtype(DType::F32)?
            } else if name.ends_with(".weight") {
                let (rows, cols) = var.dims2()?;
                let bound = (6.0 / (rows + cols) as f64).sqrt();
                let values: Vec<f32> = (0..rows * cols)
                    .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                    .collect();
                Tensor::from_vec(values, (rows, cols), &device)?
            } else {
                var.zeros_like()?
            };
            var.set(&value)?;
        }
    }
    let (layer_vars, head_vars): (Vec<_>, Vec<_>) = {
        let vars = varmap.data().lock().expect("varmap lock");
        let mut named: Vec<_> = vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
            .into_iter()
            .partition(|(n, _)| n.starts_with("layer."))
    };
    let params = |lr: f64| ParamsAdamW {
        lr,
        weight_decay: options.weight_decay,
        ..Default::default()
    };
    let mut layer_opt = AdamW::new(
        layer_vars.into_iter().map(|(_, v)| v).collect(),
        params(options.layer_learning_rate),
    )?;
    let mut head_opt = AdamW::new(
        head_vars.into_iter().map(|(_, v)| v).collect(),
        params(options.head_learning_rate),
    )?;

    let mut order: Vec<usize> = (0..batches.len()).collect();
    let steps = (options.epochs * batches.len()).max(1);
    let warmup = ((steps as f64 * options.warmup).ceil() as usize).max(1);
    let mut step = 0usize;
    for epoch in 0..options.epochs {
        // Fisher–Yates with the seeded generator.
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_f64() * (i + 1) as f64) as usize % (i + 1));
        }
        let (mut total, mut seen) = (0f64, 0usize);
        for (n, &b) in order.iter().enumerate() {
            let batch = &batches[b];
            let scale = learning_rate_scale(step, warmup, steps);
            layer_opt.set_learning_rate(options.layer_learning_rate * scale);
            head_opt.set_learning_rate(options.head_learning_rate * scale);
            step += 1;
            let embeddings = SentenceEncoder::top(&layers, &batch.trunk)?;
            let logp = candle_nn::ops::log_softmax(&head.logits(&embeddings)?, D::Minus1)?;
            let picked = logp.gather(&batch.labels.unsqueeze(1)?, 1)?.squeeze(1)?;
            let loss = (picked * &batch.weights)?.mean_all()?.neg()?;
            let grads = loss.backward()?;
            layer_opt.step(&grads)?;
            head_opt.step(&grads)?;
            total += f64::from(loss.to_scalar::<f32>()?);
            seen += 1;
            if n % 100 == 0 {
                tracing::info!(
                    epoch,
                    batch = n,
                    of = batches.len(),
                    loss = total / seen as f64,
                    "fine-tuning"
                );
            }
        }
        tracing::info!(epoch, loss = total / seen.max(1) as f64, "epoch done");
        // Written after every epoch: a run stopped early leaves its last finished epoch.
        save(&varmap, out)?;
    }
    Ok(train.len())
}

/// The trained layers and head, as f16.
fn save(varmap: &VarMap, out: &Path) -> Result<()> {
    let tensors: std::collections::HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(n, v)| {
            let tensor = v.as_tensor().to_dtype(DType::F16)?;
            Ok((n.clone(), tensor.to_device(&Device::Cpu)?))
        })
        .collect::<candle_core::Result<_>>()?;
    candle_core::safetensors::save(&tensors, out)?;
    Ok(())
}

/// The learning rate's factor at `step` of `steps`: rising linearly to 1 over `warmup` steps,
/// then falling linearly to 0 at the last step.
fn learning_rate_scale(step: usize, warmup: usize, steps: usize) -> f64 {
    if step < warmup {
        (step + 1) as f64 / warmup as f64
    } else {
        (steps - step) as f64 / (steps - warmup).max(1) as f64
    }
}

/// A small deterministic generator for initialization and batch order (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::learning_rate_scale;

    #[test]
    fn the_learning_rate_warms_up_then_decays_to_zero() {
        let scales: Vec<f64> = (0..10).map(|s| learning_rate_scale(s, 2, 10)).collect();
        assert_eq!(scales[0], 0.5);
        assert_eq!(scales[1], 1.0);
        assert_eq!(scales[2], 1.0);
        assert!(scales[2..].windows(2).all(|w| w[1] < w[0]));
        assert_eq!(scales[9], 1.0 / 8.0);
    }
}
