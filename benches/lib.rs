//! Helpers shared by the benchmarks: realistic inputs and a small timing loop that prints
//! throughput. Benchmarks run with `cargo bench -p winnerr-benches`; under `cargo test` they run a
//! few iterations only, to prove they still work.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Whether the binary was started by `cargo bench` (which passes `--bench`), not `cargo test`.
pub fn is_bench_run() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// Throughput of one measured case.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub items_per_second: f64,
}

/// Runs `f` over `inputs` repeatedly for about `duration` (at least once through), in `rounds`
/// rounds, and returns the best round's items per second.
pub fn measure<T>(
    inputs: &[T],
    duration: Duration,
    rounds: usize,
    mut f: impl FnMut(&T),
) -> Throughput {
    let mut best: f64 = 0.0;
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let mut items = 0u64;
        loop {
            for input in inputs {
                f(black_box(input));
            }
            items += inputs.len() as u64;
            if started.elapsed() >= duration / rounds.max(1) as u32 {
                break;
            }
        }
        best = best.max(items as f64 / started.elapsed().as_secs_f64());
    }
    Throughput {
        items_per_second: best,
    }
}

/// A short description of the machine, for the record.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores available")
}

/// The multi-threaded runtime the async benchmarks run on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime starts")
}

/// The value at quantile `q` (0..=1) of samples sorted ascending.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// A feed WebSocket of the engine.
pub type FeedSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A manager of `org` following every call of it on `app`'s feed.
pub async fn manager_feed(app: &winnerr::App, org: &str) -> FeedSocket {
    use futures_util::SinkExt;
    let token = app.gateway.auth().issue(
        &winnerr_events::UserId::parse("manager-1").unwrap(),
        &winnerr_events::OrgId::parse(org).unwrap(),
        winnerr_events::Role::Manager,
        Duration::from_secs(3600),
    );
    let (mut feed, _) =
        tokio_tungstenite::connect_async(format!("{}?access_token={token}", app.feed_url()))
            .await
            .expect("the feed connects");
    let subscribe = r#"{"type":"subscribe","channel":"calls"}"#;
    feed.send(tokio_tungstenite::tungstenite::Message::Text(
        subscribe.into(),
    ))
    .await
    .expect("subscribe is sent");
    feed
}
