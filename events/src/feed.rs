//! Messages a feed subscriber receives over its WebSocket (JSON text frames, tagged by `type`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::Envelope;
use crate::ids::{OrgId, Role, UserId};

/// Version of the feed protocol; announced in [`FeedMessage::Hello`].
pub const FEED_PROTOCOL_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedMessage {
    /// First message on every connection: the subscription is live from here on.
    Hello {
        protocol: u16,
        user_id: UserId,
        org_id: OrgId,
        role: Role,
    },
    /// A call event of the subscriber's organization.
    Event { event: Arc<Envelope> },
    /// The subscriber fell behind and `missed` events were dropped for it.
    Lagged { missed: u64 },
}
