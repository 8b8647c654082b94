//! What only Postgres does: row-level security keeps each organization to its own rows whatever
//! a query says, and the engine refuses a role it would not apply to. Each test on a fresh
//! database. (The store's API on both databases is in `both.rs`.)

mod common;

use common::{call, call_events};
use winnerr_store::{Store, StoreError, StoreWriter, migrate};
use winnerr_testkit::TestDatabase;

async fn fresh() -> (TestDatabase, Store) {
    let db = TestDatabase::create().await;
    migrate(&db.owner_url).await.expect("migrations run");
    let store = Store::connect(&db.service_url, 4, winnerr_store::Keyring::development())
        .await
        .expect("service role connects");
    (db, store)
}

#[tokio::test]
async fn each_organization_sees_and_writes_only_its_own_rows() {
    let (db, store) = fresh().await;
    let writer = StoreWriter::new(store.clone());
    let mut mixed = call_events(&call("acme", "CA-acme"));
    mixed.extend(call_events(&call("globex", "CA-globex")));
    writer.apply(&mixed).await.unwrap();

    // No filter in the query: the database keeps each organization to its own rows.
    for (org, own) in [("acme", "CA-acme"), ("globex", "CA-globex")] {
        let mut tx = store.begin_for(&org.parse().unwrap()).await.unwrap();
        let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM calls")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(ids, vec![(own.to_string(),)]);
        let (applied,): (i64,) = sqlx::query_as("SELECT count(*) FROM applied_events")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(applied, 7);
        let (orgs,): (i64,) = sqlx::query_as("SELECT count(*) FROM organizations")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(orgs, 1);
        // Updating another organization's row touches nothing.
        let other = if org == "acme" {
            "CA-globex"
        } else {
            "CA-acme"
        };
        let touched = sqlx::query("UPDATE calls SET status = 'rejected' WHERE id = $1")
            .bind(other)
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(touched, 0);
        tx.commit().await.unwrap();
    }

    // Writing a row for another organization is refused.
    let mut tx = store.begin_for(&"acme".parse().unwrap()).await.unwrap();
    let refused = sqlx::query(
        "INSERT INTO calls (organization_id, id, status) VALUES ('globex', 'CA-sneaky', 'live')",
    )
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("row-level security"),
        "{refused}"
    );
    drop(tx);

    // With no organization named, nothing at all.
    let (visible,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls")
        .fetch_one(store.postgres_pool().unwrap())
        .await
        .unwrap();
    assert_eq!(visible, 0);
    db.drop_database().await;
}

#[tokio::test]
async fn the_service_refuses_to_run_as_a_role_that_bypasses_row_level_security() {
    let db = TestDatabase::create().await;
    migrate(&db.owner_url).await.unwrap();
    // The test server's admin is a superuser.
    match Store::connect(&db.owner_url, 1, winnerr_store::Keyring::development()).await {
        Err(StoreError::Config(message)) => assert!(message.contains("BYPASSRLS"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    db.drop_database().await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let (db, _store) = fresh().await;
    migrate(&db.owner_url)
        .await
        .expect("a second run finds nothing to do");
    db.drop_database().await;
}
