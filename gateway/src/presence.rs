//! Presence across gateway nodes: each node publishes who is connected to it, per organization,
//! on the bus when that changes and at every heartbeat; every node merges what the others say
//! into its rooms, and forgets a node it has not heard from for three heartbeats.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use winnerr_events::{Bus, CallContext, Envelope, Event, Member, NodePresence, OrgId};

use crate::rooms::Rooms;

/// Heartbeats after which a silent node's people leave.
const MISSED_HEARTBEATS: u32 = 3;

pub(crate) fn spawn(
    rooms: Arc<Rooms>,
    bus: Arc<dyn Bus>,
    mut changes: mpsc::UnboundedReceiver<(OrgId, Vec<Member>)>,
    heartbeat: Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(heartbeat);
        loop {
            tokio::select! {
                Some((org, members)) = changes.recv() => {
                    publish(&*bus, rooms.node(), org, members).await;
                }
                _ = beat.tick() => {
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
