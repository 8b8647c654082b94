//! The contract between Winnerr's stages: identifiers, call events and feed messages (serde,
//! versioned), and the audio and messages handed from ingest to voice inside one process. What carries the
//! events between stages is `winnerr-bus`, above this crate.

pub mod audio;
pub mod event;
pub mod feed;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod ids;
pub mod message;
pub mod per_org;
pub mod throttle;

pub use audio::{AudioFrame, AudioTap, CallAudio, CallInput, TapHandle};
pub use event::{
    ActivityState, Alert, AlertKind, AudioActivity, CallContext, CallEnded, CallSignals,
    CallStarted, ConsentRecord, Dtmf, EndReason, Envelope, Event, EventId, LeadScore, MediaFormat,
    NodePresence, PostCallSummary, Redaction, SCHEMA_VERSION, ScoreFactor, SentimentArc,
    SentimentScore, StreamStats, Track, Transcript, expiry_deadline, now_ms,
};
pub use feed::{
    Channel, ClientMessage, ErrorCode, FEED_PROTOCOL_VERSION, FeedMessage, InvalidChannel, Member,
    Position, PresenceChange, PresenceStatus,
};
pub use ids::{CallId, InvalidId, LeadId, OrgId, Role, UserId};
pub use message::{Direction, InboundMessage, MAX_MESSAGE_CHARS, Message, MessageChannel};
pub use per_org::PerOrg;
