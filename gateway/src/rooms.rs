//! Per-organization rooms. One pump reads the bus, serializes each event once, numbers it in its
//! organization's stream and hands it to the room, which keeps a bounded history for clients
//! that reconnect and tracks who is online. A room lives while it has clients, and for
//! [`IDLE_ROOM_TTL`] after its last one left, so a client that reconnects can still recover.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use winnerr_events::{
    CallId, Channel, Delivery, Envelope, Event, FeedMessage, LeadId, Member, OrgId, Position,
    PresenceChange, PresenceStatus, RecentIds, Subscription, UserId,
};

use crate::metrics;

/// How long a room without clients keeps its history.
pub const IDLE_ROOM_TTL: Duration = Duration::from_secs(600);

/// One event of an organization's stream, serialized once for every client.
#[derive(Debug)]
pub struct EventItem {
    pub offset: u64,
    pub call_id: CallId,
    /// The agent whose call it is, for agents who see only their own calls.
    pub agent_id: Option<UserId>,
    /// For a lead score: its lead.
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
    fn new(offset: u64, event: &Envelope) -> Self {
        let (overview, interim, lead_id, spoken) = match &event.event {
            Event::Transcript(t) => (
                t.is_final,
                !t.is_final,
                None,
                Some((event.event.kind(), t.last_voiced_at_ms)),
            ),
            Event::Alert(a) => (
                true,
                false,
                None,
                Some((event.event.kind(), a.last_voiced_at_ms)),
            ),
            Event::LeadScore(score) => (true, false, Some(score.lead_id.clone()), None),
            Event::CallStarted(_) | Event::CallEnded(_) => (true, false, None, None),
            Event::AudioActivity(_) | Event::Dtmf(_) | Event::Unknown => (false, false, None, None),
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

    /// The [`FeedMessage::Event`] of this event on `channel`, without serializing it again.
    pub fn message(&self, channel: &Channel) -> Utf8Bytes {
        let channel = serde_json::to_string(&channel.to_string()).expect("strings serialize");
        format!(
            r#"{{"type":"event","channel":{channel},"offset":{},"event":{}}}"#,
            self.offset, self.envelope
        )
        .into()
    }
}

/// What a room hands its clients.
#[derive(Debug)]
pub enum FeedItem {
    Event(EventItem),
    /// A serialized [`FeedMessage::Presence`], for the `org` channel, at `offset`.
    Presence {
        offset: u64,
        text: Utf8Bytes,
    },
}

impl FeedItem {
    pub fn offset(&self) -> u64 {
        match self {
            FeedItem::Event(event) => event.offset,
            FeedItem::Presence { offset, .. } => *offset,
        }
    }
}

/// One organization's room.
pub struct Room {
    epoch: u64,
    sender: broadcast::Sender<Arc<FeedItem>>,
    state: Mutex<RoomState>,
}

struct RoomState {
    /// Offset of the last item handed out (offsets start at 1).
    head: u64,
    /// The newest events, oldest first.
    history: VecDeque<Arc<FeedItem>>,
    history_limit: usize,
    /// The highest offset no longer in the history (0: nothing lost yet).
    evicted_through: u64,
    /// The agent of each call seen, to refuse an agent a colleague's call.
    call_agents: HashMap<CallId, Option<UserId>>,
    /// Who is online, with their number of connections.
    presence: HashMap<UserId, (Member, usize)>,
    clients: usize,
    idle_since: Option<Instant>,
}

/// Where a new subscription starts, and what it missed since the client's position.
pub struct Start {
    pub position: Position,
    pub recovered: Option<bool>,
    pub replay: Vec<Arc<FeedItem>>,
    /// For `org`: who is online now.
    pub members: Option<Vec<Member>>,
}

impl Room {
    fn new(capacity: usize, history_limit: usize) -> Self {
        Self {
            // The random half of a fresh v7 UUID, below 2^53 so JavaScript reads it exactly.
            epoch: winnerr_events::EventId::now_v7().as_u64_pair().1 >> 11,
            sender: broadcast::channel(capacity).0,
            state: Mutex::new(RoomState {
                head: 0,
                history: VecDeque::with_capacity(history_limit.min(4096)),
                history_limit,
                evicted_through: 0,
                call_agents: HashMap::new(),
                presence: HashMap::new(),
                clients: 0,
                idle_since: Some(Instant::now()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than losing the room; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A receiver of the room's items from now on.
    pub fn receiver(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.sender.subscribe()
    }

    fn publish(&self, event: &Envelope) {
        let mut state = self.state();
        state.head += 1;
        let item = Arc::new(FeedItem::Event(EventItem::new(state.head, event)));
        if matches!(event.event, Event::CallStarted(_))
            || !state.call_agents.contains_key(&event.call_id)
        {
            if state.call_agents.len() >= CALLS_REMEMBERED {
                state.call_agents.clear();
            }
            state
                .call_agents
                .insert(event.call_id.clone(), event.agent_id.clone());
        }
        state.history.push_back(item.clone());
        while state.history.len() > state.history_limit {
            if let Some(old) = state.history.pop_front() {
                state.evicted_through = old.offset();
            }
        }
        // Sent under the lock, so offsets reach receivers in order.
        let _ = self.sender.send(item);
    }

    /// The agent of `call`, if the room has seen the call.
    pub fn call_agent(&self, call: &CallId) -> Option<Option<UserId>> {
        self.state().call_agents.get(call).cloned()
    }

    /// Starts a subscription to `channel` at the head of the stream; with `since`, also returns
    /// the items after it, if they are all still there.
    pub fn start(&self, channel: &Channel, since: Option<Position>) -> Start {
        let state = self.state();
        let position = Position {
            epoch: self.epoch,
            offset: state.head,
        };
        let mut start = Start {
            position,
            recovered: None,
            replay: Vec::new(),
            members: (channel == &Channel::Org).then(|| {
                let mut members: Vec<Member> =
                    state.presence.values().map(|(m, _)| m.clone()).collect();
                members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
                members
            }),
        };
        if let Some(since) = since {
            let recoverable = since.epoch == self.epoch
                && since.offset >= state.evicted_through
                && since.offset <= state.head;
            start.recovered = Some(recoverable);
            metrics::recovery(recoverable);
            if recoverable {
                start.replay = state
                    .history
                    .iter()
                    .filter(|item| item.offset() > since.offset)
                    .filter(|item| matches!(&***item, FeedItem::Event(e) if e.on(channel)))
                    .cloned()
                    .collect();
            }
        }
        start
    }

    /// Someone connected: they are online (a join for everyone if it is their first connection).
    pub fn join(&self, member: Member) {
        let mut state = self.state();
        state.clients += 1;
        state.idle_since = None;
        let user = member.user_id.clone();
        let entry = state.presence.entry(user).or_insert((member.clone(), 0));
        entry.1 += 1;
        if entry.1 == 1 {
            self.announce(&mut state, PresenceChange::Join, member);
        }
    }

    /// Someone set their status (on every connection of theirs).
    pub fn update(&self, user: &UserId, status: PresenceStatus, call_id: Option<CallId>) {
        let mut state = self.state();
        let Some((member, _)) = state.presence.get_mut(user) else {
            return;
        };
        if member.status == status && member.call_id == call_id {
            return;
        }
        member.status = status;
        member.call_id = call_id;
        let member = member.clone();
        self.announce(&mut state, PresenceChange::Update, member);
    }

    /// One of someone's connections closed: they leave when it was their last.
    pub fn leave(&self, user: &UserId) {
        let mut state = self.state();
        state.clients = state.clients.saturating_sub(1);
        if state.clients == 0 {
            state.idle_since = Some(Instant::now());
        }
        let Some((_, connections)) = state.presence.get_mut(user) else {
            return;
        };
        *connections -= 1;
        if *connections == 0
            && let Some((member, _)) = state.presence.remove(user)
        {
            self.announce(&mut state, PresenceChange::Leave, member);
        }
    }

    fn announce(&self, state: &mut RoomState, change: PresenceChange, member: Member) {
        state.head += 1;
        let text = serde_json::to_string(&FeedMessage::Presence { change, member })
            .expect("feed messages always serialize");
        let _ = self.sender.send(Arc::new(FeedItem::Presence {
            offset: state.head,
            text: text.into(),
        }));
        metrics::presence_changed(change);
    }

    fn members(&self) -> usize {
        self.state().presence.len()
    }

    fn idle_for(&self) -> Option<Duration> {
        self.state().idle_since.map(|since| since.elapsed())
    }
}

/// Calls whose agent a room remembers; beyond that it forgets them all and starts again.
const CALLS_REMEMBERED: usize = 100_000;

/// Rooms by organization.
pub struct Rooms {
    rooms: DashMap<OrgId, Arc<Room>>,
    capacity: usize,
    history: usize,
}

impl Rooms {
    /// Each client may fall `capacity` items behind the room before it loses the oldest; each
    /// room keeps its last `history` events for clients that reconnect.
    pub fn new(capacity: usize, history: usize) -> Self {
        Self {
            rooms: DashMap::new(),
            capacity: capacity.max(1),
            history: history.max(1),
        }
    }

    /// `org`'s room, created if needed.
    pub fn room(&self, org: &OrgId) -> Arc<Room> {
        let room = self
            .rooms
            .entry(org.clone())
            .or_insert_with(|| Arc::new(Room::new(self.capacity, self.history)))
            .clone();
        metrics::rooms(self.rooms.len());
        room
    }

    /// Hands one event to its organization's room, if the room exists (someone listens, or
    /// listened lately).
    pub fn deliver(&self, event: &Envelope) {
        let Some(room) = self.rooms.get(&event.org_id).map(|r| r.value().clone()) else {
            return;
        };
        room.publish(event);
    }

    /// Drops rooms idle for longer than `ttl`; updates the room and presence gauges.
    pub fn sweep(&self, ttl: Duration) {
        self.rooms
            .retain(|_, room| room.idle_for().is_none_or(|idle| idle < ttl));
        metrics::rooms(self.rooms.len());
        metrics::presence(self.rooms.iter().map(|r| r.members()).sum());
    }

    /// Reads `subscription` into the rooms until `shutdown`; an event delivered twice (a bus
    /// redelivery) reaches clients once.
    pub fn spawn_pump(
        self: &Arc<Self>,
        mut subscription: Subscription,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let rooms = self.clone();
        let mut recent = RecentIds::new(RECENT_IDS);
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            loop {
                let delivery = tokio::select! {
                    delivery = subscription.next() => delivery,
                    _ = sweep.tick() => {
                        rooms.sweep(IDLE_ROOM_TTL);
                        continue;
                    }
                    _ = shutdown.cancelled() => break,
                };
                match delivery {
                    Some(Delivery::Event(event)) => {
                        if recent.first_time(event.id) {
                            rooms.deliver(&event);
                        } else {
                            metrics::feed_duplicate();
                        }
                    }
                    Some(Delivery::Lagged(missed)) => {
                        metrics::feed_dropped("gateway_lagged", missed);
                        warn!(
                            missed,
                            "gateway fell behind the bus; events dropped for every room"
                        );
                    }
                    None => break,
                }
            }
        })
    }
}

/// Event ids remembered to drop redeliveries: far more than a bus redelivers after a reconnect.
const RECENT_IDS: usize = 65_536;
/// How often idle rooms are dropped and the presence gauge is refreshed.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use winnerr_events::{CallContext, CallEnded, EndReason, Role, StreamStats};

    fn ended(org: &str, call: &str) -> Envelope {
        let ctx = CallContext {
            org_id: OrgId::parse(org).unwrap(),
            call_id: CallId::parse(call).unwrap(),
            agent_id: Some(UserId::parse("agent-1").unwrap()),
            lead_id: None,
        };
        Envelope::new(
            &ctx,
            Event::CallEnded(CallEnded {
                reason: EndReason::Completed,
                duration_ms: 1,
                stats: StreamStats::default(),
            }),
        )
    }

    #[test]
    fn a_client_recovers_what_the_history_still_holds_and_is_told_when_it_cannot() {
        let rooms = Rooms::new(16, 3);
        let org = OrgId::parse("acme").unwrap();
        let room = rooms.room(&org);
        for n in 0..2 {
            rooms.deliver(&ended("acme", &format!("CA{n}")));
        }
        let at = |offset| Position {
            epoch: room.epoch(),
            offset,
        };
        let start = room.start(&Channel::Calls, Some(at(1)));
        assert_eq!(start.recovered, Some(true));
        assert_eq!(
            start.replay.iter().map(|i| i.offset()).collect::<Vec<_>>(),
            [2]
        );
        assert_eq!(start.position, at(2));

        for n in 2..6 {
            rooms.deliver(&ended("acme", &format!("CA{n}")));
        }
        // Offsets 4, 5, 6 are kept: from 3 on everything is there, from 2 on it is not.
        assert_eq!(room.start(&Channel::Calls, Some(at(3))).replay.len(), 3);
        assert_eq!(
            room.start(&Channel::Calls, Some(at(2))).recovered,
            Some(false)
        );
        // Another epoch (a restarted node), or a position from the future.
        let other = Position {
            epoch: room.epoch() + 1,
            offset: 5,
        };
        assert_eq!(
            room.start(&Channel::Calls, Some(other)).recovered,
            Some(false)
        );
        assert_eq!(
            room.start(&Channel::Calls, Some(at(7))).recovered,
            Some(false)
        );
        // A call's channel replays only that call.
        let call = Channel::Call(CallId::parse("CA5").unwrap());
        assert_eq!(room.start(&call, Some(at(3))).replay.len(), 1);
        // Events of an organization without a room go nowhere.
        rooms.deliver(&ended("globex", "CA9"));
        assert_eq!(room.start(&Channel::Calls, None).position, at(6));
    }

    #[test]
    fn presence_joins_once_per_person_and_leaves_with_their_last_connection() {
        let rooms = Rooms::new(16, 8);
        let room = rooms.room(&OrgId::parse("acme").unwrap());
        let mut receiver = room.receiver();
        let member = Member {
            user_id: UserId::parse("agent-1").unwrap(),
            role: Role::Agent,
            status: PresenceStatus::Available,
            call_id: None,
        };
        room.join(member.clone());
        room.join(member.clone());
        room.update(&member.user_id, PresenceStatus::OnCall, None);
        room.update(&member.user_id, PresenceStatus::OnCall, None);
        room.leave(&member.user_id);
        assert_eq!(room.start(&Channel::Org, None).members.unwrap().len(), 1);
        room.leave(&member.user_id);
        assert!(room.start(&Channel::Org, None).members.unwrap().is_empty());
        let mut changes = Vec::new();
        while let Ok(item) = receiver.try_recv() {
            if let FeedItem::Presence { text, .. } = &*item {
                match serde_json::from_str(text.as_str()).unwrap() {
                    FeedMessage::Presence { change, .. } => changes.push(change),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(
            changes,
            [
                PresenceChange::Join,
                PresenceChange::Update,
                PresenceChange::Leave
            ]
        );
    }
}
