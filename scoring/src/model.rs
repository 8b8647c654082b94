//! Lead-score models with this crate's features: the global prior, training per organization,
//! and scores explained as the factors that moved them.

use std::sync::{Arc, LazyLock};

use winnerr_events::{LeadScore, ScoreFactor};
use winnerr_models::{LeadModel, TrainOptions};

use crate::features::{FEATURES, WIDTH, names};
use crate::synth;

/// An organization trains its own model once it has at least this many closed deals, and at
/// least [`MIN_OF_EACH`] won and lost; until then it is scored by the [`prior`].
pub const MIN_DEALS: usize = 200;
pub const MIN_OF_EACH: usize = 30;

/// Leads, seed and history end of the synthetic organization that the prior is trained on.
pub const PRIOR_LEADS: usize = 20_000;
pub const PRIOR_SEED: u64 = 20_261_125;
pub const PRIOR_NOW_MS: u64 = 1_800_000_000_000;

/// Factors named in a score's reasons, on each side.
pub const TOP_FACTORS: usize = 3;

const PRIOR_JSON: &str = include_str!("../assets/prior-model.json");

/// The global prior: the model every organization is scored with until it has enough deals of
/// its own. Trained on the synthetic organization ([`train_prior`]) and committed, so every node
/// scores alike and no start-up trains.
pub fn prior() -> Arc<LeadModel> {
    static PRIOR: LazyLock<Arc<LeadModel>> = LazyLock::new(|| {
        let model = LeadModel::from_json(PRIOR_JSON).expect("the committed prior model is valid");
        assert_eq!(
            model.features,
            names(),
            "the committed prior model has other features"
        );
        Arc::new(model)
    });
    PRIOR.clone()
}

/// Trains the prior from scratch (what `winnerr scoring train-prior` writes).
pub fn train_prior() -> Result<LeadModel, winnerr_models::ModelError> {
    let org = synth::generate(PRIOR_SEED, PRIOR_LEADS, PRIOR_NOW_MS);
    train("prior-1", &org.rows(), &org.outcomes())
}

/// Why an organization's deals cannot train a model of its own yet, if they cannot.
pub fn not_enough_deals(closed: &[bool]) -> Option<String> {
    let won = closed.iter().filter(|&&c| c).count();
    let lost = closed.len() - won;
    if closed.len() < MIN_DEALS || won < MIN_OF_EACH || lost < MIN_OF_EACH {
        Some(format!(
            "{won} won and {lost} lost deals: an organization's own model needs {MIN_DEALS} closed deals \
             with at least {MIN_OF_EACH} of each"
        ))
    } else {
        None
    }
}

/// Fits a model with this crate's features to `rows` and their outcomes.
pub fn train(
    version: &str,
    rows: &[Vec<f32>],
    closed: &[bool],
) -> Result<LeadModel, winnerr_models::ModelError> {
    LeadModel::train(version, &names(), rows, closed, TrainOptions::default())
}

/// A score on the 0–100 scale the CRM shows.
pub fn percent(probability: f32) -> u8 {
    (probability * 100.0).round().clamp(0.0, 100.0) as u8
}

/// Scores `features` under `model`; every feature's factor, highest contribution first.
pub fn explain(model: &LeadModel, features: &[f32; WIDTH]) -> Explained {
    let scored = model
        .score(features)
        .expect("models in use are checked to have this crate's features");
    let mut factors: Vec<ScoreFactor> = FEATURES
        .iter()
        .zip(features)
        .zip(&scored.contributions)
        .map(|((feature, value), contribution)| ScoreFactor {
            feature: feature.name.to_owned(),
            label: feature.label.to_owned(),
            group: feature.group.as_str().to_owned(),
            value: *value,
            contribution: *contribution,
        })
        .collect();
    factors.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
    Explained {
        score: percent(scored.probability),
        probability: scored.probability,
        logit: scored.logit,
        intercept: model.intercept,
        factors,
    }
}

/// A score with its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    pub score: u8,
    pub probability: f32,
    pub logit: f32,
    pub intercept: f32,
    pub factors: Vec<ScoreFactor>,
}

impl Explained {
    /// Names of the top positive and top negative factors: a change in them is a change in the
    /// reasons the agent is shown.
    pub fn reasons(&self) -> (Vec<&str>, Vec<&str>) {
        let positive = ScoreFactor::raising(&self.factors, TOP_FACTORS);
        let negative = ScoreFactor::lowering(&self.factors, TOP_FACTORS);
        (
            positive.map(|f| f.feature.as_str()).collect(),
            negative.map(|f| f.feature.as_str()).collect(),
        )
    }

    /// The score event for `lead`.
    pub fn into_event(
        self,
        lead_id: winnerr_events::LeadId,
        model_version: String,
        cause: winnerr_events::EventId,
        cause_ts_ms: u64,
    ) -> LeadScore {
        LeadScore {
            lead_id,
            score: self.score,
            probability: self.probability,
            logit: self.logit,
            intercept: self.intercept,
            factors: self.factors,
            model_version,
            cause,
            cause_ts_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use winnerr_models::leadscore::{auc, calibration_deciles};

    /// Trains on 20,000 synthetic leads and checks the model against the truth that made them,
    /// on 10,000 leads it never saw.
    #[test]
    fn training_recovers_the_true_weights_and_generalizes() {
        let train_org = synth::generate(1, 20_000, PRIOR_NOW_MS);
        let held_out = synth::generate(2, 10_000, PRIOR_NOW_MS);
        let rows = train_org.rows();
        let model = train("test", &rows, &train_org.outcomes()).unwrap();

        // The true effect of each feature per standard deviation, as the model measures it.
        let truth: Vec<f32> = synth::TRUE_WEIGHTS
            .iter()
            .zip(&model.scale)
            .map(|(w, scale)| w * scale)
            .collect();
        let fitted = model.standardized_weights();
        for (j, feature) in FEATURES.iter().enumerate() {
            println!(
                "{:<18} true {:+.3} fitted {:+.3}",
                feature.name, truth[j], fitted[j]
            );
        }
        for j in 0..WIDTH {
            assert_eq!(
                truth[j].signum(),
                fitted[j].signum(),
                "{}: true {} fitted {}",
                FEATURES[j].name,
                truth[j],
                fitted[j]
            );
        }
        // Order: any two features whose true effects differ by a quarter are ranked the same way.
        for a in 0..WIDTH {
            for b in 0..WIDTH {
                if truth[a].abs() > 1.25 * truth[b].abs() {
                    assert!(
                        fitted[a].abs() > fitted[b].abs(),
                        "{} (true {:.3}, fitted {:.3}) should outrank {} (true {:.3}, fitted {:.3})",
                        FEATURES[a].name,
                        truth[a],
                        fitted[a],
                        FEATURES[b].name,
                        truth[b],
                        fitted[b]
                    );
                }
            }
        }

        let probabilities = model
            .probabilities(&held_out.rows(), &candle_core::Device::Cpu)
            .unwrap();
        let closed = held_out.outcomes();
        let auc = auc(&probabilities, &closed);
        let true_probabilities: Vec<f32> =
            held_out.leads.iter().map(|l| l.true_probability).collect();
        let best = winnerr_models::leadscore::auc(&true_probabilities, &closed);
        println!("held-out AUC {auc:.3} (the true model's {best:.3})");
        assert!(auc >= 0.8, "held-out AUC {auc:.3}");

        // Calibrated: in each tenth of the held-out leads, predicted and observed closing rates
        // agree within 5 points (a decile holds 1,000 leads: a standard error of about 1.5).
        for (predicted, observed, leads) in calibration_deciles(&probabilities, &closed) {
            println!("decile: predicted {predicted:.3} observed {observed:.3} ({leads} leads)");
            assert!(
                (predicted - observed).abs() < 0.05,
                "predicted {predicted:.3}, observed {observed:.3}"
            );
        }
    }

    #[test]
    fn the_committed_prior_is_what_training_on_the_synthetic_organization_gives() {
        let fresh = train_prior().unwrap();
        let committed = prior();
        assert_eq!(fresh.features, committed.features);
        for (a, b) in fresh.weights.iter().zip(&committed.weights) {
            assert!(
                (a - b).abs() < 1e-3,
                "retrain the prior: `cargo run -- scoring train-prior`"
            );
        }
    }

    #[test]
    fn contributions_add_up_to_the_logit_and_reasons_name_the_largest() {
        let org = synth::generate(3, 50, PRIOR_NOW_MS);
        let model = prior();
        for lead in &org.leads {
            let f = crate::features::features(&lead.history, org.now_ms);
            let explained = explain(&model, &f);
            let sum: f32 = explained.intercept
                + explained
                    .factors
                    .iter()
                    .map(|f| f.contribution)
                    .sum::<f32>();
            assert!((sum - explained.logit).abs() < 1e-4);
            assert_eq!(
                explained.score,
                percent(1.0 / (1.0 + (-explained.logit).exp()))
            );
            let (positive, negative) = explained.reasons();
            assert!(positive.len() <= TOP_FACTORS && negative.len() <= TOP_FACTORS);
            if let Some(top) = positive.first() {
                assert_eq!(*top, explained.factors[0].feature);
            }
        }
    }

    #[test]
    fn too_few_deals_keep_the_prior() {
        assert!(not_enough_deals(&vec![true; 500]).is_some());
        let mut mixed = vec![true; 100];
        mixed.extend(vec![false; 150]);
        assert!(not_enough_deals(&mixed).is_none());
        assert!(not_enough_deals(&mixed[..150]).is_some());
    }
}
