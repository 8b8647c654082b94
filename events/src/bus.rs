//! The bus that carries events between stages.
//!
//! [`InProcessBus`] is the embedded default (one process runs every role); a Kafka implementation
//! slots in behind the same trait. Publishing keeps per-call order; a subscriber sees every event
//! published after it subscribed, or learns how many it missed ([`Delivery::Lagged`]).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::event::Envelope;
use crate::metrics;

/// Why an event could not be published.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus is closed")]
    Closed,
    #[error("bus backend failed: {0}")]
    Backend(String),
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Delivery {
    Event(Arc<Envelope>),
    /// The subscriber fell behind; this many events were dropped for it.
    Lagged(u64),
}

/// A live subscription: every event published from the moment of subscribing.
pub type Subscription = Pin<Box<dyn Stream<Item = Delivery> + Send>>;

/// Carries call events between stages.
pub trait Bus: Send + Sync + 'static {
    /// Publishes one event. Events of one call are delivered in the order they were published.
    fn publish(&self, event: Envelope) -> BoxFuture<'_, Result<(), BusError>>;

    /// Subscribes to every event published from now on.
    fn subscribe(&self) -> Subscription;
}

/// The bus of a single process: a broadcast channel. A subscriber that falls more than
/// `capacity` events behind loses the oldest ones (and is told how many).
#[derive(Debug, Clone)]
pub struct InProcessBus {
    sender: broadcast::Sender<Arc<Envelope>>,
}

impl InProcessBus {
    pub fn new(capacity: usize) -> Self {
        metrics::describe();
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }
}

impl Bus for InProcessBus {
    fn publish(&self, event: Envelope) -> BoxFuture<'_, Result<(), BusError>> {
        metrics::published(event.event.kind());
        // No subscriber is not an error: nobody is listening yet, so nobody misses anything.
        let _ = self.sender.send(Arc::new(event));
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe(&self) -> Subscription {
        Box::pin(
            BroadcastStream::new(self.sender.subscribe()).map(|item| match item {
                Ok(event) => Delivery::Event(event),
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    metrics::lagged(missed);
                    Delivery::Lagged(missed)
                }
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CallContext, Dtmf, Event, Track};
    use crate::ids::{CallId, OrgId};

    fn dtmf(digit: char) -> Envelope {
        let ctx = CallContext {
            org_id: OrgId::parse("o").unwrap(),
            call_id: CallId::parse("c").unwrap(),
            agent_id: None,
            lead_id: None,
        };
        Envelope::new(
            &ctx,
            Event::Dtmf(Dtmf {
                track: Track::Inbound,
                digit,
            }),
        )
    }

    fn digit(delivery: Option<Delivery>) -> char {
        match delivery {
            Some(Delivery::Event(env)) => match &env.event {
                Event::Dtmf(d) => d.digit,
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn subscribers_see_events_in_publish_order() {
        let bus = InProcessBus::new(16);
        let mut sub = bus.subscribe();
        for d in ['1', '2', '3'] {
            bus.publish(dtmf(d)).await.unwrap();
        }
        assert_eq!(digit(sub.next().await), '1');
        assert_eq!(digit(sub.next().await), '2');
        assert_eq!(digit(sub.next().await), '3');
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed() {
        let bus = InProcessBus::new(2);
        let mut sub = bus.subscribe();
        for d in ['1', '2', '3', '4'] {
            bus.publish(dtmf(d)).await.unwrap();
        }
        assert!(matches!(sub.next().await, Some(Delivery::Lagged(2))));
        assert_eq!(digit(sub.next().await), '3');
    }
}
