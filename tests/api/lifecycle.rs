//! Readiness that means something, and shutdown that finishes what it started.

use std::time::Duration;

use sqlx::Connection;
use winnerr_testkit::TestDatabase;

use crate::helpers::*;

async fn readyz(test: &TestApp) -> (u16, String) {
    let response = reqwest::get(format!("{}/readyz", test.app.http_url()))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Polls readiness until it answers `status`.
async fn until_ready_is(test: &TestApp, status: u16) -> String {
    let mut last = (0, String::new());
    let reached = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            last = readyz(test).await;
            if last.0 == status {
                return last.1.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    match reached.await {
        Ok(body) => body,
        Err(_) => panic!("readiness never became {status}; last: {last:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_false_while_the_database_is_down() {
    let db = TestDatabase::create().await;
    let test = spawn_app_with(|config| on_postgres(config, &db)).await;
    assert_eq!(readyz(&test).await.0, 200);

    // The database goes away: no new connections, and the open ones are cut.
    let name = db.owner_url.rsplit('/').next().unwrap().to_string();
    let admin_url = db.owner_url.replace(&format!("/{name}"), "/postgres");
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();
    let body = until_ready_is(&test, 503).await;
    assert!(body.contains("database unreachable"), "{body}");
    assert_eq!(
        reqwest::get(format!("{}/healthz", test.app.http_url()))
            .await
            .unwrap()
            .status(),
        200,
        "alive all the same"
    );

    // And comes back.
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .unwrap();
    until_ready_is(&test, 200).await;
    test.app.shutdown().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_false_while_the_broker_is_down() {
    let mut broker = Broker::start().await;
    let test = spawn_app_on(&broker).await;
    assert_eq!(readyz(&test).await.0, 200);
    broker.stop();
    let body = until_ready_is(&test, 503).await;
    assert!(body.contains("bus"), "{body}");
    broker.restart().await;
    until_ready_is(&test, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_live_call_delivers_and_stores_its_end_before_exit() {
    use winnerr::config::{DEV_JWT_SECRET, DEV_TWILIO_AUTH_TOKEN};
    use winnerr_events::{EndReason, Event, FeedMessage, Role};
    use winnerr_ingest::{CallScript, Pace, Simulator};

    let db = TestDatabase::create().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The engine's log, kept only when the test fails.
    let log = std::env::temp_dir().join(format!("winnerr-sigterm-{port}.log"));
    let mut engine = std::process::Command::new(env!("CARGO_BIN_EXE_winnerr"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &db.service_url)
        .env("DATABASE_MIGRATION_URL", &db.owner_url)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    tokio::time::timeout(Duration::from_secs(30), async {
        while !reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the engine becomes ready");

    let token = winnerr_gateway::Auth::new(DEV_JWT_SECRET.as_bytes()).issue(
        &"manager-1".parse().unwrap(),
        &"acme".parse().unwrap(),
        Role::Manager,
        Duration::from_secs(600),
    );
    let mut feed = FeedClient::connect(&format!("ws://127.0.0.1:{port}/feed"), &token).await;
    assert!(matches!(
        feed.next_message().await,
        Some(FeedMessage::Hello { .. })
    ));
    feed.subscribe("calls", None).await;

    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), caller_speech());
    script.outbound = Some(agent_speech());
    script.pace = Pace::RealTime;
    let simulator = Simulator::new(
        format!("ws://127.0.0.1:{port}/twilio/stream"),
        DEV_TWILIO_AUTH_TOKEN,
    );
    let call = {
        let script = script.clone();
        tokio::spawn(async move { simulator.play(&script, |_| {}).await.unwrap() })
    };
    assert!(matches!(
        feed.next_event().await.event,
        Event::CallStarted(_)
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &engine.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());

    // Twilio is told the server is going away; the feed still gets the call's end, then closes.
    let report = call.await.unwrap();
    assert_eq!(report.close.as_ref().map(|c| c.0), Some(1001), "{report:?}");
    let ended = loop {
        let event = feed.next_event().await;
        if let Event::CallEnded(ended) = &event.event {
            break ended.clone();
        }
    };
    assert_eq!(ended.reason, EndReason::Shutdown);
    assert!(feed.next_message().await.is_none());
    assert_eq!(feed.close_code(), Some(1001));
    let status = tokio::task::spawn_blocking(move || engine.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exits cleanly: {status}");

    // Stored before the process exited.
    let mut owner = sqlx::PgConnection::connect(&db.owner_url).await.unwrap();
    let (status,): (String,) = sqlx::query_as("SELECT status FROM calls WHERE id = $1")
        .bind(&script.call_sid)
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(status, "shutdown");
    db.drop_database().await;
    let _ = std::fs::remove_file(log);
}
