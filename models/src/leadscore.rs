//! The lead-score model: logistic regression over standardized features, trained with Candle.
//!
//! Logistic regression because a score must come with its reasons: the logit is an intercept plus
//! one term per feature (`weight × standardized value`), so each feature's contribution is exact
//! and they add up to the score's logit. Trained by maximum likelihood it is also calibrated: among
//! leads given 30, about 30 in 100 close. The model knows feature names and numbers only; what the
//! features mean belongs to the scoring crate.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// How a model is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainOptions {
    /// Full-batch optimizer steps.
    pub steps: usize,
    pub learning_rate: f64,
    /// L2 penalty on the weights (not the intercept), per example.
    pub l2: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 400,
            learning_rate: 0.05,
            l2: 1e-3,
        }
    }
}

/// A fitted model: what a lead's features are standardized by, and the weights on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadModel {
    /// Names the model and its training data, e.g. `acme-20261125-1`, or `prior-1`.
    pub version: String,
    pub features: Vec<String>,
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub weights: Vec<f32>,
    /// The logit of a lead whose every feature is at the training mean.
    pub intercept: f32,
    /// Examples it was fitted on, and how many of them closed.
    pub examples: usize,
    pub positives: usize,
}

/// A lead's score under a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Probability that the lead closes.
    pub probability: f32,
    /// `intercept + Σ contributions`.
    pub logit: f32,
    /// Per feature, in the model's feature order: its term of the logit.
    pub contributions: Vec<f32>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl LeadModel {
    /// Fits a model to `rows` (one feature vector per example, in `features` order) and whether
    /// each example closed. Deterministic: weights start at zero and every step uses every row.
    pub fn train(
        version: impl Into<String>,
        features: &[&str],
        rows: &[Vec<f32>],
        closed: &[bool],
        options: TrainOptions,
    ) -> Result<LeadModel> {
        let width = features.len();
        if rows.len() != closed.len() || rows.is_empty() {
            return Err(ModelError::Input(format!(
                "{} rows and {} outcomes: need one outcome per row, and at least one row",
                rows.len(),
                closed.len()
            )));
        }
        if let Some(row) = rows.iter().find(|row| row.len() != width) {
            return Err(ModelError::Input(format!(
                "a row has {} features, the model {width}",
                row.len()
            )));
        }
        if rows.iter().flatten().any(|x| !x.is_finite()) {
            return Err(ModelError::Input("a feature value is not finite".into()));
        }
        let n = rows.len() as f32;
        let mean: Vec<f32> = (0..width)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f32>() / n)
            .collect();
        // A constant feature gets scale 1: its standardized value is 0 and it cannot move a score.
        let scale: Vec<f32> = (0..width)
            .map(|j| {
                let var = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f32>() / n;
                if var > 1e-12 { var.sqrt() } else { 1.0 }
            })
            .collect();
        let standardized: Vec<f32> = rows
            .iter()
            .flat_map(|r| {
                (0..width)
                    .map(|j| (r[j] - mean[j]) / scale[j])
                    .collect::<Vec<_>>()
            })
            .collect();
        let device = Device::Cpu;
        let x = Tensor::from_vec(standardized, (rows.len(), width), &device)?;
        let y = Tensor::from_iter(closed.iter().map(|&c| if c { 1f32 } else { 0. }), &device)?
            .reshape((rows.len(), 1))?;
        let weights = Var::zeros((width, 1), DType::F32, &device)?;
        let intercept = Var::zeros((1, 1), DType::F32, &device)?;
        let mut optimizer = AdamW::new(
            vec![weights.clone(), intercept.clone()],
            ParamsAdamW {
                lr: options.learning_rate,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        for _ in 0..options.steps {
            let logits = x
                .matmul(weights.as_tensor())?
                .broadcast_add(intercept.as_tensor())?;
            let likelihood = candle_nn::loss::binary_cross_entropy_with_logit(&logits, &y)?;
            let penalty = (weights.as_tensor().sqr()?.sum_all()? * options.l2)?;
            optimizer.backward_step(&(likelihood + penalty)?)?;
        }
        Ok(LeadModel {
            version: version.into(),
            features: features.iter().map(|f| f.to_string()).collect(),
            mean,
            scale,
            weights: weights.as_tensor().flatten_all()?.to_vec1()?,
            intercept: intercept.as_tensor().flatten_all()?.to_vec1::<f32>()?[0],
            examples: rows.len(),
            positives: closed.iter().filter(|&&c| c).count(),
        })
    }

    /// Scores one lead (`features` in the model's order; a wrong length is an error).
    pub fn score(&self, features: &[f32]) -> Result<Scored> {
        self.check_width(features.len())?;
        let contributions: Vec<f32> = features
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(&self.weights)
            .map(|(((x, mean), scale), w)| w * (x - mean) / scale)
            .collect();
        let logit = self.intercept + contributions.iter().sum::<f32>();
        Ok(Scored {
            probability: sigmoid(logit),
            logit,
            contributions,
        })
    }

    /// Probabilities of many leads at once (rows in the model's feature order), as one Candle
    /// matrix product: how a whole organization is re-scored after retraining.
    pub fn probabilities(&self, rows: &[Vec<f32>], device: &Device) -> Result<Vec<f32>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let width = self.features.len();
        for row in rows {
            self.check_width(row.len())?;
        }
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let x = Tensor::from_vec(flat, (rows.len(), width), device)?;
        let mean = Tensor::from_slice(&self.mean, (1, width), device)?;
        let scale = Tensor::from_slice(&self.scale, (1, width), device)?;
        let weights = Tensor::from_slice(&self.weights, (width, 1), device)?;
        let logits = (x
            .broadcast_sub(&mean)?
            .broadcast_div(&scale)?
            .matmul(&weights)?
            + f64::from(self.intercept))?;
        Ok(candle_nn::ops::sigmoid(&logits)?.flatten_all()?.to_vec1()?)
    }

    /// Each feature's weight per standard deviation of its value: the model's view of how much
    /// each feature matters, comparable across features.
    pub fn standardized_weights(&self) -> &[f32] {
        &self.weights
    }

    /// Reads a model from its JSON form, checking that its vectors agree in length.
    pub fn from_json(json: &str) -> Result<LeadModel> {
        let model: LeadModel = serde_json::from_str(json)
            .map_err(|e| ModelError::Input(format!("lead model JSON: {e}")))?;
        let width = model.features.len();
        if [model.mean.len(), model.scale.len(), model.weights.len()] != [width; 3] {
            return Err(ModelError::Input(
                "lead model JSON: features, mean, scale and weights differ in length".into(),
            ));
        }
        if model.scale.iter().any(|s| *s <= 0.0 || !s.is_finite()) {
            return Err(ModelError::Input(
                "lead model JSON: a scale is not positive".into(),
            ));
        }
        Ok(model)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a model always serializes")
    }

    fn check_width(&self, width: usize) -> Result<()> {
        if width == self.features.len() {
            Ok(())
        } else {
            Err(ModelError::Input(format!(
                "{width} feature values for a model of {} features",
                self.features.len()
            )))
        }
    }
}

/// Area under the ROC curve: the chance that a random closed lead scores above a random lost one
/// (ties count half).
pub fn auc(probabilities: &[f32], closed: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    // Mid-ranks, so tied scores share their rank.
    let mut rank = vec![0f64; order.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && probabilities[order[end + 1]] == probabilities[order[start]]
        {
            end += 1;
        }
        let mid = (start + end) as f64 / 2.0 + 1.0;
        for &i in &order[start..=end] {
            rank[i] = mid;
        }
        start = end + 1;
    }
    let positives = closed.iter().filter(|&&c| c).count() as f64;
    let negatives = closed.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = rank
        .iter()
        .zip(closed)
        .filter(|(_, c)| **c)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Predicted against observed closing rates in ten bins of equal size, lowest scores first:
/// `(mean predicted probability, observed rate, leads)` per bin.
pub fn calibration_deciles(probabilities: &[f32], closed: &[bool]) -> Vec<(f64, f64, usize)> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let n = order.len();
    (0..10)
        .map(|bin| {
            let members = &order[bin * n / 10..(bin + 1) * n / 10];
            let count = members.len().max(1) as f64;
            let predicted = members
                .iter()
                .map(|&i| f64::from(probabilities[i]))
                .sum::<f64>();
            let observed = members.iter().filter(|&&i| closed[i]).count() as f64;
            (predicted / count, observed / count, members.len())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_as_half_and_orders_perfectly_separated_scores_as_one() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), 0.0);
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), 0.5);
    }

    #[test]
    fn contributions_add_up_to_the_logit_and_batch_scores_agree() {
        let rows: Vec<Vec<f32>> = (0..200)
            .map(|i| vec![(i % 7) as f32, (i % 3) as f32 * 2.0, 1.0])
            .collect();
        let closed: Vec<bool> = (0..200).map(|i| (i % 7) + (i % 3) > 4).collect();
        let model = LeadModel::train(
            "t",
            &["a", "b", "constant"],
            &rows,
            &closed,
            TrainOptions::default(),
        )
        .unwrap();
        let batch = model.probabilities(&rows, &Device::Cpu).unwrap();
        for (row, batch) in rows.iter().zip(batch) {
            let scored = model.score(row).unwrap();
            let sum = model.intercept + scored.contributions.iter().sum::<f32>();
            assert!((sum - scored.logit).abs() < 1e-5);
            assert!((scored.probability - batch).abs() < 1e-5);
            // The constant feature never moves a score.
            assert_eq!(scored.contributions[2], 0.0);
        }
        assert!(model.weights[0] > 0.0 && model.weights[1] > 0.0);
        let back = LeadModel::from_json(&model.to_json()).unwrap();
        assert_eq!(back, model);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let err = LeadModel::train(
            "t",
            &["a"],
            &[vec![1.0, 2.0]],
            &[true],
            TrainOptions::default(),
        );
        assert!(err.is_err());
        let err = LeadModel::train(
            "t",
            &["a"],
            &[vec![f32::NAN]],
            &[true],
            TrainOptions::default(),
        );
        assert!(err.is_err());
        let model = LeadModel::train(
            "t",
            &["a"],
            &[vec![1.0], vec![2.0]],
            &[false, true],
            TrainOptions::default(),
        )
        .unwrap();
        assert!(model.score(&[1.0, 2.0]).is_err());
        assert!(LeadModel::from_json(r#"{"version":"x"}"#).is_err());
    }
}
