//! The Opus ingest route: a softphone streams Opus packets over a real WebSocket with the feed's
//! token, and the call goes through the same pipeline as Twilio's: transcribed on the feed,
//! under the token's organization and agent.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use winnerr_events::feed::close;
use winnerr_events::{EndReason, Event, Role, Track};
use winnerr_models::text::word_errors;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_softphone_streams_opus_into_the_voice_pipeline() {
    let test = spawn_app_with(|c| c.asr = true).await;
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut other_org = test.feed("globex", "manager-9", Role::Manager).await;

    // No token, or a bad track: refused before the upgrade.
    let token = test.token("acme", "agent-1", Role::Agent);
    assert_eq!(upgrade_status(&test, "lead_id=lead-1").await, 401);
    let bad_track = format!("access_token={token}&track=left");
    assert_eq!(upgrade_status(&test, &bad_track).await, 400);

    let lead = own_lead(&test, &token).await;
    let query = format!("access_token={token}&lead_id={lead}");
    let (mut phone, call_id) = softphone(&test, &query).await;

    // Real speech, encoded as a browser would (20 ms Opus packets), sent in real time, with a
    // packet that is not Opus among them; then a second of silence and stop.
    let mut speech = caller_speech();
    speech.extend(vec![0i16; 8_000]);
    let mut encoder =
        opus::Encoder::new(8_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut packet = [0u8; 1_000];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (n, chunk) in speech.chunks_exact(160).enumerate() {
        tick.tick().await;
        let size = encoder.encode(chunk, &mut packet).unwrap();
        phone
            .send(Message::Binary(packet[..size].to_vec().into()))
            .await
            .unwrap();
        if n == 10 {
            phone
                .send(Message::Binary(vec![0xff; 3].into()))
                .await
                .unwrap();
        }
    }
    phone
        .send(Message::Text(r#"{"event":"stop"}"#.into()))
        .await
        .unwrap();

    let events = manager.call_events(&call_id.parse().unwrap()).await;
    let started = &events[0];
    assert!(
        matches!(started.event, Event::CallStarted(_)),
        "{started:?}"
    );
    assert_eq!(started.agent_id.as_ref().unwrap().as_str(), "agent-1");
    let said: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Transcript(t) if t.is_final => {
                assert_eq!(t.track, Track::Outbound, "the agent's own voice");
                assert!(t.sentiment.is_some());
                Some(t.text.as_str())
            }
            _ => None,
        })
        .collect();
    let (errors, words) = word_errors("go forward ten meters", &said.join(" "));
    println!("the softphone said {said:?}");
    assert!(errors as f64 / words as f64 <= 0.15, "{said:?}");
    match &events.last().unwrap().event {
        Event::CallEnded(ended) => {
            assert_eq!(ended.reason, EndReason::Completed);
            assert_eq!(ended.stats.bad_frames, 1, "the packet that is not Opus");
            assert!(ended.stats.frames[Track::Outbound.index()] >= 180);
        }
        other => panic!("expected the end, got {other:?}"),
    }
    // Another organization's feed saw none of it.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other_org.next_message())
            .await
            .is_err()
    );
}

/// A softphone call names only a lead its caller may see by the REST rules (an agent: a lead
/// they own; a manager: any of the organization's), and only an admin token (an integration
/// bridging the customer's leg) may send the customer's track; before, any lead id and
/// `track=inbound` were accepted from any agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_softphone_call_names_only_a_lead_its_caller_may_see() {
    let test = spawn_app().await;
    let agent_1 = test.token("acme", "agent-1", Role::Agent);
    let lead = own_lead(&test, &agent_1).await;
    let refused_before = metric(
        &test.metrics().await,
        r#"winnerr_ingest_bad_input_total{reason="softphone_request",action="refused"}"#,
    );
    for (token, query, status) in [
        (
            test.token("acme", "agent-2", Role::Agent),
            format!("lead_id={lead}"),
            404,
        ),
        (
            test.token("globex", "manager-9", Role::Manager),
            format!("lead_id={lead}"),
            404,
        ),
        (agent_1.clone(), "lead_id=lead-nobody".to_owned(), 404),
        (agent_1.clone(), "track=inbound".to_owned(), 403),
        (
            test.token("acme", "manager-1", Role::Manager),
            "track=inbound".to_owned(),
            403,
        ),
    ] {
        let query = format!("access_token={token}&{query}");
        assert_eq!(upgrade_status(&test, &query).await, status, "{query}");
    }
    let refused = metric(
        &test.metrics().await,
        r#"winnerr_ingest_bad_input_total{reason="softphone_request",action="refused"}"#,
    );
    assert_eq!(refused - refused_before, 5.0);
    for (token, query) in [
        (agent_1.clone(), format!("lead_id={lead}")),
        (
            test.token("acme", "manager-1", Role::Manager),
            format!("lead_id={lead}"),
        ),
        (
            test.token("acme", "admin-1", Role::Admin),
            format!("lead_id={lead}&track=inbound"),
        ),
    ] {
        let (mut phone, _) = softphone(&test, &format!("access_token={token}&{query}")).await;
        phone
            .send(Message::Text(r#"{"event":"stop"}"#.into()))
            .await
            .unwrap();
    }
}

/// An organization whose consent policy is `opt_in` takes its customers' words only through the
/// voice webhook, which asks first: a softphone's customer track (an integration bridging the
/// customer's leg) is refused for it, the agent's own track is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_in_organization_takes_no_customer_track_from_a_softphone() {
    let test = spawn_app_with(|c| c.consent = Some("acme=opt_in".into())).await;
    let admin = test.token("acme", "admin-1", Role::Admin);
    let lead = own_lead(&test, &admin).await;
    let query = format!("access_token={admin}&lead_id={lead}&track=inbound");
    assert_eq!(upgrade_status(&test, &query).await, 403);
    let other = test.token("globex", "admin-9", Role::Admin);
    let other_lead = own_lead(&test, &other).await;
    for query in [
        format!("access_token={admin}&lead_id={lead}"),
        format!("access_token={other}&lead_id={other_lead}&track=inbound"),
    ] {
        let (mut phone, _) = softphone(&test, &query).await;
        phone
            .send(Message::Text(r#"{"event":"stop"}"#.into()))
            .await
            .unwrap();
    }
}

/// The HTTP status a softphone upgrade with `query` is refused with.
async fn upgrade_status(test: &TestApp, query: &str) -> u16 {
    let base = test.app.feed_url().replace("/feed", "/softphone/stream");
    match tokio_tungstenite::connect_async(format!("{base}?{query}")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected a refusal for {query}, got {other:?}"),
    }
}

/// A new lead owned by the user of `token`, created through the REST API: its id.
async fn own_lead(test: &TestApp, token: &str) -> String {
    let (status, person) = test
        .api()
        .call(
            Some(token),
            reqwest::Method::POST,
            "/api/people",
            Some(r#"{"first_name":"Dana","last_name":"Reyes"}"#),
        )
        .await;
    assert_eq!(status, 201, "{person}");
    person["id"].as_str().unwrap().to_owned()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A softphone connected with `query` (its token and options), and its call's id from `started`.
async fn softphone(test: &TestApp, query: &str) -> (Socket, String) {
    let base = test.app.feed_url().replace("/feed", "/softphone/stream");
    let (mut phone, _) = tokio_tungstenite::connect_async(format!("{base}?{query}"))
        .await
        .expect("the softphone connects");
    let call_id = match phone.next().await {
        Some(Ok(Message::Text(text))) => {
            let started: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            assert_eq!(started["event"], "started");
            started["call_id"].as_str().unwrap().to_owned()
        }
        other => panic!("expected started, got {other:?}"),
    };
    (phone, call_id)
}

/// A listener on `call_id` with `token`, after the first message (returned).
async fn listener(test: &TestApp, call_id: &str, token: &str) -> (Socket, serde_json::Value) {
    let listen = test.app.feed_url().replace("/feed", "/listen");
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{listen}/{call_id}?access_token={token}"))
            .await
            .expect("the manager listens");
    match socket.next().await {
        Some(Ok(Message::Text(text))) => {
            let hello = serde_json::from_str(text.as_str()).unwrap();
            (socket, hello)
        }
        other => panic!("expected the listening message, got {other:?}"),
    }
}

/// Listen-in of a softphone call plays at the call's own rate: the listener is told 16 kHz, each
/// 20 ms packet decodes to 20 ms at 16 kHz, and a second of speech is a second of packets (the
/// route assumed 8 kHz and played softphone calls at half speed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_in_of_a_softphone_call_plays_at_its_own_rate() {
    let test = spawn_app().await;
    let token = test.token("acme", "agent-1", Role::Agent);
    let (mut phone, call_id) = softphone(&test, &format!("access_token={token}")).await;
    let manager = test.token("acme", "manager-1", Role::Manager);
    let (mut listener, hello) = listener(&test, &call_id, &manager).await;
    assert_eq!(hello["sample_rate"], 16_000, "{hello}");
    // One second of speech, 50 packets of 20 ms, in real time; then stop.
    let speech: Vec<i16> = caller_speech().into_iter().take(8_000).collect();
    let mut encoder =
        opus::Encoder::new(8_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut packet = [0u8; 1_000];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for chunk in speech.chunks_exact(160) {
        tick.tick().await;
        let size = encoder.encode(chunk, &mut packet).unwrap();
        phone
            .send(Message::Binary(packet[..size].to_vec().into()))
            .await
            .unwrap();
    }
    phone
        .send(Message::Text(r#"{"event":"stop"}"#.into()))
        .await
        .unwrap();
    let mut decoder = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
    let mut times = Vec::new();
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(10), listener.next()).await
    {
        match message {
            Message::Binary(bytes) => {
                times.push(u64::from_be_bytes(bytes[1..9].try_into().unwrap()));
                let mut pcm = [0i16; 960];
                let samples = decoder.decode(&bytes[9..], &mut pcm, false).unwrap();
                assert_eq!(samples, 320, "20 ms at 16 kHz");
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert!(
        (45..=52).contains(&times.len()),
        "{} packets for 1 s",
        times.len()
    );
    let span = times.last().unwrap() - times.first().unwrap();
    assert!(
        span <= 1_000,
        "1 s of audio spans {span} ms of the call's clock"
    );
}

/// A softphone call and a listener end when their tokens do (4001), as a feed connection does;
/// they ran on past `exp` before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_and_listen_in_close_when_the_token_expires() {
    use winnerr_events::{OrgId, UserId};
    let test = spawn_app().await;
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let issue = |user: &str, role: Role, seconds: u64| {
        test.app.gateway.auth().issue(
            &UserId::parse(user).unwrap(),
            &OrgId::parse("acme").unwrap(),
            role,
            Duration::from_secs(seconds),
        )
    };
    let query = format!("access_token={}", issue("agent-1", Role::Agent, 3));
    let (mut phone, call_id) = softphone(&test, &query).await;
    let (mut listener, _) = listener(&test, &call_id, &issue("manager-2", Role::Manager, 1)).await;
    let close_code = |message: Option<Result<Message, _>>| match message {
        Some(Ok(Message::Close(Some(frame)))) => Some(u16::from(frame.code)),
        _ => None,
    };
    // The listener's token ends first; the call goes on (the phone keeps sending silence).
    let mut encoder =
        opus::Encoder::new(8_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut packet = [0u8; 1_000];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut listener_closed = None;
    let mut phone_closed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while phone_closed.is_none() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick() => {
                let size = encoder.encode(&[0i16; 160], &mut packet).unwrap();
                if phone.send(Message::Binary(packet[..size].to_vec().into())).await.is_err() {
                    phone_closed = Some(None);
                }
            }
            message = phone.next() => phone_closed = Some(close_code(message)),
            message = listener.next(), if listener_closed.is_none() => {
                if !matches!(message, Some(Ok(Message::Binary(_)) | Ok(Message::Text(_)))) {
                    listener_closed = Some((close_code(message), phone_closed.is_none()));
                }
            }
        }
    }
    let (code, call_went_on) = listener_closed.expect("the listener is closed");
    assert_eq!(code, Some(close::TOKEN_EXPIRED));
    assert!(
        call_went_on,
        "the listener's token ended before the caller's"
    );
    assert_eq!(
        phone_closed,
        Some(Some(close::TOKEN_EXPIRED)),
        "the softphone is closed at expiry"
    );
    let events = manager.call_events(&call_id.parse().unwrap()).await;
    assert!(matches!(
        events.last().map(|e| &e.event),
        Some(Event::CallEnded(_))
    ));
}
