//! A deterministic generator of an organization's history — leads with their activity, calls
//! (what the customer said, and how it felt) and deal outcomes — so that `make run`, the tests
//! and the benches have something to train and score on. **Synthetic**: no real person is in it.
//!
//! Each lead has a hidden intent that makes it busier online, answer more calls, sound warmer
//! and say more urgent things, as real leads do. Whether it closes is then drawn from a known
//! logistic model over its [`features`](crate::features::features), [`TRUE_WEIGHTS`], so a model
//! trained on this data can be checked against the truth.

use rand::distr::weighted::WeightedIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson};

use crate::features::{
    Activity, ActivityKind, CallRecord, LeadHistory, PropertyFacts, WIDTH, features,
};
use crate::timeline::TimelineCues;

/// The weights of the logistic model that decides outcomes, per unit of each raw feature (in
/// [`FEATURES`](crate::features::FEATURES) order).
pub const TRUE_WEIGHTS: [f32; WIDTH] = [
    0.30,  // website_visits
    0.47,  // property_views
    0.19,  // email_opens
    -0.22, // days_since_active
    0.25,  // calls
    0.17,  // talk_minutes
    1.21,  // customer_share
    0.33,  // answered_share
    1.43,  // sentiment_mean
    0.55,  // sentiment_trend
    0.88,  // budget_fit
    0.50,  // location_match
    0.61,  // urgency_cues
    0.72,  // moves_soon
    -0.99, // no_hurry
    1.93,  // source_conversion
];

/// The organization's overall closing rate that the intercept is set for.
pub const BASE_RATE: f32 = 0.3;

/// Lead sources, their share of leads, and the closing rate that the generator gives each
/// source as its `source_conversion` (what [`source_rate`](crate::features::source_rate) would
/// say from the organization's long-run record). Within one generated history the rates that
/// the deals show are closer together (about 0.34 for referrals down to 0.27 for Facebook on
/// 20,000 leads), the other features' spread diluting the source's effect; an organization's
/// own model, trained on stored deals, learns from those.
pub const SOURCES: [(&str, f32, f32); 5] = [
    ("referral", 0.15, 0.45),
    ("open_house", 0.15, 0.32),
    ("website", 0.30, 0.22),
    ("zillow", 0.25, 0.15),
    ("facebook", 0.15, 0.08),
];

/// Locations of the synthetic market.
pub const LOCATIONS: [&str; 4] = ["Austin", "Round Rock", "Cedar Park", "Pflugerville"];

const DAY_MS: u64 = 86_400_000;

const NEUTRAL_LINES: &[&str] = &[
    "We're looking at three bedroom houses.",
    "What are the schools like in that area?",
    "Is there a garage?",
    "How big is the backyard?",
    "Can you send me the listing?",
    "What's the HOA fee on that one?",
];
const WARM_LINES: &[&str] = &[
    "That sounds wonderful, we love the kitchen.",
    "Thank you so much, this is really helpful.",
    "We really liked the photos, it looks great.",
];
const COLD_LINES: &[&str] = &[
    "That price is ridiculous.",
    "I'm disappointed, the last house was a mess.",
    "This is frustrating, nobody called me back.",
];
const URGENT_LINES: &[&str] = &[
    "We're pre-approved already.",
    "Our lease ends at the end of the month.",
    "Could we see it this weekend?",
    "We're paying cash.",
    "We're ready to make an offer.",
    "We sold our house, so we need to move.",
    "I'm relocating for work.",
    "We need it as soon as possible.",
];
const MOVE_LINES: &[(&str, bool)] = &[
    ("We want to move in two weeks.", true),
    ("Ideally within the next 3 months.", true),
    ("Probably next month.", true),
    ("Maybe in six months or so.", false),
    ("Probably next year.", false),
];
const NO_HURRY_LINES: &[&str] = &[
    "We're just looking for now.",
    "There's no rush on our side.",
    "We're not ready to commit.",
];

/// One line a customer said on a synthetic call, with its sentiment score (−1…1).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: &'static str,
    pub sentiment: f32,
}

/// A synthetic call: what the customer said, and who talked how long.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticCall {
    pub started_ms: u64,
    pub customer_talk_ms: u64,
    pub agent_talk_ms: u64,
    pub lines: Vec<Line>,
}

impl SyntheticCall {
    /// The call as scoring sees it.
    pub fn record(&self) -> CallRecord {
        let mut cues = TimelineCues::default();
        for line in &self.lines {
            cues.merge(TimelineCues::scan(line.text));
        }
        CallRecord {
            started_ms: self.started_ms,
            customer_talk_ms: self.customer_talk_ms,
            agent_talk_ms: self.agent_talk_ms,
            customer_sentiment: self.lines.iter().map(|l| l.sentiment).collect(),
            cues,
            live: false,
        }
    }
}

/// One synthetic lead and its outcome.
#[derive(Debug, Clone)]
pub struct SyntheticLead {
    pub id: String,
    pub source: &'static str,
    pub calls: Vec<SyntheticCall>,
    /// Everything scoring knows of the lead (calls included as records).
    pub history: LeadHistory,
    /// The probability of closing under [`TRUE_WEIGHTS`].
    pub true_probability: f32,
    /// Whether the deal was won.
    pub closed: bool,
}

/// A synthetic organization's history.
#[derive(Debug, Clone)]
pub struct SyntheticOrg {
    /// The time the history ends at: features are taken as of then.
    pub now_ms: u64,
    /// The intercept of the true model (set so that about [`BASE_RATE`] of leads close).
    pub true_intercept: f32,
    pub leads: Vec<SyntheticLead>,
}

impl SyntheticOrg {
    /// Every lead's features, as of `now_ms`.
    pub fn rows(&self) -> Vec<Vec<f32>> {
        self.leads
            .iter()
            .map(|l| features(&l.history, self.now_ms).to_vec())
            .collect()
    }

    pub fn outcomes(&self) -> Vec<bool> {
        self.leads.iter().map(|l| l.closed).collect()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn poisson(rng: &mut ChaCha8Rng, mean: f32) -> usize {
    Poisson::new(f64::from(mean.max(1e-3)))
        .map(|p| p.sample(rng) as usize)
        .unwrap_or(0)
}

/// `leads` leads of one organization, the same for the same `seed`; history ends at `now_ms`.
pub fn generate(seed: u64, leads: usize, now_ms: u64) -> SyntheticOrg {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0f32, 1.0).expect("a unit normal");
    let source_mix =
        WeightedIndex::new(SOURCES.iter().map(|s| s.1)).expect("the sources' shares are positive");
    let mut drafts: Vec<(SyntheticLead, f32)> = Vec::with_capacity(leads);
    for index in 0..leads {
        let intent = normal.sample(&mut rng);
        let source = &SOURCES[source_mix.sample(&mut rng)];

        let location = LOCATIONS[rng.random_range(0..LOCATIONS.len())];
        let budget_mid = 250_000 + rng.random_range(0..8) * 50_000;
        let knows_budget = rng.random::<f32>() < 0.8;
        let fit = normal.sample(&mut rng);
        let place = normal.sample(&mut rng);
        // Busier leads were active more recently.
        let horizon_days = (2.5 - 0.5 * intent + 0.8 * normal.sample(&mut rng))
            .exp()
            .clamp(1.0, 120.0);
        let when = |rng: &mut ChaCha8Rng| {
            now_ms - (rng.random::<f32>() * horizon_days * DAY_MS as f32) as u64
        };

        let mut activity = Vec::new();
        for _ in 0..poisson(&mut rng, (0.6 + 0.5 * intent).exp()) {
            let at_ms = when(&mut rng);
            activity.push(Activity {
                kind: ActivityKind::WebsiteVisit,
                at_ms,
                property: None,
            });
        }
        for _ in 0..poisson(&mut rng, (0.7 + 0.3 * intent).exp()) {
            let at_ms = when(&mut rng);
            activity.push(Activity {
                kind: ActivityKind::EmailOpen,
                at_ms,
                property: None,
            });
        }
        for _ in 0..poisson(&mut rng, (0.3 + 0.5 * intent).exp()) {
            let in_budget = rng.random::<f32>() < sigmoid(0.4 + fit);
            let price = if in_budget {
                budget_mid + rng.random_range(-40_000..40_000)
            } else {
                budget_mid + *pick(&mut rng, &[-150_000, 200_000, 350_000])
            };
            let matches = rng.random::<f32>() < sigmoid(0.6 + place);
            let property_location = if matches {
                location
            } else {
                *pick(&mut rng, &LOCATIONS)
            };
            let at_ms = when(&mut rng);
            activity.push(Activity {
                kind: ActivityKind::PropertyView,
                at_ms,
                property: Some(PropertyFacts {
                    price: Some(price),
                    location: Some(property_location.to_owned()),
                }),
            });
        }

        let mut calls = Vec::new();
        for _ in 0..poisson(&mut rng, (0.4 + 0.3 * intent).exp()) {
            let started_ms = when(&mut rng);
            if rng.random::<f32>() > sigmoid(0.8 + 0.7 * intent) {
                // Not answered: the agent left a message.
                calls.push(SyntheticCall {
                    started_ms,
                    customer_talk_ms: 0,
                    agent_talk_ms: 20_000,
                    lines: Vec::new(),
                });
                continue;
            }
            let talk_ms = 60_000.0 * (0.8 + 0.3 * intent + 0.5 * normal.sample(&mut rng)).exp();
            let share = (0.45 + 0.08 * intent + 0.1 * normal.sample(&mut rng)).clamp(0.05, 0.95);
            let mood = 0.15 + 0.25 * intent;
            let drift = 0.15 * normal.sample(&mut rng);
            let count = 2 + rng.random_range(0..6);
            let mut lines = Vec::new();
            for i in 0..count {
                let sentiment =
                    (mood + drift * i as f32 + 0.3 * normal.sample(&mut rng)).clamp(-1.0, 1.0);
                let text = if sentiment > 0.5 {
                    *pick(&mut rng, WARM_LINES)
                } else if sentiment < -0.4 {
                    *pick(&mut rng, COLD_LINES)
                } else {
                    *pick(&mut rng, NEUTRAL_LINES)
                };
                lines.push(Line { text, sentiment });
            }
            let mut say = |rng: &mut ChaCha8Rng, text: &'static str| {
                let sentiment = (mood + 0.2 * normal.sample(rng)).clamp(-1.0, 1.0);
                lines.push(Line { text, sentiment });
            };
            if rng.random::<f32>() < sigmoid(-1.6 + 0.9 * intent) {
                let text = *pick(&mut rng, URGENT_LINES);
                say(&mut rng, text);
            }
            if rng.random::<f32>() < sigmoid(-1.2 + 0.6 * intent) {
                let soon = rng.random::<f32>() < sigmoid(0.8 * intent);
                let options: Vec<&str> = MOVE_LINES
                    .iter()
                    .filter(|m| m.1 == soon)
                    .map(|m| m.0)
                    .collect();
                let text = *pick(&mut rng, &options);
                say(&mut rng, text);
            }
            if rng.random::<f32>() < sigmoid(-2.2 - 0.9 * intent) {
                let text = *pick(&mut rng, NO_HURRY_LINES);
                say(&mut rng, text);
            }
            calls.push(SyntheticCall {
                started_ms,
                customer_talk_ms: (talk_ms * share) as u64,
                agent_talk_ms: (talk_ms * (1.0 - share)) as u64,
                lines,
            });
        }
        calls.sort_by_key(|c| c.started_ms);

        let history = LeadHistory {
            location: (rng.random::<f32>() < 0.85).then(|| location.to_owned()),
            budget_min: knows_budget.then_some(budget_mid - 50_000),
            budget_max: knows_budget.then_some(budget_mid + 50_000),
            activity,
            calls: calls.iter().map(SyntheticCall::record).collect(),
            messages: Vec::new(),
            source_conversion: source.2,
        };
        let lead = SyntheticLead {
            id: format!("lead-{index:05}"),
            source: source.0,
            calls,
            history,
            true_probability: 0.0,
            closed: false,
        };
        drafts.push((lead, rng.random::<f32>()));
    }

    // The intercept sets the base rate.
    let linear: Vec<f32> = drafts
        .iter()
        .map(|(lead, _)| {
            let f = features(&lead.history, now_ms);
            f.iter().zip(TRUE_WEIGHTS).map(|(x, w)| x * w).sum()
        })
        .collect();
    let true_intercept = intercept_for(&linear, BASE_RATE);
    for ((lead, draw), linear) in drafts.iter_mut().zip(&linear) {
        lead.true_probability = sigmoid(true_intercept + linear);
        lead.closed = *draw < lead.true_probability;
    }
    SyntheticOrg {
        now_ms,
        true_intercept,
        leads: drafts.into_iter().map(|(lead, _)| lead).collect(),
    }
}

/// The intercept at which the mean probability over `linear` is `rate` (by bisection).
fn intercept_for(linear: &[f32], rate: f32) -> f32 {
    let mean =
        |b: f32| linear.iter().map(|x| sigmoid(b + x)).sum::<f32>() / linear.len().max(1) as f32;
    let (mut low, mut high) = (-50f32, 50f32);
    for _ in 0..60 {
        let mid = (low + high) / 2.0;
        if mean(mid) < rate {
            low = mid
        } else {
            high = mid
        }
    }
    (low + high) / 2.0
}
