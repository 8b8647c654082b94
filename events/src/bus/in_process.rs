//! The bus of a single process: a broadcast channel.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::{Bus, BusError, Delivery, Subscription};
use crate::event::Envelope;
use crate::metrics;

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
    fn reaches_other_processes(&self) -> bool {
        false
    }

    fn publish(&self, event: Envelope) -> BoxFuture<'_, Result<(), BusError>> {
        metrics::published(event.event.kind());
        // No subscriber is not an error: nobody is listening yet, so nobody misses anything.
        let _ = self.sender.send(Arc::new(event));
        Box::pin(std::future::ready(Ok(())))
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, BusError>> {
        let stream = BroadcastStream::new(self.sender.subscribe()).map(|item| match item {
            Ok(event) => Delivery::Event(event),
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                metrics::lagged(missed);
                Delivery::Lagged(missed)
            }
        });
        let subscription: Subscription = Box::pin(stream);
        Box::pin(std::future::ready(Ok(subscription)))
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
        let mut sub = bus.subscribe().await.unwrap();
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
        let mut sub = bus.subscribe().await.unwrap();
        for d in ['1', '2', '3', '4'] {
            bus.publish(dtmf(d)).await.unwrap();
        }
        assert!(matches!(sub.next().await, Some(Delivery::Lagged(2))));
        assert_eq!(digit(sub.next().await), '3');
    }
}
