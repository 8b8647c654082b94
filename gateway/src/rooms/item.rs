//! Which events go where: each event of an organization's stream serialized once, with what
//! decides the channels it belongs on and who may see it. No I/O.

use axum::extract::ws::Utf8Bytes;
use winnerr_events::{CallId, Channel, Envelope, Event, LeadId, UserId};

/// One event of an organization's stream, serialized once for every client.
#[derive(Debug)]
pub struct EventItem {
    pub offset: u64,
    pub call_id: CallId,
    /// The agent whose call it is, for agents who see only their own calls.
    pub agent_id: Option<UserId>,
    /// For a lead score or a message: its lead.
    pub lead_id: Option<LeadId>,
    /// Whether the event belongs on the `org` channel.
    pub overview: bool,
    /// An interim transcript: the first thing a slow client is spared.
    pub interim: bool,
    /// When the event was created (ms since the epoch), to measure delivery delay.
    pub ts_ms: u64,
    /// For transcripts and alerts: the kind and the wall-clock time of the utterance's last
    /// voiced frame, which speech latency is measured from.
    pub spoken: Option<(&'static str, u64)>,
    /// The envelope as JSON.
    envelope: String,
}

impl EventItem {
    pub(crate) fn new(offset: u64, event: &Envelope) -> Self {
        let (overview, interim, lead_id, spoken) = match &event.event {
            Event::Transcript(t) => (
                t.is_final,
                !t.is_final,
                None,
                Some((event.event.kind(), t.last_voiced_at_ms)),
            ),
            // An alert no utterance raised (a refused dial) has no speech to time.
            Event::Alert(a) => (
                true,
                false,
                None,
                (a.last_voiced_at_ms > 0).then_some((event.event.kind(), a.last_voiced_at_ms)),
            ),
            Event::LeadScore(score) => (true, false, Some(score.lead_id.clone()), None),
            // Timed from the webhook that brought it in.
            Event::Message(message) => (
                true,
                false,
                message.lead_id.clone(),
                Some((event.event.kind(), message.received_at_ms)),
            ),
            Event::CallStarted(_) | Event::CallEnded(_) => (true, false, None, None),
            // A call's own view (its channel), not the organization's overview.
            Event::AudioActivity(_)
            | Event::Dtmf(_)
            | Event::CallSignals(_)
            | Event::CallSummary(_)
            | Event::Presence(_)
            | Event::Unknown => (false, false, None, None),
        };
        Self {
            offset,
            call_id: event.call_id.clone(),
            agent_id: event.agent_id.clone(),
            lead_id,
            overview,
            interim,
            ts_ms: event.ts_ms,
            spoken,
            envelope: serde_json::to_string(event).expect("envelopes always serialize"),
        }
    }

    /// Whether the event belongs on `channel`.
    pub fn on(&self, channel: &Channel) -> bool {
        match channel {
            Channel::Org => self.overview,
            Channel::Calls => true,
            Channel::Call(call) => &self.call_id == call,
            Channel::Lead(lead) => self.lead_id.as_ref() == Some(lead),
        }
    }

    /// The [`winnerr_events::FeedMessage::Event`] of this event on the channel whose name, as a JSON string, is
    /// `channel` (see [`channel_json`]), without serializing the event again.
    pub fn message(&self, channel: &str) -> Utf8Bytes {
        format!(
            r#"{{"type":"event","channel":{channel},"offset":{},"event":{}}}"#,
            self.offset, self.envelope
        )
        .into()
    }
}

/// A channel's name as a JSON string, for [`EventItem::message`].
pub fn channel_json(channel: &Channel) -> String {
    serde_json::to_string(&channel.to_string()).expect("strings serialize")
}

/// What a room hands its clients.
#[derive(Debug)]
pub enum FeedItem {
    Event(EventItem),
    /// A serialized [`winnerr_events::FeedMessage::Presence`], for the `org` channel, at `offset`.
    Presence {
        offset: u64,
        text: Utf8Bytes,
    },
    /// The gateway fell behind the bus and `missed` events were lost before they reached any
    /// room: every client is told (`lagged`). Never kept in the history.
    Lost {
        missed: u64,
    },
}

impl FeedItem {
    pub fn offset(&self) -> u64 {
        match self {
            FeedItem::Event(event) => event.offset,
            FeedItem::Presence { offset, .. } => *offset,
            // Not a position in the room: a notice is never in the history.
            FeedItem::Lost { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use winnerr_events::fixtures::TestCall;

    /// The channels an event is on, of `org`, `calls`, its call's and another call's.
    fn on(event: &Envelope) -> [bool; 4] {
        let item = EventItem::new(1, event);
        [
            Channel::Org,
            Channel::Calls,
            Channel::Call(event.call_id.clone()),
            Channel::Call(CallId::parse("CA-other").unwrap()),
        ]
        .map(|channel| item.on(&channel))
    }

    #[test]
    fn the_overview_gets_what_a_manager_acts_on_and_a_call_channel_only_its_call() {
        let call = TestCall::new("acme", "CA1").agent("agent-1");
        assert_eq!(on(&call.started()), [true, true, true, false]);
        assert_eq!(
            on(&call.said(1, "hello", Some(0.5))),
            [true, true, true, false]
        );
        assert_eq!(on(&call.interim(1, "hel")), [false, true, true, false]);
        assert_eq!(on(&call.dtmf('1')), [false, true, true, false]);
        assert_eq!(on(&call.ended()), [true, true, true, false]);
    }

    #[test]
    fn an_item_knows_its_agent_and_what_a_slow_client_is_spared_first() {
        let call = TestCall::new("acme", "CA1").agent("agent-1");
        let interim = EventItem::new(7, &call.interim(1, "hel"));
        assert!(interim.interim);
        assert_eq!(
            interim.agent_id.as_ref().map(|a| a.as_str()),
            Some("agent-1")
        );
        let said = EventItem::new(8, &call.said(1, "hello", None));
        assert!(!said.interim);
        assert_eq!(said.spoken.map(|(kind, _)| kind), Some("transcript_final"));
        // The message is the envelope as serialized once, on the channel asked for.
        let text = said.message(&channel_json(&Channel::Org));
        let message: winnerr_events::FeedMessage = serde_json::from_str(text.as_str()).unwrap();
        assert!(matches!(
            message,
            winnerr_events::FeedMessage::Event { offset: 8, .. }
        ));
    }
}
