//! Keyterms over the real server (issue 21): an organization's managers set its words over REST,
//! and a call that starts afterwards is transcribed spelling them as the organization does, with
//! the terms heard in its post-call summary on the feed and in its stored record.

use reqwest::StatusCode;
use serde_json::json;
use winnerr_events::{Event, Role};
use winnerr_ingest::CallScript;
use winnerr_ingest::simulator::load_wav_8k;
use winnerr_testkit::TestDb;

use crate::helpers::*;

/// A clip of the keyterm test set that stock decoding spells wrong (see `benches/keyterms.rs`).
const CLIP: &str = "assets/keyterms/keyterms_022.wav";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_spells_its_organizations_words_once_they_are_set() {
    let db = TestDb::sqlite();
    let test = spawn_app_with(|config| {
        on_db(config, &db);
        config.asr = true;
    })
    .await;
    let api = test.api();
    let agent = test.token("acme", "agent-1", Role::Agent);
    let manager = test.token("acme", "manager-1", Role::Manager);
    let other = test.token("globex", "manager-9", Role::Manager);
    let put = |token: &str, body: serde_json::Value| {
        let (api, token, body) = (&api, token.to_owned(), body.to_string());
        async move {
            api.call(
                Some(&token),
                reqwest::Method::PUT,
                "/api/keyterms",
                Some(&body),
            )
            .await
        }
    };
    let terms = json!({ "terms": ["Winnerr Realty", "Priya Raghunathan", "Tuckahoe Lane"] });
    assert_eq!(
        put(&agent, terms.clone()).await.0,
        StatusCode::FORBIDDEN,
        "agents do not set the organization's words"
    );
    for bad in [
        json!({ "terms": ["ok", ""] }),
        json!({ "terms": ["a\u{0}b"] }),
        json!({ "terms": ["x".repeat(65)] }),
        json!({ "terms": (0..201).map(|i| format!("t{i}")).collect::<Vec<_>>() }),
        json!({ "terms": "Winnerr Realty" }),
        json!({ "words": [] }),
    ] {
        assert_eq!(
            put(&manager, bad.clone()).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    let (status, kept) = put(&manager, terms.clone()).await;
    assert_eq!((status, &kept), (StatusCode::OK, &terms));
    assert_eq!(api.get(&agent, "/api/keyterms").await.1, terms);
    assert_eq!(
        api.get(&other, "/api/keyterms").await.1,
        json!({ "terms": [] }),
        "another organization's words are its own"
    );

    let mut feed = test.feed("acme", "manager-1", Role::Manager).await;
    let speech = load_wav_8k(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CLIP)).unwrap();
    let script = CallScript::new(identity("acme", Some("agent-1"), None), speech);
    test.simulator().play(&script, |_| {}).await.unwrap();
    let events = feed.call_events(&call_id(&script.call_sid)).await;
    let finals: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Transcript(t) if t.is_final => Some(t.text.clone()),
            _ => None,
        })
        .collect();
    assert!(
        finals.iter().any(|t| t.contains("Winnerr Realty")),
        "the organization's name as it spells it: {finals:?}"
    );
    let summary = events
        .iter()
        .find_map(|e| match &e.event {
            Event::CallSummary(s) => Some(s.clone()),
            _ => None,
        })
        .expect("a summary before the call's end");
    assert!(
        summary.keyterms.iter().any(|t| t == "Winnerr Realty"),
        "{:?}",
        summary.keyterms
    );
    let stored = test.completed_call("acme", &script.call_sid).await;
    assert!(
        stored["summary"]["keyterms"]
            .as_array()
            .is_some_and(|k| k.iter().any(|t| t == "Winnerr Realty")),
        "{stored}"
    );
}
