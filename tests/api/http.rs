//! The plain HTTP surface: the TwiML webhook, feed authentication, health and metrics.

use std::collections::BTreeMap;

use winnerr_events::Role;
use winnerr_ingest::StreamIdentity;
use winnerr_ingest::signature;

use crate::helpers::*;

fn form(params: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = owned
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect::<Vec<_>>()
        .join("&");
    (body, owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_voice_webhook_answers_signed_requests_with_a_signed_stream() {
    let test = spawn_app().await;
    let url = format!(
        "{}/twilio/voice?org=acme&agent=agent-1&lead=lead-9",
        test.app.http_url()
    );
    let call_sid = format!("CA{}", "a".repeat(32));
    let (body, params) = form(&[
        ("CallSid", &call_sid),
        ("From", "+15551230000"),
        ("To", "+15559870000"),
    ]);
    let client = reqwest::Client::new();
    let post = |signature: Option<String>, url: String, body: String| {
        let mut request = client
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send()
    };

    let signed = signature::sign(&test.config.twilio_auth_token, &url, &params);
    let response = post(Some(signed.clone()), url.clone(), body.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let xml = response.text().await.unwrap();
    let stream_url = format!("ws://{}/twilio/stream", test.app.addr);
    assert!(
        xml.contains(&format!(
            "<Stream url=\"{stream_url}\" track=\"both_tracks\">"
        )),
        "{xml}"
    );
    assert!(
        xml.contains("<Dial><Client>agent-1</Client></Dial>"),
        "{xml}"
    );

    // The parameters Twilio will put in `start.customParameters` verify for this call only.
    let parameters: BTreeMap<String, String> = xml
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("<Parameter name=\"")?;
            let (name, rest) = rest.split_once("\" value=\"")?;
            Some((name.to_string(), rest.strip_suffix("\"/>")?.to_string()))
        })
        .collect();
    let identity =
        StreamIdentity::from_parameters(&parameters, &test.config.twilio_auth_token, &call_sid)
            .unwrap();
    assert_eq!(identity, identity_of("acme", "agent-1", "lead-9"));
    assert!(
        StreamIdentity::from_parameters(&parameters, &test.config.twilio_auth_token, "CAother")
            .is_err()
    );

    // Unsigned, wrongly signed, or signed for other parameters: 403.
    assert_eq!(
        post(None, url.clone(), body.clone())
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(Some("AAAA".into()), url.clone(), body.clone())
            .await
            .unwrap()
            .status(),
        403
    );
    let (tampered, _) = form(&[
        ("CallSid", &call_sid),
        ("From", "+15551230001"),
        ("To", "+15559870000"),
    ]);
    assert_eq!(
        post(Some(signed), url.clone(), tampered)
            .await
            .unwrap()
            .status(),
        403
    );

    // Signed but without an organization: 400.
    let no_org = format!("{}/twilio/voice?agent=agent-1", test.app.http_url());
    let signed = signature::sign(&test.config.twilio_auth_token, &no_org, &params);
    assert_eq!(
        post(Some(signed), no_org, body).await.unwrap().status(),
        400
    );
}

fn identity_of(org: &str, agent: &str, lead: &str) -> StreamIdentity {
    identity(org, Some(agent), Some(lead))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_requires_a_valid_token() {
    let test = spawn_app().await;
    let feed = test.app.feed_url();
    let foreign = winnerr_gateway::Auth::new(b"someone else's secret!").issue(
        &"u1".parse().unwrap(),
        &"acme".parse().unwrap(),
        Role::Admin,
        std::time::Duration::from_secs(60),
    );
    for url in [
        feed.clone(),
        format!("{feed}?access_token=garbage"),
        format!("{feed}?access_token={foreign}"),
    ] {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{url}")
            }
            other => panic!("{url}: expected 401, got {:?}", other.map(|_| ())),
        }
    }
    // A browser-style token in the query works.
    let token = test.token("acme", "u1", Role::Agent);
    assert!(
        tokio_tungstenite::connect_async(format!("{feed}?access_token={token}"))
            .await
            .is_ok()
    );
    let page = test.metrics().await;
    assert!(
        metric(
            &page,
            "winnerr_gateway_auth_failures_total{reason=\"invalid\"}"
        ) >= 2.0
    );
    assert!(
        metric(
            &page,
            "winnerr_gateway_auth_failures_total{reason=\"missing\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer() {
    let test = spawn_app().await;
    let get = |path: &str| reqwest::get(format!("{}{path}", test.app.http_url()));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("# HELP winnerr_build_info"), "{metrics}");
    assert_eq!(
        metric(
            &metrics,
            &format!(
                "winnerr_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    test.app.gateway.set_ready(false);
    assert_eq!(get("/readyz").await.unwrap().status(), 503);
}
