//! Per-organization rooms. One pump reads the bus, serializes each event once, numbers it in its
//! organization's stream and hands it to the room, which keeps a bounded history for clients
//! that reconnect and tracks who is online. A room is built from parts without I/O — which events
//! go where ([`item`]), the recovery log ([`log`]) and who is online ([`roster`]) — and adds the
//! broadcast to its clients and the word to the other gateway nodes. A room lives while it has
//! clients, and for [`IDLE_ROOM_TTL`] after its last one left, so a client that reconnects can
//! still recover; and while other nodes have its organization's people online, so that what they
//! said is kept in one place.

mod item;
mod log;
mod roster;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use winnerr_bus::{Delivery, RecentIds, Subscription};
use winnerr_events::{
    CallId, Channel, Envelope, Event, FeedMessage, Member, NodePresence, OrgId, Position,
    PresenceStatus, UserId,
};

pub use item::{EventItem, FeedItem, channel_json};
use log::RecoveryLog;
use roster::{Changed, Changes, Roster};

use crate::metrics;

/// How long a room without clients keeps its history.
pub const IDLE_ROOM_TTL: Duration = Duration::from_secs(600);

/// Where a node's presence changes go: to the bus, for the other gateway nodes.
pub type PresenceOutbox = mpsc::UnboundedSender<(OrgId, Vec<Member>)>;

/// One organization's room.
pub struct Room {
    org: OrgId,
    sender: broadcast::Sender<Arc<FeedItem>>,
    state: Mutex<RoomState>,
    outbox: Option<PresenceOutbox>,
}

struct RoomState {
    log: RecoveryLog,
    roster: Roster,
    /// The agent of each call seen, to refuse an agent a colleague's call.
    call_agents: HashMap<CallId, Option<UserId>>,
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
    fn new(
        org: OrgId,
        capacity: usize,
        history_limit: usize,
        outbox: Option<PresenceOutbox>,
    ) -> Self {
        // The random half of a fresh v7 UUID, below 2^53 so JavaScript reads it exactly.
        let epoch = winnerr_events::EventId::now_v7().as_u64_pair().1 >> 11;
        Self {
            org,
            outbox,
            sender: broadcast::channel(capacity).0,
            state: Mutex::new(RoomState {
                log: RecoveryLog::new(epoch, history_limit),
                roster: Roster::default(),
                call_agents: HashMap::new(),
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
        self.state().log.epoch()
    }

    /// A receiver of the room's items from now on.
    pub fn receiver(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.sender.subscribe()
    }

    fn publish(&self, event: &Envelope) {
        let mut state = self.state();
        let offset = state.log.advance();
        let item = Arc::new(FeedItem::Event(EventItem::new(offset, event)));
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
        state.log.keep(item.clone());
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
        let mut start = Start {
            position: state.log.position(),
            recovered: None,
            replay: Vec::new(),
            members: (channel == &Channel::Org).then(|| state.roster.online()),
        };
        if let Some(since) = since {
            let replay = state.log.since(
                since,
                |item| matches!(item, FeedItem::Event(e) if e.on(channel)),
            );
            start.recovered = Some(replay.is_some());
            metrics::recovery(replay.is_some());
            start.replay = replay.unwrap_or_default();
        }
        start
    }

    /// Someone connected: they are online (a join for everyone if it is their first connection
    /// on any node).
    pub fn join(&self, member: Member) {
        let mut state = self.state();
        state.clients += 1;
        state.idle_since = None;
        let changed = state.roster.join(member);
        self.changed(&mut state, changed);
    }

    /// Someone set their status (on every connection of theirs); false, and nothing changed,
    /// when they change it faster than a user may.
    pub fn update(&self, user: &UserId, status: PresenceStatus, call_id: Option<CallId>) -> bool {
        let mut state = self.state();
        let Some(changed) = state.roster.update(user, status, call_id) else {
            return false;
        };
        self.changed(&mut state, changed);
        true
    }

    /// One of someone's connections closed: they leave when it was their last (and they are on
    /// no other node).
    pub fn leave(&self, user: &UserId) {
        let mut state = self.state();
        state.clients = state.clients.saturating_sub(1);
        if state.clients == 0 {
            state.idle_since = Some(Instant::now());
        }
        let changed = state.roster.leave(user);
        self.changed(&mut state, changed);
    }

    /// Another gateway node said who is online there (nobody: the node is gone).
    fn node_said(&self, node: &str, members: Vec<Member>) {
        let mut state = self.state();
        let changes = state.roster.node_said(node, members, Instant::now());
        self.announce(&mut state, changes);
    }

    /// Forgets the other nodes not heard from for `timeout`; the ones forgotten.
    fn expire_nodes(&self, timeout: Duration) -> Vec<String> {
        let mut state = self.state();
        let (gone, changes) = state.roster.expire(timeout, Instant::now());
        self.announce(&mut state, changes);
        gone
    }

    /// Clients hear what changed in the organization's presence, and the other nodes hear of
    /// this node's.
    fn changed(&self, state: &mut RoomState, changed: Changed) {
        self.announce(state, changed.changes);
        if changed.local
            && let Some(outbox) = &self.outbox
        {
            let _ = outbox.send((self.org.clone(), state.roster.local_members()));
        }
    }

    fn announce(&self, state: &mut RoomState, changes: Changes) {
        for (change, member) in changes {
            let offset = state.log.advance();
            let text = serde_json::to_string(&FeedMessage::Presence { change, member })
                .expect("feed messages always serialize");
            let _ = self.sender.send(Arc::new(FeedItem::Presence {
                offset,
                text: text.into(),
            }));
            metrics::presence_changed(change);
        }
    }

    /// Who is connected to this node.
    pub fn local_members(&self) -> Vec<Member> {
        self.state().roster.local_members()
    }

    fn members(&self) -> usize {
        self.state().roster.len()
    }

    /// Whether the room may go: no client for `ttl`, and nobody online on other nodes.
    fn idle_past(&self, ttl: Duration) -> bool {
        let state = self.state();
        !state.roster.has_remote() && state.idle_since.is_some_and(|since| since.elapsed() >= ttl)
    }
}

/// Calls whose agent a room remembers; beyond that it forgets them all and starts again.
const CALLS_REMEMBERED: usize = 100_000;

/// The rooms of the organizations with clients here (or lately), or people on other nodes.
pub struct Rooms {
    rooms: DashMap<OrgId, Arc<Room>>,
    capacity: usize,
    history: usize,
    /// This gateway node's name in presence messages.
    node: String,
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
            outbox,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// `org`'s room, created if needed.
    pub fn room(&self, org: &OrgId) -> Arc<Room> {
        if let Some(room) = self.rooms.get(org) {
            return room.clone();
        }
        let room = self
            .rooms
            .entry(org.clone())
            .or_insert_with(|| {
                Arc::new(Room::new(
                    org.clone(),
                    self.capacity,
                    self.history,
                    self.outbox.clone(),
                ))
            })
            .clone();
        metrics::rooms(self.rooms.len());
        room
    }

    /// What another node says of who is online there; this node's own word is ignored. The
    /// organization's room keeps it (one is made for it if someone is online there).
    pub fn node_presence(&self, org: &OrgId, presence: &NodePresence) {
        if presence.node == self.node {
            return;
        }
        let room = match self.rooms.get(org).map(|r| r.value().clone()) {
            Some(room) => room,
            None if presence.members.is_empty() => return,
            None => self.room(org),
        };
        room.node_said(&presence.node, presence.members.clone());
    }

    /// Forgets nodes not heard from for `timeout`: their people leave.
    pub fn expire_nodes(&self, timeout: Duration) {
        let rooms: Vec<(OrgId, Arc<Room>)> = self
            .rooms
            .iter()
            .map(|r| (r.key().clone(), r.value().clone()))
            .collect();
        for (org, room) in rooms {
            for node in room.expire_nodes(timeout) {
                warn!(node, org_id = %org, "gateway node silent: its people leave presence");
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

    /// Tells every room's clients that `missed` events were lost on the way to the rooms.
    fn lost_everywhere(&self, missed: u64) {
        for room in self.rooms.iter() {
            let _ = room.sender.send(Arc::new(FeedItem::Lost { missed }));
        }
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
        self.rooms.retain(|_, room| !room.idle_past(ttl));
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
    use winnerr_events::fixtures::TestCall;
    use winnerr_events::{PresenceChange, Role};

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

    /// What other nodes say is kept in one place, the room: a room made for it stays while
    /// their people are online, and may go once they have gone.
    #[test]
    fn a_room_kept_for_other_nodes_people_goes_once_they_have_gone() {
        let rooms = Rooms::new(16, 8, "node-a".into(), None);
        let org = OrgId::parse("acme").unwrap();
        let says = |members| NodePresence {
            node: "node-b".into(),
            members,
        };
        rooms.node_presence(&org, &says(vec![]));
        assert_eq!(rooms.rooms.len(), 0, "nobody there: no room");
        let agent = Member {
            user_id: UserId::parse("agent-2").unwrap(),
            role: Role::Agent,
            status: PresenceStatus::Available,
            call_id: None,
        };
        rooms.node_presence(&org, &says(vec![agent]));
        rooms.sweep(Duration::ZERO);
        assert_eq!(
            rooms.rooms.len(),
            1,
            "kept while node b's people are online"
        );
        assert_eq!(
            rooms
                .room(&org)
                .start(&Channel::Org, None)
                .members
                .unwrap()
                .len(),
            1
        );
        rooms.node_presence(&org, &says(vec![]));
        rooms.sweep(Duration::ZERO);
        assert_eq!(rooms.rooms.len(), 0);
    }
}
