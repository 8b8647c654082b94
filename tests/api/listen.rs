//! Listen-in: a live call's audio, Opus-encoded by the gateway, to a manager of its organization
//! or its own agent, over a real WebSocket; decoded here and compared with what the caller said.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use winnerr_events::Role;
use winnerr_ingest::{CallScript, Pace};

use crate::helpers::*;

/// The loudness of each 20 ms (160 samples) of `pcm`.
fn envelope(pcm: &[i16]) -> Vec<f64> {
    pcm.chunks(160)
        .map(|c| (c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
        .collect()
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma).powi(2);
        bb += (y - mb).powi(2);
    }
    ab / (aa * bb).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_listens_in_on_a_live_call_in_opus() {
    let test = spawn_app().await;
    let mut caller = caller_speech();
    caller.extend(vec![0i16; 8_000]);
    caller.extend(caller_speech());
    let mut script = CallScript::new(
        identity("acme", Some("agent-1"), Some("lead-1")),
        caller.clone(),
    );
    script.outbound = Some(agent_speech());
    script.pace = Pace::RealTime;
    let call = test.play_in_background(&script);
    test.until_live(1).await;
    let call_id = call_id(&script.call_sid);
    let base = test.app.feed_url().replace("/feed", "/listen");
    let url = |call: &str, token: &str| format!("{base}/{call}?access_token={token}");

    // Who may not: another agent (403), another organization or an unknown call (404), nobody
    // without a token (401).
    for (token, call, status) in [
        (
            test.token("acme", "agent-2", Role::Agent),
            call_id.as_str(),
            403,
        ),
        (
            test.token("globex", "manager-9", Role::Manager),
            call_id.as_str(),
            404,
        ),
        (
            test.token("acme", "manager-1", Role::Manager),
            "CAnope",
            404,
        ),
        ("".to_owned(), call_id.as_str(), 401),
    ] {
        match tokio_tungstenite::connect_async(url(call, &token)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), status, "{call}")
            }
            other => panic!("expected {status}, got {other:?}"),
        }
    }

    let (mut socket, _) = tokio_tungstenite::connect_async(url(
        call_id.as_str(),
        &test.token("acme", "manager-1", Role::Manager),
    ))
    .await
    .expect("the manager listens");
    match socket.next().await {
        Some(Ok(Message::Text(text))) => assert!(text.contains(r#""codec":"opus""#), "{text}"),
        other => panic!("expected the listening message, got {other:?}"),
    }
    let mut decoders = [
        opus::Decoder::new(8_000, opus::Channels::Mono).unwrap(),
        opus::Decoder::new(8_000, opus::Channels::Mono).unwrap(),
    ];
    let (mut heard, mut times, mut packets) = (Vec::new(), Vec::new(), [0usize; 2]);
    let mut close = None;
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Binary(bytes) => {
                let track = usize::from(bytes[0]);
                let at_ms = u64::from_be_bytes(bytes[1..9].try_into().unwrap());
                let mut pcm = [0i16; 160];
                let samples = decoders[track]
                    .decode(&bytes[9..], &mut pcm, false)
                    .unwrap();
                assert_eq!(samples, 160, "20 ms packets");
                packets[track] += 1;
                if track == 0 {
                    heard.extend_from_slice(&pcm);
                    times.push(at_ms);
                }
            }
            Message::Close(frame) => {
                close = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    call.await.unwrap();
    println!("packets: {} customer, {} agent", packets[0], packets[1]);
    assert_eq!(close, Some(1000), "the socket closes when the call ends");
    assert!(packets[0] >= 150 && packets[1] >= 50, "{packets:?}");
    assert!(
        times.windows(2).all(|w| w[1] == w[0] + 20),
        "one packet per 20 ms in order"
    );

    // What came through is what the caller said, from where the listener joined.
    let from = (times[0] * 8) as usize;
    let said = &caller[from..(from + heard.len()).min(caller.len())];
    let r = correlation(&envelope(&heard), &envelope(said));
    println!("loudness correlation with the caller's audio: {r:.3}");
    assert!(r > 0.9, "correlation {r}");
}

/// A listener that sends a large message (64 KiB) is cut off at once instead of the server
/// buffering it; the call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_sending_a_huge_message_is_disconnected() {
    use futures_util::SinkExt;
    let test = spawn_app().await;
    let mut caller = caller_speech();
    caller.extend(caller_speech());
    caller.extend(caller_speech());
    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), caller);
    script.pace = Pace::RealTime;
    let call = test.play_in_background(&script);
    test.until_live(1).await;
    let base = test.app.feed_url().replace("/feed", "/listen");
    let token = test.token("acme", "manager-1", Role::Manager);
    let url = format!("{base}/{}?access_token={token}", call_id(&script.call_sid));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(matches!(socket.next().await, Some(Ok(Message::Text(_)))));
    socket
        .send(Message::Binary(vec![0u8; 64 * 1024].into()))
        .await
        .unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Binary(_))) => continue, // audio sent before the server read it
                other => return other,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the listener is still served");
    assert_eq!(test.app.ingest.live_streams(), 1, "the call goes on");
    call.await.unwrap();
}
