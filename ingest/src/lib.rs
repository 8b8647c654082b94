//! Twilio ingest: the Media Streams WebSocket, the TwiML voice webhook and the Messaging (SMS)
//! webhook, as axum routes.
//!
//! A stream is checked (signature, signed identity), decoded (base64, mu-law) and ordered per
//! track, and handed to the voice stage as a [`winnerr_events::CallAudio`] through a bounded
//! channel; ingest never calls the voice stage itself.

pub mod admission;
pub mod caller_state;
pub mod consent;
pub mod email;
pub mod identity;
mod metrics;
pub mod mulaw;
pub mod outbound;
pub mod protocol;
pub mod routes;
pub mod session;
pub mod signature;
pub mod simulator;
pub mod sms;
pub mod softphone;
pub mod stream;
pub mod twiml;

pub use admission::{CallLimits, Full};
pub use consent::{Consent, ConsentPolicy};
pub use email::EMAIL_PATH;
pub use identity::StreamIdentity;
pub use outbound::{DialAttempt, DialCheck};
pub use routes::{Ingest, IngestConfig, STREAM_PATH, SendError, VOICE_PATH};
pub use simulator::{CallScript, Pace, PlayReport, Simulator};
pub use sms::{Arrival, Inbox, InboxError, MessageIntake, Received, SMS_PATH, Sender};
pub use softphone::{Caller, SOFTPHONE_PATH, Verifier};
pub use stream::{Refusal, StreamCommand};
pub use twiml::Dial;
