//! The dashboard in a real headless Chromium (Debian's `chromium`, driven by `playwright-core`
//! from `tests/browser/`, both installed by `deploy/browser.sh`): a manager logs in with a token
//! and watches a simulated call, transcribed by Whisper, while an agent comes online and a lead
//! texts, and listens in on it (Opus, decoded by WebCodecs).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use winnerr_events::Role;
use winnerr_ingest::{CallScript, Pace};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_watches_a_live_call_and_presence_in_the_browser() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_tests = root.join("tests/browser");
    assert!(
        browser_tests.join("node_modules/playwright-core").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and playwright-core: run deploy/browser.sh install"
    );
    let test = spawn_app_with(|c| c.asr = true).await;
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let mut browser = tokio::process::Command::new("node")
        .arg(browser_tests.join("dashboard.mjs"))
        .current_dir(&browser_tests)
        .env(
            "DASHBOARD_URL",
            format!("{}/dashboard/", test.app.http_url()),
        )
        .env("TOKEN", test.token("acme", "manager-1", Role::Manager))
        .env("SCREENSHOT", &screenshot)
        .env("EXPECT_TEXT", "forward")
        .env("EXPECT_USER", "agent-7")
        .env("EXPECT_MESSAGE", "still for sale")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            said.push(line.clone());
            if line == "READY" {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(ready, Ok(true)),
        "the page did not get ready: {said:?}"
    );

    // An agent comes online, and the caller speaks.
    let _agent = test.feed_unsubscribed("acme", "agent-7", Role::Agent).await;
    // The caller speaks, then the line stays open a while: time to listen in.
    let mut caller = caller_speech();
    caller.extend(vec![0i16; 8_000 * 8]);
    let mut script = CallScript::new(identity("acme", Some("agent-1"), Some("lead-1")), caller);
    script.outbound = Some(agent_speech());
    script.pace = Pace::RealTime;
    let call = test.play_in_background(&script);
    // A lead texts during the call: the message is listed, and is not a call.
    let url = format!("{}/twilio/sms?org=acme", test.app.http_url());
    let sid = format!("SM{}", "d".repeat(32));
    let token = secrecy::ExposeSecret::expose_secret(&test.config.twilio_auth_token).clone();
    let body = "Is the house on Maple Street still for sale?";
    let (status, answer) = crate::messages::post_sms(
        &url,
        &token,
        &crate::messages::sms(&sid, "+15550100142", body),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");

    let finished = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("browser: {line}");
            said.push(line);
        }
        browser.wait().await.unwrap()
    })
    .await
    .expect("the browser test finishes");
    call.await.unwrap();
    println!("screenshot: {}", screenshot.display());
    assert!(finished.success(), "the browser test failed: {said:#?}");
    assert!(said.iter().any(|l| l == "PASS"));
    assert!(screenshot.exists());
}
