//! The bus of a single process: a broadcast channel for live subscribers, and a bounded queue
//! of its own for each consumer group.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tracing::warn;
use winnerr_events::{Envelope, Event};

use crate::group::{Batch, Group, GroupSource, Undecodable};
use crate::{Bus, BusError, Delivery, Subscription, metrics};

/// The bus of a single process. A live subscriber that falls more than `capacity` events behind
/// loses the oldest ones (and is told how many); a consumer group loses nothing: its queue holds
/// `capacity` events, and publishing waits while it is full.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    sender: broadcast::Sender<Arc<Envelope>>,
    /// The groups' queues; publishing reads a snapshot.
    groups: Arc<RwLock<Arc<[Queue]>>>,
    capacity: usize,
}

/// A consumer group's queue.
#[derive(Debug, Clone)]
struct Queue {
    name: Arc<str>,
    wants: fn(&Event) -> bool,
    sender: mpsc::Sender<Arc<Envelope>>,
    queued: ::metrics::Gauge,
    /// Whether the queue was full at the last publish (said once a spell, not once an event).
    full: Arc<AtomicBool>,
}

impl InProcessBus {
    pub fn new(capacity: usize) -> Self {
        metrics::describe();
        let capacity = capacity.max(1);
        let (sender, _) = broadcast::channel(capacity);
        Self {
            sender,
            groups: Arc::new(RwLock::new(Arc::from([]))),
            capacity,
        }
    }

    fn groups(&self) -> Arc<[Queue]> {
        self.groups
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Queue {
    fn record_depth(&self) {
        let held = self.sender.max_capacity() - self.sender.capacity();
        self.queued.set(held as f64);
    }
}

impl Bus for InProcessBus {
    fn reaches_other_processes(&self) -> bool {
        false
    }

    fn publish(&self, event: Envelope) -> BoxFuture<'_, Result<(), BusError>> {
        metrics::published(event.event.kind());
        let event = Arc::new(event);
        // No live subscriber is not an error: nobody is listening yet, so nobody misses anything.
        let _ = self.sender.send(event.clone());
        let groups = self.groups();
        Box::pin(async move {
            for queue in groups.iter().filter(|q| (q.wants)(&event.event)) {
                match queue.sender.try_send(event.clone()) {
                    Ok(()) => queue.full.store(false, Ordering::Relaxed),
                    Err(mpsc::error::TrySendError::Full(event)) => {
                        // The group's worker is behind by a whole queue: the publisher waits
                        // for it rather than have it lose the event.
                        metrics::publish_waited(&queue.name);
                        if !queue.full.swap(true, Ordering::Relaxed) {
                            warn!(group = %queue.name, queued = self.capacity, "consumer group's queue is full; publishing waits for its worker");
                        }
                        // A group that left meanwhile no longer needs it.
                        let _ = queue.sender.send(event).await;
                    }
                    // The group's worker stopped; it no longer needs events.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
                queue.record_depth();
            }
            Ok(())
        })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Subscription, BusError>> {
        let stream = BroadcastStream::new(self.sender.subscribe()).map(|item| match item {
            Ok(event) => Delivery::Event(event),
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                metrics::lagged(missed);
                Delivery::Lagged(missed)
            }
        });
        let subscription: Subscription = Box::pin(stream);
        Box::pin(std::future::ready(Ok(subscription)))
    }

    fn join_group(&self, group: &Group) -> BoxFuture<'_, Result<Box<dyn GroupSource>, BusError>> {
        let joined = self
            .add_queue(group)
            .map(|source| Box::new(source) as Box<dyn GroupSource>);
        Box::pin(std::future::ready(joined))
    }
}

impl InProcessBus {
    /// Gives `group` a queue of its own (dropping the queues of groups that left), unless a
    /// group of that name still runs here.
    fn add_queue(&self, group: &Group) -> Result<QueueSource, BusError> {
        let mut groups = self
            .groups
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut kept: Vec<Queue> = groups
            .iter()
            .filter(|q| !q.sender.is_closed())
            .cloned()
            .collect();
        if kept.iter().any(|q| *q.name == *group.name) {
            return Err(BusError::GroupTaken(group.name.clone()));
        }
        let (sender, receiver) = mpsc::channel(self.capacity);
        let name: Arc<str> = Arc::from(group.name.as_str());
        let queued = metrics::group_queued(&name);
        kept.push(Queue {
            name,
            wants: group.wants,
            sender,
            queued: queued.clone(),
            full: Arc::default(),
        });
        *groups = Arc::from(kept);
        Ok(QueueSource { receiver, queued })
    }
}

/// A consumer group's end of its queue.
struct QueueSource {
    receiver: mpsc::Receiver<Arc<Envelope>>,
    queued: ::metrics::Gauge,
}

impl QueueSource {
    fn take_ready(&mut self, batch: &mut Batch, max: usize) {
        while batch.events.len() < max {
            match self.receiver.try_recv() {
                Ok(event) => batch.events.push(event),
                Err(_) => break,
            }
        }
        self.queued.set(self.receiver.len() as f64);
    }
}

impl GroupSource for QueueSource {
    fn next_batch(&mut self, max: usize) -> BoxFuture<'_, Option<Batch>> {
        Box::pin(async move {
            let first = self.receiver.recv().await?;
            let mut batch = Batch {
                events: vec![first],
                undecodable: Vec::new(),
            };
            self.take_ready(&mut batch, max);
            Some(batch)
        })
    }

    fn ready(&mut self, max: usize) -> Option<Batch> {
        let mut batch = Batch::default();
        self.take_ready(&mut batch, max);
        (!batch.events.is_empty()).then_some(batch)
    }

    fn set_aside<'a>(&'a mut self, _: &'a Undecodable) -> BoxFuture<'a, Result<(), BusError>> {
        // Events in-process are typed: none is undecodable.
        Box::pin(std::future::ready(Ok(())))
    }

    fn redelivers(&self) -> bool {
        false
    }

    fn done(&mut self) -> Result<(), BusError> {
        Ok(())
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        self.queued.set(0.0);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;
    use winnerr_events::fixtures::TestCall;

    use super::*;
    use crate::group::{Worker, WorkerError, run_group, worker_fn};

    fn dtmf(digit: char) -> Envelope {
        TestCall::new("o", "c").dtmf(digit)
    }

    fn digit_of(event: &Envelope) -> char {
        match &event.event {
            Event::Dtmf(d) => d.digit,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn digit(delivery: Option<Delivery>) -> char {
        match delivery {
            Some(Delivery::Event(env)) => digit_of(&env),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn subscribers_see_events_in_publish_order() {
        let bus = InProcessBus::new(16);
        let mut sub = bus.subscribe().await.unwrap();
        for d in ['1', '2', '3'] {
            bus.publish(dtmf(d)).await.unwrap();
        }
        assert_eq!(digit(sub.next().await), '1');
        assert_eq!(digit(sub.next().await), '2');
        assert_eq!(digit(sub.next().await), '3');
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed() {
        let bus = InProcessBus::new(2);
        let mut sub = bus.subscribe().await.unwrap();
        for d in ['1', '2', '3', '4'] {
            bus.publish(dtmf(d)).await.unwrap();
        }
        assert!(matches!(sub.next().await, Some(Delivery::Lagged(2))));
        assert_eq!(digit(sub.next().await), '3');
    }

    /// A worker that takes 20 ms a batch and fails every third, as a store writer behind a
    /// slow, flaky database.
    struct Slow {
        seen: Arc<Mutex<Vec<char>>>,
        calls: usize,
    }

    impl Worker for Slow {
        fn handle<'a>(
            &'a mut self,
            events: &'a [Arc<Envelope>],
        ) -> BoxFuture<'a, Result<(), WorkerError>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.calls += 1;
                if self.calls % 3 == 0 {
                    return Err("database went away".into());
                }
                self.seen
                    .lock()
                    .unwrap()
                    .extend(events.iter().map(|e| digit_of(e)));
                Ok(())
            })
        }
    }

    /// A burst twenty times a group's queue, published faster than its slow, failing worker
    /// goes: the worker gets every event, once, in order (the broadcast view of the same bus
    /// would have lost most of them), and publishing waited for it rather than drop any.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_worker_under_a_burst_loses_nothing() {
        let bus = InProcessBus::new(8);
        let group = Group::new("slow", 4);
        let source = bus.join_group(&group).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let worker = Slow {
            seen: seen.clone(),
            calls: 0,
        };
        let running = tokio::spawn(run_group(source, group, worker, stop.clone()));
        let mut live = bus.subscribe().await.unwrap();
        let sent: Vec<char> = (0..160)
            .map(|i| char::from(b'0' + (i % 10) as u8))
            .collect();
        for &d in &sent {
            bus.publish(dtmf(d)).await.unwrap();
        }
        // What was published is handled before the group stops.
        stop.cancel();
        running.await.unwrap().unwrap();
        assert_eq!(*seen.lock().unwrap(), sent);
        assert!(
            matches!(live.next().await, Some(Delivery::Lagged(_))),
            "the live view of the same burst lags, or this test shows nothing"
        );
    }

    #[tokio::test]
    async fn a_group_gets_only_what_it_wants_and_runs_once_per_process() {
        let bus = InProcessBus::new(8);
        let group =
            Group::new("sevens", 8).wanting(|e| matches!(e, Event::Dtmf(d) if d.digit == '7'));
        let source = bus.join_group(&group).await.unwrap();
        assert!(matches!(
            bus.join_group(&group).await,
            Err(BusError::GroupTaken(_))
        ));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let worker = {
            let seen = seen.clone();
            worker_fn(move |events: Vec<Arc<Envelope>>| {
                seen.lock()
                    .unwrap()
                    .extend(events.iter().map(|e| digit_of(e)));
                std::future::ready(Ok::<_, WorkerError>(()))
            })
        };
        for d in ['1', '7', '2', '7'] {
            bus.publish(dtmf(d)).await.unwrap();
        }
        let stop = CancellationToken::new();
        stop.cancel();
        run_group(source, group.clone(), worker, stop)
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), ['7', '7']);
        // The group left: its name is free again, and publishing no longer waits for it.
        assert!(bus.join_group(&group).await.is_ok());
    }
}
