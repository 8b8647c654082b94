//! The REST API over HTTP with tokens of two organizations and both roles: nothing crosses, and
//! bad ids, queries and bodies get a 4xx that says what is wrong.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use winnerr_events::Role;
use winnerr_ingest::CallScript;

use winnerr_testkit::{TestDb, raw};

use crate::helpers::*;

/// A line of `call`'s transcript (acme's, inbound, 1.5 s from `start`), encrypted in its place
/// as the engine stores it.
pub(crate) async fn insert_utterance(
    owner: &mut winnerr_testkit::Owner,
    call: &str,
    id: &str,
    start: i64,
    text: &str,
) {
    let row = format!("{call}/{id}");
    let place = winnerr_store::crypto::FieldPlace {
        org: "acme",
        table: "utterances",
        column: "text",
        row: &row,
    };
    let sealed = winnerr_store::Keyring::development().encrypt(text, place);
    raw!(owner, |conn| {
        sqlx::query(
            "INSERT INTO utterances (organization_id, call_id, id, track, start_ms, end_ms, text_ciphertext, text_key_id) \
             VALUES ('acme', $1, $2, 'inbound', $3, $3 + 1500, $4, $5)",
        )
        .bind(call)
        .bind(id)
        .bind(start)
        .bind(sealed.bytes)
        .bind(sealed.key_id)
        .execute(conn)
        .await
        .unwrap()
        .rows_affected()
    });
}

pub(crate) fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_keeps_organizations_and_agents_apart_on_postgres() {
    the_rest_api_keeps_organizations_and_agents_apart(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_keeps_organizations_and_agents_apart_on_sqlite() {
    the_rest_api_keeps_organizations_and_agents_apart(TestDb::sqlite()).await;
}

async fn the_rest_api_keeps_organizations_and_agents_apart(db: TestDb) {
    let test = spawn_app_with(|config| on_db(config, &db)).await;
    let api = test.api();
    let manager = test.token("acme", "manager-1", Role::Manager);
    let agent_1 = test.token("acme", "agent-1", Role::Agent);
    let agent_2 = test.token("acme", "agent-2", Role::Agent);
    let other_org = test.token("globex", "manager-9", Role::Manager);

    // Three calls: two of acme (two agents), one of globex.
    let mut calls = Vec::new();
    for (org, agent) in [
        ("acme", "agent-1"),
        ("acme", "agent-2"),
        ("globex", "agent-9"),
    ] {
        let script = CallScript::new(identity(org, Some(agent), Some("lead-7")), caller_speech());
        test.simulator().play(&script, |_| {}).await.unwrap();
        calls.push(script.call_sid);
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (_, page) = api.get(&manager, "/api/calls?status=ended").await;
            let (_, other) = api.get(&other_org, "/api/calls?status=ended").await;
            if ids(&page).len() == 2 && ids(&other).len() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("calls are stored");

    // Lists: a manager sees the organization, newest first; an agent their own; no crossing.
    let (status, page) = api.get(&manager, "/api/calls").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&page), vec![calls[1].clone(), calls[0].clone()]);
    assert_eq!(page["items"][0]["status"], "completed");
    assert!(page["items"][0]["inbound_talk_ms"].as_i64().unwrap() > 0);
    assert_eq!(
        ids(&api.get(&agent_1, "/api/calls").await.1),
        vec![calls[0].clone()]
    );
    assert_eq!(
        ids(&api.get(&other_org, "/api/calls").await.1),
        vec![calls[2].clone()]
    );
    assert_eq!(
        ids(&api.get(&manager, "/api/calls?status=live").await.1),
        Vec::<String>::new()
    );

    // One call: someone else's is simply not there.
    assert_eq!(
        api.get(&manager, &format!("/api/calls/{}", calls[0]))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        api.get(&other_org, &format!("/api/calls/{}", calls[0]))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(&agent_2, &format!("/api/calls/{}", calls[0]))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, transcript) = api
        .get(&agent_1, &format!("/api/calls/{}/utterances", calls[0]))
        .await;
    assert_eq!(
        (status, transcript),
        (StatusCode::OK, json!({ "items": [] }))
    );
    // Two lines of transcript, encrypted as the engine stores them, come back in order, decrypted.
    {
        let mut owner = db.owner().await;
        insert_utterance(
            &mut owner,
            &calls[0],
            "u2",
            4000,
            "Yes, this weekend works.",
        )
        .await;
        insert_utterance(&mut owner, &calls[0], "u1", 1000, "Are you free to see it?").await;
    }
    let (status, transcript) = api
        .get(&agent_1, &format!("/api/calls/{}/utterances", calls[0]))
        .await;
    assert_eq!(status, StatusCode::OK, "{transcript}");
    let lines: Vec<&str> = transcript["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        lines,
        vec!["Are you free to see it?", "Yes, this weekend works."]
    );
    assert_eq!(
        api.get(&agent_2, &format!("/api/calls/{}/utterances", calls[0]))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Exporting a call (a copy that leaves the CRM) is for managers, as a file, audited.
    let export = api
        .client
        .get(format!("{}/api/calls/{}/export", api.base, calls[0]))
        .bearer_auth(&manager)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    let disposition = export.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        disposition,
        format!("attachment; filename=\"call-{}.json\"", calls[0])
    );
    let exported: Value = export.json().await.unwrap();
    assert_eq!(exported["call"]["id"], calls[0].as_str());
    assert_eq!(exported["utterances"], transcript["items"]);
    for (token, expected) in [
        (&agent_1, StatusCode::FORBIDDEN),
        (&other_org, StatusCode::NOT_FOUND),
    ] {
        let (status, body) = api
            .get(token, &format!("/api/calls/{}/export", calls[0]))
            .await;
        assert_eq!(status, expected, "{body}");
    }

    // Pages follow their cursor to the end.
    let (_, first) = api.get(&manager, "/api/calls?limit=1").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let (_, second) = api
        .get(&manager, &format!("/api/calls?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(ids(&second), vec![calls[0].clone()]);
    assert!(second["next_cursor"].is_null());

    // Bad input: 4xx with a message.
    for path in [
        "/api/calls?limit=0",
        "/api/calls?limit=ten",
        "/api/calls?status=maybe",
        "/api/calls?cursor=not-a-cursor",
        "/api/calls?colour=blue",
        "/api/calls/bad%20id",
    ] {
        let (status, body) = api.get(&manager, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(
            !body["error"].as_str().unwrap_or_default().is_empty(),
            "{path}: {body}"
        );
    }
    assert_eq!(
        api.call(None, reqwest::Method::GET, "/api/calls", None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get("garbage", "/api/calls").await.0,
        StatusCode::UNAUTHORIZED
    );

    // People: an agent's lead is theirs; the manager sees it; nobody else does.
    let lead = r#"{"first_name":"Dana","last_name":"Reyes","email":"dana@example.com","phone":"+1 555 010 0199","budget_min":400000,"budget_max":650000}"#;
    let (status, person) = api
        .call(
            Some(&agent_1),
            reqwest::Method::POST,
            "/api/people",
            Some(lead),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{person}");
    assert_eq!(person["owner_user_id"], "agent-1");
    let person_path = format!("/api/people/{}", person["id"].as_str().unwrap());
    assert_eq!(
        api.get(&manager, &person_path).await.1["email"],
        "dana@example.com"
    );
    assert_eq!(
        api.get(&agent_2, &person_path).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(&other_org, &person_path).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, updated) = api
        .call(
            Some(&agent_1),
            reqwest::Method::PATCH,
            &person_path,
            Some(r#"{"location":"Austin, TX"}"#),
        )
        .await;
    assert_eq!(
        (status, updated["location"].as_str()),
        (StatusCode::OK, Some("Austin, TX"))
    );
    let (status, _) = api
        .call(
            Some(&other_org),
            reqwest::Method::PATCH,
            &person_path,
            Some(r#"{"location":"x"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (body, expected) in [
        (
            r#"{"first_name":"A","email":"no-at-sign"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (r#"{"last_name":"no first name"}"#, StatusCode::BAD_REQUEST),
        (
            r#"{"first_name":"A","shoe_size":44}"#,
            StatusCode::BAD_REQUEST,
        ),
        (r#"{"first_name":"#, StatusCode::BAD_REQUEST),
        (
            r#"{"first_name":"A","owner_user_id":"agent-2"}"#,
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, error) = api
            .call(
                Some(&agent_1),
                reqwest::Method::POST,
                "/api/people",
                Some(body),
            )
            .await;
        assert_eq!(status, expected, "{body}: {error}");
        assert!(
            !error["error"].as_str().unwrap_or_default().is_empty(),
            "{body}: {error}"
        );
    }
    assert_eq!(
        api.get(&agent_1, &format!("{person_path}/scores")).await.1,
        json!({ "items": [] })
    );
    assert_eq!(
        api.get(&agent_1, &format!("{person_path}/calls")).await.1["items"],
        json!([])
    );
    assert_eq!(
        api.get(&agent_1, "/api/deals").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.get(&manager, "/api/deals").await.1,
        json!({ "items": [] })
    );

    // Filters obey the id rules on every route (a NUL once reached the database as a 500).
    for path in [
        format!("{person_path}/calls?agent_id=a%00b"),
        "/api/calls?lead_id=a%00b".to_string(),
    ] {
        let (status, body) = api.get(&manager, &path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    }

    // Reading a transcript and exporting a call are audited.
    let store = winnerr_store::Store::connect(&db.url(), 1, winnerr_store::Keyring::development())
        .await
        .unwrap();
    let check = store.verify_audit(&"acme".parse().unwrap()).await.unwrap();
    assert_eq!((check.rows, check.problem), (3, None));

    test.app.shutdown().await;
    drop(store);
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_documents_itself_and_says_when_it_has_no_database() {
    let test = spawn_app_with(|config| config.database_url = Some("none".into())).await;
    let api = test.api();
    let manager = test.token("acme", "manager-1", Role::Manager);
    let (status, document) = api
        .call(None, reqwest::Method::GET, "/api/openapi.json", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.0.3");
    for path in [
        "/api/calls",
        "/api/calls/{id}",
        "/api/calls/{id}/utterances",
        "/api/calls/{id}/export",
        "/api/people",
        "/api/people/{id}",
        "/api/people/{id}/calls",
        "/api/people/{id}/scores",
        "/api/deals",
        "/api/do-not-call",
        "/api/do-not-call/{id}",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
    let (status, body) = api.get(&manager, "/api/calls").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("no database is configured")
        )
    );
}

/// Text fields have limits (in the schema and the OpenAPI document) and a body has a size: a
/// 1.9 MB `source` was stored before, and `owner_user_id` took any string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_text_fields_and_bodies_are_bounded() {
    let test = spawn_app().await;
    let api = test.api();
    let manager = test.token("acme", "manager-1", Role::Manager);
    let create = |body: Value| {
        let api = &api;
        let manager = &manager;
        async move {
            api.call(
                Some(manager),
                reqwest::Method::POST,
                "/api/people",
                Some(&body.to_string()),
            )
            .await
        }
    };
    // A body past the limit is refused as soon as its length is known: the client sees the 413,
    // or, still writing, a connection the server has stopped reading (broken pipe).
    let huge = json!({"first_name": "Dana", "source": "x".repeat(1_900_000)}).to_string();
    let sent = api
        .client
        .post(format!("{}/api/people", api.base))
        .bearer_auth(&manager)
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await;
    match sent {
        Ok(response) => assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(err) => assert!(err.is_request(), "{err}"),
    }
    let (status, _) = api.get(&manager, "/api/calls").await;
    assert_eq!(status, StatusCode::OK, "the server is fine after it");
    for (field, value, message) in [
        (
            "source",
            "s".repeat(101),
            "source must be at most 100 characters",
        ),
        (
            "location",
            "l".repeat(301),
            "location must be at most 300 characters",
        ),
        (
            "last_name",
            "é".repeat(201),
            "last_name must be at most 200 characters",
        ),
        (
            "owner_user_id",
            "not a user".to_owned(),
            "owner_user_id: invalid user id",
        ),
        (
            "owner_user_id",
            "u".repeat(65),
            "owner_user_id: invalid user id",
        ),
    ] {
        let (status, body) = create(json!({"first_name": "Dana", field: value})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with(message), "{field}: {error}");
    }
    // At the limits, stored.
    let (status, body) = create(json!({
        "first_name": "Dana", "source": "s".repeat(100), "location": "l".repeat(300),
        "owner_user_id": "agent-1",
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let document = api
        .call(None, reqwest::Method::GET, "/api/openapi.json", None)
        .await
        .1;
    let fields = &document["components"]["schemas"]["PersonFields"]["properties"];
    assert_eq!(fields["source"]["maxLength"], 100);
    assert_eq!(fields["location"]["maxLength"], 300);
    assert_eq!(fields["owner_user_id"]["maxLength"], 64);
}

/// One value that does not decrypt (here a ciphertext moved to another row, as a bad restore or
/// a lost key would leave it) costs only itself: the transcript's other lines and the person's
/// other fields come back, the bad one marked `unreadable`, counted and logged; before, the whole
/// transcript or person failed with 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_ciphertext_costs_only_its_own_field() {
    let db = TestDb::sqlite();
    let test = spawn_app_with(|config| on_db(config, &db)).await;
    let api = test.api();
    let manager = test.token("acme", "manager-1", Role::Manager);
    let script = CallScript::new(identity("acme", None, None), caller_speech());
    test.simulator().play(&script, |_| {}).await.unwrap();
    let call = script.call_sid.clone();
    tokio::time::timeout(Duration::from_secs(30), async {
        while api.get(&manager, &format!("/api/calls/{call}")).await.0 != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the call is stored");
    let (status, person) = api
        .call(
            Some(&manager),
            reqwest::Method::POST,
            "/api/people",
            Some(r#"{"first_name":"Dana","email":"dana@example.com","phone":"+1 555 010 0199"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{person}");
    let person_path = format!("/api/people/{}", person["id"].as_str().unwrap());

    let mut owner = db.owner().await;
    insert_utterance(&mut owner, &call, "u1", 1000, "Are you free?").await;
    insert_utterance(&mut owner, &call, "u2", 4000, "Yes.").await;
    // u2's text and the person's phone now hold ciphertexts sealed for other places.
    raw!(&mut owner, |conn| {
        sqlx::query(
            "UPDATE utterances SET text_ciphertext = (SELECT text_ciphertext FROM utterances WHERE id = 'u1') WHERE id = 'u2'",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        sqlx::query("UPDATE people SET phone_ciphertext = email_ciphertext")
            .execute(&mut *conn)
            .await
            .unwrap()
            .rows_affected()
    });

    let (status, transcript) = api
        .get(&manager, &format!("/api/calls/{call}/utterances"))
        .await;
    assert_eq!(status, StatusCode::OK, "{transcript}");
    let items = transcript["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{transcript}");
    assert_eq!(
        (items[0]["text"].as_str(), items[0].get("unreadable")),
        (Some("Are you free?"), None)
    );
    assert_eq!(
        (items[1]["text"].as_str(), items[1]["unreadable"].as_bool()),
        (Some(""), Some(true))
    );
    let (status, person) = api.get(&manager, &person_path).await;
    assert_eq!(status, StatusCode::OK, "{person}");
    assert_eq!(person["email"], "dana@example.com");
    assert_eq!(person["phone"], Value::Null);
    assert_eq!(person["unreadable"], json!(["phone"]));

    let page = test.metrics().await;
    assert_eq!(
        metric(
            &page,
            r#"winnerr_store_unreadable_total{field="utterance_text"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&page, r#"winnerr_store_unreadable_total{field="phone"}"#),
        1.0
    );
    test.app.shutdown().await;
}
