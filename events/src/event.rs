//! Call events: what leaves the voice stage and travels on the bus to every other stage.
//!
//! The wire form is JSON: an [`Envelope`] with the event's fields flattened in and its kind under
//! `"type"`. `v` is the schema version; readers accept events of any version and map a `type` they
//! do not know to [`Event::Unknown`], so producers can add kinds without breaking consumers.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{CallId, LeadId, OrgId, UserId};

/// Version of the envelope and event schema that this build writes.
pub const SCHEMA_VERSION: u16 = 1;

/// Unique id of one event, time-ordered (UUIDv7), so consumers can drop redeliveries.
pub type EventId = Uuid;

/// One track of a call: `inbound` is the caller (customer), `outbound` the agent's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    Inbound,
    Outbound,
}

impl Track {
    pub const ALL: [Track; 2] = [Track::Inbound, Track::Outbound];

    pub fn as_str(self) -> &'static str {
        match self {
            Track::Inbound => "inbound",
            Track::Outbound => "outbound",
        }
    }

    /// Dense index, for per-track arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Who a call belongs to: carried by every event of the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    pub org_id: OrgId,
    pub call_id: CallId,
    pub agent_id: Option<UserId>,
    pub lead_id: Option<LeadId>,
}

/// An event with the identity of the call it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u16,
    pub id: EventId,
    pub org_id: OrgId,
    pub call_id: CallId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<UserId>,
    /// Wall-clock time the event was produced, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

impl Envelope {
    /// Wraps `event` for the call `ctx`, stamping a fresh id and the current time.
    pub fn new(ctx: &CallContext, event: Event) -> Self {
        Self {
            v: SCHEMA_VERSION,
            id: Uuid::now_v7(),
            org_id: ctx.org_id.clone(),
            call_id: ctx.call_id.clone(),
            agent_id: ctx.agent_id.clone(),
            ts_ms: now_ms(),
            event,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The furthest ahead a token's expiry is kept as a deadline: an `exp` beyond it counts as this
/// (no clock arithmetic on a claim from outside can overflow).
const MAX_EXPIRY_AHEAD: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 60 * 60);

/// When a token that expires at `exp_s` (seconds since the Unix epoch) runs out, on the
/// runtime's clock: now for one already past, at most a year ahead.
pub fn expiry_deadline(exp_s: u64) -> tokio::time::Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ahead = std::time::Duration::from_secs(exp_s)
        .saturating_sub(now)
        .min(MAX_EXPIRY_AHEAD);
    tokio::time::Instant::now() + ahead
}

/// The kinds of call event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    CallStarted(CallStarted),
    AudioActivity(AudioActivity),
    Dtmf(Dtmf),
    Transcript(Transcript),
    Alert(Alert),
    /// The call's talk signals so far (every 10 s of call).
    CallSignals(CallSignals),
    /// What the call came to, once, just before its `call_ended`.
    CallSummary(PostCallSummary),
    CallEnded(CallEnded),
    LeadScore(LeadScore),
    /// An SMS or email to or from a lead, analysed (see [`crate::message`]).
    Message(crate::message::Message),
    /// Who is online on a gateway node: not a call event (see [`NodePresence`]).
    Presence(NodePresence),
    /// A kind this build does not know (written by a newer producer); skip it.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// The `type` name, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::CallStarted(_) => "call_started",
            Event::AudioActivity(_) => "audio_activity",
            Event::Dtmf(_) => "dtmf",
            Event::Transcript(t) if t.is_final => "transcript_final",
            Event::Transcript(_) => "transcript_interim",
            Event::Alert(_) => "alert",
            Event::CallSignals(_) => "call_signals",
            Event::CallSummary(_) => "call_summary",
            Event::CallEnded(_) => "call_ended",
            Event::LeadScore(_) => "lead_score",
            Event::Message(_) => "message",
            Event::Presence(_) => "presence",
            Event::Unknown => "unknown",
        }
    }
}

/// Audio format of a stream as its source announced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u16,
}

impl MediaFormat {
    /// Twilio Media Streams' audio: 8 kHz mu-law, mono.
    pub fn twilio_mulaw() -> Self {
        Self {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8000,
            channels: 1,
        }
    }
}

/// A call's media stream began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStarted {
    pub stream_sid: String,
    pub account_sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<LeadId>,
    pub tracks: Vec<Track>,
    pub media_format: MediaFormat,
    /// What the caller was told of the recording before the stream started (absent: nothing,
    /// the organization's policy asks for nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentRecord>,
}

/// How a call's consent to be recorded and transcribed was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentRecord {
    /// The caller heard the disclosure before anything of the call was streamed.
    Disclosed,
    /// The caller was asked and pressed the digit that agrees before anything was streamed.
    OptedIn,
}

impl ConsentRecord {
    pub const ALL: [ConsentRecord; 2] = [ConsentRecord::Disclosed, ConsentRecord::OptedIn];

    /// The record's name, as the wire, the store and the stream's signed parameter write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentRecord::Disclosed => "disclosed",
            ConsentRecord::OptedIn => "opted_in",
        }
    }
}

/// Whether someone is speaking on a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityState {
    Speaking,
    Silent,
}

/// Speech started or stopped on one track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioActivity {
    pub track: Track,
    pub state: ActivityState,
    /// When the change happened, on the call's clock (ms from the stream's start).
    pub at_ms: u64,
    /// For `silent`: how long the speech that just ended lasted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoken_ms: Option<u64>,
}

/// A key pressed on the phone's keypad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dtmf {
    pub track: Track,
    pub digit: char,
}

/// Words spoken on one track: interim hypotheses while someone speaks, then one final per
/// utterance with its sentiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub track: Track,
    /// The utterance's number on its track (from 1); interims and the final share it.
    pub utterance: u32,
    pub is_final: bool,
    /// The whole hypothesis (for a final, the transcript).
    pub text: String,
    /// The prefix of `text` that will not change any more: words two consecutive hypotheses
    /// agreed on (all of `text` for a final).
    pub stable_text: String,
    /// Start and end of the utterance (so far) on the call's clock, ms from the stream's start.
    pub start_ms: u64,
    pub end_ms: u64,
    /// Wall-clock time of the utterance's last voiced frame (ms since the Unix epoch): what
    /// delivery latency is measured from.
    pub last_voiced_at_ms: u64,
    /// Finals only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<SentimentScore>,
    /// What the voice stage redacted from `text` (and `stable_text`): each mask's kind and
    /// byte span in `text`, never the value. Left out when nothing was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redactions: Vec<Redaction>,
}

/// A mask in a transcript: `card`, `ssn`, `phone`, `email` or `bank`, at `start..end` of its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

/// The sentiment of an utterance and the track's rolling sentiment after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentimentScore {
    /// `negative`, `neutral` or `positive`.
    pub label: String,
    /// Probabilities of negative, neutral, positive.
    pub probabilities: [f32; 3],
    /// P(positive) − P(negative), in [-1, 1].
    pub score: f32,
    /// Exponentially weighted mean of the track's scores so far, this one included.
    pub rolling: f32,
}

/// Something in a call that a manager should see now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub track: Track,
    pub utterance: u32,
    #[serde(flatten)]
    pub kind: AlertKind,
    /// The utterance that raised it.
    pub text: String,
    pub last_voiced_at_ms: u64,
}

/// Why an alert was raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "alert", rename_all = "snake_case")]
pub enum AlertKind {
    /// The track's rolling sentiment fell by more than the threshold from its best in the call.
    SentimentDrop { from: f32, to: f32 },
    /// A phrase from the organization's watch list was said.
    Keyword { keyword: String },
    /// The call tried to dial a number on the organization's do-not-call list (the last four
    /// digits); it was not placed. Raised by the voice webhook, before any utterance.
    DoNotCall { last4: String },
    /// Coaching: the agent has held the floor this long without the customer taking it.
    Monologue { ms: u64 },
    /// Coaching: the agent's share of the talk has stayed above the organization's threshold.
    TalkRatio { ratio: f32 },
    /// Coaching: the customer has not spoken for this long.
    CustomerSilent { ms: u64 },
    /// Coaching: the agent has started speaking over the customer this many times.
    Interruptions { count: u32 },
}

impl AlertKind {
    /// The kind's name, as the wire's `alert` field has it.
    pub fn name(&self) -> &'static str {
        match self {
            AlertKind::SentimentDrop { .. } => "sentiment_drop",
            AlertKind::Keyword { .. } => "keyword",
            AlertKind::DoNotCall { .. } => "do_not_call",
            AlertKind::Monologue { .. } => "monologue",
            AlertKind::TalkRatio { .. } => "talk_ratio",
            AlertKind::CustomerSilent { .. } => "customer_silent",
            AlertKind::Interruptions { .. } => "interruptions",
        }
    }
}

/// Who talked how much, so far in a call, from its two tracks' speech activity (the agent is
/// the outbound track, the customer the inbound one) and its finals' words.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallSignals {
    /// On the call's clock.
    pub at_ms: u64,
    /// The last report of the call, sent before its end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last: bool,
    pub agent_talk_ms: u64,
    pub customer_talk_ms: u64,
    /// The agent's share of the talk (absent before anyone spoke).
    pub agent_talk_ratio: Option<f32>,
    /// The longest turn each side held (from its first word to its last before the other
    /// side took the floor; backchannels under a second do not take it).
    pub longest_agent_turn_ms: u64,
    pub longest_customer_turn_ms: u64,
    /// Times the agent started speaking over the customer, and the customer over the agent.
    pub agent_interruptions: u32,
    pub customer_interruptions: u32,
    /// Time both spoke at once.
    pub overlap_ms: u64,
    /// Silences of both sides of 3 s or more, and the longest.
    pub silences: u32,
    pub longest_silence_ms: u64,
    /// Words per minute of talk, from the finals (absent under 10 s of talk).
    pub agent_words_per_minute: Option<f32>,
    pub customer_words_per_minute: Option<f32>,
    /// Questions the agent asked (finals' question marks).
    pub agent_questions: u32,
    /// Turns each side took (the floor passing to it).
    #[serde(default)]
    pub agent_turns: u32,
    #[serde(default)]
    pub customer_turns: u32,
}

/// A call's post-call summary: its talk signals at the end, each side's sentiment from its first
/// final to its last (the rolling value), and the alerts raised, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostCallSummary {
    pub signals: CallSignals,
    pub agent_sentiment: Option<SentimentArc>,
    pub customer_sentiment: Option<SentimentArc>,
    /// Alerts raised in the call by kind (`sentiment_drop`, `keyword`, `monologue`, …).
    pub alerts: std::collections::BTreeMap<String, u32>,
    /// The call's keyterms heard in its finals (its organization's words, the lead's and the
    /// agent's names), in the order first heard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyterms: Vec<String>,
}

/// A side's rolling sentiment after its first final and after its last.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SentimentArc {
    pub start: f32,
    pub end: f32,
}

/// How a call's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The source said the stream stopped (Twilio `stop`).
    Completed,
    /// The connection dropped without a stop.
    Abandoned,
    /// The server closed the stream because of bad input.
    Rejected,
    /// The server is shutting down.
    Shutdown,
}

/// What a stream delivered, counted over its whole life.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStats {
    /// Media frames accepted, per track (inbound, outbound).
    pub frames: [u64; 2],
    /// Sequence numbers that never arrived.
    pub missing: u64,
    /// Frames that arrived after later audio had already been passed on, and were dropped.
    pub late: u64,
    /// Frames that could not be decoded, and were skipped.
    pub bad_frames: u64,
    /// Frames dropped because the voice stage could not keep up.
    pub dropped: u64,
}

/// A call's media stream ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEnded {
    pub reason: EndReason,
    /// Length of the audio received, on the call's clock.
    pub duration_ms: u64,
    pub stats: StreamStats,
}

/// Who is online in an organization on one gateway node. Each node publishes it when that
/// changes and at every heartbeat, so that every node's presence rooms show everyone; a node not
/// heard from for three heartbeats is taken to be gone. It travels in an envelope of its
/// organization with [`NodePresence::call_id`] as its call id, and only gateways read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePresence {
    /// The publishing gateway node.
    pub node: String,
    /// Everyone connected to that node, now (empty: nobody; the node is leaving).
    pub members: Vec<crate::feed::Member>,
}

impl NodePresence {
    /// The call id that presence envelopes carry (no call has it: Twilio's start with `CA`).
    pub fn call_id() -> CallId {
        CallId::parse("presence").expect("a valid id")
    }
}

/// A lead's score moved (or its reasons changed) because of an event of the call it is on: the
/// probability that the lead closes, shown as 0–100, with every feature's part in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadScore {
    pub lead_id: LeadId,
    /// `round(100 × probability)`.
    pub score: u8,
    pub probability: f32,
    /// `intercept + Σ factors[].contribution`.
    pub logit: f32,
    /// The logit of a lead at the training average.
    pub intercept: f32,
    /// Every feature's part in the logit, highest contribution first: the first are the top
    /// positive reasons, the last the top negative ones.
    pub factors: Vec<ScoreFactor>,
    pub model_version: String,
    /// The event that moved the score, and when it was produced (ms since the epoch).
    pub cause: EventId,
    pub cause_ts_ms: u64,
}

/// One feature's part in a lead's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreFactor {
    pub feature: String,
    /// What a manager reads for it ("plans to move soon" for `moves_soon`).
    #[serde(default)]
    pub label: String,
    /// `behavioural`, `engagement`, `demographic`, `timeline` or `source`.
    pub group: String,
    /// The feature's value for this lead.
    pub value: f32,
    /// Its term of the logit.
    pub contribution: f32,
}

impl LeadScore {
    /// The reasons the score is up: the `n` factors that raise it most, largest first.
    pub fn raising(&self, n: usize) -> impl Iterator<Item = &ScoreFactor> {
        ScoreFactor::raising(&self.factors, n)
    }

    /// The reasons the score is down: the `n` factors that lower it most, largest first.
    pub fn lowering(&self, n: usize) -> impl Iterator<Item = &ScoreFactor> {
        ScoreFactor::lowering(&self.factors, n)
    }
}

impl ScoreFactor {
    /// What a manager reads for it: its label, or its id where the score predates labels.
    pub fn name(&self) -> &str {
        if self.label.is_empty() {
            &self.feature
        } else {
            &self.label
        }
    }

    /// Of `factors` sorted highest contribution first, the `n` that raise a score most.
    pub fn raising(factors: &[ScoreFactor], n: usize) -> impl Iterator<Item = &ScoreFactor> {
        factors.iter().filter(|f| f.contribution > 0.0).take(n)
    }

    /// Of `factors` sorted highest contribution first, the `n` that lower a score most.
    pub fn lowering(factors: &[ScoreFactor], n: usize) -> impl Iterator<Item = &ScoreFactor> {
        factors
            .iter()
            .rev()
            .filter(|f| f.contribution < 0.0)
            .take(n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn alert_kinds_are_named_as_on_the_wire() {
        use super::AlertKind;
        for kind in [
            AlertKind::SentimentDrop {
                from: 0.5,
                to: -0.2,
            },
            AlertKind::Keyword {
                keyword: "refund".into(),
            },
            AlertKind::DoNotCall {
                last4: "0199".into(),
            },
            AlertKind::Monologue { ms: 1 },
            AlertKind::TalkRatio { ratio: 0.8 },
            AlertKind::CustomerSilent { ms: 1 },
            AlertKind::Interruptions { count: 3 },
        ] {
            assert_eq!(serde_json::to_value(&kind).unwrap()["alert"], kind.name());
        }
    }

    use super::*;

    fn ctx() -> CallContext {
        crate::fixtures::TestCall::new("acme", "CA1")
            .agent("u1")
            .ctx
    }

    #[test]
    fn round_trips_with_the_type_flattened() {
        let env = Envelope::new(
            &ctx(),
            Event::Dtmf(Dtmf {
                track: Track::Inbound,
                digit: '5',
            }),
        );
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["type"], "dtmf");
        assert_eq!(json["digit"], "5");
        assert_eq!(json["org_id"], "acme");
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn a_newer_event_kind_reads_as_unknown() {
        let env = Envelope::new(&ctx(), Event::Unknown);
        let mut json = serde_json::to_value(&env).unwrap();
        json["type"] = "hologram".into();
        json["v"] = 7.into();
        json["extra"] = "ignored".into();
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back.event, Event::Unknown);
        assert_eq!(back.v, 7);
    }
}
