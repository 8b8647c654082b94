//! Lead scoring's view of the CRM: the store's lead records and trained models, as the scorer
//! asks for them.

use anyhow::{Context, bail};
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use winnerr_events::{LeadId, OrgId, UserId};
use winnerr_models::LeadModel;
use winnerr_models::leadscore::{auc, calibration_deciles};
use winnerr_scoring::features::{
    Activity, ActivityKind, CallRecord, MessageRecord, PropertyFacts, features, source_rate,
};
use winnerr_scoring::model;
use winnerr_scoring::synth::SyntheticOrg;
use winnerr_scoring::timeline::TimelineCues;
use winnerr_scoring::{LeadHistory, LeadSource, SourceError};
use winnerr_store::{ActivityRow, DealOutcome, ImportedLead, LeadRecord, PastCall, Store};

/// The actor the scorer's reads are audited as, for a call without an agent.
pub const SCORER_ACTOR: &str = "system:scoring";

/// Lead records read at once while assembling a training set.
const TRAINING_READS: usize = 8;
/// Every this many-th closed deal is held out of the fit that measures a new model.
const HOLD_OUT_EVERY: usize = 5;

/// Lead histories and models from the store.
pub struct StoreLeads(pub Store);

impl LeadSource for StoreLeads {
    fn history<'a>(
        &'a self,
        org: &'a OrgId,
        lead: &'a LeadId,
        as_of_ms: i64,
        agent: Option<&'a UserId>,
    ) -> BoxFuture<'a, Result<Option<LeadHistory>, SourceError>> {
        Box::pin(async move {
            let reader = agent.map_or(SCORER_ACTOR, UserId::as_str);
            let record = self
                .0
                .lead_record_as_of(org, lead.as_str(), as_of_ms, reader)
                .await
                .map_err(|e| SourceError::Unreadable(e.into()))?;
            Ok(record.map(history))
        })
    }

    fn model<'a>(
        &'a self,
        org: &'a OrgId,
    ) -> BoxFuture<'a, Result<Option<LeadModel>, SourceError>> {
        Box::pin(async move {
            let Some(stored) = self
                .0
                .lead_model(org)
                .await
                .map_err(|e| SourceError::Unreadable(e.into()))?
            else {
                return Ok(None);
            };
            LeadModel::from_json(&stored.model)
                .map(Some)
                .map_err(|source| SourceError::BadModel {
                    version: stored.version,
                    source,
                })
        })
    }
}

/// What `winnerr scoring train` did for an organization.
#[derive(Debug, Clone)]
pub struct Trained {
    pub version: String,
    pub won: usize,
    pub lost: usize,
    /// AUC on every fifth deal, of the same training fitted on the others.
    pub held_out_auc: f32,
    /// Predicted and observed closing rates in deciles of those held-out deals, with their sizes.
    pub calibration: Calibration,
}

/// Predicted and observed closing rates, and the number of leads, per decile.
pub type Calibration = Vec<(f64, f64, usize)>;

/// Trains `org`'s own lead-score model from its won and lost deals, each lead's features taken
/// as of its deal's close, and saves it: the organization's scorers use it from their next model
/// refresh. Refuses, saving nothing, while the organization has too few deals.
pub async fn train_organization(
    store: &Store,
    org: &OrgId,
    actor: &str,
) -> anyhow::Result<Trained> {
    let deals = store.closed_deals(org).await?;
    let closed: Vec<bool> = deals.iter().map(|(_, deal)| deal.won).collect();
    if let Some(why) = model::not_enough_deals(&closed) {
        bail!("{org}: {why}; its leads stay scored by the prior");
    }
    let rows: Vec<Vec<f32>> = futures_util::stream::iter(&deals)
        .map(|(lead, deal)| async move {
            let record = store
                .lead_record_as_of(org, lead, deal.closed_ms, actor)
                .await
                .with_context(|| format!("reading lead {lead}"))?
                .unwrap_or_default();
            let as_of = u64::try_from(deal.closed_ms).unwrap_or(0);
            anyhow::Ok(features(&history(record), as_of).to_vec())
        })
        .buffered(TRAINING_READS)
        .try_collect()
        .await?;

    let version = format!("{org}-{}", winnerr_events::event::now_ms() / 1000);
    let fitted = {
        let version = version.clone();
        tokio::task::spawn_blocking(move || fit_and_measure(&version, &rows, &closed)).await??
    };
    let (model, held_out_auc, calibration) = fitted;
    let examples = i32::try_from(model.examples).unwrap_or(i32::MAX);
    store
        .save_lead_model(
            org,
            &version,
            &model.to_json(),
            examples,
            Some(held_out_auc),
            actor,
        )
        .await?;
    Ok(Trained {
        version,
        won: model.positives,
        lost: model.examples - model.positives,
        held_out_auc,
        calibration,
    })
}

/// Measures the training on held-out deals, then fits the model to be saved on all of them.
fn fit_and_measure(
    version: &str,
    rows: &[Vec<f32>],
    closed: &[bool],
) -> anyhow::Result<(LeadModel, f32, Calibration)> {
    let held_out = |i: &usize| i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1;
    let pick = |keep: bool| -> (Vec<Vec<f32>>, Vec<bool>) {
        (0..rows.len())
            .filter(|i| held_out(i) != keep)
            .map(|i| (rows[i].clone(), closed[i]))
            .unzip()
    };
    let (fit_rows, fit_closed) = pick(true);
    let (test_rows, test_closed) = pick(false);
    let trial = model::train(version, &fit_rows, &fit_closed)?;
    let predicted = trial.probabilities(&test_rows, &winnerr_models::device())?;
    let measured = auc(&predicted, &test_closed);
    let calibration = calibration_deciles(&predicted, &test_closed);
    Ok((
        model::train(version, rows, closed)?,
        measured as f32,
        calibration,
    ))
}

/// The synthetic organization as leads to import (`winnerr scoring seed`): every lead but each
/// `open_every`-th has its deal closed, won or lost, at the end of the history; the rest are
/// still open, for live scoring to find history for.
pub fn synthetic_import(org: &SyntheticOrg, open_every: usize) -> Vec<ImportedLead> {
    let closed_ms = i64::try_from(org.now_ms).unwrap_or(i64::MAX);
    org.leads
        .iter()
        .enumerate()
        .map(|(index, lead)| ImportedLead {
            id: lead.id.clone(),
            first_name: format!("Synthetic {index}"),
            source: Some(lead.source.to_owned()),
            location: lead.history.location.clone(),
            budget_min: lead.history.budget_min,
            budget_max: lead.history.budget_max,
            activity: lead
                .history
                .activity
                .iter()
                .map(|a| ActivityRow {
                    kind: a.kind.as_str().to_owned(),
                    at_ms: a.at_ms as i64,
                    price: a.property.as_ref().and_then(|p| p.price),
                    location: a.property.as_ref().and_then(|p| p.location.clone()),
                })
                .collect(),
            calls: lead
                .calls
                .iter()
                .enumerate()
                .map(|(i, call)| PastCall {
                    id: format!("{}-call-{i}", lead.id),
                    started_ms: call.started_ms as i64,
                    inbound_talk_ms: call.customer_talk_ms as i64,
                    outbound_talk_ms: call.agent_talk_ms as i64,
                    customer: call
                        .lines
                        .iter()
                        .map(|line| (line.text.to_owned(), Some(line.sentiment)))
                        .collect(),
                })
                .collect(),
            deal: (open_every == 0 || index % open_every != open_every - 1).then_some(
                DealOutcome {
                    won: lead.closed,
                    closed_ms,
                },
            ),
        })
        .collect()
}

/// A store record as scoring's history.
pub fn history(record: LeadRecord) -> LeadHistory {
    let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    let (org_won, org_lost) = (count(record.org_won), count(record.org_lost));
    let overall = if org_won + org_lost == 0 {
        winnerr_scoring::features::UNKNOWN_SOURCE_RATE
    } else {
        org_won as f32 / (org_won + org_lost) as f32
    };
    let activity = record
        .activity
        .into_iter()
        .filter_map(|row| {
            let kind = ActivityKind::parse(&row.kind)?;
            Some(Activity {
                kind,
                at_ms: row.at_ms.max(0) as u64,
                property: (kind == ActivityKind::PropertyView).then_some(PropertyFacts {
                    price: row.price,
                    location: row.location,
                }),
            })
        })
        .collect();
    let calls = record
        .calls
        .into_iter()
        .map(|call| {
            let mut cues = TimelineCues::default();
            for (text, _) in &call.customer {
                cues.merge(TimelineCues::scan(text));
            }
            CallRecord {
                started_ms: call.started_ms.max(0) as u64,
                customer_talk_ms: call.inbound_talk_ms.max(0) as u64,
                agent_talk_ms: call.outbound_talk_ms.max(0) as u64,
                customer_sentiment: call.customer.iter().filter_map(|(_, s)| *s).collect(),
                cues,
                live: false,
            }
        })
        .collect();
    let messages = record
        .messages
        .into_iter()
        .map(|message| MessageRecord {
            at_ms: message.received_ms.max(0) as u64,
            sentiment: message.sentiment,
            cues: TimelineCues::scan(&message.text),
        })
        .collect();
    LeadHistory {
        location: record.location,
        budget_min: record.budget_min,
        budget_max: record.budget_max,
        activity,
        calls,
        messages,
        source_conversion: source_rate(
            count(record.source_won),
            count(record.source_lost),
            overall,
        ),
    }
}
