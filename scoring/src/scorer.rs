//! The live scorer: a transform on the bus. A call that starts with a lead loads what the CRM
//! knows of the lead (and the organization's model); every final utterance, its sentiment and the
//! call's end update the lead's features and re-score it, as does a message from the lead; a [`LeadScore`] event goes back on the
//! bus when the score or its reasons changed.
//!
//! State is keyed by organization and call or lead, never by a bare id: two organizations may
//! use the same lead id and never see each other's features. A lead's state lives while it has a
//! live call; the CRM's record (which the store keeps up to date) is its memory between calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tracing::{debug, warn};
use winnerr_bus::{Bus, Group, RecentIds, Worker, WorkerError};
use winnerr_events::{
    ActivityState, CallContext, CallId, Direction, Envelope, Event, LeadId, Message, OrgId, Track,
    Transcript, UserId,
};
use winnerr_models::LeadModel;

use crate::features::{CallRecord, LeadHistory, MessageRecord, features};
use crate::metrics;
use crate::model::{self, Explained};
use crate::timeline::TimelineCues;

/// Where the scorer learns what the CRM knows: a lead's history and an organization's model.
pub trait LeadSource: Send + Sync + 'static {
    /// What was recorded of `lead` in `org` at `as_of_ms`, the start of the call being scored
    /// (so that call, which the store may already hold, is not its own history); `None` for a
    /// lead the CRM has no record of. The read is on behalf of `agent`, the call's agent, where
    /// the call has one (the source audits it as theirs).
    fn history<'a>(
        &'a self,
        org: &'a OrgId,
        lead: &'a LeadId,
        as_of_ms: i64,
        agent: Option<&'a UserId>,
    ) -> BoxFuture<'a, Result<Option<LeadHistory>, SourceError>>;

    /// `org`'s own trained model, if it has one.
    fn model<'a>(&'a self, org: &'a OrgId)
    -> BoxFuture<'a, Result<Option<LeadModel>, SourceError>>;
}

/// Why the CRM could not answer the scorer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the CRM could not be read: {0}")]
    Unreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("organization model {version} is unusable: {source}")]
    BadModel {
        version: String,
        #[source]
        source: winnerr_models::ModelError,
    },
}

/// No CRM: every lead starts from nothing and every organization uses the prior.
pub struct NoCrm;

impl LeadSource for NoCrm {
    fn history<'a>(
        &'a self,
        _: &'a OrgId,
        _: &'a LeadId,
        _: i64,
        _: Option<&'a UserId>,
    ) -> BoxFuture<'a, Result<Option<LeadHistory>, SourceError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn model<'a>(&'a self, _: &'a OrgId) -> BoxFuture<'a, Result<Option<LeadModel>, SourceError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// How long an organization's model is used before the source is asked again (a newly trained
/// model takes effect within this time).
pub const MODEL_REFRESH: Duration = Duration::from_secs(300);

struct LiveCall {
    lead: LeadId,
    /// The call's record in its lead's history.
    record: usize,
}

struct LeadState {
    history: LeadHistory,
    model: Arc<LeadModel>,
    live_calls: usize,
    /// The score and reasons last published.
    published: Option<(u8, Vec<String>, Vec<String>)>,
}

/// Scores leads from call events. Not shared: one task owns it and feeds it events in order.
pub struct Scorer {
    source: Arc<dyn LeadSource>,
    calls: HashMap<(OrgId, CallId), LiveCall>,
    leads: HashMap<(OrgId, LeadId), LeadState>,
    models: HashMap<OrgId, (Arc<LeadModel>, Instant)>,
    /// Events already applied: a redelivered transcript must not count its sentiment twice.
    recent: RecentIds,
}

/// The scorer's consumer group.
const GROUP: &str = "winnerr-scoring";
/// Most events handed to the scorer at once.
const MAX_BATCH: usize = 512;

/// Event ids remembered to drop redeliveries: far more than a bus redelivers after a rebalance.
const RECENT_IDS: usize = 65_536;

impl Scorer {
    pub fn new(source: Arc<dyn LeadSource>) -> Self {
        metrics::describe();
        Self {
            source,
            calls: HashMap::new(),
            leads: HashMap::new(),
            models: HashMap::new(),
            recent: RecentIds::new(RECENT_IDS),
        }
    }

    /// Applies one event; returns the score event to publish, if the score or its reasons moved.
    pub async fn handle(&mut self, event: &Envelope) -> Option<Envelope> {
        if !self.recent.first_time(event.id) {
            metrics::repeated();
            return None;
        }
        let started = Instant::now();
        let call_key = (event.org_id.clone(), event.call_id.clone());
        let rescore = match &event.event {
            Event::CallStarted(start) => {
                let lead = start.lead_id.clone()?;
                metrics::received(event.event.kind());
                self.start_call(event, lead).await;
                true
            }
            Event::AudioActivity(activity) => {
                let (ActivityState::Silent, Some(spoken)) = (activity.state, activity.spoken_ms)
                else {
                    return None;
                };
                let record = self.record(&call_key)?;
                match activity.track {
                    Track::Inbound => record.customer_talk_ms += spoken,
                    Track::Outbound => record.agent_talk_ms += spoken,
                }
                false
            }
            Event::Transcript(t) if t.is_final => {
                metrics::received(event.event.kind());
                let record = self.record(&call_key)?;
                if t.track == Track::Inbound {
                    if let Some(sentiment) = &t.sentiment {
                        record.customer_sentiment.push(sentiment.score);
                    }
                    record.cues.merge(TimelineCues::scan(&t.text));
                }
                true
            }
            Event::CallEnded(_) => {
                metrics::received(event.event.kind());
                if let Some(record) = self.record(&call_key) {
                    record.live = false;
                }
                true
            }
            Event::Message(message) if message.direction == Direction::Inbound => {
                let lead = message.lead_id.clone()?;
                metrics::received(event.event.kind());
                let scored = self.message(event, message, lead).await;
                metrics::scored(started.elapsed());
                return scored;
            }
            _ => false,
        };
        if !rescore {
            return None;
        }
        let Some(call) = self.calls.get(&call_key) else {
            // A call with no lead, or one that started before this scorer did.
            metrics::skipped();
            debug!(org_id = %event.org_id, call_id = %event.call_id, "event of a call with no lead to score");
            return None;
        };
        let lead_key = (event.org_id.clone(), call.lead.clone());
        let lead = self.leads.get_mut(&lead_key)?;
        let explained = model::explain(&lead.model, &features(&lead.history, event.ts_ms));
        let published = publish_if_changed(lead, &explained)
            .then(|| score_event(event, &lead_key.1, &lead.model, explained));
        if matches!(event.event, Event::CallEnded(_)) {
            self.end_call(&call_key, &lead_key);
        }
        metrics::scored(started.elapsed());
        metrics::live_leads(self.leads.len());
        published
    }

    /// A message from `lead`: it joins the lead's history (loaded for it unless the lead is on a
    /// live call here, and let go again after) and the lead is scored.
    async fn message(
        &mut self,
        event: &Envelope,
        message: &Message,
        lead: LeadId,
    ) -> Option<Envelope> {
        self.load_lead(event, &lead).await;
        let lead_key = (event.org_id.clone(), lead);
        let state = self.leads.get_mut(&lead_key)?;
        state.history.messages.push(MessageRecord {
            at_ms: message.received_at_ms,
            sentiment: message.sentiment.as_ref().map(|s| s.score),
            cues: TimelineCues::scan(&message.text),
        });
        let explained = model::explain(&state.model, &features(&state.history, event.ts_ms));
        let published = publish_if_changed(state, &explained)
            .then(|| score_event(event, &lead_key.1, &state.model, explained));
        if state.live_calls == 0 {
            self.leads.remove(&lead_key);
        }
        published
    }

    /// The live call's record in its lead's history.
    fn record(&mut self, call: &(OrgId, CallId)) -> Option<&mut CallRecord> {
        let live = self.calls.get(call)?;
        self.leads
            .get_mut(&(call.0.clone(), live.lead.clone()))
            .and_then(|lead| lead.history.calls.get_mut(live.record))
    }

    /// Loads what the CRM knows of `lead` as of `event` (and its organization's model), unless
    /// it is already live here.
    async fn load_lead(&mut self, event: &Envelope, lead: &LeadId) {
        let org = &event.org_id;
        let lead_key = (org.clone(), lead.clone());
        if self.leads.contains_key(&lead_key) {
            return;
        }
        let model = self.model_of(org).await;
        let loaded = Instant::now();
        let as_of = i64::try_from(event.ts_ms).unwrap_or(i64::MAX);
        let history = match self
            .source
            .history(org, lead, as_of, event.agent_id.as_ref())
            .await
        {
            Ok(history) => history.unwrap_or_default(),
            Err(err) => {
                // Scored from this event alone rather than not at all.
                metrics::history_failed();
                warn!(org_id = %org, lead_id = %lead, error = %err, "lead history could not be loaded; scoring from this event only");
                LeadHistory::default()
            }
        };
        metrics::history_loaded(loaded.elapsed());
        self.leads.insert(
            lead_key,
            LeadState {
                history,
                model,
                live_calls: 0,
                published: None,
            },
        );
    }

    async fn start_call(&mut self, event: &Envelope, lead: LeadId) {
        let org = &event.org_id;
        let lead_key = (org.clone(), lead.clone());
        self.load_lead(event, &lead).await;
        let state = self.leads.get_mut(&lead_key).expect("inserted above");
        state.history.calls.push(CallRecord {
            started_ms: event.ts_ms,
            live: true,
            ..Default::default()
        });
        state.live_calls += 1;
        let record = state.history.calls.len() - 1;
        self.calls.insert(
            (org.clone(), event.call_id.clone()),
            LiveCall { lead, record },
        );
    }

    fn end_call(&mut self, call: &(OrgId, CallId), lead: &(OrgId, LeadId)) {
        self.calls.remove(call);
        if let Some(state) = self.leads.get_mut(lead) {
            state.live_calls -= 1;
            if state.live_calls == 0 {
                self.leads.remove(lead);
            }
        }
    }

    async fn model_of(&mut self, org: &OrgId) -> Arc<LeadModel> {
        if let Some((model, at)) = self.models.get(org) {
            if at.elapsed() < MODEL_REFRESH {
                return model.clone();
            }
        }
        let model = match self.source.model(org).await {
            Ok(Some(model)) if model.features == crate::features::names() => Arc::new(model),
            Ok(Some(model)) => {
                warn!(org_id = %org, version = %model.version, "the organization's model has other features; using the prior");
                model::prior()
            }
            Ok(None) => model::prior(),
            Err(err) => {
                metrics::history_failed();
                warn!(org_id = %org, error = %err, "the organization's model could not be loaded; using the prior");
                model::prior()
            }
        };
        self.models
            .insert(org.clone(), (model.clone(), Instant::now()));
        model
    }

    /// The scorer's consumer group: what moves a score (a call's start, speech, final
    /// utterances, its end; a message from a lead), never the scores it publishes itself.
    pub fn group() -> Group {
        Group::new(GROUP, MAX_BATCH).wanting(|event| {
            matches!(
                event,
                Event::CallStarted(_)
                    | Event::AudioActivity(_)
                    | Event::Transcript(Transcript { is_final: true, .. })
                    | Event::CallEnded(_)
                    | Event::Message(_)
            )
        })
    }

    /// The scorer as the worker of its group, publishing score events on `bus`.
    pub fn worker(self, bus: Arc<dyn Bus>) -> impl Worker {
        Publishing { scorer: self, bus }
    }

    /// Handles one event and publishes its score event, if any.
    pub async fn handle_and_publish(&mut self, event: &Envelope, bus: &dyn Bus) {
        if let Some(score) = self.handle(event).await {
            let delay = winnerr_events::now_ms().saturating_sub(event.ts_ms);
            match bus.publish(score).await {
                Ok(()) => metrics::published(Duration::from_millis(delay)),
                Err(err) => {
                    metrics::publish_failed();
                    warn!(org_id = %event.org_id, call_id = %event.call_id, error = %err, "lead score could not be published");
                }
            }
        }
    }
}

/// A scorer that publishes what it scores.
struct Publishing {
    scorer: Scorer,
    bus: Arc<dyn Bus>,
}

impl Worker for Publishing {
    /// Scores each event in order; a score that cannot be published is counted and logged, not
    /// retried (the lead's next event publishes its score anew).
    fn handle<'a>(
        &'a mut self,
        events: &'a [Arc<Envelope>],
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(async move {
            for event in events {
                self.scorer
                    .handle_and_publish(event, self.bus.as_ref())
                    .await;
            }
            Ok(())
        })
    }
}

/// The score event of `lead` that `event` moved, in the envelope of the event's call (or message).
fn score_event(
    event: &Envelope,
    lead: &LeadId,
    model: &LeadModel,
    explained: Explained,
) -> Envelope {
    let ctx = CallContext {
        org_id: event.org_id.clone(),
        call_id: event.call_id.clone(),
        agent_id: event.agent_id.clone(),
        lead_id: Some(lead.clone()),
    };
    let score = explained.into_event(lead.clone(), model.version.clone(), event.id, event.ts_ms);
    Envelope::new(&ctx, Event::LeadScore(score))
}

/// Whether `explained` differs from what was last published for `lead` (and remembers it).
fn publish_if_changed(lead: &mut LeadState, explained: &Explained) -> bool {
    let (positive, negative) = explained.reasons();
    let now = (
        explained.score,
        positive.into_iter().map(str::to_owned).collect(),
        negative.into_iter().map(str::to_owned).collect(),
    );
    if lead.published.as_ref() == Some(&now) {
        metrics::unchanged();
        return false;
    }
    lead.published = Some(now);
    true
}

#[cfg(test)]
mod tests {
    use winnerr_events::fixtures::TestCall;

    use super::*;

    fn call() -> TestCall {
        TestCall::new("acme", "CA1").lead("lead-1")
    }

    fn started() -> Envelope {
        call().started()
    }

    fn said(utterance: u32, text: &str, score: f32) -> Envelope {
        call().said(utterance, text, Some(score))
    }

    async fn logits(events: &[&Envelope]) -> Vec<f32> {
        let mut scorer = Scorer::new(Arc::new(NoCrm));
        let mut logits = Vec::new();
        for event in events {
            if let Some(Envelope {
                event: Event::LeadScore(score),
                ..
            }) = scorer.handle(event).await
            {
                logits.push(score.logit);
            }
        }
        logits
    }

    #[tokio::test]
    async fn a_redelivered_event_changes_nothing() {
        let (start, warm, cold) = (
            started(),
            said(1, "We love it, and we're pre-approved.", 0.9),
            said(2, "The price is a problem.", -0.6),
        );
        let once = logits(&[&start, &warm, &cold]).await;
        let redelivered = logits(&[&start, &warm, &start, &warm, &cold, &warm]).await;
        assert_eq!(once.len(), 3);
        assert_eq!(redelivered, once);
    }
}
