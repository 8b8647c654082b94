//! Load generator: N concurrent real-time calls (`simulate`'s Twilio client) against one engine
//! with Whisper tiny.en, as N grows, in two profiles: light (12 s two-track calls, three
//! utterances) and continuous talk (the caller speaks clips back to back with 1.5 s gaps, about
//! 70% of the time). For each final transcript on a manager's feed: the delay from the
//! utterance's last voiced frame (which includes the end-of-utterance silence the endpointer
//! waits for, 600 ms) and from the endpoint itself (that silence subtracted: the time the engine
//! takes once it knows the utterance is over); p50/p95/p99, interims delivered per second of
//! speech, interims shed, calls refused by admission control, CPU use. Continuous talk is run
//! with the speech-worker layouts side by side (workers × threads each), then with the default
//! settings (admission control on), then a fairness round: one organization's 12 calls beside
//! another's one, whose finals are compared with the same call alone.
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

/// How the callers talk.
#[derive(Clone, Copy, PartialEq)]
enum Profile {
    /// 12 s, the caller says two things, then the agent answers (three utterances).
    Light,
    /// About 25 s of the caller talking, clips back to back with 1.5 s gaps (~70% of the time).
    Continuous,
}

/// A call of `org` in `profile`; its seconds of speech.
fn call(profile: Profile, org: &str, index: usize) -> (CallScript, f64) {
    match profile {
        Profile::Light => {
            let mut script = conversation(index);
            script.identity.org_id = OrgId::parse(org).unwrap();
            let speech = [
                "ps_goforward.wav",
                "ps_forever_input_2.wav",
                "ps_cards_005.wav",
            ]
            .iter()
            .map(|c| clip(c).len() as f64 / 8000.0)
            .sum();
            (script, speech)
        }
        Profile::Continuous => continuous_talk(org, index),
    }
}

/// The caller talking about 70% of the time: the development clips back to back (rotated per
/// call, so calls do not speak in lockstep), 1.5 s between them, for about 25 s.
fn continuous_talk(org: &str, index: usize) -> (CallScript, f64) {
    let clips = [
        "ps_goforward.wav",
        "ps_forever_input_2.wav",
        "ps_cards_005.wav",
        "ps_cards_001.wav",
        "ps_cards_002.wav",
        "ps_cards_003.wav",
        "ps_cards_004.wav",
    ];
    let gap = vec![0i16; 12_000];
    let (mut inbound, mut speech) = (Vec::new(), 0.0);
    for n in 0.. {
        if inbound.len() >= 25 * 8000 {
            break;
        }
        let words = clip(clips[(index + n) % clips.len()]);
        speech += words.len() as f64 / 8000.0;
        inbound.extend(words);
        inbound.extend(&gap);
    }
    let identity = StreamIdentity {
        org_id: OrgId::parse(org).unwrap(),
        agent_id: Some(UserId::parse(format!("agent-{index}")).unwrap()),
        lead_id: None,
    };
    let mut script = CallScript::new(identity, inbound);
    script.pace = Pace::RealTime;
    (script, speech)
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
    /// Seconds of speech in the calls admitted.
    speech_s: f64,
    dropped: f64,
    refused: usize,
    cores: f64,
}

impl Round {
    fn p(&self, q: f64) -> f64 {
        if self.from_endpoint.is_empty() {
            f64::NAN
        } else {
            percentile(&self.from_endpoint, q)
        }
    }

    fn row(&self, label: &str) -> String {
        let p = |v: &[f64], q| {
            if v.is_empty() {
                f64::NAN
            } else {
                percentile(v, q)
            }
        };
        format!(
            "| {label} | {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.2} / {:.0} | {} | {:.2} |",
            self.finals,
            p(&self.from_voice, 0.5),
            p(&self.from_voice, 0.95),
            p(&self.from_voice, 0.99),
            self.p(0.5),
            self.p(0.95),
            self.p(0.99),
            self.interims as f64 / self.speech_s.max(1e-9),
            self.dropped,
            self.refused,
            self.cores
        )
    }
}

const HEADER: &str = "| calls | finals | p50 / p95 / p99 from last voiced frame (ms) | p50 / p95 / p99 after the 600 ms endpoint (ms) | interims per s of speech / shed | refused | CPU cores used |\n|---|---|---|---|---|---|---|";

/// Plays `calls` (organization, count) in `profile` at once; the finals of organization
/// `measured` (all, when `None`).
async fn round(
    app: &App,
    profile: Profile,
    calls: &[(&str, usize)],
    measured: Option<&str>,
) -> Round {
    let mut feeds = Vec::new();
    for (org, _) in calls {
        feeds.push(manager_feed(app, org).await);
    }
    let dropped_before = dropped_interims(app).await;
    let (cpu_before, started) = (cpu_seconds(), Instant::now());
    let simulator = Simulator::new(app.stream_url(), winnerr::config::DEV_TWILIO_AUTH_TOKEN);
    let mut plays = Vec::new();
    let mut index = 0;
    for (org, count) in calls {
        for _ in 0..*count {
            let simulator = simulator.clone();
            let (script, speech) = call(profile, org, index);
            let delay = Duration::from_millis((index as u64 * 1_700) % 4_000);
            index += 1;
            plays.push(tokio::spawn(async move {
                // Staggered starts, as calls arrive in life.
                tokio::time::sleep(delay).await;
                let played = simulator.play(&script, |_| {}).await;
                let refused = played
                    .as_ref()
                    .is_ok_and(|r| matches!(r.close, Some((4007 | 4009, _))));
                (played.is_ok() && !refused).then_some(speech)
            }));
        }
    }
    let (mut from_voice, mut from_endpoint, mut finals, mut interims) =
        (Vec::new(), Vec::new(), 0, 0);
    // The plays' outcome (seconds of speech admitted, calls refused), once all are done.
    let total = index;
    let mut outcome = tokio::spawn(async move {
        let (mut speech_s, mut refused) = (0.0, 0);
        for play in plays {
            match play.await.unwrap() {
                Some(speech) => speech_s += speech,
                None => refused += 1,
            }
        }
        (speech_s, refused)
    });
    let (mut speech_s, mut refused, mut done) = (0.0, 0, false);
    let mut ended = 0;
    let mut feeds = futures_util::stream::select_all(feeds);
    while !done || ended < total - refused {
        let next = tokio::select! {
            played = &mut outcome, if !done => {
                (speech_s, refused) = played.unwrap();
                done = true;
                continue;
            }
            next = tokio::time::timeout(Duration::from_secs(60), feeds.next()) => next,
        };
        let text = match next {
            Ok(Some(Ok(Message::Text(text)))) => text,
            // Heartbeat pings (answered by the client library) and the like.
            Ok(Some(Ok(_))) => continue,
            other => panic!("feed stalled or closed: {other:?}"),
        };
        let FeedMessage::Event { event, .. } = serde_json::from_str(&text).unwrap() else {
            continue;
        };
        let counted = measured.is_none_or(|org| event.org_id.as_str() == org);
        match &event.event {
            Event::Transcript(t) if t.is_final && counted => {
                let delay = now_ms().saturating_sub(t.last_voiced_at_ms) as f64;
                from_voice.push(delay);
                from_endpoint.push((delay - END_OF_UTTERANCE_MS as f64).max(0.0));
                finals += 1;
            }
            Event::Transcript(t) if !t.is_final && counted => interims += 1,
            Event::CallEnded(_) => ended += 1,
            _ => {}
        }
    }
    let cores = (cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64();
    from_voice.sort_by(f64::total_cmp);
    from_endpoint.sort_by(f64::total_cmp);
    Round {
        from_voice,
        from_endpoint,
        finals,
        interims,
        speech_s,
        dropped: dropped_interims(app).await - dropped_before,
        refused,
        cores,
    }
}

/// The engine with `workers` × `threads` speech workers (the defaults where `None`) and, for
/// the layout comparison, no admission limit.
async fn engine(layout: Option<(usize, usize)>) -> App {
    let mut config = Config::local("127.0.0.1:0".parse().unwrap());
    config.asr = true;
    // No store: these figures are the engine without it, as recorded before the embedded default
    // (and a run leaves no database file behind).
    config.database_url = Some(winnerr::config::NO_DATABASE.into());
    if let Some((workers, threads)) = layout {
        config.asr_workers = Some(workers);
        config.asr_threads = Some(threads);
        config.max_calls = Some(1_000);
    }
    App::start(&config)
        .await
        .expect("engine starts (models from `make models`)")
}

fn main() {
    // As `winnerr serve` does, before any thread exists: Candle splits its kernels for the
    // default layout's threads (each worker's one). A run may set RAYON_NUM_THREADS itself to
    // compare layouts, as RESULTS records.
    let defaults = Config::local("127.0.0.1:0".parse().unwrap());
    winnerr::startup::match_kernel_threads(&defaults.asr_layout());
    let full = is_bench_run();
    let rt = runtime();
    rt.block_on(async {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        println!("voice_load: {}; Whisper tiny.en", machine());
        if !full {
            let app = engine(None).await;
            let r = round(&app, Profile::Continuous, &[(ORG, 1)], None).await;
            println!("{HEADER}\n{}", r.row("1 (smoke run under `cargo test`)"));
            app.shutdown().await;
            return;
        }
        // `VOICE_LOAD_LAYOUTS=2x1,1x2` (workers x threads) picks the layouts.
        let layouts: Vec<(usize, usize)> = match std::env::var("VOICE_LOAD_LAYOUTS") {
            Ok(list) => list
                .split(',')
                .filter_map(|l| l.split_once('x'))
                .filter_map(|(w, t)| Some((w.parse().ok()?, t.parse().ok()?)))
                .collect(),
            Err(_) if cores > 1 => vec![(1, cores), (cores, 1)],
            Err(_) => vec![(1, 1)],
        };
        for (workers, threads) in layouts {
            let app = engine(Some((workers, threads))).await;
            let rayon = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into());
            println!("\ncontinuous talk, {workers} speech worker(s) × {threads} thread(s), no call limit (RAYON_NUM_THREADS {rayon})\n{HEADER}");
            for n in [4, 8, 12, 16] {
                let r = round(&app, Profile::Continuous, &[(ORG, n)], None).await;
                println!("{}", r.row(&n.to_string()));
            }
            app.shutdown().await;
        }
        if std::env::var_os("VOICE_LOAD_ONLY_LAYOUTS").is_some() {
            return;
        }
        let app = engine(None).await;
        let layout = defaults.asr_layout();
        println!(
            "\ndefault settings ({} worker(s) × {} thread(s), WINNERR_MAX_CALLS {})",
            layout.workers,
            layout.threads,
            defaults.call_limits().max_calls
        );
        println!("light profile\n{HEADER}");
        for n in [1, 4, 8, 12] {
            let r = round(&app, Profile::Light, &[(ORG, n)], None).await;
            println!("{}", r.row(&n.to_string()));
        }
        println!("continuous talk\n{HEADER}");
        for n in [8, 12, 16] {
            let r = round(&app, Profile::Continuous, &[(ORG, n)], None).await;
            println!("{}", r.row(&n.to_string()));
        }
        // Fairness: organization B's one call alone, then beside organization A's 12.
        let solo = round(&app, Profile::Continuous, &[("org-b", 1)], Some("org-b")).await;
        let beside = round(&app, Profile::Continuous, &[("org-a", 12), ("org-b", 1)], Some("org-b")).await;
        println!("\nfairness (continuous talk, default settings): organization B's finals\n{HEADER}");
        println!("{}", solo.row("B alone"));
        println!("{}", beside.row("B beside A's 12"));
        println!(
            "B's p95 beside A / alone: {:.2}x (target ≤ 1.5x)",
            beside.p(0.95) / solo.p(0.95)
        );
        app.shutdown().await;
    });
}
