//! Inbound SMS throughput: signed Messaging webhooks posted to the running engine (embedded
//! defaults, SQLite file store) by 64 concurrent clients, each message recorded once, its sender
//! found (half of them known people, half new leads), analysed (redaction, the watch list and,
//! in the first case, sentiment by the real model) and delivered to a manager's feed. Figures:
//! messages a second from the first post to the last message on the feed, and the delay from each
//! webhook's arrival to the feed (p50, p99). The same run without the sentiment model is the
//! baseline in the same process (the path's cost without the model); the same without the model
//! on Postgres (the production store, several connections) is the third case.
//!
//! Target (issue 23): at least 2,000 inbound SMS a second to the feed on the development machine.
//! `cargo bench -p winnerr-benches --bench sms`; `cargo test` runs a small version.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use winnerr::{App, Config};
use winnerr_benches::{is_bench_run, machine, manager_feed, percentile, runtime};
use winnerr_events::{Event, FeedMessage};
use winnerr_testkit::{TestDatabase, TestSqlite};

const ORG: &str = "bench-org";
/// Webhooks in flight at once.
const CLIENTS: usize = 64;
/// People of the organization with a number; the other half of the messages come from numbers
/// nobody has (a new lead each).
const KNOWN: usize = 200;

/// Messages per case (`SMS_MESSAGES` overrides).
fn messages() -> usize {
    let default = if is_bench_run() { 6_000 } else { 60 };
    std::env::var("SMS_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

const BODIES: [&str; 4] = [
    "We lost the house we wanted, are there others in the area?",
    "Thanks so much, the showing was great and we would love to make an offer.",
    "Can we move the viewing to Saturday at 10? We are pre-approved.",
    "This is the third time nobody called back. I want to cancel.",
];

fn number(index: usize) -> String {
    format!("+1555{index:07}")
}

struct Figures {
    /// Webhooks answered a second, and messages delivered to the feed a second.
    answered_per_second: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    with_sentiment: usize,
}

/// Where the engine stores: the embedded SQLite file, or a Postgres database.
enum Db {
    Sqlite(TestSqlite),
    Postgres(TestDatabase),
}

async fn run(sentiment: bool, db: Db) -> Figures {
    let mut config = Config::local("127.0.0.1:0".parse().unwrap());
    match &db {
        Db::Sqlite(file) => config.database_url = Some(file.url.clone()),
        Db::Postgres(postgres) => {
            config.database_url = Some(postgres.service_url.clone());
            config.database_migration_url = Some(postgres.owner_url.clone());
        }
    }
    config.asr = sentiment;
    config.scoring = false;
    let app = App::start(&config).await.expect("the engine starts");
    let token = config.twilio_auth_token.clone();
    let http = reqwest::Client::new();
    let manager = app.gateway.auth().issue(
        &winnerr_events::UserId::parse("manager-1").unwrap(),
        &winnerr_events::OrgId::parse(ORG).unwrap(),
        winnerr_events::Role::Manager,
        Duration::from_secs(3600),
    );
    for index in 0..KNOWN {
        let person = format!(
            r#"{{"first_name":"Lead {index}","phone":"{}"}}"#,
            number(index)
        );
        let response = http
            .post(format!("{}/api/people", app.http_url()))
            .bearer_auth(&manager)
            .header("Content-Type", "application/json")
            .body(person)
            .send()
            .await
            .expect("a person is created");
        assert!(response.status().is_success());
    }
    let mut feed = manager_feed(&app, ORG).await;
    // Until `subscribed`.
    while let Some(Ok(frame)) = feed.next().await {
        if let Message::Text(text) = frame
            && text.contains("\"subscribed\"")
        {
            break;
        }
    }
    let total = messages();
    let url = format!("{}/twilio/sms?org={ORG}", app.http_url());
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(CLIENTS));
    let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut posts = tokio::task::JoinSet::new();
    for index in 0..total {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (http, url) = (http.clone(), url.clone());
        let token = secrecy::ExposeSecret::expose_secret(&token).clone();
        let answered = answered.clone();
        posts.spawn(async move {
            let from = if index % 2 == 0 {
                number(index / 2 % KNOWN)
            } else {
                number(KNOWN + index)
            };
            let params: Vec<(String, String)> = [
                ("MessageSid", format!("SM{index:032x}")),
                ("AccountSid", format!("AC{:032}", 0)),
                ("From", from),
                ("To", "+15550001111".to_owned()),
                ("Body", BODIES[index % BODIES.len()].to_owned()),
                ("NumMedia", "0".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let signed = winnerr_ingest::signature::sign(&token, &url, &params);
            let response = http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("X-Twilio-Signature", signed)
                .body(serde_urlencoded::to_string(&params).unwrap())
                .send()
                .await
                .expect("the webhook answers");
            assert_eq!(response.status(), 200);
            answered.lock().unwrap().push(Instant::now());
            drop(permit);
        });
    }
    let mut delays = Vec::with_capacity(total);
    let mut with_sentiment = 0;
    while delays.len() < total {
        let frame = tokio::time::timeout(Duration::from_secs(60), feed.next())
            .await
            .expect("messages keep coming")
            .expect("the feed stays open")
            .expect("a frame");
        let Message::Text(text) = frame else { continue };
        let Ok(FeedMessage::Event { event, .. }) = serde_json::from_str::<FeedMessage>(&text)
        else {
            continue;
        };
        if let Event::Message(message) = &event.event {
            let now = winnerr_events::now_ms();
            delays.push(now.saturating_sub(message.received_at_ms) as f64);
            with_sentiment += usize::from(message.sentiment.is_some());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    while posts.join_next().await.is_some() {}
    delays.sort_by(f64::total_cmp);
    let last = answered.lock().unwrap().iter().max().copied().unwrap();
    app.shutdown().await;
    match db {
        Db::Sqlite(file) => file.remove(),
        Db::Postgres(postgres) => postgres.drop_database().await,
    }
    Figures {
        answered_per_second: total as f64 / (last - started).as_secs_f64(),
        per_second: total as f64 / elapsed,
        p50_ms: percentile(&delays, 0.5),
        p99_ms: percentile(&delays, 0.99),
        with_sentiment,
    }
}

fn main() {
    let runtime = runtime();
    println!(
        "sms: {} inbound messages, {CLIENTS} at once, on {}",
        messages(),
        machine()
    );
    let models = winnerr_models::ModelDir::from_env().minilm().exists();
    let baseline = runtime.block_on(run(false, Db::Sqlite(TestSqlite::new())));
    println!(
        "  without sentiment (baseline): {:.0} webhooks answered/s, {:.0} messages/s to the feed, delay p50 {:.0} ms p99 {:.0} ms",
        baseline.answered_per_second, baseline.per_second, baseline.p50_ms, baseline.p99_ms
    );
    assert_eq!(baseline.with_sentiment, 0);
    if !models {
        println!("  with sentiment: skipped (no models; `make models`)");
        return;
    }
    match runtime.block_on(TestDatabase::try_create()) {
        Ok(postgres) => {
            let on_postgres = runtime.block_on(run(false, Db::Postgres(postgres)));
            println!(
                "  on Postgres, without sentiment: {:.0} webhooks answered/s, {:.0} messages/s to the feed ({:.2}x the baseline), delay p50 {:.0} ms p99 {:.0} ms",
                on_postgres.answered_per_second,
                on_postgres.per_second,
                on_postgres.per_second / baseline.per_second,
                on_postgres.p50_ms,
                on_postgres.p99_ms
            );
        }
        Err(err) => println!("  on Postgres: skipped ({err})"),
    }
    let full = runtime.block_on(run(true, Db::Sqlite(TestSqlite::new())));
    assert!(full.with_sentiment > 0, "the model scored none");
    println!(
        "  with sentiment: {:.0} webhooks answered/s, {:.0} messages/s to the feed ({:.2}x the baseline), delay p50 {:.0} ms p99 {:.0} ms; \
         {} of {} scored, the rest published without (the model could not keep up)",
        full.answered_per_second,
        full.per_second,
        full.per_second / baseline.per_second,
        full.p50_ms,
        full.p99_ms,
        full.with_sentiment,
        messages()
    );
}
