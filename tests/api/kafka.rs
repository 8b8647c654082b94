//! The bus on a real Kafka-protocol broker process: order per call on the topic, every gateway
//! node serving its own clients, a broker crash mid-call, dead letters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio_util::sync::CancellationToken;
use winnerr_bus::{Bus, Group, KafkaBus, KafkaConfig, run_group, worker_fn};
use winnerr_events::fixtures::TestCall;
use winnerr_events::{EndReason, Envelope, Event, Role, Track};
use winnerr_ingest::{CallScript, Pace};

use crate::helpers::*;

fn two_track_call(org: &str, pace: Pace) -> CallScript {
    let mut script = CallScript::new(
        identity(org, Some("agent-1"), Some("lead-1")),
        caller_speech(),
    );
    script.outbound = Some(agent_speech());
    script.dtmf = vec![(500, Track::Inbound, '4'), (900, Track::Inbound, '2')];
    script.pace = pace;
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_events_are_ordered_on_the_topic_and_reach_every_gateway_node() {
    let broker = Broker::start().await;
    let node_a = spawn_app_on(&broker).await;
    let node_b = spawn_app_on(&broker).await;
    let mut feed_a = node_a.feed("acme", "manager-1", Role::Manager).await;
    let mut feed_b = node_b.feed("acme", "manager-2", Role::Manager).await;

    let script = two_track_call("acme", Pace::Fast);
    let report = node_a.simulator().play(&script, |_| {}).await.unwrap();
    assert_eq!(report.close.map(|c| c.0), Some(1000));

    let call = call_id(&script.call_sid);
    let on_a = feed_a.call_events(&call).await;
    let on_b = feed_b.call_events(&call).await;
    let on_topic = topic_events(&broker, &call).await;

    // One partition, keyed by the call, in the order the feeds show.
    let ids = |events: &[Arc<Envelope>]| events.iter().map(|e| e.id).collect::<Vec<_>>();
    let topic_ids: Vec<_> = on_topic.iter().map(|(_, _, e)| e.id).collect();
    assert_eq!(ids(&on_a), topic_ids);
    assert_eq!(ids(&on_b), topic_ids);
    assert!(
        on_topic
            .iter()
            .all(|(p, key, _)| *p == on_topic[0].0 && key == &script.call_sid)
    );
    assert!(matches!(on_topic[0].2.event, Event::CallStarted(_)));
    let Event::CallEnded(ended) = &on_topic.last().unwrap().2.event else {
        unreachable!()
    };
    assert_eq!(ended.reason, EndReason::Completed);
    let digits: Vec<char> = on_a
        .iter()
        .filter_map(|e| match &e.event {
            Event::Dtmf(d) => Some(d.digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, vec!['4', '2']);
}

/// How the broker goes away in the middle of a call.
#[derive(Clone, Copy)]
enum Outage {
    /// SIGINT: it closes its connections and saves its log.
    Stop,
    /// SIGKILL: this broker loses every message it held, acknowledged or not.
    Crash,
}

/// A real-time call of about 3.5 s on an engine whose broker goes down 1 s in and is back soon
/// after; returns the broker, the engine, a manager's feed and the call, once it has ended.
async fn call_through_an_outage(outage: Outage) -> (Broker, TestApp, FeedClient, CallScript) {
    let mut broker = Broker::start().await;
    let node = spawn_app_on(&broker).await;
    let feed = node.feed("acme", "manager-1", Role::Manager).await;
    let script = two_track_call("acme", Pace::RealTime);
    let call = node.play_in_background(&script);
    node.until_live(1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    match outage {
        Outage::Stop => broker.stop(),
        Outage::Crash => broker.kill(),
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    broker.restart().await;
    let report = call.await.unwrap();
    assert_eq!(
        report.close.map(|c| c.0),
        Some(1000),
        "the call itself went on"
    );
    (broker, node, feed, script)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_call_loses_nothing_and_duplicates_nothing() {
    let (broker, node, mut feed, script) = call_through_an_outage(Outage::Stop).await;

    let call = call_id(&script.call_sid);
    let on_feed = feed.call_events(&call).await;
    let on_topic = topic_events(&broker, &call).await;
    let feed_ids: Vec<_> = on_feed.iter().map(|e| e.id).collect();
    let topic_ids: Vec<_> = on_topic.iter().map(|(_, _, e)| e.id).collect();
    assert_eq!(
        feed_ids, topic_ids,
        "the feed shows exactly what the topic holds, once, in order"
    );
    let mut distinct = topic_ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        topic_ids.len(),
        "no event twice on the topic"
    );
    assert!(matches!(on_topic[0].2.event, Event::CallStarted(_)));
    let digits = on_topic
        .iter()
        .filter(|(_, _, e)| matches!(e.event, Event::Dtmf(_)))
        .count();
    assert_eq!(digits, 2);
    let Event::CallEnded(ended) = &on_topic.last().unwrap().2.event else {
        unreachable!()
    };
    let frames = script.frames() as u64;
    assert_eq!(ended.stats.frames, [frames, frames]);
    let page = node.metrics().await;
    assert_eq!(
        metric(
            &page,
            "winnerr_voice_publish_errors_total{type=\"audio_activity\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_and_the_group_goes_on() {
    let broker = Broker::start().await;
    let mut config = KafkaConfig::new(broker.brokers());
    config.partitions = 1;
    let bus = KafkaBus::connect(config).await.unwrap();

    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let poison = FutureRecord::to("winnerr.call-events.v1")
        .key("CA-poison")
        .payload("{\"v\":1,\"not\":\"an event\"");
    raw.send(poison, Duration::from_secs(10)).await.unwrap();
    let good = TestCall::new("acme", "CA-good").dtmf('7');
    bus.publish(good.clone()).await.unwrap();

    let handled = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let worker = {
        let handled = handled.clone();
        let worker = worker_fn(move |events: Vec<Arc<Envelope>>| {
            handled.lock().unwrap().extend(events.iter().map(|e| e.id));
            std::future::ready(Ok::<_, String>(()))
        });
        in_group(&bus, "test-writer", worker, stop.clone()).await
    };
    tokio::time::timeout(WAIT, async {
        while handled.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the good event after the poison one is handled");
    stop.cancel();
    worker.await.unwrap().unwrap();
    assert_eq!(*handled.lock().unwrap(), vec![good.id]);

    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "test-dead-letter-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&["winnerr.dead-letter.v1"]).unwrap();
    let dead = tokio::time::timeout(WAIT, reader.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.key(), Some(&b"CA-poison"[..]));
    assert_eq!(dead.payload(), Some(&b"{\"v\":1,\"not\":\"an event\""[..]));
    let headers = dead.headers().unwrap();
    let reason = headers
        .iter()
        .find(|h| h.key == "reason")
        .and_then(|h| h.value)
        .unwrap();
    assert!(
        String::from_utf8_lossy(reason).contains("not a call event"),
        "{}",
        String::from_utf8_lossy(reason)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_crash_that_loses_its_log_the_feed_still_gets_the_whole_call_once() {
    let (_broker, node, mut feed, script) = call_through_an_outage(Outage::Crash).await;

    let on_feed = feed.call_events(&call_id(&script.call_sid)).await;
    let mut ids: Vec<_> = on_feed.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), on_feed.len(), "no event twice on the feed");
    assert!(matches!(on_feed[0].event, Event::CallStarted(_)));
    let digits = on_feed
        .iter()
        .filter(|e| matches!(e.event, Event::Dtmf(_)))
        .count();
    assert_eq!(digits, 2);
    let Event::CallEnded(ended) = &on_feed.last().unwrap().event else {
        unreachable!()
    };
    assert_eq!(ended.stats.frames, [script.frames() as u64; 2]);
    let page = node.metrics().await;
    assert_eq!(
        metric(&page, "winnerr_bus_produce_failed_total"),
        0.0,
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_writer_killed_between_its_write_and_its_commit_writes_nothing_twice() {
    let broker = Broker::start().await;
    let db = winnerr_testkit::TestDatabase::create().await;
    winnerr_store::migrate(&db.owner_url).await.unwrap();
    let writer = winnerr_store::StoreWriter::new(
        winnerr_store::Store::connect(&db.service_url, 2, winnerr_store::Keyring::development())
            .await
            .unwrap(),
    );
    let mut config = KafkaConfig::new(broker.brokers());
    config.partitions = 1;
    let bus = KafkaBus::connect(config).await.unwrap();

    // A call: start, keys 4 and 2, end.
    let call = TestCall::new("acme", "CA-redelivery");
    let events = vec![call.started(), call.dtmf('4'), call.dtmf('2'), call.ended()];
    for event in &events {
        bus.publish(event.clone()).await.unwrap();
    }

    // The first writer stores the digit 4 and dies right after, before committing its offset.
    let doomed = events[1].id;
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let (died, mut dead) = tokio::sync::mpsc::channel(1);
    let first = {
        let handler = recording_writer(writer.clone(), deliveries.clone(), Some((doomed, died)));
        in_group(&bus, "winnerr-store", handler, CancellationToken::new()).await
    };
    tokio::time::timeout(WAIT, dead.recv()).await.unwrap();
    first.abort();
    let _ = first.await;

    // Its replacement in the group gets the digit 4 again, then the rest.
    let stop = CancellationToken::new();
    let second = {
        let handler = recording_writer(writer.clone(), deliveries.clone(), None);
        in_group(&bus, "winnerr-store", handler, stop.clone()).await
    };
    let last = events[3].id;
    tokio::time::timeout(Duration::from_secs(30), async {
        while !deliveries.lock().unwrap().iter().any(|(id, _)| *id == last) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the second writer catches up");
    stop.cancel();
    second.await.unwrap().unwrap();

    let deliveries = deliveries.lock().unwrap().clone();
    let of_doomed: Vec<usize> = deliveries
        .iter()
        .filter(|(id, _)| *id == doomed)
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(of_doomed, vec![1, 0], "delivered again, written once");
    let store =
        winnerr_store::Store::connect(&db.service_url, 1, winnerr_store::Keyring::development())
            .await
            .unwrap();
    let mut tx = store.begin_for(&"acme".parse().unwrap()).await.unwrap();
    let (digits, status): (String, String) =
        sqlx::query_as("SELECT dtmf_digits, status FROM calls WHERE id = 'CA-redelivery'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!((digits.as_str(), status.as_str()), ("42", "completed"));
    let (applied,): (i64,) = sqlx::query_as("SELECT count(*) FROM applied_events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(applied, 4);
    drop(tx);
    db.drop_database().await;
}

/// What a store-writer handler saw: each event's id and whether it was new (1) or not (0).
type Deliveries = Arc<Mutex<Vec<(winnerr_events::EventId, usize)>>>;

/// A store-writer handler that applies events one at a time (to see which were new) and records
/// them; with `die_after`, it signals and hangs right after applying that event, as a worker that
/// crashed before committing its offset.
fn recording_writer(
    writer: winnerr_store::StoreWriter,
    deliveries: Deliveries,
    die_after: Option<(winnerr_events::EventId, tokio::sync::mpsc::Sender<()>)>,
) -> impl winnerr_bus::Worker + 'static {
    worker_fn(move |events: Vec<Arc<Envelope>>| {
        let (writer, deliveries, die_after) =
            (writer.clone(), deliveries.clone(), die_after.clone());
        Box::pin(async move {
            for event in events {
                let applied = writer
                    .apply(std::slice::from_ref(&event))
                    .await
                    .map_err(|e| e.to_string())?;
                deliveries.lock().unwrap().push((event.id, applied));
                if let Some((doomed, died)) = &die_after {
                    if event.id == *doomed {
                        let _ = died.send(()).await;
                        std::future::pending::<()>().await;
                    }
                }
            }
            Ok::<_, String>(())
        })
    })
}

/// Joins consumer group `name` (64 events a batch) on `bus` and runs `worker` in it until `stop`.
async fn in_group(
    bus: &KafkaBus,
    name: &str,
    worker: impl winnerr_bus::Worker + 'static,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Result<(), winnerr_bus::BusError>> {
    let group = Group::new(name, 64);
    let source = bus.join_group(&group).await.unwrap();
    tokio::spawn(run_group(source, group, worker, stop))
}

/// Presence across gateway nodes: a manager on node A sees people come and go on node B, through
/// the bus; when node B stops, its people leave A's list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_by_gateway_nodes_over_the_bus() {
    use winnerr_events::{ClientMessage, PresenceChange, PresenceStatus};
    let broker = Broker::start().await;
    // Node presence is republished every heartbeat, which is what makes a join published before
    // the other node's tail was assigned arrive at all; a feed not read for two heartbeats is
    // closed, so each wait below reads the manager's feed while node B acts (before, a slow
    // shutdown on a loaded machine left it unread past a 0.5 s heartbeat and the server closed it).
    let quick_heartbeat = |config: &mut winnerr::Config| {
        on_kafka(config, &broker);
        config.feed_heartbeat = 2.0;
    };
    let node_a = spawn_app_with(quick_heartbeat).await;
    let node_b = spawn_app_with(quick_heartbeat).await;
    let (mut manager, _) = node_a.org_feed("acme", "manager-1", Role::Manager).await;
    // Waits for the next presence change of `user` on the manager's feed.
    async fn change_of(feed: &mut FeedClient, user: &str) -> (PresenceChange, PresenceStatus) {
        loop {
            let (change, member) = feed.next_presence().await;
            if member.user_id.as_str() == user {
                return (change, member.status);
            }
        }
    }

    let (mut agent, joined) = tokio::join!(
        node_b.feed_unsubscribed("acme", "agent-1", Role::Agent),
        change_of(&mut manager, "agent-1")
    );
    assert_eq!(joined, (PresenceChange::Join, PresenceStatus::Available));
    agent
        .send(&ClientMessage::Presence {
            status: PresenceStatus::OnCall,
            call_id: None,
        })
        .await;
    assert_eq!(
        change_of(&mut manager, "agent-1").await,
        (PresenceChange::Update, PresenceStatus::OnCall)
    );
    let ((), left) = tokio::join!(agent.close(), change_of(&mut manager, "agent-1"));
    assert_eq!(left.0, PresenceChange::Leave);
    // Another organization's people on node B never show: the next change the manager sees is
    // agent-2's, and `change_of` would skip only acme's other members.
    let (_other, _leaving, joined) = tokio::join!(
        node_b.feed_unsubscribed("globex", "agent-9", Role::Agent),
        node_b.feed_unsubscribed("acme", "agent-2", Role::Agent),
        async {
            let (change, member) = manager.next_presence().await;
            (change, member.user_id.as_str().to_owned())
        }
    );
    assert_eq!(joined, (PresenceChange::Join, "agent-2".to_owned()));

    // Node B stops with someone on it: they leave A's list.
    let ((), left) = tokio::join!(node_b.app.shutdown(), change_of(&mut manager, "agent-2"));
    assert_eq!(left.0, PresenceChange::Leave);
    // Stopped while the broker still runs: a node left to the runtime's drop closes its Kafka
    // consumers after the broker is gone, and librdkafka's consumer close then waits forever
    // (seen: the test hung in BaseConsumer::drop under the store writer's group).
    node_a.app.shutdown().await;
}

/// A batch with an event Postgres refuses (a NUL in a text field, past ingest's checks as a
/// producer of another version might send it) no longer stalls the Kafka store-writer group:
/// the event is set aside in `dead_letters` and the calls after it are stored. Before, the
/// group retried that batch forever and stored nothing more for any organization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_postgres_refuses_is_set_aside_and_the_store_group_goes_on() {
    let broker = Broker::start().await;
    let db = winnerr_testkit::TestDatabase::create().await;
    let test = spawn_app_with(|config| {
        on_kafka(config, &broker);
        on_postgres(config, &db);
    })
    .await;
    let (refused, after) = (
        TestCall::new("acme", "CA-poison"),
        TestCall::new("acme", "CA-after"),
    );
    let mut poison = refused.started();
    if let Event::CallStarted(started) = &mut poison.event {
        started.account_sid = "AC\0".into();
    }
    for event in [
        poison.clone(),
        refused.ended(),
        after.started(),
        after.ended(),
    ] {
        test.app.bus.publish(event).await.unwrap();
    }
    use sqlx::Connection;
    let mut owner = sqlx::PgConnection::connect(&db.owner_url).await.unwrap();
    let stored = tokio::time::timeout(WAIT, async {
        loop {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM calls WHERE id = 'CA-after'")
                    .fetch_optional(&mut owner)
                    .await
                    .unwrap();
            if status.as_deref() == Some("completed") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(stored.is_ok(), "the call after the poison event is stored");
    let letters: Vec<(String, String, String)> =
        sqlx::query_as("SELECT event_id, kind, reason FROM dead_letters")
            .fetch_all(&mut owner)
            .await
            .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, poison.id.to_string());
    assert_eq!(letters[0].1, "call_started");
    assert!(letters[0].2.contains("0x00"), "{}", letters[0].2);
    test.app.shutdown().await;
    drop(owner);
    db.drop_database().await;
}

/// A worker group whose broker is gone still ends: one shut down returns, and one abandoned
/// (its task dropped with the runtime, as a process that stops without draining does) lets the
/// runtime go, each within a bound, instead of waiting forever in librdkafka's consumer close.
#[test]
fn a_group_ends_in_bounded_time_when_its_broker_is_gone() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut broker = Broker::start().await;
        let bus = KafkaBus::connect(KafkaConfig::new(broker.brokers()))
            .await
            .unwrap();
        let handled = Arc::new(Mutex::new(Vec::new()));
        let counting = |group: &'static str| {
            let handled = handled.clone();
            worker_fn(move |events: Vec<Arc<Envelope>>| {
                handled.lock().unwrap().extend(events.iter().map(|_| group));
                std::future::ready(Ok::<_, String>(()))
            })
        };
        let stop = CancellationToken::new();
        let stopping = in_group(&bus, "stops", counting("stops"), stop.clone()).await;
        let _abandoned = in_group(
            &bus,
            "abandoned",
            counting("abandoned"),
            CancellationToken::new(),
        )
        .await;
        bus.publish(TestCall::new("acme", "CA-gone").dtmf('1'))
            .await
            .unwrap();
        tokio::time::timeout(WAIT, async {
            while handled.lock().unwrap().len() < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("both groups handle the event");

        broker.kill();
        stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(30), stopping).await;
        assert!(ended.is_ok(), "a group shut down with its broker gone hung");
    });
    let (dropped, gone) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(runtime);
        let _ = dropped.send(());
    });
    assert!(
        gone.recv_timeout(Duration::from_secs(30)).is_ok(),
        "a runtime holding a group whose broker is gone hung on drop"
    );
}
