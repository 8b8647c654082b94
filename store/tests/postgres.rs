//! The store against the real Postgres server, each test on a fresh database, connected as the
//! service role the engine uses.

use std::sync::Arc;

use winnerr_events::{
    ActivityState, AudioActivity, CallContext, CallEnded, CallStarted, Dtmf, EndReason, Envelope,
    Event, MediaFormat, OrgId, StreamStats, Track,
};
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

fn call(org: &str, call: &str) -> CallContext {
    CallContext {
        org_id: org.parse().unwrap(),
        call_id: call.parse().unwrap(),
        agent_id: Some("agent-1".parse().unwrap()),
        lead_id: Some("lead-1".parse().unwrap()),
    }
}

/// A whole call as the voice stage publishes it.
fn call_events(ctx: &CallContext) -> Vec<Arc<Envelope>> {
    let events = vec![
        Event::CallStarted(CallStarted {
            stream_sid: "MZ1".into(),
            account_sid: "AC1".into(),
            lead_id: ctx.lead_id.clone(),
            tracks: vec![Track::Inbound, Track::Outbound],
            media_format: MediaFormat::twilio_mulaw(),
        }),
        Event::AudioActivity(AudioActivity {
            track: Track::Inbound,
            state: ActivityState::Speaking,
            at_ms: 500,
            spoken_ms: None,
        }),
        Event::Dtmf(Dtmf {
            track: Track::Inbound,
            digit: '4',
        }),
        Event::AudioActivity(AudioActivity {
            track: Track::Inbound,
            state: ActivityState::Silent,
            at_ms: 2300,
            spoken_ms: Some(1800),
        }),
        Event::Dtmf(Dtmf {
            track: Track::Inbound,
            digit: '2',
        }),
        Event::AudioActivity(AudioActivity {
            track: Track::Outbound,
            state: ActivityState::Silent,
            at_ms: 5000,
            spoken_ms: Some(2100),
        }),
        Event::CallEnded(CallEnded {
            reason: EndReason::Completed,
            duration_ms: 6000,
            stats: StreamStats {
                frames: [300, 300],
                ..StreamStats::default()
            },
        }),
    ];
    events
        .into_iter()
        .map(|e| Arc::new(Envelope::new(ctx, e)))
        .collect()
}

type CallRow = (
    String,
    String,
    Option<String>,
    i64,
    i64,
    String,
    Option<i64>,
    Option<serde_json::Value>,
);

async fn call_rows(store: &Store, org: &str) -> Vec<CallRow> {
    let mut tx = store.begin_for(&org.parse().unwrap()).await.unwrap();
    let rows = sqlx::query_as(
        "SELECT id, status, agent_id, inbound_talk_ms, outbound_talk_ms, dtmf_digits, duration_ms, stream_stats \
         FROM calls ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    rows
}

#[tokio::test]
async fn a_call_becomes_one_row_and_replays_change_nothing() {
    let (db, store) = fresh().await;
    let writer = StoreWriter::new(store.clone());
    let events = call_events(&call("acme", "CA1"));

    assert_eq!(writer.apply(&events).await.unwrap(), events.len());
    let rows = call_rows(&store, "acme").await;
    assert_eq!(rows.len(), 1);
    let (id, status, agent, inbound, outbound, digits, duration, stats) = rows[0].clone();
    assert_eq!(
        (id.as_str(), status.as_str(), agent.as_deref()),
        ("CA1", "completed", Some("agent-1"))
    );
    assert_eq!(
        (inbound, outbound, digits.as_str(), duration),
        (1800, 2100, "42", Some(6000))
    );
    assert_eq!(stats.unwrap()["frames"], serde_json::json!([300, 300]));

    // The same events again, as one batch and one by one: nothing new, nothing changed.
    assert_eq!(writer.apply(&events).await.unwrap(), 0);
    for event in &events {
        assert_eq!(writer.apply(std::slice::from_ref(event)).await.unwrap(), 0);
    }
    assert_eq!(call_rows(&store, "acme").await, rows);
    db.drop_database().await;
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
        .fetch_one(store.pool())
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

async fn owner(db: &TestDatabase) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(&db.owner_url).await.unwrap()
}

#[tokio::test]
async fn contact_details_are_ciphertext_at_rest_and_found_by_phone() {
    let (db, store) = fresh().await;
    let acme = "acme".parse().unwrap();
    let fields = winnerr_store::PersonFields {
        first_name: Some("Dana".into()),
        last_name: Some("Reyes".into()),
        email: Some("dana.reyes@example.com".into()),
        phone: Some("+1 (555) 010-0199".into()),
        budget_min: Some(400_000),
        budget_max: Some(650_000),
        location: Some("Austin, TX".into()),
        ..Default::default()
    };
    let person = store.create_person(&acme, &fields).await.unwrap();
    assert_eq!(person.email.as_deref(), Some("dana.reyes@example.com"));
    assert_eq!(
        store.get_person(&acme, &person.id).await.unwrap(),
        Some(person.clone())
    );

    // What the database holds is ciphertext with its key id, not the address or the number.
    let (email, email_key, phone, lookup): (Vec<u8>, String, Vec<u8>, Vec<u8>) = sqlx::query_as(
        "SELECT email_ciphertext, email_key_id, phone_ciphertext, phone_lookup FROM people WHERE id = $1",
    )
    .bind(&person.id)
    .fetch_one(&mut owner(&db).await)
    .await
    .unwrap();
    assert_eq!(email_key, "dev1");
    for raw in [&email, &phone, &lookup] {
        let text = String::from_utf8_lossy(raw);
        assert!(
            !text.contains("dana") && !text.contains("0199") && !text.contains("5550100199"),
            "{text}"
        );
    }

    // Any formatting of the number finds the person; another organization finds nobody.
    let found = store
        .find_people_by_phone(&acme, "+15550100199")
        .await
        .unwrap();
    assert_eq!(found, vec![person.clone()]);
    let globex = "globex".parse().unwrap();
    assert!(
        store
            .find_people_by_phone(&globex, "+15550100199")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.get_person(&globex, &person.id).await.unwrap(), None);

    // Updates re-encrypt; bad input is refused with a reason.
    let changed = winnerr_store::PersonFields {
        phone: Some("+1 555 010 0200".into()),
        ..Default::default()
    };
    let updated = store
        .update_person(&acme, &person.id, &changed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.phone.as_deref(), updated.email.as_deref()),
        (Some("+1 555 010 0200"), Some("dana.reyes@example.com"))
    );
    assert!(
        store
            .find_people_by_phone(&acme, "+15550100199")
            .await
            .unwrap()
            .is_empty()
    );
    for bad in [
        winnerr_store::PersonFields {
            first_name: Some(" ".into()),
            ..Default::default()
        },
        winnerr_store::PersonFields {
            email: Some("nobody".into()),
            ..Default::default()
        },
        winnerr_store::PersonFields {
            budget_min: Some(900_000),
            ..Default::default()
        },
    ] {
        let refused = store.update_person(&acme, &person.id, &bad).await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{bad:?}: {refused:?}"
        );
    }
    db.drop_database().await;
}

/// Appends one audit row per (actor, action, subject), each with `detail`.
async fn audit_all(store: &Store, org: &OrgId, entries: &[(&str, &str, &str)], detail: &str) {
    for &(actor, action, subject) in entries {
        let entry = winnerr_store::AuditEntry {
            actor,
            action,
            subject,
            detail: detail.into(),
        };
        store.audit(org, &entry).await.unwrap();
    }
}

#[tokio::test]
async fn the_audit_chain_finds_edited_and_deleted_rows() {
    let (db, store) = fresh().await;
    let acme = "acme".parse().unwrap();
    audit_all(
        &store,
        &acme,
        &[
            ("u1", "transcript.read", "CA1"),
            ("u2", "person.export", "p_1"),
            ("admin", "keys.rotate", "dev1"),
        ],
        "{\"via\":\"api\"}",
    )
    .await;
    let intact = store.verify_audit(&acme).await.unwrap();
    assert_eq!((intact.rows, intact.problem), (3, None));
    let anchor = intact.head.expect("a chain of three rows has a head");
    assert_eq!(anchor.seq, 3);
    assert_eq!(
        anchor.to_string().parse::<winnerr_store::AuditHead>(),
        Ok(anchor.clone())
    );

    // The service may only append.
    let mut tx = store.begin_for(&acme).await.unwrap();
    let refused = sqlx::query("UPDATE audit_log SET actor = 'nobody'")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
    drop(tx);

    // Whoever edits a row behind its back is found out...
    let mut owner = owner(&db).await;
    sqlx::query("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
        .execute(&mut owner)
        .await
        .unwrap();
    let check = store.verify_audit(&acme).await.unwrap();
    assert_eq!(check.problem.as_ref().map(|p| p.0), Some(2), "{check:?}");
    assert!(check.problem.unwrap().1.contains("changed"));

    // ...and so is a deleted row.
    sqlx::query("UPDATE audit_log SET actor = 'u2' WHERE seq = 2")
        .execute(&mut owner)
        .await
        .unwrap();
    assert_eq!(store.verify_audit(&acme).await.unwrap().problem, None);
    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(&mut owner)
        .await
        .unwrap();
    let check = store.verify_audit(&acme).await.unwrap();
    assert_eq!(check.problem, Some((3, "row 2 is missing".into())));

    // Deleting the last rows leaves a chain that checks out on its own; the anchor recorded
    // outside the database finds them gone.
    sqlx::query("DELETE FROM audit_log")
        .execute(&mut owner)
        .await
        .unwrap();
    audit_all(
        &store,
        &acme,
        &[
            ("u1", "transcript.read", "CA1"),
            ("u2", "person.export", "p_1"),
        ],
        "{}",
    )
    .await;
    let head = store.verify_audit(&acme).await.unwrap().head.unwrap();
    audit_all(&store, &acme, &[("admin", "user.role.change", "u3")], "{}").await;
    let anchored_at_3 = store.verify_audit(&acme).await.unwrap().head.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 3")
        .execute(&mut owner)
        .await
        .unwrap();
    assert_eq!(
        store.verify_audit(&acme).await.unwrap().problem,
        None,
        "the chain alone sees nothing"
    );
    let check = store
        .verify_audit_against(&acme, Some(&anchored_at_3))
        .await
        .unwrap();
    assert_eq!(check.problem.as_ref().map(|p| p.0), Some(3), "{check:?}");
    assert!(check.problem.unwrap().1.contains("anchored at row 3"));
    // An older anchor still holds; a forged one does not.
    let check = store
        .verify_audit_against(&acme, Some(&head))
        .await
        .unwrap();
    assert_eq!(check.problem, None);
    let forged = winnerr_store::AuditHead {
        seq: 2,
        hash: "0".repeat(64),
    };
    let check = store
        .verify_audit_against(&acme, Some(&forged))
        .await
        .unwrap();
    assert_eq!(check.problem.as_ref().map(|p| p.0), Some(2), "{check:?}");
    db.drop_database().await;
}

#[tokio::test]
async fn rotating_keys_re_encrypts_every_value_under_the_new_key() {
    use base64::Engine;
    let (db, store) = fresh().await;
    let acme = "acme".parse().unwrap();
    let fields = winnerr_store::PersonFields {
        first_name: Some("Ana".into()),
        email: Some("ana@example.com".into()),
        phone: Some("+15550100123".into()),
        ..Default::default()
    };
    let person = store.create_person(&acme, &fields).await.unwrap();

    let new_key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let both = winnerr_store::Keyring::parse(
        &format!("k2:{new_key},{}", winnerr_store::crypto::DEV_KEYS),
        winnerr_store::crypto::DEV_LOOKUP_KEY,
    )
    .unwrap();
    let rotated = Store::connect(&db.service_url, 2, both).await.unwrap();
    assert_eq!(rotated.rotate_keys(&acme, "admin-1").await.unwrap(), 2);
    assert_eq!(
        rotated.rotate_keys(&acme, "admin-1").await.unwrap(),
        0,
        "nothing left under the old key"
    );

    // The old key can now be dropped: the new one alone reads everything.
    let only_new = winnerr_store::Keyring::parse(
        &format!("k2:{new_key}"),
        winnerr_store::crypto::DEV_LOOKUP_KEY,
    )
    .unwrap();
    let after = Store::connect(&db.service_url, 1, only_new).await.unwrap();
    assert_eq!(
        after.get_person(&acme, &person.id).await.unwrap(),
        Some(person.clone())
    );
    assert_eq!(
        after
            .find_people_by_phone(&acme, "+1 555 010 0123")
            .await
            .unwrap(),
        vec![person]
    );
    let (key_ids,): (Vec<String>,) =
        sqlx::query_as("SELECT ARRAY[email_key_id, phone_key_id] FROM people")
            .fetch_one(&mut owner(&db).await)
            .await
            .unwrap();
    assert_eq!(key_ids, vec!["k2", "k2"]);
    let check = after.verify_audit(&acme).await.unwrap();
    assert_eq!((check.rows, check.problem), (2, None));
    db.drop_database().await;
}
