//! Per-organization rooms. One pump reads the bus, serializes each event once, and hands it to
//! its organization's room; a room exists only while someone listens. A client that falls behind
//! its room's buffer loses the oldest messages (and is told), never anyone else's.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use winnerr_events::{
    Delivery, Envelope, Event, FeedMessage, OrgId, RecentIds, Subscription, UserId,
};

use crate::metrics;

/// One event, ready to send to any client of its organization.
#[derive(Debug)]
pub struct FeedItem {
    /// The agent whose call it is, for agents who see only their own calls.
    pub agent_id: Option<UserId>,
    /// When the event was created (ms since the epoch), to measure delivery delay.
    pub ts_ms: u64,
    /// For transcripts and alerts: the kind and the wall-clock time of the utterance's last
    /// voiced frame, which speech latency is measured from.
    pub spoken: Option<(&'static str, u64)>,
    /// The serialized [`FeedMessage::Event`].
    pub text: Utf8Bytes,
}

/// Rooms by organization.
pub struct Rooms {
    rooms: DashMap<OrgId, broadcast::Sender<Arc<FeedItem>>>,
    capacity: usize,
}

impl Rooms {
    /// Each client may fall `capacity` messages behind before it loses the oldest.
    pub fn new(capacity: usize) -> Self {
        Self {
            rooms: DashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Joins `org`'s room, creating it if needed.
    pub fn join(&self, org: &OrgId) -> broadcast::Receiver<Arc<FeedItem>> {
        let receiver = self
            .rooms
            .entry(org.clone())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        metrics::rooms(self.rooms.len());
        receiver
    }

    /// Removes `org`'s room if its last client has gone (drop the receiver first).
    pub fn leave(&self, org: &OrgId) {
        self.rooms
            .remove_if(org, |_, sender| sender.receiver_count() == 0);
        metrics::rooms(self.rooms.len());
    }

    /// Hands one event to its organization's room, if anyone is listening there.
    pub fn deliver(&self, event: Arc<Envelope>) {
        let Some(room) = self
            .rooms
            .get(&event.org_id)
            .map(|room| room.value().clone())
        else {
            return;
        };
        let agent_id = event.agent_id.clone();
        let ts_ms = event.ts_ms;
        let spoken = match &event.event {
            Event::Transcript(t) => Some((event.event.kind(), t.last_voiced_at_ms)),
            Event::Alert(a) => Some((event.event.kind(), a.last_voiced_at_ms)),
            _ => None,
        };
        let text = serde_json::to_string(&FeedMessage::Event { event })
            .expect("feed messages always serialize");
        let _ = room.send(Arc::new(FeedItem {
            agent_id,
            ts_ms,
            spoken,
            text: text.into(),
        }));
    }

    /// Reads `subscription` into the rooms until `shutdown`; an event delivered twice (a bus
    /// redelivery) reaches clients once.
    pub fn spawn_pump(
        self: &Arc<Self>,
        mut subscription: Subscription,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let rooms = self.clone();
        let mut recent = RecentIds::new(RECENT_IDS);
        tokio::spawn(async move {
            loop {
                let delivery = tokio::select! {
                    delivery = subscription.next() => delivery,
                    _ = shutdown.cancelled() => break,
                };
                match delivery {
                    Some(Delivery::Event(event)) => {
                        if recent.first_time(event.id) {
                            rooms.deliver(event);
                        } else {
                            metrics::feed_duplicate();
                        }
                    }
                    Some(Delivery::Lagged(missed)) => {
                        metrics::feed_dropped(missed);
                        warn!(
                            missed,
                            "gateway fell behind the bus; events dropped for every room"
                        );
                    }
                    None => break,
                }
            }
        })
    }
}

/// Event ids remembered to drop redeliveries: far more than a bus redelivers after a reconnect.
const RECENT_IDS: usize = 65_536;
