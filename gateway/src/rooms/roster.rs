//! Who is online in an organization: the people connected to this node (with their number of
//! connections and what they may still change of their presence) and what each other gateway
//! node last said of its own, with when. Each change returns what it changed in the
//! organization's view, for the room to announce. No I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use winnerr_events::{CallId, Member, PresenceChange, PresenceStatus, UserId};

use crate::presence::{Budget, user_budget};

/// Changes of the organization's view, in user order.
pub(crate) type Changes = Vec<(PresenceChange, Member)>;

/// What a change of this node's people did.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Changed {
    /// This node's people changed: the other nodes are to hear of it.
    pub local: bool,
    pub changes: Changes,
}

#[derive(Default)]
pub(crate) struct Roster {
    local: HashMap<UserId, (Member, usize)>,
    /// By node: when it last spoke, and who is online there.
    remote: HashMap<String, (Instant, Vec<Member>)>,
    budgets: HashMap<UserId, Budget>,
}

impl Roster {
    /// Everyone online, on any node (this node's view of a person wins), by user.
    pub(crate) fn online(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self.view().into_values().collect();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        members
    }

    /// People online, on any node.
    pub(crate) fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether other nodes have people online (what this node knows of them is kept).
    pub(crate) fn has_remote(&self) -> bool {
        !self.remote.is_empty()
    }

    /// Who is connected to this node, by user.
    pub(crate) fn local_members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self.local.values().map(|(m, _)| m.clone()).collect();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        members
    }

    /// One more connection of `member`'s.
    pub(crate) fn join(&mut self, member: Member) -> Changed {
        self.local_change(|roster| {
            let user = member.user_id.clone();
            roster.local.entry(user).or_insert((member, 0)).1 += 1;
            true
        })
    }

    /// `user` set their status (on every connection of theirs); `None`, and nothing changed,
    /// when they change it faster than their budget allows.
    pub(crate) fn update(
        &mut self,
        user: &UserId,
        status: PresenceStatus,
        call_id: Option<CallId>,
    ) -> Option<Changed> {
        let mut allowed = true;
        let changed = self.local_change(|roster| {
            let Some((member, _)) = roster.local.get_mut(user) else {
                return false;
            };
            if member.status == status && member.call_id == call_id {
                return false;
            }
            let budget = roster
                .budgets
                .entry(user.clone())
                .or_insert_with(user_budget);
            if !budget.take() {
                allowed = false;
                return false;
            }
            member.status = status;
            member.call_id = call_id;
            true
        });
        allowed.then_some(changed)
    }

    /// One of `user`'s connections closed: they leave this node with their last.
    pub(crate) fn leave(&mut self, user: &UserId) -> Changed {
        self.local_change(|roster| {
            let Some((_, connections)) = roster.local.get_mut(user) else {
                return false;
            };
            *connections -= 1;
            if *connections > 0 {
                return false;
            }
            roster.local.remove(user);
            roster.budgets.remove(user);
            true
        })
    }

    /// Node `node` said, `at`, who is online there (nobody: the node has gone).
    pub(crate) fn node_said(&mut self, node: &str, members: Vec<Member>, at: Instant) -> Changes {
        let before = self.view();
        if members.is_empty() {
            self.remote.remove(node);
        } else {
            self.remote.insert(node.to_owned(), (at, members));
        }
        self.changes_since(before)
    }

    /// Forgets the nodes not heard from for `timeout` by `now`: their names, and the changes.
    pub(crate) fn expire(&mut self, timeout: Duration, now: Instant) -> (Vec<String>, Changes) {
        let before = self.view();
        let mut gone = Vec::new();
        self.remote.retain(|node, (heard, _)| {
            let alive = now.saturating_duration_since(*heard) < timeout;
            if !alive {
                gone.push(node.clone());
            }
            alive
        });
        gone.sort();
        (gone, self.changes_since(before))
    }

    fn view(&self) -> HashMap<UserId, Member> {
        let mut online: HashMap<UserId, Member> = self
            .remote
            .values()
            .flat_map(|(_, members)| members)
            .map(|m| (m.user_id.clone(), m.clone()))
            .collect();
        online.extend(
            self.local
                .iter()
                .map(|(user, (member, _))| (user.clone(), member.clone())),
        );
        online
    }

    /// Applies a change of this node's people; `change` says whether it changed any.
    fn local_change(&mut self, change: impl FnOnce(&mut Self) -> bool) -> Changed {
        let before = self.view();
        if !change(self) {
            return Changed::default();
        }
        Changed {
            local: true,
            changes: self.changes_since(before),
        }
    }

    fn changes_since(&self, before: HashMap<UserId, Member>) -> Changes {
        let after = self.view();
        let mut changes: Changes = Vec::new();
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
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use winnerr_events::Role;

    fn member(user: &str, status: PresenceStatus) -> Member {
        Member {
            user_id: UserId::parse(user).unwrap(),
            role: Role::Agent,
            status,
            call_id: None,
        }
    }

    fn said(changes: &Changes) -> Vec<(PresenceChange, &str)> {
        changes
            .iter()
            .map(|(change, m)| (*change, m.user_id.as_str()))
            .collect()
    }

    #[test]
    fn a_person_joins_once_and_leaves_with_their_last_connection() {
        let mut roster = Roster::default();
        let agent = member("agent-1", PresenceStatus::Available);
        let user = agent.user_id.clone();
        let first = roster.join(agent.clone());
        assert!(first.local);
        assert_eq!(said(&first.changes), [(PresenceChange::Join, "agent-1")]);
        let second = roster.join(agent);
        assert!(second.local, "this node's connections changed");
        assert!(second.changes.is_empty(), "still one person");
        let on_call = roster.update(&user, PresenceStatus::OnCall, None).unwrap();
        assert_eq!(
            said(&on_call.changes),
            [(PresenceChange::Update, "agent-1")]
        );
        assert_eq!(
            roster.update(&user, PresenceStatus::OnCall, None),
            Some(Changed::default()),
            "the same status again changes nothing"
        );
        assert_eq!(roster.leave(&user), Changed::default());
        assert_eq!(roster.len(), 1);
        assert_eq!(
            said(&roster.leave(&user).changes),
            [(PresenceChange::Leave, "agent-1")]
        );
        assert_eq!(roster.len(), 0);
        assert_eq!(roster.leave(&user), Changed::default(), "nobody to leave");
    }

    #[test]
    fn status_changes_past_the_users_budget_are_refused() {
        let mut roster = Roster::default();
        let agent = member("agent-1", PresenceStatus::Available);
        let user = agent.user_id.clone();
        roster.join(agent);
        // A different call each time: every one is a change.
        let refused = (0..100)
            .filter(|i| {
                let call = CallId::parse(format!("CA{i}")).unwrap();
                roster
                    .update(&user, PresenceStatus::OnCall, Some(call))
                    .is_none()
            })
            .count();
        assert!(refused >= 70, "a burst of 20, then 4 a second: {refused}");
    }

    #[test]
    fn other_nodes_people_merge_into_the_view_and_leave_when_their_node_goes_silent() {
        let mut roster = Roster::default();
        let t0 = Instant::now();
        let b = |members| ("node-b", members);
        let (node, members) = b(vec![member("agent-2", PresenceStatus::Available)]);
        assert_eq!(
            said(&roster.node_said(node, members, t0)),
            [(PresenceChange::Join, "agent-2")]
        );
        let here = roster.join(member("agent-1", PresenceStatus::Available));
        assert_eq!(
            roster.local_members().len(),
            1,
            "the other nodes hear of this node's only"
        );
        assert!(here.local);
        // Agent 1 also on node b; agent 2 on a call there.
        let (node, members) = b(vec![
            member("agent-1", PresenceStatus::Available),
            member("agent-2", PresenceStatus::OnCall),
        ]);
        assert_eq!(
            said(&roster.node_said(node, members, t0)),
            [(PresenceChange::Update, "agent-2")]
        );
        let left_here = roster.leave(&UserId::parse("agent-1").unwrap());
        assert!(left_here.local);
        assert!(left_here.changes.is_empty(), "agent 1 is still on node b");
        assert!(roster.has_remote());
        // Heard from a second ago: kept at a 2 s timeout, forgotten at 1 s.
        let now = t0 + Duration::from_secs(1);
        assert_eq!(roster.expire(Duration::from_secs(2), now), (vec![], vec![]));
        let (gone, changes) = roster.expire(Duration::from_secs(1), now);
        assert_eq!(gone, ["node-b"]);
        assert_eq!(
            said(&changes),
            [
                (PresenceChange::Leave, "agent-1"),
                (PresenceChange::Leave, "agent-2")
            ]
        );
        assert!(roster.online().is_empty() && !roster.has_remote());
        // A node that says nobody is there has gone too.
        let (node, members) = b(vec![member("agent-3", PresenceStatus::Available)]);
        roster.node_said(node, members, now);
        assert_eq!(
            said(&roster.node_said("node-b", vec![], now)),
            [(PresenceChange::Leave, "agent-3")]
        );
    }
}
