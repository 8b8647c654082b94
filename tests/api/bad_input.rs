//! Every kind of bad input gets its documented close code (or is counted and skipped), while a
//! good call running at the same time completes intact.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio_tungstenite::tungstenite::Message;
use winnerr_events::{EndReason, Event, Role};
use winnerr_ingest::simulator::encode_frame;
use winnerr_ingest::{CallScript, Pace};

use crate::helpers::*;

fn media(stream_sid: &str, seq: u64, timestamp: u64, payload: &str) -> Message {
    Message::Text(
        format!(
            r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{stream_sid}","media":{{"track":"inbound","chunk":"{seq}","timestamp":"{timestamp}","payload":"{payload}"}}}}"#
        )
        .into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_one_stream_at_a_time() {
    let test = spawn_app().await;
    let simulator = test.simulator();
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;

    // A good two-track call, paced like a real one, runs through all of it.
    let mut good = CallScript::new(identity("acme", Some("agent-1"), None), caller_speech());
    good.outbound = Some(agent_speech());
    good.pace = Pace::RealTime;
    let good_call = test.play_in_background(&good);
    test.until_live(1).await;

    let start_of = |script: &CallScript| Message::Text(simulator.start_message(script).into());
    let bad_script = CallScript::new(identity("acme", None, None), vec![0; 800]);
    let mut forged = bad_script.clone();
    forged.identity.org_id = "globex".parse().unwrap();
    let forged_start = simulator.start_message(&forged).replace("globex", "acme");
    let unsigned = CallScript::new(identity("acme", None, None), vec![]);
    let unsigned_start = simulator
        .start_message(&unsigned)
        .replace(r#""sig""#, r#""sig_removed""#);
    let frame = encode_frame(&caller_speech(), 10);
    // Fields no store can hold: a NUL in the account SID (Postgres refuses it, and the writer
    // retried that batch forever) and a stream SID of 20 KB.
    let mut nul_account = bad_script.clone();
    nul_account.account_sid = "AC\0\0".into();
    let mut huge_sid = bad_script.clone();
    huge_sid.stream_sid = format!("MZ{}", "9".repeat(20_000));

    let cases: Vec<(&str, Vec<Message>, u16)> = vec![
        (
            "malformed JSON",
            vec![Message::Text("{\"event\": \"media\", oops".into())],
            1007,
        ),
        (
            "binary frame",
            vec![Message::Binary(vec![1u8, 2, 3].into())],
            1003,
        ),
        (
            "media before start",
            vec![media(&bad_script.stream_sid, 2, 0, &frame)],
            4001,
        ),
        (
            "second start",
            vec![start_of(&bad_script), start_of(&bad_script)],
            4002,
        ),
        (
            "message over the size limit",
            vec![Message::Text("x".repeat(100 * 1024).into())],
            1009,
        ),
        (
            "forged organization",
            vec![Message::Text(forged_start.into())],
            4003,
        ),
        (
            "unsigned identity",
            vec![Message::Text(unsigned_start.into())],
            4003,
        ),
        (
            "a NUL in the account SID",
            vec![start_of(&nul_account)],
            4006,
        ),
        ("a 20 KB stream SID", vec![start_of(&huge_sid)], 4006),
        (
            "unknown fields but wrong counter type",
            vec![Message::Text(
                r#"{"event":"start","sequenceNumber":"one"}"#.into(),
            )],
            1007,
        ),
    ];
    let runs = cases.into_iter().map(|(name, messages, code)| {
        let simulator = simulator.clone();
        async move { (name, send_and_close(&simulator, messages).await, code) }
    });
    for (name, (code, reason), expected) in futures_util::future::join_all(runs).await {
        assert_eq!(code, expected, "{name}: closed with {code} {reason:?}");
        assert!(!reason.is_empty(), "{name}: close has a reason");
    }

    // Bad payloads and unknown events are counted and skipped; the stream goes on.
    let mut skipping = CallScript::new(identity("acme", None, None), vec![]);
    skipping.stream_sid = format!("MZ{}", "5".repeat(32));
    let sid = skipping.stream_sid.clone();
    let oversized = STANDARD.encode(vec![0xFFu8; 9000]);
    let stop = format!(
        r#"{{"event":"stop","sequenceNumber":"8","streamSid":"{sid}","stop":{{"accountSid":"AC1","callSid":"{}"}}}}"#,
        skipping.call_sid
    );
    let messages = vec![
        Message::Text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.into()),
        start_of(&skipping),
        media(&sid, 2, 0, &frame),
        media(&sid, 3, 20, "%%%not-base64%%%"),
        media(&sid, 4, 40, &oversized),
        Message::Text(r#"{"event":"hologram","sequenceNumber":"5","streamSid":"x"}"#.into()),
        media(&sid, 7, 60, &frame),
        Message::Text(stop.into()),
    ];
    assert_eq!(send_and_close(&simulator, messages).await.0, 1000);

    // No upgrade without a valid X-Twilio-Signature.
    for signature in [None, Some("bm90IHRoZSBzaWduYXR1cmU=")] {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = test.app.stream_url().into_client_request().unwrap();
        if let Some(signature) = signature {
            request
                .headers_mut()
                .insert("X-Twilio-Signature", signature.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403)
            }
            other => panic!("expected 403, got {:?}", other.map(|_| ())),
        }
    }

    // The good call completed intact.
    let report = good_call.await.unwrap();
    assert_eq!(report.close, Some((1000, "stream stopped".into())));
    let frames = good.frames() as u64;
    let mut seen_good_end = false;
    let mut seen_skipping_end = false;
    let mut seen_second_start_end = false;
    while !(seen_good_end && seen_skipping_end && seen_second_start_end) {
        let event = manager.next_event().await;
        let Event::CallEnded(ended) = &event.event else {
            continue;
        };
        if event.call_id == call_id(&good.call_sid) {
            assert_eq!(ended.reason, EndReason::Completed);
            assert_eq!(ended.stats.frames, [frames, frames]);
            assert_eq!(
                (
                    ended.stats.missing,
                    ended.stats.bad_frames,
                    ended.stats.dropped
                ),
                (0, 0, 0)
            );
            seen_good_end = true;
        } else if event.call_id == call_id(&skipping.call_sid) {
            assert_eq!(ended.reason, EndReason::Completed);
            assert_eq!(ended.stats.frames, [2, 0]);
            assert_eq!(ended.stats.bad_frames, 2);
            assert_eq!(
                ended.stats.missing, 2,
                "sequence numbers 5 (an unknown event, not read) and 6 never came: {:?}",
                ended.stats
            );
            seen_skipping_end = true;
        } else if event.call_id == call_id(&bad_script.call_sid) {
            assert_eq!(ended.reason, EndReason::Rejected);
            seen_second_start_end = true;
        }
    }

    let page = test.metrics().await;
    for (reason, action) in [
        ("malformed_json", "closed"),
        ("binary_frame", "closed"),
        ("before_start", "closed"),
        ("second_start", "closed"),
        ("message_too_big", "closed"),
        ("bad_identity", "closed"),
        ("bad_base64", "skipped"),
        ("oversized_payload", "skipped"),
        ("missing_signature", "refused"),
        ("bad_signature", "refused"),
    ] {
        let series =
            format!("winnerr_ingest_bad_input_total{{reason=\"{reason}\",action=\"{action}\"}}");
        assert!(
            metric(&page, &series) >= 1.0,
            "{series} missing from\n{page}"
        );
    }
    assert!(metric(&page, "winnerr_ingest_messages_total{event=\"unknown\"}") >= 1.0);
}

/// Media timestamps far past any call (u64::MAX, 2^63 ms) are counted and skipped: no task
/// panics on them, the stream goes on, and the call ends with sane stats and duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_timestamps_out_of_range_are_skipped_and_the_call_ends_intact() {
    let test = spawn_app().await;
    let simulator = test.simulator();
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let script = CallScript::new(identity("acme", None, None), vec![]);
    let sid = script.stream_sid.clone();
    let frame = encode_frame(&caller_speech(), 10);
    let stop = format!(
        r#"{{"event":"stop","sequenceNumber":"6","streamSid":"{sid}","stop":{{"accountSid":"AC1","callSid":"{}"}}}}"#,
        script.call_sid
    );
    let messages = vec![
        Message::Text(simulator.start_message(&script).into()),
        media(&sid, 2, 0, &frame),
        media(&sid, 3, u64::MAX, &frame),
        media(&sid, 4, 1 << 63, &frame),
        media(&sid, 5, 20, &frame),
        Message::Text(stop.into()),
    ];
    assert_eq!(send_and_close(&simulator, messages).await.0, 1000);
    let events = manager.call_events(&call_id(&script.call_sid)).await;
    let Some(Event::CallEnded(ended)) = events.last().map(|e| &e.event) else {
        panic!("the call ends: {events:?}");
    };
    assert_eq!(ended.reason, EndReason::Completed);
    assert_eq!(ended.stats.frames, [2, 0]);
    assert_eq!(ended.stats.bad_frames, 2);
    assert!(ended.duration_ms < 60_000, "{ended:?}");
    let page = test.metrics().await;
    let series =
        r#"winnerr_ingest_bad_input_total{reason="timestamp_out_of_range",action="skipped"}"#;
    assert_eq!(metric(&page, series), 2.0, "{page}");
}

/// A replayed `start` (a copy of the real call's, validly signed) is refused with 4005 while the
/// call is live, and changes nothing: the real call keeps its stream and ends once, completed,
/// with all its frames. Before, the copy became a second stream whose end ended the real call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_stream_is_refused_and_the_real_call_goes_on() {
    let test = spawn_app().await;
    let simulator = test.simulator();
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut real = CallScript::new(identity("acme", Some("agent-1"), None), caller_speech());
    real.pace = Pace::RealTime;
    let playing = test.play_in_background(&real);
    test.until_live(1).await;
    let replay = vec![
        Message::Text(simulator.start_message(&real).into()),
        media(&real.stream_sid, 2, 0, &encode_frame(&caller_speech(), 10)),
    ];
    let (code, reason) = send_and_close(&simulator, replay).await;
    assert_eq!(code, 4005, "{reason}");
    assert_eq!(
        test.app.ingest.live_streams(),
        1,
        "the real stream is still live"
    );
    let report = playing.await.unwrap();
    assert_eq!(report.close, Some((1000, "stream stopped".into())));
    let events = manager.call_events(&call_id(&real.call_sid)).await;
    let starts = events
        .iter()
        .filter(|e| matches!(e.event, Event::CallStarted(_)))
        .count();
    let ends: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::CallEnded(ended) => Some(ended),
            _ => None,
        })
        .collect();
    assert_eq!(starts, 1);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].reason, EndReason::Completed);
    assert_eq!(ends[0].stats.frames[0], real.frames() as u64);
    let page = test.metrics().await;
    let series = r#"winnerr_ingest_bad_input_total{reason="duplicate_stream",action="closed"}"#;
    assert_eq!(metric(&page, series), 1.0);
}
