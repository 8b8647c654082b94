//! Messages: SMS and email between a lead and the organization. An inbound message enters through
//! ingest (a webhook), is handed to the voice stage inside the process as an [`InboundMessage`],
//! and leaves it analysed — redacted, with its sentiment — as a [`Message`] event on the bus, where
//! it takes the path of a call's finals: scoring, the store and the feed.

use serde::{Deserialize, Serialize};

use crate::event::{CallContext, Redaction, SentimentScore};
use crate::ids::{CallId, InvalidId};

/// How a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageChannel {
    Sms,
    Email,
}

impl MessageChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageChannel::Sms => "sms",
            MessageChannel::Email => "email",
        }
    }
}

/// Which way a message went: `inbound` from the lead, `outbound` to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Longest message text analysed and kept, in characters: Twilio's limit for one SMS
/// (ten segments); an email's text is cut here.
pub const MAX_MESSAGE_CHARS: usize = 1_600;

/// A message as it travels on the bus, analysed. It travels in an envelope of its organization
/// whose `call_id` is the message's id (Twilio's `SM…`/`MM…` sid; no call has one: call sids
/// start with `CA`), with the lead's agent as its `agent_id`, so the feed shows it to whoever
/// sees that agent's calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub channel: MessageChannel,
    pub direction: Direction,
    /// The person it is from (inbound) or to (outbound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<crate::ids::LeadId>,
    /// The text, redacted as a call's finals are.
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redactions: Vec<Redaction>,
    /// Absent where no sentiment model runs, or the text is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<SentimentScore>,
    /// When this server received it (ms since the Unix epoch): what delivery latency is measured
    /// from.
    pub received_at_ms: u64,
}

/// The id a message travels under: its provider's id, checked as ids are.
pub fn message_id(id: &str) -> Result<CallId, InvalidId> {
    CallId::parse(id)
}

/// An inbound message for the voice stage to analyse: whose it is (the context's `call_id` is the
/// message's id, its lead the sender) and its text as received.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    pub message: CallContext,
    pub channel: MessageChannel,
    pub text: String,
    pub received_at_ms: u64,
}
