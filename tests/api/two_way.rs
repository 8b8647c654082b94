//! Bidirectional streams: the server sends media, marks and clears to Twilio, and matches the
//! mark echoes to what it sent.

use winnerr_ingest::protocol::ServerMessage;
use winnerr_ingest::{CallScript, Pace, SendError, StreamCommand};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_marks_and_clears_reach_twilio_and_echoes_are_matched() {
    let test = spawn_app().await;
    let before = test.metrics().await;
    let matched = |page: &str| metric(page, "winnerr_ingest_marks_total{result=\"matched\"}");

    let mut script = CallScript::new(identity("acme", None, None), caller_speech());
    script.pace = Pace::RealTime;
    let call = test.play_in_background(&script);
    test.until_live(1).await;
    let ingest = &test.app.ingest;
    let greeting = vec![0x55u8; 320];
    ingest
        .send(&script.stream_sid, StreamCommand::Play(greeting.clone()))
        .unwrap();
    ingest
        .send(
            &script.stream_sid,
            StreamCommand::Mark("greeting-done".into()),
        )
        .unwrap();
    ingest
        .send(&script.stream_sid, StreamCommand::Clear)
        .unwrap();
    ingest
        .send(
            &script.stream_sid,
            StreamCommand::Mark("after-clear".into()),
        )
        .unwrap();
    assert!(matches!(
        ingest.send("MZnope", StreamCommand::Clear),
        Err(SendError::NotLive(_))
    ));

    let report = call.await.unwrap();
    let kinds: Vec<&str> = report
        .received
        .iter()
        .map(|m| match m {
            ServerMessage::Media { stream_sid, media } => {
                assert_eq!(stream_sid, &script.stream_sid);
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&media.payload)
                    .unwrap();
                assert_eq!(bytes, greeting);
                "media"
            }
            ServerMessage::Mark { mark, .. } => {
                if mark.name == "greeting-done" {
                    "mark:greeting-done"
                } else {
                    "mark:after-clear"
                }
            }
            ServerMessage::Clear { .. } => "clear",
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["media", "mark:greeting-done", "clear", "mark:after-clear"]
    );
    assert_eq!(
        report.marks_echoed,
        vec!["greeting-done".to_string(), "after-clear".to_string()]
    );
    let after = test.metrics().await;
    assert_eq!(matched(&after) - matched(&before), 2.0);
}
