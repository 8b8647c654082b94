//! Event fixtures for tests and benchmarks (feature `fixtures`): one builder of calls' events,
//! as the voice stage publishes them, instead of a copy in every test.
//!
//! ```
//! use winnerr_events::fixtures::TestCall;
//! let call = TestCall::new("acme", "CA1").agent("agent-1").lead("lead-1");
//! let events = [call.started(), call.dtmf('4'), call.said(1, "hello", Some(0.5)), call.ended()];
//! assert!(events.iter().all(|e| e.call_id.as_str() == "CA1"));
//! ```

use crate::event::{
    CallContext, CallEnded, CallStarted, Dtmf, EndReason, Envelope, Event, MediaFormat,
    SentimentScore, StreamStats, Track, Transcript,
};
use crate::ids::{CallId, LeadId, OrgId, UserId};

/// A call of one organization whose events a test publishes.
#[derive(Debug, Clone)]
pub struct TestCall {
    pub ctx: CallContext,
    /// The tracks its start announces (the caller's only, unless [`TestCall::two_tracks`]).
    pub tracks: Vec<Track>,
}

impl TestCall {
    /// Call `call` of `org`, with no agent and no lead. Panics on an invalid id (a test's typo).
    pub fn new(org: &str, call: &str) -> Self {
        Self {
            ctx: CallContext {
                org_id: OrgId::parse(org).expect("a valid organization id"),
                call_id: CallId::parse(call).expect("a valid call id"),
                agent_id: None,
                lead_id: None,
            },
            tracks: vec![Track::Inbound],
        }
    }

    /// The call of `ctx`, the caller's track only.
    pub fn of(ctx: &CallContext) -> Self {
        Self {
            ctx: ctx.clone(),
            tracks: vec![Track::Inbound],
        }
    }

    pub fn agent(mut self, agent: &str) -> Self {
        self.ctx.agent_id = Some(UserId::parse(agent).expect("a valid user id"));
        self
    }

    pub fn lead(mut self, lead: &str) -> Self {
        self.ctx.lead_id = Some(LeadId::parse(lead).expect("a valid lead id"));
        self
    }

    /// Both the caller's and the agent's track.
    pub fn two_tracks(mut self) -> Self {
        self.tracks = vec![Track::Inbound, Track::Outbound];
        self
    }

    /// `event` of this call, with a fresh id and the time now.
    pub fn event(&self, event: Event) -> Envelope {
        Envelope::new(&self.ctx, event)
    }

    /// The call's start, as the voice stage publishes it.
    pub fn started(&self) -> Envelope {
        self.event(Event::CallStarted(CallStarted {
            stream_sid: format!("MZ{}", self.ctx.call_id),
            account_sid: "AC1".into(),
            lead_id: self.ctx.lead_id.clone(),
            tracks: self.tracks.clone(),
            media_format: MediaFormat::twilio_mulaw(),
            consent: None,
        }))
    }

    /// The caller pressing `digit`.
    pub fn dtmf(&self, digit: char) -> Envelope {
        self.event(Event::Dtmf(Dtmf {
            track: Track::Inbound,
            digit,
        }))
    }

    /// The caller's final utterance number `utterance` (1 s long), with sentiment `score` (in
    /// [-1, 1]) where given.
    pub fn said(&self, utterance: u32, text: &str, score: Option<f32>) -> Envelope {
        self.event(Event::Transcript(transcript(utterance, true, text, score)))
    }

    /// The caller's interim of utterance `utterance`, no sentiment.
    pub fn interim(&self, utterance: u32, text: &str) -> Envelope {
        self.event(Event::Transcript(transcript(utterance, false, text, None)))
    }

    /// The call's end: completed after six seconds.
    pub fn ended(&self) -> Envelope {
        self.ended_after(EndReason::Completed, 6_000)
    }

    pub fn ended_after(&self, reason: EndReason, duration_ms: u64) -> Envelope {
        self.event(Event::CallEnded(CallEnded {
            reason,
            duration_ms,
            stats: StreamStats::default(),
        }))
    }
}

/// A caller's transcript of one second, its sentiment labelled by the sign of `score`.
pub fn transcript(utterance: u32, is_final: bool, text: &str, score: Option<f32>) -> Transcript {
    Transcript {
        track: Track::Inbound,
        utterance,
        is_final,
        text: text.into(),
        stable_text: if is_final { text.into() } else { String::new() },
        start_ms: 0,
        end_ms: 1_000,
        last_voiced_at_ms: crate::event::now_ms(),
        sentiment: score.map(|score| SentimentScore {
            label: match score {
                s if s > 0.2 => "positive",
                s if s < -0.2 => "negative",
                _ => "neutral",
            }
            .into(),
            probabilities: [(-score).max(0.0), 1.0 - score.abs(), score.max(0.0)],
            score,
            rolling: score,
        }),
        redactions: Vec::new(),
    }
}
