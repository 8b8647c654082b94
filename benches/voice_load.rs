//! Load generator: N concurrent real-time two-track calls (`simulate`'s Twilio client) against one
//! engine with Whisper tiny.en, as N grows. For each final transcript on a manager's feed: the
//! delay from the utterance's last voiced frame (which includes the end-of-utterance silence the
//! endpointer waits for, 600 ms) and from the endpoint itself (that silence subtracted: the time
//! the engine takes once it knows the utterance is over); p50/p95/p99, interims dropped, CPU use.
//!
//! `cargo bench -p winnerr-benches --bench voice_load` (models from `make models`). Under
//! `cargo test` it plays one short call.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use winnerr::{App, Config};
use winnerr_benches::{is_bench_run, machine, manager_feed, percentile, runtime};
use winnerr_events::{Event, FeedMessage, OrgId, UserId, now_ms};
use winnerr_ingest::simulator::decode_wav_8k;
use winnerr_ingest::{CallScript, Pace, Simulator, StreamIdentity};

const ORG: &str = "load-org";
const END_OF_UTTERANCE_MS: u64 = 600;

fn clip(name: &str) -> Vec<i16> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/audio")
        .join(name);
    decode_wav_8k(std::fs::File::open(&path).unwrap(), name).unwrap()
}

/// A call of about 12 s: the caller says two things, then the agent answers (three utterances).
fn conversation(index: usize) -> CallScript {
    let silence = |s: f32| vec![0i16; (s * 8000.0) as usize];
    let (a, b, c) = (
        clip("ps_goforward.wav"),
        clip("ps_forever_input_2.wav"),
        clip("ps_cards_005.wav"),
    );
    let mut inbound = a.clone();
    inbound.extend(silence(1.0));
    inbound.extend(&b);
    inbound.extend(silence(1.0 + c.len() as f32 / 8000.0 + 1.0));
    let mut outbound = silence((a.len() + b.len()) as f32 / 8000.0 + 2.0);
    outbound.extend(&c);
    outbound.resize(inbound.len(), 0);
    let identity = StreamIdentity {
        org_id: OrgId::parse(ORG).unwrap(),
        agent_id: Some(UserId::parse(format!("agent-{index}")).unwrap()),
        lead_id: None,
    };
    let mut script = CallScript::new(identity, inbound);
    script.outbound = Some(outbound);
    script.pace = Pace::RealTime;
    script
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

async fn dropped_interims(app: &App) -> f64 {
    let page = reqwest::get(format!("{}/metrics", app.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .filter(|l| l.starts_with("winnerr_voice_asr_dropped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Round {
    from_voice: Vec<f64>,
    from_endpoint: Vec<f64>,
    finals: usize,
    interims: usize,
    dropped: f64,
    cores: f64,
}

async fn round(app: &App, calls: usize) -> Round {
    let mut feed = manager_feed(app, ORG).await;
    let dropped_before = dropped_interims(app).await;
    let (cpu_before, started) = (cpu_seconds(), Instant::now());
    let simulator = Simulator::new(app.stream_url(), winnerr::config::DEV_TWILIO_AUTH_TOKEN);
    let mut plays = Vec::new();
    for i in 0..calls {
        let simulator = simulator.clone();
        plays.push(tokio::spawn(async move {
            // Staggered starts, as calls arrive in life.
            tokio::time::sleep(Duration::from_millis((i as u64 * 1_700) % 4_000)).await;
            simulator.play(&conversation(i), |_| {}).await.unwrap();
        }));
    }
    let (mut from_voice, mut from_endpoint, mut finals, mut interims, mut ended) =
        (Vec::new(), Vec::new(), 0, 0, 0);
    while ended < calls {
        let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_secs(60), feed.next()).await
        else {
            panic!("feed stalled");
        };
        let FeedMessage::Event { event, .. } = serde_json::from_str(&text).unwrap() else {
            continue;
        };
        match &event.event {
            Event::Transcript(t) if t.is_final => {
                let delay = now_ms().saturating_sub(t.last_voiced_at_ms) as f64;
                from_voice.push(delay);
                from_endpoint.push((delay - END_OF_UTTERANCE_MS as f64).max(0.0));
                finals += 1;
            }
            Event::Transcript(_) => interims += 1,
            Event::CallEnded(_) => ended += 1,
            _ => {}
        }
    }
    for play in plays {
        play.await.unwrap();
    }
    let cores = (cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64();
    from_voice.sort_by(f64::total_cmp);
    from_endpoint.sort_by(f64::total_cmp);
    Round {
        from_voice,
        from_endpoint,
        finals,
        interims,
        dropped: dropped_interims(app).await - dropped_before,
        cores,
    }
}

fn main() {
    let full = is_bench_run();
    let rt = runtime();
    rt.block_on(async {
        let mut config = Config::local("127.0.0.1:0".parse().unwrap());
        config.asr = true;
        // No store: these figures are the engine without it, as recorded before the embedded default
        // (and a run leaves no database file behind).
        config.database_url = Some(winnerr::config::NO_DATABASE.into());
        let app = App::start(&config).await.expect("engine starts (models from `make models`)");
        println!("voice_load: {}; Whisper tiny.en, one speech worker; 12 s calls, 3 utterances each", machine());
        println!("| calls | finals | p50 / p95 / p99 from last voiced frame (ms) | p50 / p95 / p99 after the 600 ms endpoint (ms) | interims sent / dropped | CPU cores used |");
        println!("|---|---|---|---|---|---|");
        let ns: &[usize] = if full { &[1, 2, 4, 6, 8, 10, 12] } else { &[1] };
        let mut capacity = 0;
        for &n in ns {
            let r = round(&app, n).await;
            let p = |v: &[f64], q| if v.is_empty() { f64::NAN } else { percentile(v, q) };
            println!(
                "| {n} | {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {} / {:.0} | {:.2} |",
                r.finals,
                p(&r.from_voice, 0.5), p(&r.from_voice, 0.95), p(&r.from_voice, 0.99),
                p(&r.from_endpoint, 0.5), p(&r.from_endpoint, 0.95), p(&r.from_endpoint, 0.99),
                r.interims, r.dropped, r.cores
            );
            if p(&r.from_endpoint, 0.95) < 1000.0 {
                capacity = n;
            }
        }
        println!("largest N with p95 (after the endpoint) under 1 s: {capacity}");
        app.shutdown().await;
    });
}
