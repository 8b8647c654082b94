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
