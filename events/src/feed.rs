//! The feed protocol (`docs/feed-protocol.md`): what a subscriber and the gateway say to each
//! other over the feed WebSocket, as JSON text frames tagged by `type`.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::Envelope;
use crate::ids::{CallId, LeadId, OrgId, Role, UserId};

/// Version of the feed protocol; announced in [`FeedMessage::Hello`].
pub const FEED_PROTOCOL_VERSION: u16 = 2;

/// What a subscriber can follow within its organization (the token names the organization:
/// no channel name reaches another).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `org`: the organization at a glance: calls starting and ending, final transcripts (for
    /// their sentiment), alerts, lead scores, messages, and presence.
    Org,
    /// `calls`: every event of every call the subscriber may see, interim transcripts included.
    Calls,
    /// `call:<id>`: every event of one call.
    Call(CallId),
    /// `lead:<id>`: a lead's score changes and messages.
    Lead(LeadId),
}

/// The WebSocket close codes of Winnerr's own connections (the feed, listen-in, the softphone),
/// beyond the standard ones (1000 normal, 1001 going away, 1008 policy, 1011 server error). Part
/// of the protocol (docs/feed-protocol.md): clients react to them by number.
pub mod close {
    /// The token expired and no fresh one came: get a new token and reconnect.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The client stopped answering the server's pings.
    pub const HEARTBEAT: u16 = 4002;
    /// The client did not read its messages fast enough: reconnect with `since` to recover.
    pub const TOO_SLOW: u16 = 4008;
}

/// A channel name no channel has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChannel {
    #[error("channel {name:?}: {source}")]
    BadId {
        name: String,
        #[source]
        source: crate::ids::InvalidId,
    },
    #[error("unknown channel {0:?}: expected org, calls, call:<call id> or lead:<lead id>")]
    Unknown(String),
}

impl Channel {
    /// Parses a channel name as a subscriber sends it.
    pub fn parse(name: &str) -> Result<Self, InvalidChannel> {
        let invalid = |source| InvalidChannel::BadId {
            name: name.to_owned(),
            source,
        };
        match name.split_once(':') {
            None if name == "org" => Ok(Channel::Org),
            None if name == "calls" => Ok(Channel::Calls),
            Some(("call", id)) => CallId::parse(id).map(Channel::Call).map_err(invalid),
            Some(("lead", id)) => LeadId::parse(id).map(Channel::Lead).map_err(invalid),
            _ => Err(InvalidChannel::Unknown(name.to_owned())),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Org => f.write_str("org"),
            Channel::Calls => f.write_str("calls"),
            Channel::Call(id) => write!(f, "call:{id}"),
            Channel::Lead(id) => write!(f, "lead:{id}"),
        }
    }
}

impl Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Channel::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// A position in an organization's message stream on one gateway node: the stream's epoch
/// (a new one each time the node starts the stream afresh) and the offset of a message in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub offset: u64,
}

/// A person's availability, as they set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    #[default]
    Available,
    Away,
    OnCall,
    Monitoring,
}

/// Someone online in an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: UserId,
    pub role: Role,
    pub status: PresenceStatus,
    /// The call they are on or monitoring, if they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<CallId>,
}

/// How someone's presence changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceChange {
    Join,
    Update,
    /// Left: closed their last connection, or stopped answering heartbeats.
    Leave,
}

/// What the gateway sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedMessage {
    /// First message on every connection. The client is subscribed to nothing yet.
    Hello {
        protocol: u16,
        user_id: UserId,
        org_id: OrgId,
        role: Role,
        /// When the token expires (s since the epoch): send `refresh` before then.
        expires_at: u64,
        /// The gateway pings this often; a client silent for twice as long is gone.
        heartbeat_ms: u64,
    },
    /// A subscription is live. `position` is the stream's head when it started: with
    /// `recovered` true, the messages after the client's `since` were replayed before this;
    /// false, they could not be (another epoch, or older than the history kept), so refetch state.
    Subscribed {
        channel: Channel,
        position: Position,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    Unsubscribed {
        channel: Channel,
    },
    /// A call event on `channel`, at `offset` of the organization's stream.
    Event {
        channel: Channel,
        offset: u64,
        event: Arc<Envelope>,
    },
    /// Who is online in the organization (sent on subscribing to `org`).
    PresenceState {
        members: Vec<Member>,
    },
    /// Someone's presence changed (on `org`).
    Presence {
        change: PresenceChange,
        member: Member,
    },
    /// The token was replaced; the connection now lasts until `expires_at`.
    Refreshed {
        expires_at: u64,
    },
    /// The client's request could not be done; the connection stays open.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
    },
    /// The client fell behind the gateway and `missed` messages of its organization were
    /// dropped for it; re-subscribe with `since` to recover them.
    Lagged {
        missed: u64,
    },
    Pong,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a message this protocol knows.
    BadRequest,
    /// A channel name this protocol does not know.
    UnknownChannel,
    /// The subscriber's role may not follow this channel.
    Forbidden,
    /// The token of a `refresh` is invalid or names someone else.
    BadToken,
    /// The connection follows as many channels as it may (`WINNERR_FEED_MAX_SUBSCRIPTIONS`).
    TooManySubscriptions,
    /// Presence changes come faster than the connection or the user may make them.
    RateLimited,
}

/// What a subscriber sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Follow `channel`; with `since`, first get what came after that position.
    Subscribe {
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Position>,
    },
    Unsubscribe {
        channel: String,
    },
    /// Set one's presence status.
    Presence {
        status: PresenceStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<CallId>,
    },
    /// A fresh token for the same user, before the current one expires.
    Refresh {
        token: String,
    },
    Ping,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_read_as_they_are_written() {
        for name in ["org", "calls", "call:CA123", "lead:lead-9"] {
            assert_eq!(Channel::parse(name).unwrap().to_string(), name);
        }
        for bad in ["", "orgs", "call:", "lead:a b", "org:acme", "call"] {
            assert!(Channel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_messages_are_tagged_json() {
        let subscribe: ClientMessage = serde_json::from_str(
            r#"{"type":"subscribe","channel":"calls","since":{"epoch":7,"offset":12}}"#,
        )
        .unwrap();
        assert_eq!(
            subscribe,
            ClientMessage::Subscribe {
                channel: "calls".into(),
                since: Some(Position {
                    epoch: 7,
                    offset: 12
                })
            }
        );
        let presence: ClientMessage =
            serde_json::from_str(r#"{"type":"presence","status":"on_call","call_id":"CA1"}"#)
                .unwrap();
        assert!(matches!(
            presence,
            ClientMessage::Presence {
                status: PresenceStatus::OnCall,
                ..
            }
        ));
    }
}
