//! The plain HTTP surface: the TwiML webhook, feed authentication, health and metrics.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;
use tokio_tungstenite::tungstenite::Message;

use winnerr_events::{ConsentRecord, Event, Role};
use winnerr_ingest::signature;
use winnerr_ingest::{CallScript, StreamIdentity};

use crate::helpers::*;

pub(crate) fn form(params: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
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

/// The TwiML the voice webhook answers to a POST of `fields` to `url`, signed as Twilio signs.
pub(crate) async fn twiml(test: &TestApp, url: &str, fields: &[(&str, &str)]) -> String {
    let (body, params) = form(fields);
    let signed = signature::sign(test.config.twilio_auth_token.expose_secret(), url, &params);
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signed)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
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

    let signed = signature::sign(test.config.twilio_auth_token.expose_secret(), &url, &params);
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
    let identity = StreamIdentity::from_parameters(
        &parameters,
        test.config.twilio_auth_token.expose_secret(),
        &call_sid,
    )
    .unwrap();
    assert_eq!(identity, identity_of("acme", "agent-1", "lead-9"));
    assert!(
        StreamIdentity::from_parameters(
            &parameters,
            test.config.twilio_auth_token.expose_secret(),
            "CAother"
        )
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
    let signed = signature::sign(
        test.config.twilio_auth_token.expose_secret(),
        &no_org,
        &params,
    );
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

/// With a certificate and key, the same server speaks HTTPS and WSS (for deployments without a
/// terminating proxy: Twilio connects only over wss on 443), and nothing in plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_server_speaks_only_tls() {
    use futures_util::StreamExt;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    use tokio_tungstenite::tungstenite::Message;

    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let test = spawn_app_with(|c| {
        c.tls_cert = Some(fixtures.join("cert.pem"));
        c.tls_key = Some(fixtures.join("key.pem"));
        // TLS looks like production: a development server says so.
        c.development = true;
    })
    .await;
    assert!(test.app.http_url().starts_with("https://"));
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixtures.join("ca.pem")).unwrap())
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));
    let addr = test
        .app
        .http_url()
        .trim_start_matches("https://")
        .to_owned();
    let get = |path: &'static str| {
        let (tls, addr) = (tls.clone(), addr.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
            let mut stream = tls.connect(name, tcp).await.expect("TLS handshake");
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response).await;
            response
        }
    };
    let health = get("/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // The feed over WSS: the upgrade answers 101 through TLS.
    let token = test.token("acme", "manager-1", Role::Manager);
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let stream = tls.connect(name, tcp).await.unwrap();
    let (mut feed, response) =
        tokio_tungstenite::client_async(format!("wss://{addr}/feed?access_token={token}"), stream)
            .await
            .expect("the feed upgrades over TLS");
    assert_eq!(response.status(), 101);
    assert!(matches!(feed.next().await, Some(Ok(Message::Text(_)))));
    // Plain HTTP gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        plain.read_to_end(&mut answer),
    )
    .await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP was served"
    );
}

/// Twilio signs the URL it was configured with: behind WINNERR_PUBLIC_URL, the `:443`-explicit
/// and the implicit form both verify (as Twilio's own validators accept), another scheme does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_voice_webhook_accepts_both_forms_of_the_default_port() {
    let test = spawn_app_with(|c| {
        c.public_url = Some("https://voice.example.test".into());
        c.development = true;
    })
    .await;
    let path = "/twilio/voice?org=acme&agent=agent-1";
    let (body, params) = form(&[("CallSid", &format!("CA{}", "b".repeat(32)))]);
    let client = reqwest::Client::new();
    for (signed_over, status) in [
        ("https://voice.example.test", 200),
        ("https://voice.example.test:443", 200),
        ("http://voice.example.test", 403),
        ("https://voice.example.test:8443", 403),
    ] {
        let url = format!("{signed_over}{path}");
        let signature =
            signature::sign(test.config.twilio_auth_token.expose_secret(), &url, &params);
        let response = client
            .post(format!("{}{path}", test.app.http_url()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "signed over {url}");
    }
}

/// A TCP connection from `source` (a loopback address of its own) to the server at `server`.
async fn connect_from(source: &str, server: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// What the server sends `socket` within `wait` before it closes: `None` while it stays open.
async fn answer(socket: &mut tokio::net::TcpStream, wait: std::time::Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    match tokio::time::timeout(wait, socket.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

/// What the server sends each of `sockets` within `wait` (all at once) before it closes.
async fn answers(
    sockets: &mut [tokio::net::TcpStream],
    wait: std::time::Duration,
) -> Vec<Option<String>> {
    futures_util::future::join_all(sockets.iter_mut().map(|socket| answer(socket, wait))).await
}

/// Idle and slow sockets cannot pile up: one source address holds at most its cap (the rest are
/// answered 503 and closed at once) while `/healthz` answers from another; a client idle or
/// dribbling its headers past the header timeout is dropped; and the total cap holds across
/// sources. Before, 1,000 idle sockets stayed open and, under a 256-descriptor limit, 371 of
/// them made `/healthz` fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_sockets_are_capped_and_timed_out() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let test = spawn_app_with(|c| {
        c.max_connections = 12;
        c.max_connections_per_address = 8;
        c.http_header_timeout = 1.0;
    })
    .await;
    let server = test.app.addr;
    let mut flood = Vec::new();
    for _ in 0..12 {
        flood.push(connect_from("127.0.0.2", server).await);
    }
    let told = answers(&mut flood, Duration::from_millis(300)).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for (socket, answer) in flood.into_iter().zip(told) {
        match answer {
            Some(text) => {
                assert!(text.starts_with("HTTP/1.1 503"), "{text:?}");
                assert!(text.contains("Retry-After"), "{text}");
                refused += 1;
            }
            None => held.push(socket),
        }
    }
    assert_eq!((held.len(), refused), (8, 4));
    let health = reqwest::get(format!("{}/healthz", test.app.http_url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "another address is still served");

    // A slow client dribbling a request's headers, and the idle ones, are dropped at the
    // header timeout (1 s here).
    let mut slow = connect_from("127.0.0.5", server).await;
    let dribble = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: yes" {
            if slow.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    for closed in answers(&mut held, Duration::from_secs(3)).await {
        assert!(
            closed.is_some(),
            "an idle socket is closed after the header timeout"
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(4), dribble)
            .await
            .unwrap()
            .unwrap(),
        "the dribbling client was cut off before it finished its headers"
    );

    // The total cap across addresses: 8 from one, then 4 of 8 from another.
    let mut total = Vec::new();
    for source in ["127.0.0.3", "127.0.0.4"] {
        for _ in 0..8 {
            total.push(connect_from(source, server).await);
        }
    }
    let mut answered = 0;
    for text in answers(&mut total, Duration::from_millis(300))
        .await
        .into_iter()
        .flatten()
    {
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        answered += 1;
    }
    // The health check's pooled connection holds one slot of the twelve.
    assert!((4..=5).contains(&answered), "{answered} refused");
    drop(total);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let page = test.metrics().await;
    assert!(
        metric(
            &page,
            r#"winnerr_gateway_connections_refused_total{cap="per_address"}"#
        ) >= 4.0
    );
    assert!(
        metric(
            &page,
            r#"winnerr_gateway_connections_refused_total{cap="total"}"#
        ) >= 4.0
    );
}

/// An organization whose consent policy is `disclose`: its callers hear the disclosure before the
/// stream starts (`<Say>` ahead of `<Start>` in the TwiML, which Twilio runs in order); another
/// organization's callers hear nothing and are streamed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_voice_webhook_discloses_recording_before_streaming_where_the_policy_says() {
    let test = spawn_app_with(|c| {
        c.consent = Some("acme=disclose;*=none".into());
        c.consent_say = Some("This call is recorded & transcribed.".into());
    })
    .await;
    let answer = |org: &'static str| {
        let test = &test;
        async move {
            let url = format!("{}/twilio/voice?org={org}", test.app.http_url());
            let call_sid = format!("CA{}", "c".repeat(32));
            twiml(
                test,
                &url,
                &[("CallSid", &call_sid), ("From", "+15551230000")],
            )
            .await
        }
    };
    let disclosed = answer("acme").await;
    let said = disclosed
        .find("<Say>This call is recorded &amp; transcribed.</Say>")
        .unwrap_or_else(|| panic!("the disclosure is said: {disclosed}"));
    let streamed = disclosed.find("<Start>").expect("the stream starts");
    assert!(
        said < streamed,
        "said before the stream starts: {disclosed}"
    );
    let plain = answer("globex").await;
    assert!(
        !plain.contains("<Say>") && plain.contains("<Start>"),
        "{plain}"
    );
    let page = test.metrics().await;
    assert!(metric(&page, "winnerr_ingest_consent_disclosed_total") >= 1.0);

    // The call's start says so on the feed (and in what the store writes); not for globex.
    for (org, expected) in [("acme", Some(ConsentRecord::Disclosed)), ("globex", None)] {
        let mut manager = test.feed(org, "manager-1", Role::Manager).await;
        let script = CallScript::new(identity(org, None, None), vec![0i16; 4_000]);
        test.simulator().play(&script, |_| {}).await.unwrap();
        let events = manager.call_events(&call_id(&script.call_sid)).await;
        let Event::CallStarted(started) = &events[0].event else {
            panic!("the call starts first: {events:?}")
        };
        assert_eq!(started.consent, expected, "{org}");
        // And the CRM's record of the call keeps it.
        let stored = test.completed_call(org, &script.call_sid).await;
        let expected = expected.map(|_| "disclosed");
        assert_eq!(stored["consent"].as_str(), expected, "{org}: {stored}");
    }
}

/// An organization whose consent policy is `opt_in`: the webhook asks (`<Gather>`) before any
/// stream; the key it asked for starts a stream that carries the signed opt-in, and the call is
/// transcribed and stored as opted in; another key connects the call with no stream; a stream
/// without the opt-in is refused (4010) and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_caller_who_opts_in_is_streamed_transcribed_and_stored() {
    let test = spawn_app_with(|c| {
        c.asr = true;
        c.consent = Some("acme=opt_in:5;*=none".into());
        c.consent_say = Some("This call is recorded.".into());
    })
    .await;
    let url = format!(
        "{}/twilio/voice?org=acme&agent=agent-1",
        test.app.http_url()
    );
    let call_sid = format!("CA{}", "d".repeat(32));
    let answer = |extra: &[(&'static str, &'static str)]| {
        let mut fields = vec![("CallSid", call_sid.as_str()), ("From", "+15551230000")];
        fields.extend_from_slice(extra);
        let (test, url) = (&test, &url);
        async move { twiml(test, url, &fields).await }
    };
    let asked = answer(&[]).await;
    assert!(
        asked.contains(r#"action="/twilio/voice?org=acme&amp;agent=agent-1">"#)
            && asked.contains("<Say>This call is recorded. To agree, press 5.</Say>"),
        "{asked}"
    );
    assert!(
        !asked.contains("<Stream"),
        "nothing streams before the key: {asked}"
    );
    let declined = answer(&[("Digits", "3")]).await;
    assert!(
        !declined.contains("<Stream") && declined.contains("<Dial>"),
        "{declined}"
    );
    let agreed = answer(&[("Digits", "5")]).await;
    assert!(agreed.contains("<Stream"), "{agreed}");
    // The stream carries exactly the parameters the TwiML gave it.
    let parameters = stream_parameters(&agreed);
    assert_eq!(parameters["consent"], "opted_in", "{agreed}");

    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), caller_speech());
    script.call_sid = call_sid.clone();
    script.parameters = parameters;
    test.simulator().play(&script, |_| {}).await.unwrap();
    let events = manager.call_events(&call_id(&call_sid)).await;
    let Event::CallStarted(started) = &events[0].event else {
        panic!("the call starts first: {events:?}")
    };
    assert_eq!(started.consent, Some(ConsentRecord::OptedIn));
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, Event::Transcript(t) if t.is_final)),
        "the call is transcribed after the opt-in: {events:?}"
    );
    let stored = test.completed_call("acme", &call_sid).await;
    assert_eq!(stored["consent"], "opted_in", "{stored}");

    // A stream of the organization without the opt-in (a TwiML from before the policy, or one
    // made up): refused, and nothing of it stored.
    let unasked = CallScript::new(identity("acme", Some("agent-1"), None), caller_speech());
    // Its start alone: the server closes at once, so frames sent after it could meet a reset.
    let simulator = test.simulator();
    let start = simulator.start_message(&unasked);
    let (code, _) = send_and_close(&simulator, vec![Message::Text(start.into())]).await;
    assert_eq!(code, 4010);
    let token = test.token("acme", "manager-1", Role::Manager);
    let (status, _) = test
        .api()
        .get(&token, &format!("/api/calls/{}", unasked.call_sid))
        .await;
    assert_eq!(status, 404);
    let page = test.metrics().await;
    for step in ["asked", "opted_in", "declined", "refused"] {
        assert!(
            metric(
                &page,
                &format!(r#"winnerr_ingest_consent_opt_in_total{{step="{step}"}}"#)
            ) >= 1.0,
            "{step}"
        );
    }
}

/// The `<Parameter>`s a TwiML answer gives its stream.
fn stream_parameters(xml: &str) -> BTreeMap<String, String> {
    xml.split("<Parameter name=\"")
        .skip(1)
        .map(|rest| {
            let (name, rest) = rest.split_once("\" value=\"").unwrap();
            (name.to_owned(), rest.split_once('"').unwrap().0.to_owned())
        })
        .collect()
}

/// Consent by the caller's state (issue 22, item 2): with `CA=opt_in;all_party=disclose` and an
/// organization that asks nothing, a California caller is asked first, a Washington caller hears
/// the disclosure and their stream carries it signed (the call is recorded as disclosed), a Texas
/// caller is streamed as before; a softphone's outbound call to a California number is asked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_state_asks_for_more_consent_than_the_organization() {
    let test = spawn_app_with(|c| {
        c.consent_states = Some("CA=opt_in;all_party=disclose".into());
        c.consent_say = Some("Recorded.".into());
    })
    .await;
    let url = format!(
        "{}/twilio/voice?org=acme&agent=agent-1",
        test.app.http_url()
    );
    let call_sid = format!("CA{}", "f".repeat(32));
    let answer = |from: &'static str, to: &'static str| {
        let fields = vec![("CallSid", call_sid.as_str()), ("From", from), ("To", to)];
        let (test, url) = (&test, &url);
        async move { twiml(test, url, &fields).await }
    };
    let california = answer("+14155550100", "+15550001111").await;
    assert!(
        california.contains("<Say>Recorded. To agree, press 1.</Say>")
            && !california.contains("<Stream"),
        "{california}"
    );
    let outbound = answer("client:agent-1", "+14155550100").await;
    assert!(
        outbound.contains("<Gather") && !outbound.contains("<Stream"),
        "{outbound}"
    );
    let texas = answer("+15125550100", "+15550001111").await;
    assert!(
        !texas.contains("<Say>") && texas.contains("<Stream"),
        "{texas}"
    );
    assert!(
        !stream_parameters(&texas).contains_key("consent"),
        "{texas}"
    );
    let washington = answer("+12065550100", "+15550001111").await;
    let said = washington.find("<Say>Recorded.</Say>");
    assert!(
        said.is_some() && said < washington.find("<Start>"),
        "{washington}"
    );
    let parameters = stream_parameters(&washington);
    assert_eq!(parameters["consent"], "disclosed", "{washington}");

    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), vec![0i16; 4_000]);
    script.call_sid = call_sid.clone();
    script.parameters = parameters;
    test.simulator().play(&script, |_| {}).await.unwrap();
    let events = manager.call_events(&call_id(&call_sid)).await;
    let Event::CallStarted(started) = &events[0].event else {
        panic!("the call starts first: {events:?}")
    };
    assert_eq!(started.consent, Some(ConsentRecord::Disclosed));
}
