//! Presence across gateway nodes: each node publishes who is connected to it, per organization,
//! on the bus when that changes (at most every [`COALESCE_EVERY`] per organization, the latest
//! word) and at every heartbeat; every node merges what the others say into its rooms, and
//! forgets a node it has not heard from for three heartbeats. On an in-process bus there are no
//! other nodes and nothing is published. Clients' changes are limited by [`Budget`]s, per
//! connection and per user.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use winnerr_bus::Bus;
use winnerr_events::{CallContext, Envelope, Event, Member, NodePresence, OrgId};

use crate::rooms::Rooms;

/// Heartbeats after which a silent node's people leave.
const MISSED_HEARTBEATS: u32 = 3;

/// At most one publication of an organization's presence per this long (the latest state).
const COALESCE_EVERY: Duration = Duration::from_millis(250);

/// Presence changes one feed connection may make: a burst of 10, then 2 a second.
pub(crate) fn connection_budget() -> Budget {
    Budget::new(10, 2.0)
}

/// Presence changes one user may make in a room, over all their connections on this node.
pub(crate) fn user_budget() -> Budget {
    Budget::new(20, 4.0)
}

/// A token bucket: `burst` at once, refilled at `per_second`.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    tokens: f64,
    burst: f64,
    per_second: f64,
    at: Instant,
}

impl Budget {
    pub(crate) fn new(burst: u32, per_second: f64) -> Self {
        Budget {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_second,
            at: Instant::now(),
        }
    }

    /// Spends one, if there is one.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(crate) fn spawn(
    rooms: Arc<Rooms>,
    bus: Arc<dyn Bus>,
    mut changes: mpsc::UnboundedReceiver<(OrgId, Vec<Member>)>,
    heartbeat: Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(heartbeat);
        let mut flush = tokio::time::interval(COALESCE_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Each organization's latest presence not yet published.
        let mut pending: HashMap<OrgId, Vec<Member>> = HashMap::new();
        loop {
            tokio::select! {
                Some((org, members)) = changes.recv() => {
                    pending.insert(org, members);
                }
                _ = flush.tick(), if !pending.is_empty() => {
                    for (org, members) in pending.drain() {
                        publish(&*bus, rooms.node(), org, members).await;
                    }
                }
                _ = beat.tick() => {
                    pending.clear();
                    rooms.expire_nodes(heartbeat * MISSED_HEARTBEATS);
                    for (org, members) in rooms.local_presence() {
                        publish(&*bus, rooms.node(), org, members).await;
                    }
                }
                _ = shutdown.cancelled() => {
                    // This node's people go with it; the other nodes need not wait to notice.
                    for (org, _) in rooms.local_presence() {
                        publish(&*bus, rooms.node(), org, Vec::new()).await;
                    }
                    break;
                }
            }
        }
    });
}

async fn publish(bus: &dyn Bus, node: &str, org: OrgId, members: Vec<Member>) {
    let ctx = CallContext {
        org_id: org,
        call_id: NodePresence::call_id(),
        agent_id: None,
        lead_id: None,
    };
    let presence = NodePresence {
        node: node.to_owned(),
        members,
    };
    if let Err(err) = bus
        .publish(Envelope::new(&ctx, Event::Presence(presence)))
        .await
    {
        warn!(org_id = %ctx.org_id, error = %err, "presence not published to the other gateway nodes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_allows_its_burst_then_its_rate() {
        let mut budget = Budget::new(3, 10.0);
        assert!((0..3).all(|_| budget.take()));
        assert!(!budget.take(), "the burst is spent");
        std::thread::sleep(Duration::from_millis(120));
        assert!(budget.take(), "refilled at 10 a second");
        assert!(!budget.take());
    }
}
