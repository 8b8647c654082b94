//! Lead scoring's view of the CRM: the store's lead records and trained models, as the scorer
//! asks for them.

use futures_util::future::BoxFuture;
use winnerr_events::{LeadId, OrgId};
use winnerr_models::LeadModel;
use winnerr_scoring::features::{Activity, ActivityKind, CallRecord, PropertyFacts, source_rate};
use winnerr_scoring::timeline::TimelineCues;
use winnerr_scoring::{LeadHistory, LeadSource};
use winnerr_store::{LeadRecord, Store};

/// The actor the scorer's reads are audited as.
pub const SCORER_ACTOR: &str = "system:scoring";

/// Lead histories and models from the store.
pub struct StoreLeads(pub Store);

impl LeadSource for StoreLeads {
    fn history<'a>(
        &'a self,
        org: &'a OrgId,
        lead: &'a LeadId,
    ) -> BoxFuture<'a, Result<Option<LeadHistory>, String>> {
        Box::pin(async move {
            let record = self
                .0
                .lead_record(org, lead.as_str(), SCORER_ACTOR)
                .await
                .map_err(|e| e.to_string())?;
            Ok(record.map(history))
        })
    }

    fn model<'a>(&'a self, org: &'a OrgId) -> BoxFuture<'a, Result<Option<LeadModel>, String>> {
        Box::pin(async move {
            let Some(stored) = self.0.lead_model(org).await.map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            LeadModel::from_json(&stored.model)
                .map(Some)
                .map_err(|e| format!("model {}: {e}", stored.version))
        })
    }
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
            let kind = match row.kind.as_str() {
                "website_visit" => ActivityKind::WebsiteVisit,
                "property_view" => ActivityKind::PropertyView,
                "email_open" => ActivityKind::EmailOpen,
                _ => return None,
            };
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
    LeadHistory {
        location: record.location,
        budget_min: record.budget_min,
        budget_max: record.budget_max,
        activity,
        calls,
        source_conversion: source_rate(
            count(record.source_won),
            count(record.source_lost),
            overall,
        ),
    }
}
