//! Starting the engine and talking to it like its users do.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use winnerr::{App, Config};
use winnerr_events::{
    CallId, ClientMessage, Envelope, Event, FeedMessage, LeadId, Member, OrgId, Position,
    PresenceChange, Role, UserId,
};
use winnerr_ingest::simulator::{Socket, decode_wav_8k};
use winnerr_ingest::{CallScript, PlayReport, Simulator, StreamIdentity};

pub const WAIT: Duration = Duration::from_secs(15);

pub struct TestApp {
    pub app: App,
    pub config: Config,
}

/// Logs of the engine under test, when `RUST_LOG` asks for them.
fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The engine on its embedded defaults, changed by `configure`. Speech recognition and lead
/// scoring are off unless `configure` turns them on (`voice.rs`, `scoring.rs` do): other tests
/// count a call's events exactly.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let mut config = Config::local("127.0.0.1:0".parse().unwrap());
    config.asr = false;
    config.scoring = false;
    // The embedded store, in memory: each test app its own, gone when it stops.
    config.database_url = Some("sqlite::memory:".into());
    configure(&mut config);
    let app = App::start(&config).await.expect("app starts");
    TestApp { app, config }
}

impl TestApp {
    pub fn api(&self) -> Api {
        Api {
            base: self.app.http_url(),
            client: reqwest::Client::new(),
        }
    }

    pub fn simulator(&self) -> Simulator {
        Simulator::new(
            self.app.stream_url(),
            self.config.twilio_auth_token.expose_secret().clone(),
        )
    }

    pub fn token(&self, org: &str, user: &str, role: Role) -> String {
        self.app.gateway.auth().issue(
            &UserId::parse(user).unwrap(),
            &OrgId::parse(org).unwrap(),
            role,
            Duration::from_secs(600),
        )
    }

    /// A feed client of `user` following the `calls` channel (every event of every call they
    /// may see), after its `hello`.
    pub async fn feed(&self, org: &str, user: &str, role: Role) -> FeedClient {
        let mut client = self.feed_unsubscribed(org, user, role).await;
        client.subscribe("calls", None).await;
        client
    }

    /// A feed client of `user` following the `org` channel, and who was online when it began.
    pub async fn org_feed(&self, org: &str, user: &str, role: Role) -> (FeedClient, Vec<Member>) {
        let mut client = self.feed_unsubscribed(org, user, role).await;
        client.subscribe("org", None).await;
        match client.next_message().await {
            Some(FeedMessage::PresenceState { members }) => (client, members),
            other => panic!("expected the presence list, got {other:?}"),
        }
    }

    /// A feed client of `user` after its `hello`, following nothing yet.
    pub async fn feed_unsubscribed(&self, org: &str, user: &str, role: Role) -> FeedClient {
        let mut client =
            FeedClient::connect(&self.app.feed_url(), &self.token(org, user, role)).await;
        match client.next_message().await {
            Some(FeedMessage::Hello {
                org_id,
                user_id,
                role: r,
                ..
            }) => {
                assert_eq!((org_id.as_str(), user_id.as_str(), r), (org, user, role));
            }
            other => panic!("expected hello, got {other:?}"),
        }
        client
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.app.http_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Plays `script` into this engine on a task of its own; the handle gives its report.
    pub fn play_in_background(&self, script: &CallScript) -> tokio::task::JoinHandle<PlayReport> {
        let simulator = self.simulator();
        let script = script.clone();
        tokio::spawn(async move { simulator.play(&script, |_| {}).await.unwrap() })
    }

    /// Waits until at least `count` streams are live.
    /// `call_sid`'s record in the CRM (`GET /api/calls/{id}` as a manager of `org`) once the
    /// store has its end.
    pub async fn completed_call(&self, org: &str, call_sid: &str) -> Value {
        let token = self.token(org, "manager-1", Role::Manager);
        let path = format!("/api/calls/{call_sid}");
        tokio::time::timeout(WAIT, async {
            loop {
                match self.api().get(&token, &path).await {
                    (status, call) if status == 200 && call["status"] == "completed" => {
                        return call;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await
        .expect("the call is stored")
    }

    pub async fn until_live(&self, count: usize) {
        tokio::time::timeout(WAIT, async {
            while self.app.ingest.live_streams() < count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("streams went live");
    }
}

/// The value of one Prometheus series in a `/metrics` page (0 when absent).
pub fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

pub struct FeedClient {
    socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    closed: Option<u16>,
    /// How long the next message may take.
    patience: Duration,
}

impl FeedClient {
    /// Connects to `url` with a bearer token (the `hello` is still to be read).
    pub async fn connect(url: &str, token: &str) -> FeedClient {
        let mut request = url.into_client_request().unwrap();
        let bearer = format!("Bearer {token}");
        request
            .headers_mut()
            .insert("Authorization", HeaderValue::from_str(&bearer).unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("feed connects");
        FeedClient {
            socket,
            closed: None,
            patience: WAIT,
        }
    }

    /// Waits up to `patience` for each message: for a test that hands the engine many seconds
    /// of speech at once, whose finals come as fast as the model (on a loaded machine) gets
    /// through it rather than at the pace of a call.
    pub fn with_patience(mut self, patience: Duration) -> FeedClient {
        self.patience = patience;
        self
    }

    /// The close code the server sent, once the feed has ended.
    pub fn close_code(&self) -> Option<u16> {
        self.closed
    }

    pub async fn next_message(&mut self) -> Option<FeedMessage> {
        let next = tokio::time::timeout(self.patience, async {
            loop {
                match self.socket.next().await? {
                    Ok(Message::Text(text)) => {
                        return Some(
                            serde_json::from_str::<FeedMessage>(text.as_str()).expect("feed JSON"),
                        );
                    }
                    Ok(Message::Close(frame)) => {
                        self.closed = Some(frame.map_or(1005, |f| u16::from(f.code)));
                        return None;
                    }
                    Err(_) => return None,
                    Ok(_) => {}
                }
            }
        });
        next.await.expect("feed message in time")
    }

    /// Sends a text frame as it is; false once the connection is gone.
    pub async fn try_send_text(&mut self, text: &str) -> bool {
        self.socket.send(Message::Text(text.into())).await.is_ok()
    }

    /// Reads until the server ends the feed; its close code.
    pub async fn until_closed(&mut self) -> Option<u16> {
        while self.next_message().await.is_some() {}
        self.closed
    }

    /// Sends a text frame as it is.
    pub async fn socket_send_text(&mut self, text: &str) {
        self.socket.send(Message::Text(text.into())).await.unwrap();
    }

    /// Closes the connection from the client's side.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Sends a protocol message.
    pub async fn send(&mut self, message: &ClientMessage) {
        let text = serde_json::to_string(message).unwrap();
        self.socket.send(Message::Text(text.into())).await.unwrap();
    }

    /// Subscribes to `channel` and returns the `subscribed` answer, with the events replayed
    /// before it (those after `since`).
    pub async fn subscribe(
        &mut self,
        channel: &str,
        since: Option<Position>,
    ) -> (FeedMessage, Vec<(u64, Arc<Envelope>)>) {
        self.send(&ClientMessage::Subscribe {
            channel: channel.into(),
            since,
        })
        .await;
        let mut replayed = Vec::new();
        loop {
            match self.next_message().await {
                Some(subscribed @ FeedMessage::Subscribed { .. }) => return (subscribed, replayed),
                Some(FeedMessage::Event { offset, event, .. }) => replayed.push((offset, event)),
                other => panic!("expected subscribed, got {other:?}"),
            }
        }
    }

    /// The next presence change on the feed.
    pub async fn next_presence(&mut self) -> (PresenceChange, Member) {
        match self.next_message().await {
            Some(FeedMessage::Presence { change, member }) => (change, member),
            other => panic!("expected presence, got {other:?}"),
        }
    }

    /// The next event on the feed.
    pub async fn next_event(&mut self) -> Arc<Envelope> {
        match self.next_message().await {
            Some(FeedMessage::Event { event, .. }) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Events of `call` up to and including its `call_ended`; fails on any other call's event.
    pub async fn call_events(&mut self, call: &CallId) -> Vec<Arc<Envelope>> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            assert_eq!(&event.call_id, call, "event of another call: {event:?}");
            let ended = matches!(event.event, Event::CallEnded(_));
            events.push(event);
            if ended {
                return events;
            }
        }
    }
}

pub fn identity(org: &str, agent: Option<&str>, lead: Option<&str>) -> StreamIdentity {
    StreamIdentity {
        org_id: OrgId::parse(org).unwrap(),
        agent_id: agent.map(|a| UserId::parse(a).unwrap()),
        lead_id: lead.map(|l| LeadId::parse(l).unwrap()),
    }
}

/// Real read speech at 8 kHz: "go forward ten meters" (2.8 s).
pub fn caller_speech() -> Vec<i16> {
    let wav = include_bytes!("../../assets/audio/ps_goforward.wav");
    decode_wav_8k(std::io::Cursor::new(&wav[..]), "ps_goforward.wav").unwrap()
}

/// Real read speech at 8 kHz: "eight of spades four of clubs seven of hearts" (3.5 s).
pub fn agent_speech() -> Vec<i16> {
    let wav = include_bytes!("../../assets/audio/ps_cards_005.wav");
    decode_wav_8k(std::io::Cursor::new(&wav[..]), "ps_cards_005.wav").unwrap()
}

pub fn call_id(sid: &str) -> CallId {
    CallId::parse(sid).unwrap()
}

/// Reads a raw socket until the server closes it; returns the close code and reason.
pub async fn close_of(socket: &mut Socket) -> (u16, String) {
    let closed = tokio::time::timeout(WAIT, async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(Some(frame))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Ok(Message::Close(None)) => return (1005, String::new()),
                Ok(_) => {}
                Err(err) => panic!("socket failed before a close frame: {err}"),
            }
        }
        panic!("socket ended without a close frame")
    });
    closed.await.expect("close in time")
}

pub use winnerr_testkit::Broker;

/// The engine with its bus on `broker`.
pub async fn spawn_app_on(broker: &Broker) -> TestApp {
    spawn_app_with(|config| on_kafka(config, broker)).await
}

/// Puts the bus on `broker`.
pub fn on_kafka(config: &mut Config, broker: &Broker) {
    config.kafka_brokers = Some(broker.brokers());
    config.kafka_partitions = 3;
}

/// Stores calls in `db`, migrating it at start.
pub fn on_postgres(config: &mut Config, db: &winnerr_testkit::TestDatabase) {
    config.database_url = Some(db.service_url.clone());
    config.database_migration_url = Some(db.owner_url.clone());
}

/// Stores calls in `db` (migrating Postgres at start).
pub fn on_db(config: &mut Config, db: &winnerr_testkit::TestDb) {
    match db {
        winnerr_testkit::TestDb::Postgres(db) => on_postgres(config, db),
        winnerr_testkit::TestDb::Sqlite(file) => config.database_url = Some(file.url.clone()),
    }
}

/// Every call event on the events topic, read from the start by a consumer of nobody's group,
/// until `call`'s `call_ended`: (partition, key, event).
pub async fn topic_events(broker: &Broker, call: &CallId) -> Vec<(i32, String, Envelope)> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{ClientConfig, Message};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", format!("test-reader-{}", uuid::Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&["winnerr.call-events.v1"]).unwrap();
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let message = consumer.recv().await.expect("topic readable");
            let event: Envelope = serde_json::from_slice(message.payload().unwrap()).unwrap();
            if &event.call_id != call {
                continue;
            }
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            let ended = matches!(event.event, Event::CallEnded(_));
            events.push((message.partition(), key, event));
            if ended {
                return;
            }
        }
    })
    .await
    .expect("the call's events are on the topic");
    events
}

/// The REST API of a test app, over HTTP.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub async fn call(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Some(token), reqwest::Method::GET, path, None)
            .await
    }
}

/// Opens a stream and sends `messages`; returns how the server closed it.
pub async fn send_and_close(simulator: &Simulator, messages: Vec<Message>) -> (u16, String) {
    let mut socket = simulator.connect().await.unwrap();
    for message in messages {
        // The server may close before everything is sent; the close frame is what counts.
        if socket.send(message).await.is_err() {
            break;
        }
    }
    close_of(&mut socket).await
}
