//! The voice webhook's dial check backed by the store's do-not-call lists: a listed number is
//! refused, and the organization's managers get an alert on the call's feed.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tracing::warn;
use winnerr_bus::Bus;
use winnerr_events::{Alert, AlertKind, CallContext, CallId, Envelope, Event, Track};
use winnerr_ingest::{DialAttempt, DialCheck};
use winnerr_store::Store;

pub struct StoreDoNotCall {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
}

impl DialCheck for StoreDoNotCall {
    fn may_dial<'a>(&'a self, attempt: DialAttempt<'a>) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let listed = self
                .store
                .is_do_not_call(attempt.org, attempt.number)
                .await
                .map_err(|e| e.to_string())?;
            if listed {
                self.alert(&attempt).await;
            }
            Ok(!listed)
        })
    }
}

impl StoreDoNotCall {
    /// An alert on the call (which never starts: nothing else of it is published).
    async fn alert(&self, attempt: &DialAttempt<'_>) {
        let Ok(call_id) = CallId::parse(attempt.call_sid) else {
            warn!(org_id = %attempt.org, "a refused dial's call id is not valid: no alert");
            return;
        };
        let last4 = attempt.last4().to_owned();
        let ctx = CallContext {
            org_id: attempt.org.clone(),
            call_id,
            agent_id: attempt.agent.cloned(),
            lead_id: None,
        };
        let alert = Alert {
            track: Track::Outbound,
            utterance: 0,
            text: format!("dialed ••••{last4}, a number on the do-not-call list: not placed"),
            kind: AlertKind::DoNotCall { last4 },
            last_voiced_at_ms: 0,
        };
        if let Err(err) = self
            .bus
            .publish(Envelope::new(&ctx, Event::Alert(alert)))
            .await
        {
            warn!(org_id = %attempt.org, error = %err, "the do-not-call alert could not be published");
        }
    }
}
