//! Remembering recent event ids, to drop redeliveries.

use std::collections::{HashSet, VecDeque};

use winnerr_events::EventId;

/// The last `capacity` event ids seen: how a consumer drops what the bus delivers twice (Kafka
/// redelivers after a reconnect or a rebalance).
pub struct RecentIds {
    order: VecDeque<EventId>,
    seen: HashSet<EventId>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
            capacity,
        }
    }

    /// Whether `id` is new; remembers it.
    pub fn first_time(&mut self, id: EventId) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.order.push_back(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_drop_repeats_within_capacity() {
        let mut recent = RecentIds::new(2);
        let [a, b, c] = [EventId::now_v7(), EventId::now_v7(), EventId::now_v7()];
        assert!(recent.first_time(a));
        assert!(!recent.first_time(a));
        assert!(recent.first_time(b));
        assert!(recent.first_time(c));
        // `a` was forgotten to make room.
        assert!(recent.first_time(a));
        assert!(!recent.first_time(c));
    }
}
