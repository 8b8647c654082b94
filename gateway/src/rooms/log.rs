//! An organization's stream as a client can recover it: offsets within one epoch (one run of a
//! room), and the newest events kept so that a client that reconnects gets what it missed or is
//! told it cannot. No I/O.

use std::collections::VecDeque;
use std::sync::Arc;

use winnerr_events::Position;

use super::item::FeedItem;

pub(crate) struct RecoveryLog {
    epoch: u64,
    /// Offset of the last item handed out (offsets start at 1).
    head: u64,
    /// The newest events, oldest first.
    history: VecDeque<Arc<FeedItem>>,
    limit: usize,
    /// The highest offset no longer in the history (0: nothing lost yet).
    evicted_through: u64,
}

impl RecoveryLog {
    /// A log of epoch `epoch` keeping the last `limit` events.
    pub(crate) fn new(epoch: u64, limit: usize) -> Self {
        Self {
            epoch,
            head: 0,
            history: VecDeque::with_capacity(limit.min(4096)),
            limit: limit.max(1),
            evicted_through: 0,
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Where the stream stands: the last offset handed out.
    pub(crate) fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.head,
        }
    }

    /// The offset of the next item (kept or not: presence changes are numbered, not kept).
    pub(crate) fn advance(&mut self) -> u64 {
        self.head += 1;
        self.head
    }

    /// Keeps `item` (numbered by [`Self::advance`]), forgetting the oldest past the limit.
    pub(crate) fn keep(&mut self, item: Arc<FeedItem>) {
        self.history.push_back(item);
        while self.history.len() > self.limit {
            if let Some(old) = self.history.pop_front() {
                self.evicted_through = old.offset();
            }
        }
    }

    /// The kept items after `since` that `wanted` takes, oldest first; `None` when the log
    /// cannot tell what came after it (another epoch, events since forgotten, or a position
    /// ahead of the stream).
    pub(crate) fn since(
        &self,
        since: Position,
        wanted: impl Fn(&FeedItem) -> bool,
    ) -> Option<Vec<Arc<FeedItem>>> {
        let recoverable = since.epoch == self.epoch
            && since.offset >= self.evicted_through
            && since.offset <= self.head;
        recoverable.then(|| {
            self.history
                .iter()
                .filter(|item| item.offset() > since.offset && wanted(item))
                .cloned()
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::item::EventItem;
    use winnerr_events::fixtures::TestCall;

    fn event(log: &mut RecoveryLog) -> u64 {
        let offset = log.advance();
        let ended = TestCall::new("acme", &format!("CA{offset}")).ended();
        log.keep(Arc::new(FeedItem::Event(EventItem::new(offset, &ended))));
        offset
    }

    fn offsets(items: Option<Vec<Arc<FeedItem>>>) -> Option<Vec<u64>> {
        items.map(|items| items.iter().map(|i| i.offset()).collect())
    }

    #[test]
    fn what_is_still_kept_is_recovered_and_anything_else_is_refused() {
        let mut log = RecoveryLog::new(7, 3);
        let at = |offset| Position { epoch: 7, offset };
        assert_eq!(offsets(log.since(at(0), |_| true)), Some(vec![]));
        for _ in 0..2 {
            event(&mut log);
        }
        log.advance(); // a presence change: numbered, not kept
        assert_eq!(log.position(), at(3));
        assert_eq!(offsets(log.since(at(1), |_| true)), Some(vec![2]));
        for _ in 0..3 {
            event(&mut log);
        }
        // 4, 5, 6 are kept (2 is forgotten): from 2 on all is there, from 1 on it is not.
        assert_eq!(offsets(log.since(at(2), |_| true)), Some(vec![4, 5, 6]));
        assert_eq!(offsets(log.since(at(1), |_| true)), None);
        assert_eq!(offsets(log.since(at(6), |_| true)), Some(vec![]));
        assert_eq!(
            offsets(log.since(at(7), |_| true)),
            None,
            "ahead of the stream"
        );
        let other_run = Position {
            epoch: 8,
            offset: 5,
        };
        assert_eq!(offsets(log.since(other_run, |_| true)), None);
        // What the client's channel takes, of what is there.
        assert_eq!(
            offsets(log.since(at(3), |item| item.offset() % 2 == 0)),
            Some(vec![4, 6])
        );
    }
}
