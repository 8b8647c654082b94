//! Admission control over real sockets: a node serves at most its capacity of calls, and an
//! organization at most its limit; the call over either is refused with its documented answer
//! and counted, and the calls admitted are untouched: each completes with every final.

use secrecy::ExposeSecret;
use tokio_tungstenite::tungstenite::Message;
use winnerr_events::{Event, Role};
use winnerr_ingest::{CallScript, Pace};

use crate::helpers::*;

/// How a stream that sends `script`'s start is closed.
async fn start_and_close(test: &TestApp, script: &CallScript) -> u16 {
    let simulator = test.simulator();
    let start = Message::Text(simulator.start_message(script).into());
    send_and_close(&simulator, vec![start]).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_node_or_organization_limit_are_refused_and_the_admitted_ones_complete() {
    let test = spawn_app_with(|c| {
        c.asr = true;
        c.max_calls = Some(3);
        c.max_calls_per_org = Some(2);
        c.full_say = Some("All our lines are busy; connecting you now.".into());
    })
    .await;
    // Each agent's feed: their own call's events.
    let mut feeds = Vec::new();
    for (org, agent) in [
        ("acme", "agent-1"),
        ("acme", "agent-2"),
        ("globex", "agent-9"),
    ] {
        feeds.push(test.feed(org, agent, Role::Agent).await);
    }
    let before = test.metrics().await;
    let call = |org: &str, agent: &str| {
        let mut script = CallScript::new(identity(org, Some(agent), None), caller_speech());
        // A second of silence after the words, so the three calls overlap.
        script.inbound.extend(vec![0i16; 8_000]);
        script.pace = Pace::RealTime;
        script
    };
    let admitted = [
        call("acme", "agent-1"),
        call("acme", "agent-2"),
        call("globex", "agent-9"),
    ];
    let mut plays = Vec::new();
    for script in &admitted[..2] {
        plays.push(test.play_in_background(script));
        test.until_live(plays.len()).await;
    }
    // acme has its two: a third of its calls is over the organization's limit.
    assert_eq!(start_and_close(&test, &call("acme", "agent-3")).await, 4009);
    plays.push(test.play_in_background(&admitted[2]));
    test.until_live(3).await;
    // The node has its three: any organization's next call is over the node's capacity.
    assert_eq!(
        start_and_close(&test, &call("initech", "agent-4")).await,
        4007
    );
    let token = test.token("initech", "agent-4", Role::Agent);
    let softphone = test.app.feed_url().replace("/feed", "/softphone/stream");
    match tokio_tungstenite::connect_async(format!("{softphone}?access_token={token}")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // The webhook connects the call without a stream, after the configured words.
    let url = format!(
        "{}/twilio/voice?org=initech&agent=agent-4",
        test.app.http_url()
    );
    let call_sid = format!("CA{}", "c".repeat(32));
    let params = vec![("CallSid".to_owned(), call_sid.clone())];
    let signed = winnerr_ingest::signature::sign(
        test.config.twilio_auth_token.expose_secret(),
        &url,
        &params,
    );
    let xml = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signed)
        .body(format!("CallSid={call_sid}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!xml.contains("<Stream"), "{xml}");
    assert!(
        xml.contains("<Say>All our lines are busy; connecting you now.</Say>"),
        "{xml}"
    );
    assert!(
        xml.contains("<Dial><Client>agent-4</Client></Dial>"),
        "{xml}"
    );

    let page = test.metrics().await;
    for (reason, refused) in [("node_full", 2.0), ("org_limit", 1.0)] {
        let series = format!(r#"winnerr_ingest_calls_refused_total{{reason="{reason}"}}"#);
        assert!(
            metric(&page, &series) - metric(&before, &series) >= refused,
            "{series}"
        );
    }

    // The admitted calls complete, each with its final transcript.
    for play in plays {
        play.await.unwrap();
    }
    for (feed, script) in feeds.iter_mut().zip(&admitted) {
        let events = feed.call_events(&call_id(&script.call_sid)).await;
        let finals = events
            .iter()
            .filter(
                |e| matches!(&e.event, Event::Transcript(t) if t.is_final && !t.text.is_empty()),
            )
            .count();
        assert!(finals >= 1, "{}: {finals} finals", script.call_sid);
        assert!(matches!(events.last().unwrap().event, Event::CallEnded(_)));
    }
    // Capacity comes back as calls end: the organization refused before is served now.
    let mut initech = test.feed("initech", "manager-4", Role::Manager).await;
    let later = CallScript::new(
        identity("initech", Some("agent-4"), None),
        vec![0i16; 1_600],
    );
    test.simulator().play(&later, |_| {}).await.unwrap();
    let events = initech.call_events(&call_id(&later.call_sid)).await;
    assert!(matches!(events.last().unwrap().event, Event::CallEnded(_)));
}
