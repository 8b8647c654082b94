//! The feed protocol (docs/feed-protocol.md) with real WebSocket clients: channels and role
//! rules, presence, recovery after a reconnect, slow clients, token expiry and refresh.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use winnerr_events::feed::close;
use winnerr_events::fixtures::TestCall;
use winnerr_events::{
    CallContext, CallId, ClientMessage, EndReason, Envelope, ErrorCode, Event, FeedMessage, OrgId,
    Position, PresenceChange, PresenceStatus, Role, UserId,
};

use crate::helpers::*;

fn context(org: &str, call: &str, agent: &str) -> CallContext {
    TestCall::new(org, call).agent(agent).lead("lead-1").ctx
}

fn started(ctx: &CallContext) -> Envelope {
    TestCall::of(ctx).started()
}

fn transcript(ctx: &CallContext, utterance: u32, is_final: bool, text: &str) -> Envelope {
    match is_final {
        true => TestCall::of(ctx).said(utterance, text, None),
        false => TestCall::of(ctx).interim(utterance, text),
    }
}

fn ended(ctx: &CallContext) -> Envelope {
    TestCall::of(ctx).ended_after(EndReason::Completed, 1_000)
}

/// A short call: start, an interim and a final transcript, end.
fn short_call(ctx: &CallContext) -> Vec<Envelope> {
    vec![
        started(ctx),
        transcript(ctx, 1, false, "we are"),
        transcript(ctx, 1, true, "we are pre-approved"),
        ended(ctx),
    ]
}

/// Publishes `events` on the engine's bus as the voice stage would, stamped with the time.
async fn publish(test: &TestApp, events: &[Envelope]) {
    for event in events {
        let mut event = event.clone();
        event.ts_ms = winnerr_events::now_ms();
        test.app.bus.publish(event).await.unwrap();
    }
}

/// The next message, or `None` when nothing comes within `wait`.
async fn within(feed: &mut FeedClient, wait: Duration) -> Option<FeedMessage> {
    tokio::time::timeout(wait, feed.next_message())
        .await
        .ok()
        .flatten()
}

/// Events of the feed until `call` ends, with their channel and offset.
async fn until_end(feed: &mut FeedClient, call: &CallId) -> Vec<(String, u64, Arc<Envelope>)> {
    let mut seen = Vec::new();
    loop {
        match feed.next_message().await {
            Some(FeedMessage::Event {
                channel,
                offset,
                event,
            }) => {
                let done = &event.call_id == call && matches!(event.event, Event::CallEnded(_));
                seen.push((channel.to_string(), offset, event));
                if done {
                    return seen;
                }
            }
            Some(FeedMessage::Presence { .. } | FeedMessage::PresenceState { .. }) => {}
            other => panic!("expected events, got {other:?}"),
        }
    }
}

/// Waits until the metrics page shows `series` at `at_least` or more.
async fn metric_reaches(test: &TestApp, series: &str, at_least: f64) {
    for _ in 0..100 {
        if metric(&test.metrics().await, series) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{series} stayed under {at_least}");
}

fn error_code(message: Option<FeedMessage>) -> ErrorCode {
    match message {
        Some(FeedMessage::Error { code, .. }) => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_carry_what_they_promise_to_whom_the_role_allows() {
    let test = spawn_app().await;
    let mut manager = test
        .feed_unsubscribed("acme", "manager-1", Role::Manager)
        .await;
    let mut agent_1 = test.feed("acme", "agent-1", Role::Agent).await;
    let mut agent_2 = test.feed("acme", "agent-2", Role::Agent).await;
    let mut globex = test
        .feed_unsubscribed("globex", "manager-9", Role::Manager)
        .await;
    let (subscribed, _) = manager.subscribe("org", None).await;
    assert!(matches!(
        subscribed,
        FeedMessage::Subscribed {
            recovered: None,
            ..
        }
    ));
    match manager.next_message().await {
        Some(FeedMessage::PresenceState { members }) => {
            let mut online: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
            online.sort();
            assert_eq!(online, ["agent-1", "agent-2", "manager-1"]);
        }
        other => panic!("expected presence, got {other:?}"),
    }

    let call = context("acme", "CA-agent-1", "agent-1");
    publish(&test, &short_call(&call)[..1]).await;
    agent_1.next_event().await;
    // A colleague's call, once the gateway has seen it, is refused to an agent; the agent's own
    // and any call for a manager are allowed; another organization's name for it reaches nothing.
    agent_2
        .send(&ClientMessage::Subscribe {
            channel: "call:CA-agent-1".into(),
            since: None,
        })
        .await;
    assert_eq!(
        error_code(agent_2.next_message().await),
        ErrorCode::Forbidden
    );
    agent_1.subscribe("call:CA-agent-1", None).await;
    globex.subscribe("call:CA-agent-1", None).await;
    globex.subscribe("calls", None).await;
    for bad in ["org:acme", "calls:acme", "call:", "everything"] {
        globex
            .send(&ClientMessage::Subscribe {
                channel: bad.into(),
                since: None,
            })
            .await;
        assert_eq!(
            error_code(globex.next_message().await),
            ErrorCode::UnknownChannel,
            "{bad}"
        );
    }
    globex.socket_send_text("{\"type\":\"subscribe\"").await;
    assert_eq!(
        error_code(globex.next_message().await),
        ErrorCode::BadRequest
    );
    globex.send(&ClientMessage::Ping).await;
    assert_eq!(globex.next_message().await, Some(FeedMessage::Pong));

    publish(&test, &short_call(&call)[1..]).await;
    // The agent's own call arrives on both channels it follows, each message once per channel.
    let mut seen = until_end(&mut agent_1, &call.call_id).await;
    seen.extend(until_end(&mut agent_1, &call.call_id).await);
    let kinds = |channel: &str| -> Vec<&str> {
        seen.iter()
            .filter(|(c, _, _)| c == channel)
            .map(|(_, _, e)| e.event.kind())
            .collect()
    };
    assert_eq!(
        kinds("calls"),
        ["transcript_interim", "transcript_final", "call_ended"]
    );
    assert_eq!(kinds("call:CA-agent-1"), kinds("calls"));
    // The manager's org channel: the overview, without interim words.
    let overview = until_end(&mut manager, &call.call_id).await;
    let kinds: Vec<&str> = overview.iter().map(|(_, _, e)| e.event.kind()).collect();
    assert_eq!(kinds, ["call_started", "transcript_final", "call_ended"]);
    let offsets: Vec<u64> = overview.iter().map(|(_, o, _)| *o).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");

    // Agent 2 and globex saw none of it: their next messages are their own.
    let own = context("acme", "CA-agent-2", "agent-2");
    publish(&test, &[started(&own)]).await;
    assert_eq!(agent_2.next_event().await.call_id, own.call_id);
    let theirs = context("globex", "CA-globex", "agent-9");
    publish(&test, &[started(&theirs)]).await;
    assert_eq!(globex.next_event().await.call_id, theirs.call_id);

    // Unsubscribed, a channel is quiet.
    agent_1
        .send(&ClientMessage::Unsubscribe {
            channel: "calls".into(),
        })
        .await;
    assert!(matches!(
        agent_1.next_message().await,
        Some(FeedMessage::Unsubscribed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_joins_status_and_leaves_and_times_out_silent_clients() {
    let test = spawn_app_with(|c| c.feed_heartbeat = 0.2).await;
    let (mut manager, _) = test.org_feed("acme", "manager-1", Role::Manager).await;

    let mut agent = test.feed_unsubscribed("acme", "agent-1", Role::Agent).await;
    let (change, member) = manager.next_presence().await;
    assert_eq!(
        (change, member.user_id.as_str(), member.role),
        (PresenceChange::Join, "agent-1", Role::Agent)
    );
    agent
        .send(&ClientMessage::Presence {
            status: PresenceStatus::OnCall,
            call_id: Some(CallId::parse("CA1").unwrap()),
        })
        .await;
    let (change, member) = manager.next_presence().await;
    assert_eq!(change, PresenceChange::Update);
    assert_eq!(member.status, PresenceStatus::OnCall);
    assert_eq!(member.call_id.unwrap().as_str(), "CA1");
    // A second connection of the same person is no new arrival, and closing it no departure.
    let second = test.feed_unsubscribed("acme", "agent-1", Role::Agent).await;
    drop(second);
    // Clients of another organization are not in this room.
    let _other = test
        .feed_unsubscribed("globex", "agent-7", Role::Agent)
        .await;
    agent.close().await;
    let (change, member) = manager.next_presence().await;
    assert_eq!(
        (change, member.user_id.as_str()),
        (PresenceChange::Leave, "agent-1")
    );

    // A client that stops answering pings (it reads nothing) leaves after two heartbeats.
    let url = format!(
        "{}?access_token={}",
        test.app.feed_url(),
        test.token("acme", "agent-2", Role::Agent)
    );
    let (mut silent, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let joined = tokio::time::Instant::now();
    let (change, _) = manager.next_presence().await;
    assert_eq!(change, PresenceChange::Join);
    let (change, member) = manager.next_presence().await;
    assert_eq!(
        (change, member.user_id.as_str()),
        (PresenceChange::Leave, "agent-2")
    );
    let gone_after = joined.elapsed();
    assert!(gone_after >= Duration::from_millis(400), "{gone_after:?}");
    let mut code = None;
    while let Some(Ok(message)) = silent.next().await {
        if let Message::Close(frame) = message {
            code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(close::HEARTBEAT));
    metric_reaches(
        &test,
        "winnerr_gateway_feed_closed_total{reason=\"heartbeat\"}",
        1.0,
    )
    .await;
    metric_reaches(
        &test,
        "winnerr_gateway_presence_changes_total{change=\"leave\"}",
        2.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_recovers_what_it_missed_or_is_told_it_cannot() {
    let test = spawn_app_with(|c| c.feed_history = 12).await;
    let mut steady = test.feed("acme", "manager-1", Role::Manager).await;
    let mut flaky = test
        .feed_unsubscribed("acme", "manager-2", Role::Manager)
        .await;
    let (subscribed, _) = flaky.subscribe("calls", None).await;
    let FeedMessage::Subscribed {
        position: start, ..
    } = subscribed
    else {
        unreachable!()
    };

    let first = context("acme", "CA-first", "agent-1");
    publish(&test, &short_call(&first)).await;
    let seen_by_flaky = until_end(&mut flaky, &first.call_id).await;
    // It reads two events, then its connection drops; two more calls go by meanwhile.
    let last = Position {
        epoch: start.epoch,
        offset: seen_by_flaky[1].1,
    };
    flaky.close().await;
    let (second, third) = (
        context("acme", "CA-second", "agent-2"),
        context("acme", "CA-third", "agent-1"),
    );
    publish(&test, &short_call(&second)).await;
    publish(&test, &short_call(&third)).await;
    let mut everything = until_end(&mut steady, &first.call_id).await;
    everything.extend(until_end(&mut steady, &second.call_id).await);
    everything.extend(until_end(&mut steady, &third.call_id).await);

    // Back, from its last position: exactly what it missed, in order, then live.
    let mut back = test
        .feed_unsubscribed("acme", "manager-2", Role::Manager)
        .await;
    let (subscribed, replayed) = back.subscribe("calls", Some(last)).await;
    assert!(matches!(
        subscribed,
        FeedMessage::Subscribed {
            recovered: Some(true),
            ..
        }
    ));
    let missed: Vec<(u64, _)> = everything
        .iter()
        .filter(|(_, offset, _)| *offset > last.offset)
        .map(|(_, offset, event)| (*offset, event.id))
        .collect();
    let got: Vec<(u64, _)> = replayed.iter().map(|(o, e)| (*o, e.id)).collect();
    assert_eq!(got, missed);
    let fourth = context("acme", "CA-fourth", "agent-1");
    publish(&test, &[started(&fourth)]).await;
    assert_eq!(back.next_event().await.call_id, fourth.call_id);

    // Too far back (the history keeps 12 events), or another node's epoch: told plainly, no replay.
    let too_old = Position {
        epoch: start.epoch,
        offset: start.offset,
    };
    let other_node = Position {
        epoch: start.epoch ^ 1,
        offset: last.offset,
    };
    for since in [too_old, other_node] {
        let mut client = test
            .feed_unsubscribed("acme", "manager-3", Role::Manager)
            .await;
        let (subscribed, replayed) = client.subscribe("calls", Some(since)).await;
        assert!(
            matches!(
                subscribed,
                FeedMessage::Subscribed {
                    recovered: Some(false),
                    ..
                }
            ),
            "{subscribed:?}"
        );
        assert!(replayed.is_empty());
    }
    // An agent recovering gets only their own calls back.
    let mut agent = test.feed_unsubscribed("acme", "agent-2", Role::Agent).await;
    let (_, replayed) = agent.subscribe("calls", Some(last)).await;
    assert!(!replayed.is_empty());
    assert!(replayed.iter().all(|(_, e)| e.call_id == second.call_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_loses_interims_then_its_connection_and_never_delays_a_fast_one() {
    // A queue of 64 messages: interims are skipped for a client with 32 waiting, and it is
    // closed with 64 (skipped interims never reach it, so only the metric shows them).
    let test = spawn_app_with(|c| {
        c.feed_send_queue = 64;
        c.feed_buffer = 100_000;
        c.bus_capacity = 100_000;
    })
    .await;
    let mut fast = test.feed("acme", "manager-1", Role::Manager).await;
    // The slow client subscribes, then reads nothing.
    let url = format!(
        "{}?access_token={}",
        test.app.feed_url(),
        test.token("acme", "manager-2", Role::Manager)
    );
    let (mut slow, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let subscribe = serde_json::to_string(&ClientMessage::Subscribe {
        channel: "calls".into(),
        since: None,
    })
    .unwrap();
    slow.send(Message::Text(subscribe.into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 4,000 transcripts of 8 KB, every other one interim: 32 MB, more than the sockets buffer.
    let call = context("acme", "CA-flood", "agent-1");
    let words = "word ".repeat(1_600);
    let mut events = vec![started(&call)];
    for n in 0..2_000 {
        events.push(transcript(&call, n, false, &words));
        events.push(transcript(&call, n, true, &words));
    }
    events.push(ended(&call));
    let reader = tokio::spawn(async move {
        let (mut delays, mut interims) = (Vec::new(), 0);
        loop {
            let event = fast.next_event().await;
            delays.push(winnerr_events::now_ms().saturating_sub(event.ts_ms));
            match &event.event {
                Event::Transcript(t) if !t.is_final => interims += 1,
                Event::CallEnded(_) => return (delays, interims),
                _ => {}
            }
        }
    });
    // At 1,000 events (8 MB) a second: a fast reader keeps up, one that reads nothing cannot.
    for batch in events.chunks(10) {
        publish(&test, batch).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut delays, interims) = reader.await.unwrap();
    // Every final and the end; interims too, unless it fell behind on its own.
    assert_eq!(
        delays.len() - interims,
        2_002,
        "the fast client got every final"
    );
    delays.sort_unstable();
    let p99 = delays[delays.len() * 99 / 100];
    println!(
        "fast client: {} events ({interims} of 2000 interims), p99 delay {p99} ms",
        delays.len()
    );
    assert!(p99 < 2_000, "the fast client was held up: p99 {p99} ms");

    // The slow one was closed as too slow, after interims were skipped for it.
    metric_reaches(
        &test,
        "winnerr_gateway_feed_closed_total{reason=\"too_slow\"}",
        1.0,
    )
    .await;
    metric_reaches(
        &test,
        "winnerr_gateway_feed_dropped_total{reason=\"interim\"}",
        1.0,
    )
    .await;
    let (mut finals, mut interims, mut close) = (0, 0, None);
    let drained = tokio::time::timeout(WAIT, async {
        while let Some(Ok(message)) = slow.next().await {
            match message {
                Message::Text(text) => {
                    if let FeedMessage::Event { event, .. } =
                        serde_json::from_str(text.as_str()).unwrap()
                        && let Event::Transcript(t) = &event.event
                    {
                        if t.is_final {
                            finals += 1
                        } else {
                            interims += 1
                        }
                    }
                }
                Message::Close(frame) => {
                    close = frame.map(|f| u16::from(f.code));
                    break;
                }
                _ => {}
            }
        }
    });
    drained.await.expect("the slow client's connection ends");
    println!("slow client: {finals} finals, {interims} interims before its close ({close:?})");
    assert!(finals < 2_000, "the slow client cannot have kept up");
    // Its close frame comes after what its socket already holds, if the gateway could still
    // write it; otherwise the connection just ends.
    assert!(
        close.is_none_or(|code| code == close::TOO_SLOW),
        "{close:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_closes_the_feed_unless_refreshed_by_the_same_user() {
    let test = spawn_app().await;
    let auth = test.app.gateway.auth();
    let issue = |user: &str, ttl: u64| {
        auth.issue(
            &UserId::parse(user).unwrap(),
            &OrgId::parse("acme").unwrap(),
            Role::Agent,
            Duration::from_secs(ttl),
        )
    };
    let mut expiring = FeedClient::connect(&test.app.feed_url(), &issue("agent-1", 1)).await;
    let mut refreshed = FeedClient::connect(&test.app.feed_url(), &issue("agent-2", 3)).await;
    for feed in [&mut expiring, &mut refreshed] {
        assert!(matches!(
            feed.next_message().await,
            Some(FeedMessage::Hello { .. })
        ));
    }
    // Someone else's token does not extend this connection.
    refreshed
        .send(&ClientMessage::Refresh {
            token: issue("agent-1", 600),
        })
        .await;
    assert_eq!(
        error_code(refreshed.next_message().await),
        ErrorCode::BadToken
    );
    refreshed
        .send(&ClientMessage::Refresh {
            token: "not-a-token".into(),
        })
        .await;
    assert_eq!(
        error_code(refreshed.next_message().await),
        ErrorCode::BadToken
    );
    refreshed
        .send(&ClientMessage::Refresh {
            token: issue("agent-2", 600),
        })
        .await;
    assert!(matches!(
        refreshed.next_message().await,
        Some(FeedMessage::Refreshed { .. })
    ));

    assert_eq!(within(&mut expiring, Duration::from_secs(5)).await, None);
    assert_eq!(expiring.close_code(), Some(close::TOKEN_EXPIRED));
    // Past the first token's expiry, the refreshed connection still answers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    refreshed.send(&ClientMessage::Ping).await;
    assert_eq!(refreshed.next_message().await, Some(FeedMessage::Pong));
}

/// A token from the CRM's identity provider (RS256, its claim names) opens the feed when the
/// engine has the provider's keys (`WINNERR_JWKS_FILE`), and only for the issuer configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_tokens_open_the_feed_with_the_providers_keys() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway/tests/fixtures");
    let test = spawn_app_with(|c| {
        c.jwks_file = Some(fixtures.join("idp-test-jwks.json"));
        c.jwt_issuer = Some("https://idp.example".into());
        // An identity provider looks like production: a development server says so.
        c.development = true;
    })
    .await;
    let key = std::fs::read(fixtures.join("idp-test-key.der")).unwrap();
    let sign = |issuer: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("test-key-1".into());
        let claims = serde_json::json!({
            "sub": "user_2x", "org_id": "acme", "org_role": "org:manager",
            "iss": issuer, "exp": winnerr_events::now_ms() / 1000 + 600,
        });
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_der(&key),
        )
        .unwrap()
    };
    let mut feed = FeedClient::connect(&test.app.feed_url(), &sign("https://idp.example")).await;
    match feed.next_message().await {
        Some(FeedMessage::Hello {
            user_id,
            org_id,
            role,
            ..
        }) => assert_eq!(
            (user_id.as_str(), org_id.as_str(), role),
            ("user_2x", "acme", Role::Manager)
        ),
        other => panic!("expected hello, got {other:?}"),
    }
    // Another issuer's token, on the feed and on the REST API.
    let url = format!(
        "{}?access_token={}",
        test.app.feed_url(),
        sign("https://elsewhere")
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let refused = reqwest::Client::new()
        .get(format!("{}/api/calls", test.app.http_url()))
        .bearer_auth(sign("https://elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // With the provider and no HS256 secret of its own, HS256 is off: a token signed with the
    // published development secret (admin of any organization) opened everything before.
    let forged = test.token("acme", "admin-1", Role::Admin);
    let refused = reqwest::Client::new()
        .get(format!("{}/api/calls", test.app.http_url()))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let url = format!("{}?access_token={forged}", test.app.feed_url());
    assert!(matches!(
        tokio_tungstenite::connect_async(url).await,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 401
    ));
}

/// A client that asks for the history again and again and reads nothing is closed (4008) after
/// the first unread replay; the server's memory does not grow with its requests (it grew by
/// hundreds of MB before); another client keeps its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_requested_without_reading_close_the_connection_not_the_server() {
    let test = spawn_app_with(|c| c.feed_history = 2048).await;
    let mut steady = test.feed("acme", "manager-1", Role::Manager).await;
    let mut attacker = test
        .feed_unsubscribed("acme", "manager-2", Role::Manager)
        .await;
    let (subscribed, _) = attacker.subscribe("calls", None).await;
    let FeedMessage::Subscribed { position, .. } = subscribed else {
        unreachable!()
    };
    // A history to replay: 60 short calls.
    for i in 0..60 {
        let ctx = context("acme", &format!("CA-history-{i}"), "agent-1");
        publish(&test, &short_call(&ctx)).await;
        until_end(&mut steady, &ctx.call_id).await;
    }
    let rss = |page: &str| metric(page, "process_resident_memory_bytes");
    let before = rss(&test.metrics().await);
    let since = Position {
        epoch: position.epoch,
        offset: position.offset,
    };
    let request = serde_json::to_string(&ClientMessage::Subscribe {
        channel: "calls".into(),
        since: Some(since),
    })
    .unwrap();
    let mut sent = 0;
    while sent < 1_000 && attacker.try_send_text(&request).await {
        sent += 1;
    }
    let after = rss(&test.metrics().await);
    // The close frame (4008) waits behind what the client never read; as with any client too
    // slow to read it, the server then drops the socket: its count says why it closed.
    let code = attacker.until_closed().await;
    assert!(
        matches!(code, Some(close::TOO_SLOW) | None),
        "closed with {code:?} after {sent} requests"
    );
    let growth_mb = (after - before) / 1e6;
    println!("server RSS growth for {sent} replay requests: {growth_mb:.1} MB");
    assert!(growth_mb < 50.0, "RSS grew by {growth_mb:.1} MB");
    metric_reaches(
        &test,
        "winnerr_gateway_feed_closed_total{reason=\"replay_unread\"}",
        1.0,
    )
    .await;
    let ctx = context("acme", "CA-after", "agent-1");
    publish(&test, &short_call(&ctx)).await;
    until_end(&mut steady, &ctx.call_id).await;
}

/// A connection follows at most `WINNERR_FEED_MAX_SUBSCRIPTIONS` channels; one more gets an
/// `error` and the connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_are_capped() {
    let test = spawn_app_with(|c| c.feed_max_subscriptions = 3).await;
    let mut client = test
        .feed_unsubscribed("acme", "manager-1", Role::Manager)
        .await;
    for call in ["call:CA1", "call:CA2", "call:CA3"] {
        let (subscribed, _) = client.subscribe(call, None).await;
        assert!(matches!(subscribed, FeedMessage::Subscribed { .. }));
    }
    // Following one of them again is not one more.
    let (again, _) = client.subscribe("call:CA2", None).await;
    assert!(matches!(again, FeedMessage::Subscribed { .. }));
    client
        .send(&ClientMessage::Subscribe {
            channel: "call:CA4".into(),
            since: None,
        })
        .await;
    match client.next_message().await {
        Some(FeedMessage::Error { code, channel, .. }) => {
            assert_eq!(code, ErrorCode::TooManySubscriptions);
            assert_eq!(channel.as_deref(), Some("call:CA4"));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    client.send(&ClientMessage::Ping).await;
    assert!(matches!(
        client.next_message().await,
        Some(FeedMessage::Pong)
    ));
}

/// A presence flood costs no one their events: agents of one organization changing status as
/// fast as they can, reading nothing, are limited (`error` `rate_limited`), nothing of it goes
/// onto the in-process bus, and another organization's manager gets every call's start and end
/// while it runs, with the server's memory steady. Before, every change went onto the bus with
/// the call events: the scorer missed events in every run and, in some, a manager silently lost
/// call starts and ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_flood_costs_no_one_their_events() {
    let test = spawn_app_with(|c| {
        c.bus_capacity = 256;
        c.scoring = true;
    })
    .await;
    let mut manager = test.feed("globex", "manager-9", Role::Manager).await;
    // The flooded organization's own presence, as its manager sees it.
    let (mut watcher, _) = test.org_feed("acme", "manager-1", Role::Manager).await;
    // Everything on the bus, as the scorer and the store writer get it.
    let mut bus = test.app.bus.subscribe().await.unwrap();
    let before = test.metrics().await;
    let rss = |page: &str| metric(page, "process_resident_memory_bytes");
    let statuses = ["available", "busy", "away"];
    let started = std::time::Instant::now();
    let mut flooders = Vec::new();
    for agent in 0..4 {
        for _ in 0..2 {
            let mut client = test
                .feed_unsubscribed("acme", &format!("agent-{agent}"), Role::Agent)
                .await;
            flooders.push(tokio::spawn(async move {
                let mut sent = 0;
                for n in 0..3_000 {
                    let message =
                        format!(r#"{{"type":"presence","status":"{}"}}"#, statuses[n % 3]);
                    if !client.try_send_text(&message).await {
                        break;
                    }
                    sent += 1;
                }
                sent
            }));
        }
    }
    // Meanwhile, another organization's calls.
    for i in 0..20 {
        let ctx = context("globex", &format!("CA-during-flood-{i}"), "agent-9");
        publish(&test, &short_call(&ctx)).await;
        let seen = until_end(&mut manager, &ctx.call_id).await;
        assert!(
            seen.iter()
                .any(|(_, _, e)| e.call_id == ctx.call_id
                    && matches!(e.event, Event::CallStarted(_))),
            "call {i}: its start reached the manager"
        );
    }
    let mut sent = 0;
    for flooder in flooders {
        sent += flooder.await.unwrap();
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let after = test.metrics().await;
    let growth_mb = (rss(&after) - rss(&before)) / 1e6;
    println!(
        "server RSS growth for {sent} presence messages from 8 connections: {growth_mb:.1} MB"
    );
    assert!(growth_mb < 50.0, "RSS grew by {growth_mb:.1} MB");
    let rejected = metric(
        &after,
        r#"winnerr_gateway_feed_requests_rejected_total{code="rate_limited"}"#,
    );
    assert!(rejected > 0.0, "the flood was limited ({sent} sent)");
    let mut changes = 0.0;
    while let Some(message) = within(&mut watcher, Duration::from_millis(300)).await {
        if matches!(
            message,
            FeedMessage::Presence {
                change: PresenceChange::Update,
                ..
            }
        ) {
            changes += 1.0;
        }
    }
    // Each of the 4 users: a burst of 20, then 4 a second.
    let allowed = 4.0 * (20.0 + 4.0 * elapsed_s);
    assert!(
        changes <= allowed,
        "{changes} presence updates in {elapsed_s:.1} s passed the limits"
    );
    let (mut events, mut presence) = (0, 0);
    while let Some(Some(delivery)) = bus.next().now_or_never() {
        match delivery {
            winnerr_bus::Delivery::Event(event) if matches!(event.event, Event::Presence(_)) => {
                presence += 1
            }
            winnerr_bus::Delivery::Event(_) => events += 1,
            winnerr_bus::Delivery::Lagged(missed) => {
                panic!("a bus subscriber fell behind by {missed}")
            }
        }
    }
    assert_eq!(presence, 0, "no node presence on an in-process bus");
    assert!(
        events >= 20 * 4,
        "every call event is on the bus ({events})"
    );
}
