//! A lead's features, in the five groups the CRM uses: behavioural, engagement, demographic,
//! timeline and source. One function, [`features`], turns what is known of a lead (its
//! [`LeadHistory`], live call included) into the model's input: training, the synthetic data and
//! live scoring all go through it, so they cannot disagree on what a feature means.

use serde::{Deserialize, Serialize};

use crate::timeline::TimelineCues;

/// The feature groups of the CRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Behavioural,
    Engagement,
    Demographic,
    Timeline,
    Source,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Behavioural => "behavioural",
            Group::Engagement => "engagement",
            Group::Demographic => "demographic",
            Group::Timeline => "timeline",
            Group::Source => "source",
        }
    }
}

/// One feature: its name (as models and score events carry it), the words a manager reads for
/// it (score events carry them too, so every view says the same), group and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    pub name: &'static str,
    pub label: &'static str,
    pub group: Group,
    pub meaning: &'static str,
}

const fn feature(
    name: &'static str,
    label: &'static str,
    group: Group,
    meaning: &'static str,
) -> Feature {
    Feature {
        name,
        label,
        group,
        meaning,
    }
}

/// Days of activity that count as recent.
pub const RECENT_DAYS: u64 = 30;
const DAY_MS: u64 = 86_400_000;

/// Every feature, in model order.
pub const FEATURES: [Feature; 16] = [
    feature(
        "website_visits",
        "visited the website",
        Group::Behavioural,
        "ln(1 + website visits in the last 30 days)",
    ),
    feature(
        "property_views",
        "viewed properties",
        Group::Behavioural,
        "ln(1 + property views in the last 30 days)",
    ),
    feature(
        "email_opens",
        "opened emails",
        Group::Behavioural,
        "ln(1 + email opens in the last 30 days)",
    ),
    feature(
        "days_since_active",
        "days since last active",
        Group::Behavioural,
        "ln(1 + days since the last activity, call or message from the lead), at most ln(366)",
    ),
    feature(
        "calls",
        "calls with the lead",
        Group::Engagement,
        "ln(1 + calls with the lead, the live one included)",
    ),
    feature(
        "talk_minutes",
        "minutes talked",
        Group::Engagement,
        "ln(1 + minutes spoken by either side over all calls)",
    ),
    feature(
        "customer_share",
        "customer's share of the talk",
        Group::Engagement,
        "the customer's share of the talk time (0.5 before anyone spoke)",
    ),
    feature(
        "answered_share",
        "answers calls",
        Group::Engagement,
        "share of calls in which the customer spoke: response to outreach (0.5 before any call)",
    ),
    feature(
        "sentiment_mean",
        "customer's sentiment",
        Group::Engagement,
        "mean sentiment (−1…1) of the customer's utterances over all calls and of their messages",
    ),
    feature(
        "sentiment_trend",
        "sentiment trend",
        Group::Engagement,
        "recent-weighted sentiment (EMA, α 0.3) minus the mean: rising or falling, within and across calls and messages",
    ),
    feature(
        "budget_fit",
        "viewed homes fit the budget",
        Group::Demographic,
        "share of viewed properties priced within the lead's budget (±10%); 0.5 when unknown",
    ),
    feature(
        "location_match",
        "viewed homes in their area",
        Group::Demographic,
        "share of viewed properties in the lead's location; 0.5 when unknown",
    ),
    feature(
        "urgency_cues",
        "urgency cues (pre-approved, lease ends, …)",
        Group::Timeline,
        "distinct urgency cues the customer said or wrote (pre-approved, lease ends, this weekend, …), at most 4",
    ),
    feature(
        "moves_soon",
        "plans to move soon",
        Group::Timeline,
        "1 when the customer stated a move within 90 days",
    ),
    feature(
        "no_hurry",
        "in no hurry",
        Group::Timeline,
        "1 when the customer said they are in no hurry (just looking, no rush, …)",
    ),
    feature(
        "source_conversion",
        "lead source's closing rate",
        Group::Source,
        "closing rate of the lead's source in the organization's history, smoothed toward its overall rate",
    ),
];

/// Number of features.
pub const WIDTH: usize = FEATURES.len();

/// Feature names in model order.
pub fn names() -> Vec<&'static str> {
    FEATURES.iter().map(|f| f.name).collect()
}

/// Kinds of recorded activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    WebsiteVisit,
    PropertyView,
    EmailOpen,
}

impl ActivityKind {
    /// The name the CRM records the kind by.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::WebsiteVisit => "website_visit",
            ActivityKind::PropertyView => "property_view",
            ActivityKind::EmailOpen => "email_open",
        }
    }

    /// The kind the CRM records as `name`, if scoring reads it.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::WebsiteVisit, Self::PropertyView, Self::EmailOpen]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// A property as a lead's activity points at it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PropertyFacts {
    pub price: Option<i64>,
    pub location: Option<String>,
}

/// One recorded activity of a lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub kind: ActivityKind,
    pub at_ms: u64,
    /// For property views: the property viewed.
    #[serde(default)]
    pub property: Option<PropertyFacts>,
}

/// One call with the lead, as scoring needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub started_ms: u64,
    pub customer_talk_ms: u64,
    pub agent_talk_ms: u64,
    /// Sentiment score (−1…1) of each of the customer's utterances, in order.
    pub customer_sentiment: Vec<f32>,
    /// What the customer said about their timeline.
    pub cues: TimelineCues,
    /// Still going: it counts as answered once the customer speaks, and not at all before.
    #[serde(default)]
    pub live: bool,
}

/// A message from the lead (SMS, email), as scoring needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub at_ms: u64,
    /// Its sentiment score (−1…1), where it has one.
    pub sentiment: Option<f32>,
    /// What it says about the lead's timeline.
    pub cues: TimelineCues,
}

/// What is known of a lead: CRM profile, activity, calls (the live one last), messages from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadHistory {
    pub location: Option<String>,
    pub budget_min: Option<i64>,
    pub budget_max: Option<i64>,
    pub activity: Vec<Activity>,
    pub calls: Vec<CallRecord>,
    /// Messages from the lead, oldest first.
    #[serde(default)]
    pub messages: Vec<MessageRecord>,
    /// The organization's closing rate for leads of this lead's source (see [`source_rate`]).
    pub source_conversion: f32,
}

/// A lead the CRM knows nothing of: no activity, no calls, and a source closing at
/// [`UNKNOWN_SOURCE_RATE`].
impl Default for LeadHistory {
    fn default() -> Self {
        Self {
            location: None,
            budget_min: None,
            budget_max: None,
            activity: Vec::new(),
            calls: Vec::new(),
            messages: Vec::new(),
            source_conversion: UNKNOWN_SOURCE_RATE,
        }
    }
}

/// The closing rate assumed for a source with no record (with no CRM, every lead's): a typical
/// organization's overall rate.
pub const UNKNOWN_SOURCE_RATE: f32 = 0.25;

/// Prior weight, in leads, of an organization's overall closing rate in a source's rate.
pub const SOURCE_PRIOR_LEADS: f32 = 20.0;

/// A source's closing rate from its `won` and `lost` deals, smoothed toward the organization's
/// `overall` rate so a source with three deals does not read as 0% or 100%.
pub fn source_rate(won: u32, lost: u32, overall: f32) -> f32 {
    (won as f32 + SOURCE_PRIOR_LEADS * overall) / ((won + lost) as f32 + SOURCE_PRIOR_LEADS)
}

/// Smoothing of the recent-weighted sentiment.
const SENTIMENT_EMA: f32 = 0.3;

/// The model's input for a lead at `now_ms`.
pub fn features(lead: &LeadHistory, now_ms: u64) -> [f32; WIDTH] {
    let recent = |kind: ActivityKind| {
        lead.activity
            .iter()
            .filter(|a| a.kind == kind && now_ms.saturating_sub(a.at_ms) <= RECENT_DAYS * DAY_MS)
            .count() as f32
    };
    let last_active = lead
        .activity
        .iter()
        .map(|a| a.at_ms)
        .chain(lead.calls.iter().map(|c| c.started_ms))
        .chain(lead.messages.iter().map(|m| m.at_ms))
        .max();
    let days_since_active = last_active.map_or(365.0, |at| {
        (now_ms.saturating_sub(at) / DAY_MS).min(365) as f32
    });

    let customer_ms: u64 = lead.calls.iter().map(|c| c.customer_talk_ms).sum();
    let talk_ms: u64 = customer_ms + lead.calls.iter().map(|c| c.agent_talk_ms).sum::<u64>();
    let customer_share = if talk_ms == 0 {
        0.5
    } else {
        customer_ms as f32 / talk_ms as f32
    };
    let judged = lead
        .calls
        .iter()
        .filter(|c| !c.live || c.customer_talk_ms > 0);
    let answered_share = share(&judged.collect::<Vec<_>>(), |c| {
        Some(c.customer_talk_ms > 0)
    });

    // The customer's sentiment across channels, in time order: a call's utterances at its start.
    let mut said: Vec<(u64, f32)> = lead
        .calls
        .iter()
        .flat_map(|c| c.customer_sentiment.iter().map(|&s| (c.started_ms, s)))
        .chain(
            lead.messages
                .iter()
                .filter_map(|m| Some((m.at_ms, m.sentiment?))),
        )
        .collect();
    said.sort_by_key(|&(at, _)| at);
    let (mut count, mut sum, mut ema) = (0usize, 0f32, 0f32);
    for (_, score) in said {
        ema = if count == 0 {
            score
        } else {
            ema + SENTIMENT_EMA * (score - ema)
        };
        sum += score;
        count += 1;
    }
    let sentiment_mean = if count == 0 { 0.0 } else { sum / count as f32 };
    let sentiment_trend = if count < 2 { 0.0 } else { ema - sentiment_mean };

    let viewed: Vec<&PropertyFacts> = lead
        .activity
        .iter()
        .filter(|a| a.kind == ActivityKind::PropertyView)
        .filter_map(|a| a.property.as_ref())
        .collect();
    let budget_fit = share(&viewed, |p| {
        let price = p.price? as f64;
        let (min, max) = (lead.budget_min, lead.budget_max);
        if min.is_none() && max.is_none() {
            return None;
        }
        Some(
            min.is_none_or(|min| price >= min as f64 * 0.9)
                && max.is_none_or(|max| price <= max as f64 * 1.1),
        )
    });
    let location_match = share(&viewed, |p| {
        let wanted = lead.location.as_deref()?;
        Some(p.location.as_deref()?.eq_ignore_ascii_case(wanted))
    });

    let mut cues = TimelineCues::default();
    for call in &lead.calls {
        cues.merge(call.cues);
    }
    for message in &lead.messages {
        cues.merge(message.cues);
    }
    let flag = |on: bool| if on { 1.0 } else { 0.0 };

    [
        recent(ActivityKind::WebsiteVisit).ln_1p(),
        recent(ActivityKind::PropertyView).ln_1p(),
        recent(ActivityKind::EmailOpen).ln_1p(),
        days_since_active.ln_1p(),
        (lead.calls.len() as f32).ln_1p(),
        (talk_ms as f32 / 60_000.0).ln_1p(),
        customer_share,
        answered_share,
        sentiment_mean,
        sentiment_trend,
        budget_fit,
        location_match,
        cues.urgency_count().min(4) as f32,
        flag(cues.moves_soon()),
        flag(cues.no_hurry),
        lead.source_conversion,
    ]
}

/// Share of `items` for which `test` says yes, among those it can judge; 0.5 when none.
fn share<T>(items: &[T], test: impl Fn(&T) -> Option<bool>) -> f32 {
    let judged: Vec<bool> = items.iter().filter_map(test).collect();
    if judged.is_empty() {
        0.5
    } else {
        judged.iter().filter(|&&yes| yes).count() as f32 / judged.len() as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn index(name: &str) -> usize {
        FEATURES.iter().position(|f| f.name == name).unwrap()
    }

    #[test]
    fn a_lead_with_nothing_known_sits_at_neutral_values() {
        let f = features(&LeadHistory::default(), NOW);
        assert_eq!(f[index("calls")], 0.0);
        assert_eq!(f[index("customer_share")], 0.5);
        assert_eq!(f[index("budget_fit")], 0.5);
        assert_eq!(f[index("days_since_active")], 366f32.ln());
        assert!(f.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn activity_counts_only_the_recent_window_and_views_are_judged_on_budget_and_place() {
        let view = |days_ago: u64, price: i64, location: &str| Activity {
            kind: ActivityKind::PropertyView,
            at_ms: NOW - days_ago * DAY_MS,
            property: Some(PropertyFacts {
                price: Some(price),
                location: Some(location.into()),
            }),
        };
        let lead = LeadHistory {
            location: Some("Austin".into()),
            budget_min: Some(400_000),
            budget_max: Some(500_000),
            activity: vec![
                view(2, 450_000, "austin"),
                view(5, 900_000, "Dallas"),
                view(40, 480_000, "Austin"),
            ],
            ..Default::default()
        };
        let f = features(&lead, NOW);
        assert_eq!(f[index("property_views")], 2f32.ln_1p());
        assert!((f[index("budget_fit")] - 2.0 / 3.0).abs() < 1e-6);
        assert!((f[index("location_match")] - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(f[index("days_since_active")], 2f32.ln_1p());
    }

    #[test]
    fn sentiment_trend_follows_the_latest_utterances() {
        let call = |scores: &[f32]| CallRecord {
            customer_talk_ms: 10_000,
            agent_talk_ms: 30_000,
            customer_sentiment: scores.to_vec(),
            ..Default::default()
        };
        let souring = LeadHistory {
            calls: vec![call(&[0.8, 0.7]), call(&[0.2, -0.6, -0.8])],
            ..Default::default()
        };
        let f = features(&souring, NOW);
        assert!(
            f[index("sentiment_trend")] < -0.1,
            "{}",
            f[index("sentiment_trend")]
        );
        assert_eq!(f[index("customer_share")], 0.25);
        assert_eq!(f[index("answered_share")], 1.0);
        assert!((f[index("sentiment_mean")] - 0.06).abs() < 1e-6);
    }

    #[test]
    fn messages_count_with_calls_in_sentiment_activity_and_cues() {
        let call = CallRecord {
            started_ms: NOW - 10 * DAY_MS,
            customer_talk_ms: 10_000,
            customer_sentiment: vec![0.8, 0.6],
            ..Default::default()
        };
        let calls_only = LeadHistory {
            calls: vec![call],
            ..Default::default()
        };
        let texted = LeadHistory {
            messages: vec![MessageRecord {
                at_ms: NOW - DAY_MS,
                sentiment: Some(-0.9),
                cues: TimelineCues::scan("we are pre-approved and need to move this month"),
            }],
            ..calls_only.clone()
        };
        let (before, after) = (features(&calls_only, NOW), features(&texted, NOW));
        assert!(after[index("sentiment_mean")] < before[index("sentiment_mean")] - 0.4);
        // In the trend's sequence, at its time: 0.8, 0.6 (the call), then −0.9.
        let (mean, ema) = ((0.8 + 0.6 - 0.9) / 3.0, 0.74 + 0.3 * (-0.9 - 0.74));
        assert!((after[index("sentiment_trend")] - (ema - mean)).abs() < 1e-5);
        assert_eq!(after[index("days_since_active")], 1f32.ln_1p());
        assert!(after[index("urgency_cues")] > before[index("urgency_cues")]);
        assert_eq!(after[index("calls")], before[index("calls")]);
    }

    #[test]
    fn source_rates_are_smoothed_toward_the_organization() {
        assert_eq!(source_rate(0, 0, 0.2), 0.2);
        assert!((source_rate(3, 0, 0.2) - 7.0 / 23.0).abs() < 1e-6);
        assert!((source_rate(600, 400, 0.2) - 0.592).abs() < 1e-3);
    }
}
