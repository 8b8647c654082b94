//! Fan-out: thousands of feed clients in many organization rooms, each following its
//! organization's `org` channel, against Socket.IO rooms (npm `socket.io`, in `benches/socketio/`)
//! on the same fan-out in the same run. Both servers get the same clients (Rust, one task each,
//! in this process), the same messages (a final transcript's envelope, ~600 bytes) and the same
//! schedule; each message carries the time it was published, and clients record the delay.
//!
//! The gateway runs on a Tokio runtime of its own (two worker threads), as Socket.IO runs in a
//! process of its own; the clients share the machine's two cores with either.
//!
//! Phases per server: steady (every room gets each of `STEADY_RATES` messages a second for
//! `STEADY_S` seconds: delivery delay p50/p99, nothing lost) and a burst (`BURST` messages to every
//! room at once: delivered messages per second until the last client has the last one). Memory per
//! connection: Socket.IO's from its process; the gateway's from this process's growth while its
//! clients connect, less the growth the same clients cause when they connect to Socket.IO.
//!
//! `make bench` (or `cargo bench -p winnerr-benches --bench fanout`, after
//! `cd benches/socketio && npm ci`); `cargo test` runs a small version.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use winnerr::{App, Config};
use winnerr_benches::{is_bench_run, machine, runtime};
use winnerr_events::fixtures::TestCall;
use winnerr_events::{Envelope, Event, OrgId, Role, SentimentScore, Track, Transcript, UserId};

/// Sizes of a run: (organizations, clients per organization, steady seconds, burst per room).
/// The gateway's run holds both ends of each connection in this process: 9,600 clients fit the
/// 20,000 open files a process may have on the development machine.
fn sizes() -> (usize, usize, u64, usize) {
    if is_bench_run() {
        (96, 100, 10, 50)
    } else {
        (4, 10, 2, 5)
    }
}
/// Messages a second per room in the steady phases: light, and near Socket.IO's capacity.
const STEADY_RATES: [f64; 2] = [2.0, 8.0];
const CONNECTING_AT_ONCE: usize = 200;
/// Delays are counted in buckets of 100 µs, up to 10 s.
const BUCKETS: usize = 100_000;
const BUCKET_US: u64 = 100;

/// What the clients saw.
struct Seen {
    delivered: AtomicU64,
    recording: AtomicBool,
    /// Delays in buckets of [`BUCKET_US`] (the last bucket holds anything longer).
    delays: Vec<AtomicU64>,
}

impl Seen {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            delivered: AtomicU64::new(0),
            recording: AtomicBool::new(false),
            delays: (0..=BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Records one message, from the `sent_us=` its publisher wrote into it.
    fn record(&self, text: &str) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        let Some(at) = text.find(SENT_MARK) else {
            return;
        };
        let digits: String = text[at + SENT_MARK.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if let Ok(sent) = digits.parse::<u64>() {
            let bucket = (now_us().saturating_sub(sent) / BUCKET_US) as usize;
            self.delays[bucket.min(BUCKETS)].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn reset(&self, recording: bool) {
        self.delivered.store(0, Ordering::SeqCst);
        for bucket in &self.delays {
            bucket.store(0, Ordering::Relaxed);
        }
        self.recording.store(recording, Ordering::SeqCst);
    }

    /// The delay (ms) below which fraction `q` of the recorded messages arrived.
    fn percentile(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self
            .delays
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen as f64 >= q * total as f64 {
                return ((bucket as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        (BUCKETS as u64 * BUCKET_US) as f64 / 1000.0
    }
}

/// A steady phase's figures.
struct Steady {
    rate: f64,
    expected: u64,
    delivered: u64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Steady {
    /// Waits for the phase's messages (up to 10 s) and reads what the clients recorded.
    async fn measure(seen: &Seen, rate: f64, expected: u64) -> Self {
        wait_for(seen, expected, Duration::from_secs(10)).await;
        Self {
            rate,
            expected,
            delivered: seen.delivered.load(Ordering::SeqCst),
            p50_ms: seen.percentile(0.5),
            p99_ms: seen.percentile(0.99),
        }
    }
}

/// Figures of one server.
struct Figures {
    clients: usize,
    connect_s: f64,
    steady: Vec<Steady>,
    burst_delivered: u64,
    burst_expected: u64,
    burst_per_s: f64,
    server_kib_per_connection: f64,
    client_growth_kib: f64,
}

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Lets this process (and the Socket.IO server it starts) hold as many sockets as it may: the
/// gateway's run holds both ends of every connection. Returns the limit.
fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or fill the struct they are given; a failure leaves
    // the limit as it was.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Where a message says when it was published (µs since the epoch): in its text, the same for
/// both servers, since the envelope's own `ts_ms` has only milliseconds.
const SENT_MARK: &str = "sent_us=";

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

const TEXT: &str = "We're pre-approved and our lease ends next month, so we would like to see the \
                    house on Maple Street this weekend if the owners are flexible on the price.";

fn message(org: &OrgId, n: u64) -> Envelope {
    let ctx = TestCall::new(org.as_str(), &format!("CA{n:032x}"))
        .agent("agent-1")
        .ctx;
    let text = format!("[{SENT_MARK}{}] {TEXT}", now_us());
    Envelope::new(
        &ctx,
        Event::Transcript(Transcript {
            track: Track::Inbound,
            utterance: 3,
            is_final: true,
            stable_text: text.clone(),
            text,
            start_ms: 41_200,
            end_ms: 47_900,
            last_voiced_at_ms: winnerr_events::now_ms(),
            sentiment: Some(SentimentScore {
                label: "positive".into(),
                probabilities: [0.01, 0.2, 0.79],
                score: 0.78,
                rolling: 0.61,
            }),
            redactions: Vec::new(),
        }),
    )
}

/// A connected client's reading task.
struct Client(tokio::task::JoinHandle<()>);

/// Connects `count` clients with `connect`, a few hundred at a time.
async fn connect_all<F, Fut>(count: usize, connect: F) -> Vec<Client>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Client>,
{
    futures_util::stream::iter(0..count)
        .map(connect)
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect()
        .await
}

async fn wait_for(seen: &Seen, expected: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    while seen.delivered.load(Ordering::SeqCst) < expected && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

async fn gateway(
    server: tokio::runtime::Handle,
    orgs: &[OrgId],
    per_org: usize,
    steady_s: u64,
    burst: usize,
) -> Figures {
    let mut config = Config::local("127.0.0.1:0".parse().unwrap());
    config.asr = false;
    config.scoring = false;
    config.bus_capacity = 1 << 16;
    // No store: these figures are the engine without it, as recorded before the embedded default
    // (and a run leaves no database file behind).
    config.database_url = Some(winnerr::config::NO_DATABASE.into());

    // The engine runs on threads of its own, as Socket.IO runs in a process of its own.
    let app = server
        .spawn(async move { App::start(&config).await.expect("the engine starts") })
        .await
        .unwrap();
    let clients = orgs.len() * per_org;
    let seen = Seen::new();
    let before = rss_kib(std::process::id());
    let started = Instant::now();
    let tasks = connect_all(clients, |i| {
        let org = orgs[i % orgs.len()].clone();
        let token = app.gateway.auth().issue(
            &UserId::parse(format!("user-{i}")).unwrap(),
            &org,
            Role::Manager,
            Duration::from_secs(3600),
        );
        let url = format!("{}?access_token={token}", app.feed_url());
        let seen = seen.clone();
        async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("feed connects");
            let subscribe = r#"{"type":"subscribe","channel":"org"}"#;
            socket.send(Message::Text(subscribe.into())).await.unwrap();
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message
                    && text.starts_with(r#"{"type":"subscribed""#)
                {
                    break;
                }
            }
            Client(tokio::spawn(async move {
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message
                        && text.starts_with(r#"{"type":"event""#)
                    {
                        seen.record(&text);
                    }
                }
            }))
        }
    })
    .await;
    let connect_s = started.elapsed().as_secs_f64();
    // Presence of 10,000 arrivals is still flowing; let it settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let growth = rss_kib(std::process::id()) - before;

    let mut steady = Vec::new();
    for rate in STEADY_RATES {
        seen.reset(true);
        let per_ms = rate * orgs.len() as f64 / 1000.0;
        let start = Instant::now();
        let mut sent = 0usize;
        while start.elapsed() < Duration::from_secs(steady_s) {
            let due = (start.elapsed().as_millis() as f64 * per_ms) as usize;
            while sent < due {
                let org = &orgs[sent % orgs.len()];
                app.bus.publish(message(org, sent as u64)).await.unwrap();
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        steady.push(Steady::measure(&seen, rate, (sent * per_org) as u64).await);
    }

    // Burst.
    seen.reset(false);
    let burst_expected = (orgs.len() * burst * per_org) as u64;
    let start = Instant::now();
    for n in 0..burst {
        for org in orgs {
            app.bus.publish(message(org, n as u64)).await.unwrap();
        }
    }
    wait_for(&seen, burst_expected, Duration::from_secs(60)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let burst_delivered = seen.delivered.load(Ordering::SeqCst);

    for Client(task) in tasks {
        task.abort();
    }
    server.spawn(app.shutdown()).await.unwrap();
    Figures {
        clients,
        connect_s,
        steady,
        burst_delivered,
        burst_expected,
        burst_per_s: burst_delivered as f64 / elapsed,
        server_kib_per_connection: 0.0,
        client_growth_kib: growth,
    }
}

async fn socket_io(orgs: &[OrgId], per_org: usize, steady_s: u64, burst: usize) -> Figures {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("socketio");
    assert!(
        dir.join("node_modules/socket.io").exists(),
        "Socket.IO is not installed: cd benches/socketio && npm ci"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new("node")
        .arg("server.mjs")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let pid = server.id().unwrap();
    let mut stdin = server.stdin.take().unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    assert_eq!(
        lines.next_line().await.unwrap().as_deref(),
        Some("listening")
    );
    let clients = orgs.len() * per_org;
    let seen = Seen::new();
    let (server_before, before) = (rss_kib(pid), rss_kib(std::process::id()));
    let started = Instant::now();
    let tasks = connect_all(clients, |i| {
        let url = format!(
            "ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&org={}",
            orgs[i % orgs.len()]
        );
        let seen = seen.clone();
        async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("Socket.IO connects");
            // Engine.IO open, then connect to the default namespace.
            socket.next().await.unwrap().unwrap();
            socket.send(Message::Text("40".into())).await.unwrap();
            socket.next().await.unwrap().unwrap();
            Client(tokio::spawn(async move {
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message {
                        if text.as_str() == "2" {
                            let _ = socket.send(Message::Text("3".into())).await;
                        } else if text.starts_with("42") {
                            seen.record(&text);
                        }
                    }
                }
            }))
        }
    })
    .await;
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server_growth = rss_kib(pid) - server_before;
    let growth = rss_kib(std::process::id()) - before;

    let rooms: Vec<&str> = orgs.iter().map(|o| o.as_str()).collect();
    let template = serde_json::to_value(message(&orgs[0], 0)).unwrap();
    let command = |value: serde_json::Value| value.to_string() + "\n";
    let mut steady = Vec::new();
    for rate in STEADY_RATES {
        seen.reset(true);
        let line = command(serde_json::json!({
            "cmd": "steady", "rooms": rooms, "per_room_per_s": rate,
            "seconds": steady_s, "template": template,
        }));
        stdin.write_all(line.as_bytes()).await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("done"));
        let expected = ((rate * orgs.len() as f64 * steady_s as f64) as usize * per_org) as u64;
        steady.push(Steady::measure(&seen, rate, expected).await);
    }

    seen.reset(false);
    let burst_expected = (orgs.len() * burst * per_org) as u64;
    let line = command(serde_json::json!({
        "cmd": "burst", "rooms": rooms, "count": burst, "template": template,
    }));
    let start = Instant::now();
    stdin.write_all(line.as_bytes()).await.unwrap();
    wait_for(&seen, burst_expected, Duration::from_secs(60)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let burst_delivered = seen.delivered.load(Ordering::SeqCst);

    for Client(task) in tasks {
        task.abort();
    }
    let _ = server.kill().await;
    Figures {
        clients,
        connect_s,
        steady,
        burst_delivered,
        burst_expected,
        burst_per_s: burst_delivered as f64 / elapsed,
        server_kib_per_connection: server_growth / clients as f64,
        client_growth_kib: growth,
    }
}

fn main() {
    let open_files = raise_open_files();
    let (org_count, per_org, steady_s, burst) = sizes();
    assert!(
        (2 * org_count * per_org + 200) as u64 <= open_files,
        "{open_files} open files are too few for {} clients",
        org_count * per_org
    );
    let orgs: Vec<OrgId> = (0..org_count)
        .map(|k| OrgId::parse(format!("org-{k}")).unwrap())
        .collect();
    let (rt, server) = (runtime(), runtime());
    let mut ours = rt.block_on(gateway(
        server.handle().clone(),
        &orgs,
        per_org,
        steady_s,
        burst,
    ));
    let theirs = rt.block_on(socket_io(&orgs, per_org, steady_s, burst));
    // The gateway's share of this process's growth: what the same clients grew it by on their own.
    ours.server_kib_per_connection =
        (ours.client_growth_kib - theirs.client_growth_kib).max(0.0) / ours.clients as f64;

    println!("fan-out on {}", machine());
    println!(
        "{org_count} organization rooms x {per_org} clients; steady phases of {steady_s} s; burst {burst} per room"
    );
    let servers = [
        ("winnerr gateway", &ours),
        ("Socket.IO 4.8.4 (node)", &theirs),
    ];
    println!("| server | clients | connect s | burst delivered | burst msgs/s | server KiB/conn |");
    println!("|---|---|---|---|---|---|");
    for (name, f) in servers {
        println!(
            "| {name} | {} | {:.1} | {}/{} | {:.0} | {:.1} |",
            f.clients,
            f.connect_s,
            f.burst_delivered,
            f.burst_expected,
            f.burst_per_s,
            f.server_kib_per_connection
        );
    }
    println!("| server | msgs/s per room | deliveries/s | delivered | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for (i, rate) in STEADY_RATES.iter().enumerate() {
        for (name, f) in servers {
            let phase = &f.steady[i];
            println!(
                "| {name} | {rate} | {:.0} | {}/{} | {:.1} | {:.1} |",
                phase.rate * f.clients as f64,
                phase.delivered,
                phase.expected,
                phase.p50_ms,
                phase.p99_ms
            );
        }
    }
    print!(
        "ratio (gateway / Socket.IO): burst messages/s {:.2}x",
        ours.burst_per_s / theirs.burst_per_s
    );
    for (i, rate) in STEADY_RATES.iter().enumerate() {
        print!(
            "; p99 at {rate}/s per room {:.1} ms vs {:.1} ms",
            ours.steady[i].p99_ms, theirs.steady[i].p99_ms
        );
    }
    println!();
}
