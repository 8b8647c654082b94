//! Calls reach Postgres through the store writer, on the in-process bus and on Kafka, and a
//! shutdown mid-call still stores the call's end.

use std::time::Duration;

use winnerr_events::Track;
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
