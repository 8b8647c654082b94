//! The contract between Winnerr's stages: identifiers, call events and feed messages (serde,
//! versioned), the audio handed from ingest to voice inside one process, and the [`Bus`] that
//! carries events between stages.

pub mod audio;
pub mod bus;
pub mod event;
pub mod feed;
pub mod ids;
mod metrics;

pub use audio::{AudioFrame, AudioTap, CallAudio, CallInput, TapHandle};
pub use bus::{
    Bus, BusError, Delivery, InProcessBus, KafkaBus, KafkaConfig, RecentIds, Subscription,
};
pub use event::{
    ActivityState, Alert, AlertKind, AudioActivity, CallContext, CallEnded, CallStarted, Dtmf,
    EndReason, Envelope, Event, EventId, LeadScore, MediaFormat, NodePresence, Redaction,
    SCHEMA_VERSION, ScoreFactor, SentimentScore, StreamStats, Track, Transcript, expiry_deadline,
    now_ms,
};
pub use feed::{
    Channel, ClientMessage, ErrorCode, FEED_PROTOCOL_VERSION, FeedMessage, Member, Position,
    PresenceChange, PresenceStatus,
};
pub use ids::{CallId, InvalidId, LeadId, OrgId, Role, UserId};
