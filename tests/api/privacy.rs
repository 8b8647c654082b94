//! Privacy over the real server (issue 22): a person erased on request, on both databases, and
//! retention, purged on schedule by the store role and shown first by `winnerr store purge
//! --dry-run`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use winnerr_events::Role;
use winnerr_ingest::CallScript;
use winnerr_testkit::{TestDb, raw};

use crate::helpers::*;
use crate::rest::{ids, insert_utterance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_person_leaves_nothing_readable_and_the_audit_chain_holds_on_postgres() {
    an_erased_person_leaves_nothing_readable(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_person_leaves_nothing_readable_and_the_audit_chain_holds_on_sqlite() {
    an_erased_person_leaves_nothing_readable(TestDb::sqlite()).await;
}

/// Erasure on request (issue 22): an admin's `DELETE /api/people/{id}` removes the person, the
/// transcripts of their calls, their scores, activity, deals and messages, and says how much; their calls
/// stay as calls of no one; another person's records, and the audit chain, are untouched; it is
/// for admins of the person's organization only, and waits while the person is on a live call.
async fn an_erased_person_leaves_nothing_readable(db: TestDb) {
    let test = spawn_app_with(|config| on_db(config, &db)).await;
    let api = test.api();
    let admin = test.token("acme", "admin-1", Role::Admin);
    let manager = test.token("acme", "manager-1", Role::Manager);
    let other_admin = test.token("globex", "admin-9", Role::Admin);
    let create = |body: &'static str| {
        let (api, admin) = (&api, &admin);
        async move {
            let (status, person) = api
                .call(
                    Some(admin),
                    reqwest::Method::POST,
                    "/api/people",
                    Some(body),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{person}");
            person["id"].as_str().unwrap().to_owned()
        }
    };
    let erased = create(r#"{"first_name":"Dana","last_name":"Reyes","email":"dana@example.com","phone":"+1 555 010 0199"}"#).await;
    let kept = create(r#"{"first_name":"Sam","phone":"+1 555 010 0200"}"#).await;

    // A call with each, two transcript lines each, a score, an activity and a deal each.
    let mut calls = Vec::new();
    for person in [&erased, &kept] {
        let mut script = CallScript::new(
            identity("acme", Some("agent-1"), Some(person)),
            caller_speech(),
        );
        script.dtmf = vec![(200, winnerr_events::Track::Inbound, '4')];
        test.simulator().play(&script, |_| {}).await.unwrap();
        calls.push(script.call_sid);
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while ids(&api.get(&manager, "/api/calls?status=ended").await.1).len() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("calls are stored");
    let mut owner = db.owner().await;
    for (person, call) in [(&erased, &calls[0]), (&kept, &calls[1])] {
        insert_utterance(&mut owner, call, "u1", 0, "my card ends in 4242").await;
        insert_utterance(&mut owner, call, "u2", 2000, "call me back at home").await;
        // A time as each database keeps it: timestamptz, or milliseconds since the epoch.
        let at = match &db {
            TestDb::Postgres(_) => "'2026-11-30T10:00:00Z'",
            TestDb::Sqlite(_) => "1796032800000",
        };
        for sql in [
            format!(
                "INSERT INTO lead_scores (organization_id, person_id, scored_at, score, factors, model_version) \
                 VALUES ('acme', $1, {at}, 70, '[]', 'prior-1')"
            ),
            format!(
                "INSERT INTO activity (organization_id, person_id, kind, at) VALUES ('acme', $1, 'property_view', {at})"
            ),
            "INSERT INTO deals (organization_id, id, person_id, stage) VALUES ('acme', 'd-' || $1, $1, 'lead')"
                .to_owned(),
            // An SMS from them (its body as the writer seals it does not matter here).
            "INSERT INTO messages (organization_id, id, channel, direction, person_id, received_ms) \
             VALUES ('acme', 'SM-' || $1, 'sms', 'inbound', $1, 1796032800000)"
                .to_owned(),
        ] {
            raw!(&mut owner, |conn| sqlx::query(&sql)
                .bind(person.as_str())
                .execute(conn)
                .await
                .unwrap()
                .rows_affected());
        }
    }
    let person_path = format!("/api/people/{erased}");

    // Admins of the person's organization only.
    for (token, expected) in [
        (&manager, StatusCode::FORBIDDEN),
        (&other_admin, StatusCode::NOT_FOUND),
    ] {
        let (status, body) = api
            .call(Some(token), reqwest::Method::DELETE, &person_path, None)
            .await;
        assert_eq!(status, expected, "{body}");
    }
    assert_eq!(api.get(&admin, &person_path).await.0, StatusCode::OK);
    let call_path = format!("/api/calls/{}", calls[0]);
    assert_eq!(api.get(&admin, &call_path).await.1["dtmf_digits"], "4");

    let (status, body) = api
        .call(Some(&admin), reqwest::Method::DELETE, &person_path, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["erased"],
        json!({ "calls": 1, "utterances": 2, "dead_letters": 0, "scores": 1, "activity": 1, "deals": 1, "messages": 1 })
    );

    // Nothing of them is readable through the API...
    assert_eq!(api.get(&admin, &person_path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.get(&admin, &format!("{person_path}/scores")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, call) = api.get(&admin, &call_path).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the call stays, as a call of no one"
    );
    assert_eq!(
        (call["lead_id"].clone(), call["dtmf_digits"].clone()),
        (Value::Null, json!(""))
    );
    assert_eq!(
        api.get(&admin, &format!("{call_path}/utterances")).await.1,
        json!({ "items": [] })
    );
    let (status, again) = api
        .call(Some(&admin), reqwest::Method::DELETE, &person_path, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{again}");

    // ...nor in the database, while the other person's records are all there.
    let store = winnerr_store::Store::connect(&db.url(), 1, winnerr_store::Keyring::development())
        .await
        .unwrap();
    let acme = "acme".parse().unwrap();
    assert!(
        store
            .find_people_by_phone(&acme, "+15550100199")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .find_people_by_phone(&acme, "+15550100200")
            .await
            .unwrap()
            .len(),
        1
    );
    for (person, call, left) in [(&erased, &calls[0], 0), (&kept, &calls[1], 1)] {
        for table in [
            "people",
            "lead_scores",
            "activity",
            "deals",
            "calls",
            "messages",
        ] {
            let column = match table {
                "people" => "id",
                "calls" => "lead_id",
                _ => "person_id",
            };
            let sql = format!("SELECT count(*) FROM {table} WHERE {column} = $1");
            let count: i64 = raw!(&mut owner, |conn| sqlx::query_scalar(&sql)
                .bind(person.as_str())
                .fetch_one(conn)
                .await
                .unwrap());
            assert_eq!(count, left, "{table} rows of {person}");
        }
        let lines: i64 = raw!(&mut owner, |conn| sqlx::query_scalar(
            "SELECT count(*) FROM utterances WHERE call_id = $1"
        )
        .bind(call.as_str())
        .fetch_one(conn)
        .await
        .unwrap());
        assert_eq!(lines, 2 * left, "transcript lines of {call}");
    }

    // The chain verifies, and says who erased whom and how much went (no value of the person).
    let check = store.verify_audit(&acme).await.unwrap();
    assert_eq!(check.problem, None);
    let (actor, detail): (String, String) = raw!(&mut owner, |conn| sqlx::query_as(
        "SELECT actor, detail FROM audit_log WHERE action = 'person.erase' AND subject = $1"
    )
    .bind(erased.as_str())
    .fetch_one(conn)
    .await
    .unwrap());
    assert_eq!(actor, "admin-1");
    assert_eq!(
        serde_json::from_str::<Value>(&detail).unwrap(),
        body["erased"]
    );

    // A person on a live call waits for it to end.
    raw!(&mut owner, |conn| {
        sqlx::query(
        "INSERT INTO calls (organization_id, id, lead_id, status, started_ms) VALUES ('acme', 'CA-live', $1, 'live', $2)"
    )
    .bind(kept.as_str())
    .bind(winnerr_events::now_ms() as i64)
    .execute(conn)
    .await
    .unwrap()
    .rows_affected()
    });
    let (status, body) = api
        .call(
            Some(&admin),
            reqwest::Method::DELETE,
            &format!("/api/people/{kept}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("CA-live"),
        "{body}"
    );

    test.app.shutdown().await;
    drop((store, owner));
    db.remove().await;
}

/// Retention: `winnerr store purge --dry-run` says what would go and changes nothing; a node
/// whose store role has `WINNERR_RETENTION` purges it on its own, audited, keeping the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_purged_on_schedule_after_a_dry_run_shows_it() {
    let db = TestDb::sqlite();
    let test = spawn_app_with(|config| on_db(config, &db)).await;
    let manager = test.token("acme", "manager-1", Role::Manager);
    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), caller_speech());
    script.dtmf = vec![(200, winnerr_events::Track::Inbound, '4')];
    test.simulator().play(&script, |_| {}).await.unwrap();
    let api = test.api();
    tokio::time::timeout(Duration::from_secs(30), async {
        while ids(&api.get(&manager, "/api/calls?status=ended").await.1).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the call is stored");
    test.app.shutdown().await;

    // The call was 100 days ago.
    let call = script.call_sid.clone();
    let mut owner = db.owner().await;
    insert_utterance(&mut owner, &call, "u1", 0, "we close on the tenth").await;
    insert_utterance(&mut owner, &call, "u2", 2000, "my card ends in 4242").await;
    let old_ms = winnerr_events::now_ms() as i64 - 100 * 86_400_000;
    raw!(&mut owner, |conn| sqlx::query(
        "UPDATE calls SET started_ms = $1 WHERE id = $2"
    )
    .bind(old_ms)
    .bind(&call)
    .execute(conn)
    .await
    .unwrap()
    .rows_affected());
    let dry = std::process::Command::new(env!("CARGO_BIN_EXE_winnerr"))
        .args([
            "store",
            "purge",
            "--org",
            "acme",
            "--days",
            "90",
            "--dry-run",
        ])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        said.contains("acme: would delete 2 transcript lines, 0 events set aside, 0 lead scores, the DTMF digits of 1 calls"),
        "{said}"
    );
    assert_eq!(
        lines(&mut owner, &call).await,
        2,
        "a dry run changes nothing"
    );

    let test = spawn_app_with(|config| {
        on_db(config, &db);
        config.retention = Some("acme=90d;globex=1d".into());
        config.retention_every = 0.2;
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while lines(&mut owner, &call).await > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the store role purges the old call's words");
    let (status, stored) = test
        .api()
        .get(&manager, &format!("/api/calls/{call}"))
        .await;
    assert_eq!(status, StatusCode::OK, "the call itself stays");
    assert_eq!(stored["dtmf_digits"], "");
    let (actor, detail): (String, String) = raw!(&mut owner, |conn| {
        sqlx::query_as(
        "SELECT actor, detail FROM audit_log WHERE organization_id = 'acme' AND action = 'retention.purge'"
    )
    .fetch_one(conn)
    .await
    .unwrap()
    });
    assert_eq!(actor, "retention");
    let detail: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(
        (
            detail["utterances"].as_u64(),
            detail["dtmf_cleared"].as_u64()
        ),
        (Some(2), Some(1))
    );

    test.app.shutdown().await;
    drop(owner);
    db.remove().await;
}

/// Transcript lines of `call` in the database.
async fn lines(owner: &mut winnerr_testkit::Owner, call: &str) -> i64 {
    raw!(owner, |conn| sqlx::query_scalar(
        "SELECT count(*) FROM utterances WHERE call_id = $1"
    )
    .bind(call)
    .fetch_one(conn)
    .await
    .unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_on_the_do_not_call_list_is_not_dialed_on_postgres() {
    a_number_on_the_do_not_call_list_is_not_dialed(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_on_the_do_not_call_list_is_not_dialed_on_sqlite() {
    a_number_on_the_do_not_call_list_is_not_dialed(TestDb::sqlite()).await;
}

/// Do-not-call (issue 22, item 5): anyone of the organization puts a number on its list, which
/// keeps only a keyed hash and the last four digits; a softphone's outbound call to it gets
/// TwiML that says why and hangs up, with no stream and no dial, and the organization's managers
/// get an alert; other numbers, and other organizations' calls to it, are dialed; managers take it
/// off the list, audited both ways.
async fn a_number_on_the_do_not_call_list_is_not_dialed(db: TestDb) {
    use winnerr_events::{AlertKind, Event};
    let test = spawn_app_with(|config| on_db(config, &db)).await;
    let api = test.api();
    let agent = test.token("acme", "agent-1", Role::Agent);
    let manager = test.token("acme", "manager-1", Role::Manager);
    let other_org = test.token("globex", "manager-9", Role::Manager);
    let mut feed = test.feed("acme", "manager-1", Role::Manager).await;

    let add = |body: &'static str| {
        let (api, agent) = (&api, &agent);
        async move {
            api.call(
                Some(agent),
                reqwest::Method::POST,
                "/api/do-not-call",
                Some(body),
            )
            .await
        }
    };
    let (status, entry) = add(r#"{"phone":"(555) 010-0199","reason":"asked on the call"}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(
        (entry["last4"].as_str(), entry["added_by"].as_str()),
        (Some("0199"), Some("agent-1"))
    );
    let id = entry["id"].as_str().unwrap().to_owned();
    let (status, again) = add(r#"{"phone":"+1 555 010 0199"}"#).await;
    assert_eq!(
        (status, again["id"].as_str()),
        (StatusCode::CREATED, Some(id.as_str())),
        "one number, one entry"
    );
    for bad in [
        r#"{"phone":"0199"}"#,
        r#"{"phone":"+1 555 010 0199","why":"x"}"#,
    ] {
        assert_eq!(add(bad).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        api.get(&agent, "/api/do-not-call").await.0,
        StatusCode::FORBIDDEN
    );
    let (status, list) = api.get(&manager, "/api/do-not-call").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(
        !list.to_string().contains("5550100199"),
        "the list never holds the number: {list}"
    );
    assert_eq!(
        api.get(&other_org, "/api/do-not-call").await.1,
        json!({ "items": [] })
    );

    // A softphone's outbound call to it.
    let url = format!("{}/twilio/voice?org=acme", test.app.http_url());
    let call_sid = format!("CA{}", "d".repeat(32));
    let outbound = |to: &'static str, sid: &str| {
        [
            ("CallSid", sid.to_owned()),
            ("From", "client:agent-1".to_owned()),
            ("To", to.to_owned()),
        ]
    };
    let fields = outbound("+15550100199", &call_sid);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let xml = crate::http::twiml(&test, &url, &fields).await;
    assert!(
        xml.contains("do-not-call list") && xml.contains("<Hangup/>"),
        "{xml}"
    );
    assert!(!xml.contains("<Dial") && !xml.contains("<Stream"), "{xml}");
    let alert = feed.next_event().await;
    let Event::Alert(raised) = &alert.event else {
        panic!("expected the alert, got {alert:?}");
    };
    assert_eq!(
        raised.kind,
        AlertKind::DoNotCall {
            last4: "0199".into()
        }
    );
    assert_eq!(alert.call_id.as_str(), call_sid);
    assert_eq!(alert.agent_id.as_ref().map(|a| a.as_str()), Some("agent-1"));

    // Another number is dialed, with the stream; so is this one for another organization.
    let other_sid = format!("CA{}", "e".repeat(32));
    let fields = outbound("+15550100200", &other_sid);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let xml = crate::http::twiml(&test, &url, &fields).await;
    assert!(
        xml.contains("<Dial>+15550100200</Dial>") && xml.contains("<Stream"),
        "{xml}"
    );
    let globex = format!("{}/twilio/voice?org=globex", test.app.http_url());
    let fields = outbound("+15550100199", &other_sid);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let xml = crate::http::twiml(&test, &globex, &fields).await;
    assert!(xml.contains("<Dial>+15550100199</Dial>"), "{xml}");

    // Off the list, by a manager only; then it is dialed.
    let path = format!("/api/do-not-call/{id}");
    for (token, expected) in [
        (&agent, StatusCode::FORBIDDEN),
        (&other_org, StatusCode::NOT_FOUND),
        (&manager, StatusCode::NO_CONTENT),
        (&manager, StatusCode::NOT_FOUND),
    ] {
        let (status, body) = api
            .call(Some(token), reqwest::Method::DELETE, &path, None)
            .await;
        assert_eq!(status, expected, "{body}");
    }
    let fields = outbound("+15550100199", &call_sid);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let xml = crate::http::twiml(&test, &url, &fields).await;
    assert!(xml.contains("<Dial>+15550100199</Dial>"), "{xml}");

    // Counted (the recorder is the process's: other tests may count too).
    let refused = metric(
        &test.metrics().await,
        r#"winnerr_ingest_dials_refused_total{reason="do_not_call"}"#,
    );
    assert!(refused >= 1.0, "{refused}");
    let store = winnerr_store::Store::connect(&db.url(), 1, winnerr_store::Keyring::development())
        .await
        .unwrap();
    let acme = "acme".parse().unwrap();
    assert_eq!(store.verify_audit(&acme).await.unwrap().problem, None);
    let mut owner = db.owner().await;
    let audited: Vec<(String, String, String)> = raw!(&mut owner, |conn| sqlx::query_as(
        "SELECT actor, action, detail FROM audit_log WHERE action LIKE 'dnc.%' ORDER BY seq"
    )
    .fetch_all(conn)
    .await
    .unwrap());
    assert_eq!(
        audited,
        vec![
            (
                "agent-1".into(),
                "dnc.add".into(),
                r#"{"last4":"0199"}"#.into()
            ),
            ("manager-1".into(), "dnc.remove".into(), "{}".into()),
        ]
    );

    test.app.shutdown().await;
    drop((store, owner));
    db.remove().await;
}
