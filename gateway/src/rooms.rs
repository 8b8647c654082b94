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
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use winnerr_bus::{Delivery, RecentIds, Subscription};
use winnerr_events::{
    CallId, Channel, Envelope, Event, FeedMessage, LeadId, Member, NodePresence, OrgId, Position,
    PresenceChange, PresenceStatus, UserId,
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
    fn new(offset: u64, event: &Envelope) -> Self {
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

    /// The [`FeedMessage::Event`] of this event on the channel whose name, as a JSON string, is
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
    /// A serialized [`FeedMessage::Presence`], for the `org` channel, at `offset`.
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

/// Where a node's presence changes go: to the bus, for the other gateway nodes.
pub type PresenceOutbox = mpsc::UnboundedSender<(OrgId, Vec<Member>)>;

/// One organization's room.
pub struct Room {
    org: OrgId,
    epoch: u64,
    sender: broadcast::Sender<Arc<FeedItem>>,
    state: Mutex<RoomState>,
    outbox: Option<PresenceOutbox>,
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
    /// Who is online on this node, with their number of connections.
    presence: HashMap<UserId, (Member, usize)>,
    /// Who is online on other gateway nodes, by node.
    remote: HashMap<String, Vec<Member>>,
    /// What each person online here may still change of their presence.
    budgets: HashMap<UserId, crate::presence::Budget>,
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

impl RoomState {
    /// Everyone online, on any node (this node's view of a person wins).
    fn online(&self) -> HashMap<UserId, Member> {
        let mut online: HashMap<UserId, Member> = self
            .remote
            .values()
            .flatten()
            .map(|m| (m.user_id.clone(), m.clone()))
            .collect();
        online.extend(
            self.presence
                .iter()
                .map(|(user, (member, _))| (user.clone(), member.clone())),
        );
        online
    }

    fn local_members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self.presence.values().map(|(m, _)| m.clone()).collect();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        members
    }
}

impl Room {
    fn new(
        org: OrgId,
        capacity: usize,
        history_limit: usize,
        remote: HashMap<String, Vec<Member>>,
        outbox: Option<PresenceOutbox>,
    ) -> Self {
        Self {
            org,
            outbox,
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
                remote,
                budgets: HashMap::new(),
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
                let mut members: Vec<Member> = state.online().into_values().collect();
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

    /// Someone connected: they are online (a join for everyone if it is their first connection
    /// on any node).
    pub fn join(&self, member: Member) {
        self.change(|state| {
            state.clients += 1;
            state.idle_since = None;
            let user = member.user_id.clone();
            state.presence.entry(user).or_insert((member, 0)).1 += 1;
            true
        });
    }

    /// Someone set their status (on every connection of theirs); false, and nothing changed,
    /// when they change it faster than a user may.
    pub fn update(&self, user: &UserId, status: PresenceStatus, call_id: Option<CallId>) -> bool {
        let mut allowed = true;
        self.change(|state| {
            let Some((member, _)) = state.presence.get_mut(user) else {
                return false;
            };
            if member.status == status && member.call_id == call_id {
                return false;
            }
            let budget = state
                .budgets
                .entry(user.clone())
                .or_insert_with(crate::presence::user_budget);
            if !budget.take() {
                allowed = false;
                return false;
            }
            member.status = status;
            member.call_id = call_id;
            true
        });
        allowed
    }

    /// One of someone's connections closed: they leave when it was their last (and they are on
    /// no other node).
    pub fn leave(&self, user: &UserId) {
        self.change(|state| {
            state.clients = state.clients.saturating_sub(1);
            if state.clients == 0 {
                state.idle_since = Some(Instant::now());
            }
            let Some((_, connections)) = state.presence.get_mut(user) else {
                return false;
            };
            *connections -= 1;
            if *connections == 0 {
                state.presence.remove(user);
                state.budgets.remove(user);
                return true;
            }
            false
        });
    }

    /// Another gateway node said who is online there (`None`: the node is gone).
    fn set_remote(&self, node: &str, members: Option<Vec<Member>>) {
        let mut state = self.state();
        let before = state.online();
        match members {
            Some(members) if !members.is_empty() => {
                state.remote.insert(node.to_owned(), members);
            }
            _ => {
                state.remote.remove(node);
            }
        }
        self.announce_changes(&mut state, before);
    }

    /// Applies a change of this node's presence; `change` says whether it changed anyone's.
    /// Clients hear what changed in the organization's presence, and the other nodes hear of
    /// this node's.
    fn change(&self, change: impl FnOnce(&mut RoomState) -> bool) {
        let mut state = self.state();
        let before = state.online();
        if !change(&mut state) {
            return;
        }
        self.announce_changes(&mut state, before);
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send((self.org.clone(), state.local_members()));
        }
    }

    fn announce_changes(&self, state: &mut RoomState, before: HashMap<UserId, Member>) {
        let after = state.online();
        let mut changes: Vec<(PresenceChange, Member)> = Vec::new();
        for (user, member) in &after {
            match before.get(user) {
                None => changes.push((PresenceChange::Join, member.clone())),
                Some(old) if old != member => {
                    changes.push((PresenceChange::Update, member.clone()))
                }
                Some(_) => {}
            }
        }
        for (user, member) in before {
            if !after.contains_key(&user) {
                changes.push((PresenceChange::Leave, member));
            }
        }
        changes.sort_by(|a, b| a.1.user_id.cmp(&b.1.user_id));
        for (change, member) in changes {
            self.announce(state, change, member);
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

    /// Who is connected to this node.
    pub fn local_members(&self) -> Vec<Member> {
        self.state().local_members()
    }

    fn members(&self) -> usize {
        self.state().online().len()
    }

    fn idle_for(&self) -> Option<Duration> {
        self.state().idle_since.map(|since| since.elapsed())
    }
}

/// Calls whose agent a room remembers; beyond that it forgets them all and starts again.
const CALLS_REMEMBERED: usize = 100_000;

/// Who is online on each other node in an organization, with when that node last said so.
type NodesPresence = HashMap<String, (Instant, Vec<Member>)>;

/// Rooms by organization, with what the other gateway nodes say of presence.
pub struct Rooms {
    rooms: DashMap<OrgId, Arc<Room>>,
    capacity: usize,
    history: usize,
    /// This gateway node's name in presence messages.
    node: String,
    /// Who is online on other nodes, by organization and node, with when it was last said.
    remote: Mutex<HashMap<OrgId, NodesPresence>>,
    outbox: Option<PresenceOutbox>,
}

impl Rooms {
    /// Each client may fall `capacity` items behind the room before it loses the oldest; each
    /// room keeps its last `history` events for clients that reconnect. Presence changes on
    /// this node (`node`) go to `outbox`, if other nodes are to hear of them.
    pub fn new(
        capacity: usize,
        history: usize,
        node: String,
        outbox: Option<PresenceOutbox>,
    ) -> Self {
        Self {
            rooms: DashMap::new(),
            capacity: capacity.max(1),
            history: history.max(1),
            node,
            remote: Mutex::new(HashMap::new()),
            outbox,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn remote(&self) -> MutexGuard<'_, HashMap<OrgId, NodesPresence>> {
        self.remote.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `org`'s room, created if needed (knowing who is online on the other nodes).
    pub fn room(&self, org: &OrgId) -> Arc<Room> {
        if let Some(room) = self.rooms.get(org) {
            return room.clone();
        }
        let remote: HashMap<String, Vec<Member>> = self
            .remote()
            .get(org)
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|(node, (_, members))| (node.clone(), members.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let room = self
            .rooms
            .entry(org.clone())
            .or_insert_with(|| {
                Arc::new(Room::new(
                    org.clone(),
                    self.capacity,
                    self.history,
                    remote,
                    self.outbox.clone(),
                ))
            })
            .clone();
        metrics::rooms(self.rooms.len());
        room
    }

    /// What another node says of who is online there; this node's own word is ignored.
    pub fn node_presence(&self, org: &OrgId, presence: &NodePresence) {
        if presence.node == self.node {
            return;
        }
        {
            let mut remote = self.remote();
            let nodes = remote.entry(org.clone()).or_default();
            if presence.members.is_empty() {
                nodes.remove(&presence.node);
            } else {
                nodes.insert(
                    presence.node.clone(),
                    (Instant::now(), presence.members.clone()),
                );
            }
            if nodes.is_empty() {
                remote.remove(org);
            }
        }
        if let Some(room) = self.rooms.get(org).map(|r| r.value().clone()) {
            room.set_remote(&presence.node, Some(presence.members.clone()));
        }
    }

    /// Forgets nodes not heard from for `timeout`: their people leave.
    pub fn expire_nodes(&self, timeout: Duration) {
        let mut gone = Vec::new();
        {
            let mut remote = self.remote();
            for (org, nodes) in remote.iter_mut() {
                nodes.retain(|node, (heard, _)| {
                    let alive = heard.elapsed() < timeout;
                    if !alive {
                        warn!(node, org_id = %org, "gateway node silent: its people leave presence");
                        gone.push((org.clone(), node.clone()));
                    }
                    alive
                });
            }
            remote.retain(|_, nodes| !nodes.is_empty());
        }
        for (org, node) in gone {
            if let Some(room) = self.rooms.get(&org).map(|r| r.value().clone()) {
                room.set_remote(&node, None);
            }
        }
    }

    /// Who is connected to this node, by organization (for its presence heartbeat).
    pub fn local_presence(&self) -> Vec<(OrgId, Vec<Member>)> {
        self.rooms
            .iter()
            .map(|room| (room.key().clone(), room.local_members()))
            .filter(|(_, members)| !members.is_empty())
            .collect()
    }

    /// Hands one event to its organization's room, if the room exists (someone listens, or
    /// listened lately).
    /// Tells every room's clients that `missed` events were lost on the way to the rooms.
    fn lost_everywhere(&self, missed: u64) {
        for room in self.rooms.iter() {
            let _ = room.sender.send(Arc::new(FeedItem::Lost { missed }));
        }
    }

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
                        if let Event::Presence(presence) = &event.event {
                            rooms.node_presence(&event.org_id, presence);
                        } else if recent.first_time(event.id) {
                            rooms.deliver(&event);
                        } else {
                            metrics::feed_duplicate();
                        }
                    }
                    Some(Delivery::Lagged(missed)) => {
                        metrics::feed_dropped("gateway_lagged", missed);
                        warn!(
                            missed,
                            "gateway fell behind the bus; events dropped for every room, every client told"
                        );
                        rooms.lost_everywhere(missed);
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
    use winnerr_events::Role;
    use winnerr_events::fixtures::TestCall;

    fn ended(org: &str, call: &str) -> Envelope {
        TestCall::new(org, call).agent("agent-1").ended()
    }

    #[test]
    fn a_client_recovers_what_the_history_still_holds_and_is_told_when_it_cannot() {
        let rooms = Rooms::new(16, 3, "node-a".into(), None);
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

    fn changes(receiver: &mut broadcast::Receiver<Arc<FeedItem>>) -> Vec<(PresenceChange, String)> {
        let mut changes = Vec::new();
        while let Ok(item) = receiver.try_recv() {
            if let FeedItem::Presence { text, .. } = &*item {
                match serde_json::from_str(text.as_str()).unwrap() {
                    FeedMessage::Presence { change, member } => {
                        changes.push((change, member.user_id.to_string()))
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        changes
    }

    #[test]
    fn presence_merges_what_other_nodes_say_and_forgets_silent_ones() {
        let (outbox, mut published) = mpsc::unbounded_channel();
        let rooms = Rooms::new(16, 8, "node-a".into(), Some(outbox));
        let org = OrgId::parse("acme").unwrap();
        let member = |user: &str, status| Member {
            user_id: UserId::parse(user).unwrap(),
            role: Role::Agent,
            status,
            call_id: None,
        };
        let says = |node: &str, members: Vec<Member>| NodePresence {
            node: node.into(),
            members,
        };
        // Node b speaks before this node has a room for the organization: the room knows.
        rooms.node_presence(
            &org,
            &says("node-b", vec![member("agent-2", PresenceStatus::Available)]),
        );
        let room = rooms.room(&org);
        let mut receiver = room.receiver();
        assert_eq!(room.start(&Channel::Org, None).members.unwrap().len(), 1);

        room.join(member("agent-1", PresenceStatus::Available));
        // What this node publishes for the others: its own people only.
        let (published_org, members) = published.try_recv().unwrap();
        assert_eq!(published_org, org);
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].user_id.as_str(), "agent-1");
        // Its own word, coming back over the bus, changes nothing.
        rooms.node_presence(&org, &says("node-a", vec![]));
        // Agent 1 also on node b: still one person; agent 2 now on call there.
        rooms.node_presence(
            &org,
            &says(
                "node-b",
                vec![
                    member("agent-1", PresenceStatus::Available),
                    member("agent-2", PresenceStatus::OnCall),
                ],
            ),
        );
        room.leave(&UserId::parse("agent-1").unwrap());
        let _ = published.try_recv();
        assert_eq!(
            changes(&mut receiver),
            [
                (PresenceChange::Join, "agent-1".to_owned()),
                (PresenceChange::Update, "agent-2".to_owned()),
            ],
            "agent 1 leaving here is still on node b"
        );
        // Node b goes silent: its people leave.
        rooms.expire_nodes(Duration::ZERO);
        assert_eq!(
            changes(&mut receiver),
            [
                (PresenceChange::Leave, "agent-1".to_owned()),
                (PresenceChange::Leave, "agent-2".to_owned()),
            ]
        );
        assert!(room.start(&Channel::Org, None).members.unwrap().is_empty());
    }

    #[test]
    fn presence_joins_once_per_person_and_leaves_with_their_last_connection() {
        let rooms = Rooms::new(16, 8, "node-a".into(), None);
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
