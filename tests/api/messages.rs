//! Messages over the real server (issue 23): an SMS signed as Twilio signs its Messaging webhook
//! goes through the same path as a call's finals — sentiment, the lead's score, the store
//! (sealed), the feed — on both databases.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use winnerr_events::{Direction, Envelope, Event, MessageChannel, Role};
use winnerr_ingest::signature;
use winnerr_testkit::{TestDb, raw};

use crate::helpers::*;

/// Posts an SMS webhook of `fields` to `url`, signed with `token` (the app's own, or another);
/// returns the status and body.
pub(crate) async fn post_sms(
    url: &str,
    token: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let params: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let signed = signature::sign(token, url, &params);
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signed)
        .body(serde_urlencoded::to_string(&params).unwrap())
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// A stored message as read raw: id, sealed body, sentiment label, person.
type StoredRow = (String, Option<Vec<u8>>, Option<String>, Option<String>);

/// Twilio's form for an inbound SMS.
pub(crate) fn sms<'a>(sid: &'a str, from: &'a str, body: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("MessagingServiceSid", "MG00000000000000000000000000000000"),
        ("From", from),
        ("To", "+15550001111"),
        ("Body", body),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("ApiVersion", "2010-04-01"),
    ]
}

/// The next event on `feed` that is not presence, within `patience`.
async fn next_event_within(
    feed: &mut FeedClient,
    patience: Duration,
) -> Option<std::sync::Arc<Envelope>> {
    let deadline = Instant::now() + patience;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, feed.next_message()).await {
            Ok(Some(winnerr_events::FeedMessage::Event { event, .. })) => return Some(event),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// A lead of acme created by a manager with `person` (JSON), and a manager's feed following the
/// lead's channel.
async fn lead_followed(test: &TestApp, person: &str) -> (String, FeedClient) {
    let manager = test.token("acme", "manager-1", Role::Manager);
    let (status, created) = test
        .api()
        .call(
            Some(&manager),
            reqwest::Method::POST,
            "/api/people",
            Some(person),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let lead = created["id"].as_str().unwrap().to_owned();
    let mut feed = test
        .feed_unsubscribed("acme", "manager-1", Role::Manager)
        .await;
    feed.subscribe(&format!("lead:{lead}"), None).await;
    (lead, feed)
}

/// The messages `feed` gets until it is quiet for `quiet`.
async fn messages_within(feed: &mut FeedClient, quiet: Duration) -> Vec<std::sync::Arc<Envelope>> {
    let mut messages = Vec::new();
    while let Some(event) = next_event_within(feed, quiet).await {
        if matches!(event.event, Event::Message(_)) {
            messages.push(event);
        }
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_reaches_the_leads_feed_scored_and_sealed_once_on_postgres() {
    an_sms_reaches_the_leads_feed_scored_and_sealed_once(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_reaches_the_leads_feed_scored_and_sealed_once_on_sqlite() {
    an_sms_reaches_the_leads_feed_scored_and_sealed_once(TestDb::sqlite()).await;
}

/// Inbound SMS (issue 23, items 1 and 4): a signed SMS from a known number reaches the lead's
/// feed within 1 s with its sentiment (the real model) and its card number masked, moves the
/// lead's score, and is stored sealed; a redelivery of the same MessageSid changes nothing; a
/// bad signature is 403 and stores nothing; an unknown number becomes a new lead of source
/// `sms`; an agent who is not the lead's sees none of it.
async fn an_sms_reaches_the_leads_feed_scored_and_sealed_once(db: TestDb) {
    let test = spawn_app_with(|config| {
        on_db(config, &db);
        config.asr = true;
        config.scoring = true;
    })
    .await;
    let api = test.api();
    let manager = test.token("acme", "manager-1", Role::Manager);
    let (lead, mut lead_feed) = lead_followed(
        &test,
        r#"{"first_name":"Dana","phone":"(555) 010-0142","owner_user_id":"agent-1"}"#,
    )
    .await;
    let (mut other_agent, _) = test.org_feed("acme", "agent-2", Role::Agent).await;
    let mut everything = test.feed("acme", "manager-1", Role::Manager).await;

    let url = format!("{}/twilio/sms?org=acme", test.app.http_url());
    let token = test.config.twilio_auth_token.expose_secret().clone();
    let sid = format!("SM{}", "a".repeat(32));
    let body = "We lost the house and I am really upset about how this went. My card is 4111 1111 1111 1111.";
    let sent = Instant::now();
    let (status, answer) = post_sms(&url, &token, &sms(&sid, "+15550100142", body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer.contains("<Response>") && !answer.contains("<Message"),
        "{answer}"
    );

    let message = next_event_within(&mut lead_feed, Duration::from_secs(5))
        .await
        .expect("the message on the lead's feed");
    let took = sent.elapsed();
    let Event::Message(m) = &message.event else {
        panic!("expected the message, got {message:?}");
    };
    assert!(took < Duration::from_secs(1), "the message took {took:?}");
    assert_eq!(message.call_id.as_str(), sid);
    assert_eq!(
        message.agent_id.as_ref().map(|a| a.as_str()),
        Some("agent-1")
    );
    assert_eq!(
        (m.channel, m.direction),
        (MessageChannel::Sms, Direction::Inbound)
    );
    assert_eq!(m.lead_id.as_ref().map(|l| l.as_str()), Some(lead.as_str()));
    assert!(m.text.starts_with("We lost the house"), "{}", m.text);
    assert!(
        !m.text.contains("4111 1111"),
        "the card is masked: {}",
        m.text
    );
    assert_eq!(m.redactions.len(), 1, "{m:?}");
    let sentiment = m.sentiment.as_ref().expect("the message's sentiment");
    assert_eq!(sentiment.label, "negative", "{sentiment:?}");

    // The lead's score, moved by the message: its sentiment is the lead's only one.
    let score = next_event_within(&mut lead_feed, Duration::from_secs(5))
        .await
        .expect("the lead's score");
    let Event::LeadScore(score) = &score.event else {
        panic!("expected the lead's score, got {score:?}");
    };
    assert_eq!(score.cause, message.id);
    let mean = score
        .factors
        .iter()
        .find(|f| f.feature == "sentiment_mean")
        .expect("the sentiment feature");
    assert!((mean.value - sentiment.score).abs() < 1e-6, "{mean:?}");
    assert!(
        mean.contribution < 0.0,
        "a negative message lowers the score: {mean:?}"
    );

    // Twilio delivers it again; and a forger signs with another token.
    let (status, _) = post_sms(&url, &token, &sms(&sid, "+15550100142", body)).await;
    assert_eq!(status, StatusCode::OK);
    let forged = format!("SM{}", "b".repeat(32));
    let (status, _) = post_sms(&url, "not-the-token", &sms(&forged, "+15550100142", "hi")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An unknown number: a new lead.
    let stranger = format!("SM{}", "c".repeat(32));
    let (status, _) = post_sms(
        &url,
        &token,
        &sms(
            &stranger,
            "+15550100777",
            "Hi, is the house on Maple Street still for sale?",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let messages = messages_within(&mut everything, Duration::from_secs(3)).await;
    assert_eq!(
        messages.len(),
        2,
        "the redelivery and the forgery added none: {messages:?}"
    );
    let Event::Message(new) = &messages[1].event else {
        unreachable!()
    };
    let new_lead = new
        .lead_id
        .as_ref()
        .expect("a lead for the stranger")
        .as_str();
    assert_ne!(new_lead, lead);
    let (status, created) = api.get(&manager, &format!("/api/people/{new_lead}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (created["source"].as_str(), created["phone"].as_str()),
        (Some("sms"), Some("+15550100777")),
        "{created}"
    );

    // Stored once each, sealed.
    let mut owner = db.owner().await;
    let stored: Vec<StoredRow> = raw!(&mut owner, |conn| sqlx::query_as(
        "SELECT id, body_ciphertext, sentiment, person_id FROM messages ORDER BY received_ms"
    )
    .fetch_all(conn)
    .await
    .unwrap());
    let ids: Vec<&str> = stored.iter().map(|(id, ..)| id.as_str()).collect();
    assert_eq!(
        ids,
        [sid.as_str(), stranger.as_str()],
        "nothing of the forgery"
    );
    let (_, sealed, label, person_id) = &stored[0];
    let sealed = sealed.as_ref().expect("the body, sealed");
    assert!(
        !String::from_utf8_lossy(sealed).contains("upset"),
        "the body is not stored in the clear"
    );
    assert_eq!(label.as_deref(), Some("negative"));
    assert_eq!(person_id.as_deref(), Some(lead.as_str()));

    // The lead's timeline: the message, redacted, with its sentiment; for the lead's agent and
    // managers only.
    let timeline_path = format!("/api/people/{lead}/timeline");
    let (status, timeline) = api.get(&manager, &timeline_path).await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    let items = timeline["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{timeline}");
    assert_eq!(
        (
            items[0]["kind"].as_str(),
            items[0]["id"].as_str(),
            items[0]["sentiment"].as_str()
        ),
        (Some("message"), Some(sid.as_str()), Some("negative"))
    );
    assert_eq!(items[0]["text"].as_str(), Some(m.text.as_str()));
    let own_agent = test.token("acme", "agent-1", Role::Agent);
    let other = test.token("acme", "agent-2", Role::Agent);
    assert_eq!(api.get(&own_agent, &timeline_path).await.0, StatusCode::OK);
    assert_eq!(
        api.get(&other, &timeline_path).await.0,
        StatusCode::NOT_FOUND
    );

    // Agent-2 is neither lead's agent: nothing of them on their feed.
    let seen = messages_within(&mut other_agent, Duration::from_millis(300)).await;
    assert!(
        seen.is_empty(),
        "an agent sees only their own leads' messages: {seen:?}"
    );
    // Counted (the recorder is the process's: tests running beside this one count too).
    let page = test.metrics().await;
    for (outcome, at_least) in [("ok", 2.0), ("duplicate", 1.0), ("forbidden", 1.0)] {
        let series = format!("winnerr_ingest_sms_total{{outcome=\"{outcome}\"}}");
        assert!(metric(&page, &series) >= at_least, "{series}");
    }
    test.app.shutdown().await;
    db.remove().await;
}

/// Posts a Mailgun inbound-route webhook of `fields` (plus its signature under `key`) to `url`,
/// form-encoded as Mailgun posts a message without attachments; returns the status.
async fn post_email(url: &str, key: &str, fields: &[(&str, &str)]) -> StatusCode {
    let timestamp = (winnerr_events::now_ms() / 1000).to_string();
    let token = format!("{:050x}", winnerr_events::now_ms());
    let signature = winnerr_ingest::email::sign(key, &timestamp, &token);
    let mut params: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    params.extend([
        ("timestamp".to_owned(), timestamp),
        ("token".to_owned(), token),
        ("signature".to_owned(), signature),
    ]);
    reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&params).unwrap())
        .send()
        .await
        .unwrap()
        .status()
}

/// Inbound email (issue 23, item 3): a Mailgun webhook signed with the signing key reaches the
/// lead's feed with the sentiment of its new text only (the angry quoted history and the
/// signature are cut), from the person with that address; a redelivery of the same Message-Id
/// changes nothing; a bad signature is 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_is_analysed_on_its_new_text_only() {
    let key = "mailgun-signing-key-for-tests";
    let test = spawn_app_with(|config| {
        config.asr = true;
        config.mailgun_signing_key = Some(key.to_owned().into());
    })
    .await;
    let (lead, mut feed) = lead_followed(
        &test,
        r#"{"first_name":"Dana","email":"Dana.W@example.com","owner_user_id":"agent-1"}"#,
    )
    .await;

    let url = format!("{}/email/inbound?org=acme", test.app.http_url());
    let headers =
        r#"[["Message-Id", "<CAF1234@mail.example.com>"], ["Subject", "Re: the viewing"]]"#;
    let body = "Thank you so much, Saturday at ten works wonderfully for us. We love the house!\n\n\
                On Tue, Dec 1, 2026 at 9:00 AM Sam <sam@winnerr.example> wrote:\n\
                > This is terrible, I am furious and I want to cancel everything.\n\n";
    let fields = [
        ("sender", "dana.w@example.com"),
        ("from", "Dana W <dana.w@example.com>"),
        ("recipient", "leads@winnerr.example"),
        ("subject", "Re: the viewing"),
        ("body-plain", body),
        ("message-headers", headers),
    ];
    assert_eq!(post_email(&url, key, &fields).await, StatusCode::OK);
    let message = next_event_within(&mut feed, Duration::from_secs(5))
        .await
        .expect("the email on the lead's feed");
    let Event::Message(m) = &message.event else {
        panic!("expected the message, got {message:?}");
    };
    assert_eq!(m.channel, MessageChannel::Email);
    assert_eq!(m.lead_id.as_ref().map(|l| l.as_str()), Some(lead.as_str()));
    assert!(m.text.starts_with("Thank you so much"), "{}", m.text);
    assert!(
        !m.text.contains("furious") && !m.text.contains("wrote:"),
        "the quoted history is cut: {}",
        m.text
    );
    assert_eq!(
        m.sentiment.as_ref().map(|s| s.label.as_str()),
        Some("positive"),
        "the new text's sentiment, not the quote's"
    );
    assert!(message.call_id.as_str().starts_with("em"));

    // Delivered again (a new token, the same Message-Id): nothing new. Forged: 403.
    assert_eq!(post_email(&url, key, &fields).await, StatusCode::OK);
    assert_eq!(
        post_email(&url, "another-key", &fields).await,
        StatusCode::FORBIDDEN
    );
    let again = next_event_within(&mut feed, Duration::from_secs(1)).await;
    assert!(
        again
            .as_ref()
            .is_none_or(|e| !matches!(e.event, Event::Message(_))),
        "a redelivery is not a second message: {again:?}"
    );
    test.app.shutdown().await;
}

/// STOP and START (issue 23, item 2's opt-out keywords as Twilio handles them): a texted STOP, in
/// any case, puts the sender's number on the organization's do-not-call list (so the engine's own
/// dials to it are refused) and START takes it off; a message that merely contains "stop" does
/// not; the keyword message itself is recorded and reaches the feed like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_texted_stop_puts_the_number_on_the_do_not_call_list_and_start_takes_it_off() {
    let db = TestDb::sqlite();
    let test = spawn_app_with(|config| on_db(config, &db)).await;
    let api = test.api();
    let manager = test.token("acme", "manager-1", Role::Manager);
    let mut feed = test.feed("acme", "manager-1", Role::Manager).await;
    let url = format!("{}/twilio/sms?org=acme", test.app.http_url());
    let token = test.config.twilio_auth_token.expose_secret().clone();
    let listed = || async {
        let (status, list) = api.get(&manager, "/api/do-not-call").await;
        assert_eq!(status, StatusCode::OK);
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let last4 = e["last4"].as_str().unwrap_or_default();
                (
                    last4.to_owned(),
                    e["added_by"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let text = |n: u8, body: &'static str| {
        let (url, token) = (&url, &token);
        async move {
            let sid = format!("SM{}", char::from(b'a' + n).to_string().repeat(32));
            let (status, answer) = post_sms(url, token, &sms(&sid, "+15550100177", body)).await;
            assert_eq!(status, StatusCode::OK, "{body}: {answer}");
        }
    };

    text(0, "please stop calling me at work").await;
    assert!(listed().await.is_empty(), "not a keyword");
    text(1, " Stop ").await;
    assert_eq!(
        listed().await,
        [("0177".to_owned(), "sms-keyword".to_owned())]
    );
    // The keyword is a message too: on the organization's feed.
    let mut messages = 0;
    while messages < 2 {
        if let Event::Message(m) = &feed.next_event().await.event {
            assert_eq!(m.channel, MessageChannel::Sms);
            messages += 1;
        }
    }
    // The engine's own dial to the number is refused while it is listed.
    let voice = format!("{}/twilio/voice?org=acme", test.app.http_url());
    let dial = [
        ("CallSid", format!("CA{}", "e".repeat(32))),
        ("From", "client:agent-1".to_owned()),
        ("To", "+15550100177".to_owned()),
    ];
    let fields: Vec<(&str, &str)> = dial.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let xml = crate::http::twiml(&test, &voice, &fields).await;
    assert!(
        xml.contains("do-not-call list") && !xml.contains("<Dial"),
        "{xml}"
    );

    text(2, "START").await;
    assert!(listed().await.is_empty(), "START takes it off");
    // A redelivery of the START changes nothing more.
    text(2, "START").await;
    assert!(listed().await.is_empty());
}
