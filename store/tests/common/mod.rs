//! What the store tests on both databases share: a whole call's events.

use std::sync::Arc;

use winnerr_events::fixtures::TestCall;
use winnerr_events::{
    ActivityState, AudioActivity, CallContext, CallEnded, Dtmf, EndReason, Envelope, Event,
    StreamStats, Track,
};

pub fn call(org: &str, call: &str) -> CallContext {
    TestCall::new(org, call).agent("agent-1").lead("lead-1").ctx
}

/// A two-track call's start, as the voice stage publishes it.
pub fn started(ctx: &CallContext) -> Event {
    TestCall::of(ctx).two_tracks().started().event
}

/// A whole call as the voice stage publishes it.
pub fn call_events(ctx: &CallContext) -> Vec<Arc<Envelope>> {
    let events = vec![
        started(ctx),
        Event::AudioActivity(AudioActivity {
            track: Track::Inbound,
            state: ActivityState::Speaking,
            at_ms: 500,
            spoken_ms: None,
        }),
        Event::Dtmf(Dtmf {
            track: Track::Inbound,
            digit: '4',
        }),
        Event::AudioActivity(AudioActivity {
            track: Track::Inbound,
            state: ActivityState::Silent,
            at_ms: 2300,
            spoken_ms: Some(1800),
        }),
        Event::Dtmf(Dtmf {
            track: Track::Inbound,
            digit: '2',
        }),
        Event::AudioActivity(AudioActivity {
            track: Track::Outbound,
            state: ActivityState::Silent,
            at_ms: 5000,
            spoken_ms: Some(2100),
        }),
        Event::CallEnded(CallEnded {
            reason: EndReason::Completed,
            duration_ms: 6000,
            stats: StreamStats {
                frames: [300, 300],
                ..StreamStats::default()
            },
        }),
    ];
    events
        .into_iter()
        .map(|e| Arc::new(Envelope::new(ctx, e)))
        .collect()
}
