//! Calls reach Postgres through the store writer, on the in-process bus and on Kafka, and a
//! shutdown mid-call still stores the call's end.

use std::time::Duration;

use winnerr_events::Track;
use winnerr_events::fixtures::TestCall;
use winnerr_ingest::{CallScript, Pace};
use winnerr_store::Store;
use winnerr_testkit::TestDatabase;

use crate::helpers::*;

/// (status, inbound talk ms, outbound talk ms, DTMF digits, frames per track) of a stored call.
type StoredCall = (String, i64, i64, String, serde_json::Value);

async fn stored_call(db: &TestDatabase, org: &str, call: &str, until_status: &str) -> StoredCall {
    let store = Store::connect(&db.service_url, 1, winnerr_store::Keyring::development())
        .await
        .unwrap();
    let org: winnerr_events::OrgId = org.parse().unwrap();
    let read = |store: Store, org, call: String| async move {
        let mut tx = store.begin_for(&org).await?;
        let row: Option<StoredCall> = sqlx::query_as(
            "SELECT status, inbound_talk_ms, outbound_talk_ms, dtmf_digits, stream_stats -> 'frames' \
             FROM calls WHERE id = $1 AND stream_stats IS NOT NULL",
        )
        .bind(call)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, winnerr_store::StoreError>(row)
    };
    let mut last = None;
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match read(store.clone(), org.clone(), call.to_string()).await {
                Ok(Some(row)) if row.0 == until_status => return row,
                Ok(row) => last = Some(format!("{row:?}")),
                Err(err) => last = Some(err.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    match found.await {
        Ok(row) => row,
        Err(_) => panic!("call {call} not stored as {until_status}; last read: {last:?}"),
    }
}

fn conversation() -> CallScript {
    let mut script = CallScript::new(
        identity("acme", Some("agent-1"), Some("lead-1")),
        caller_speech(),
    );
    let mut outbound = vec![0i16; caller_speech().len()];
    outbound.extend(agent_speech());
    script.outbound = Some(outbound);
    script.dtmf = vec![(200, Track::Inbound, '4'), (400, Track::Inbound, '2')];
    script
}

async fn a_played_call_is_stored(test: &TestApp, db: &TestDatabase) {
    let script = conversation();
    test.simulator().play(&script, |_| {}).await.unwrap();
    let (status, inbound, outbound, digits, frames) =
        stored_call(db, "acme", &script.call_sid, "completed").await;
    assert_eq!(status, "completed");
    assert!(
        inbound > 1000 && outbound > 1000,
        "talk time of both sides: {inbound} / {outbound}"
    );
    assert_eq!(digits, "42");
    let frames_sent = script.frames() as u64;
    assert_eq!(frames, serde_json::json!([frames_sent, frames_sent]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_stored_from_the_in_process_bus() {
    let db = TestDatabase::create().await;
    let test = spawn_app_with(|config| on_postgres(config, &db)).await;
    a_played_call_is_stored(&test, &db).await;
    test.app.shutdown().await;
    db.drop_database().await;
}

/// A burst of calls' events many times the in-process bus's buffer, published faster than the
/// store writer writes them into the real Postgres server: every call is stored, whole. The
/// writer used to read the bus's broadcast, which dropped what it fell behind by (the embedded
/// engine lost calls' rows under load); its group's queue now makes publishing wait instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_bus_buffer_is_stored_whole_from_the_in_process_bus() {
    const CALLS: usize = 300;
    let db = TestDatabase::create().await;
    let test = spawn_app_with(|config| {
        on_postgres(config, &db);
        config.bus_capacity = 32;
    })
    .await;
    let calls: Vec<TestCall> = (0..CALLS)
        .map(|n| TestCall::new("acme", &format!("CA-burst-{n}")))
        .collect();
    // Every call's start, then its keys, then its end: 1,200 events at once.
    let burst = calls
        .iter()
        .map(TestCall::started)
        .chain(calls.iter().map(|call| call.dtmf('4')))
        .chain(calls.iter().map(|call| call.dtmf('2')))
        .chain(calls.iter().map(TestCall::ended));
    for event in burst {
        test.app.bus.publish(event).await.unwrap();
    }
    let waited = metric(
        &test.metrics().await,
        r#"winnerr_bus_publish_waits_total{group="winnerr-store"}"#,
    );
    // Shutdown waits for the writer to store what it was handed.
    test.app.shutdown().await;
    use sqlx::Connection;
    let mut owner = sqlx::PgConnection::connect(&db.owner_url).await.unwrap();
    let (stored, whole): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'completed' AND dtmf_digits = '42') \
         FROM calls WHERE id LIKE 'CA-burst-%'",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!((stored, whole), (CALLS as i64, CALLS as i64));
    assert!(
        waited > 0.0,
        "the burst outran the writer's queue, or this test shows nothing"
    );
    drop(owner);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_stored_from_kafka_by_the_store_writer_group() {
    let broker = Broker::start().await;
    let db = TestDatabase::create().await;
    let test = spawn_app_with(|config| {
        on_kafka(config, &broker);
        on_postgres(config, &db);
    })
    .await;
    a_played_call_is_stored(&test, &db).await;
    test.app.shutdown().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_mid_call_stores_the_calls_end_before_exit() {
    let db = TestDatabase::create().await;
    let test = spawn_app_with(|config| on_postgres(config, &db)).await;
    let mut script = conversation();
    script.pace = Pace::RealTime;
    let call = test.play_in_background(&script);
    test.until_live(1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    test.app.shutdown().await;
    let report = call.await.unwrap();
    assert_eq!(
        report.close.map(|c| c.0),
        Some(1001),
        "Twilio is told the server is going away"
    );
    // Checked only now that the engine has stopped: the end was stored before exit.
    let (status, inbound, _, digits, _) =
        stored_call(&db, "acme", &script.call_sid, "shutdown").await;
    assert_eq!(status, "shutdown");
    assert_eq!(digits, "42");
    assert!(
        inbound > 0,
        "the caller's speech so far is counted: {inbound}"
    );
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_gateway_and_store_roles_run_in_separate_processes_behind_kafka() {
    use winnerr::config::NodeRole;
    let broker = Broker::start().await;
    let db = TestDatabase::create().await;
    let node = |roles: Vec<NodeRole>| {
        let (broker, db) = (&broker, &db);
        spawn_app_with(move |config| {
            on_kafka(config, broker);
            on_postgres(config, db);
            config.roles = roles;
        })
    };
    let voice = node(vec![NodeRole::Voice]).await;
    let gateway = node(vec![NodeRole::Gateway]).await;
    let store = node(vec![NodeRole::Store]).await;
    let mut feed = gateway
        .feed("acme", "manager-1", winnerr_events::Role::Manager)
        .await;

    // Each node serves only its own routes.
    let status = |url: String| async move { reqwest::get(url).await.unwrap().status().as_u16() };
    assert_eq!(status(format!("{}/feed", voice.app.http_url())).await, 404);
    assert_eq!(
        status(format!("{}/api/calls", voice.app.http_url())).await,
        404
    );
    assert_eq!(
        status(format!("{}/twilio/stream", gateway.app.http_url())).await,
        404
    );
    assert_eq!(
        status(format!("{}/readyz", voice.app.http_url())).await,
        200
    );

    // A call streamed into the voice node reaches the gateway node's feed and the store.
    let script = conversation();
    voice.simulator().play(&script, |_| {}).await.unwrap();
    let events = feed.call_events(&call_id(&script.call_sid)).await;
    assert!(matches!(
        events[0].event,
        winnerr_events::Event::CallStarted(_)
    ));
    let (status, ..) = stored_call(&db, "acme", &script.call_sid, "completed").await;
    assert_eq!(status, "completed");
    // Stop the nodes while the broker is still there, so their consumers leave cleanly.
    for node in [voice, gateway, store] {
        node.app.shutdown().await;
    }
    db.drop_database().await;
}

#[test]
fn a_subset_of_roles_needs_kafka_and_the_store_role_a_database() {
    use winnerr::config::NodeRole;
    let mut config = winnerr::Config::local("127.0.0.1:0".parse().unwrap());
    config.roles = vec![NodeRole::Gateway];
    assert!(config.validate().unwrap_err().contains("KAFKA_BROKERS"));
    config.kafka_brokers = Some("127.0.0.1:9092".into());
    assert!(config.validate().is_ok());
    config.roles = vec![NodeRole::Store];
    assert!(config.validate().unwrap_err().contains("DATABASE_URL"));
}
