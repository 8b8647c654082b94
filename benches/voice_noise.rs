//! Real audio (issue 17): the development clips back to back (1.5 s gaps) as the caller's track of
//! real-time Twilio calls, over continuous noise synthesized here — pink noise (a car, a kitchen)
//! and a babble of six other voices (an office) — at stated SNRs, through the real server and a
//! manager's feed; the energy detector, the neural one (Silero VAD), Silero without speculative
//! finals (each final decoded once its utterance has ended: the baseline for them) and Silero with
//! the turn model (Smart Turn asked at each pause) side by side in the same run, one engine each.
//! Per condition and detector: utterances that got their own final (a final
//! that spans one clip only), the word error rate over the call, and the delay from the end of
//! each clip's speech as sent on the wire to its final on the feed, p50/p95. Then 60 s of noise
//! only, of hold music and of DTMF tones: transcripts produced (should be none).
//!
//! SNR is speech power over noise power, both measured over the clips' voiced frames (the clean
//! track) and the whole noise track. The wire time of a clip's end is the call's first frame's
//! send time plus the clip's offset (the simulator paces frames at 20 ms).
//!
//! Hesitations: each clip with 400–700 ms of silence put into its quietest 20 ms in the middle
//! third (between two words, as a speaker stops to think): clips split into two or more finals.
//!
//! `cargo bench -p winnerr-benches --bench voice_noise` (models from `make models`). Under
//! `cargo test` it plays one clean call and one noisy call per detector. `WINNERR_BENCH_ENGINES`
//! (names, comma-separated) and `WINNERR_BENCH_CONDITIONS` (condition names as printed, e.g.
//! `clean,pink 15 dB,hesitations,no speech`) run a part of it.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use winnerr::evaluate;
use winnerr::{App, Config};
use winnerr_benches::{is_bench_run, machine, manager_feed, percentile, runtime};
use winnerr_events::{Event, FeedMessage, OrgId, Track, UserId, now_ms};
use winnerr_ingest::simulator::load_wav_8k;
use winnerr_ingest::{CallScript, Pace, Simulator, StreamIdentity};
use winnerr_models::text::word_errors;
use winnerr_testkit::noise;

const ORG: &str = "noise-org";
const RATE: usize = 8_000;
const GAP_S: f32 = 1.5;

/// The caller's clean track and where each clip's speech lies in it.
struct Track8k {
    samples: Vec<i16>,
    /// Per clip: where its speech starts and ends (samples), and its reference.
    clips: Vec<(usize, usize, String)>,
}

fn caller_track() -> anyhow::Result<Track8k> {
    let manifest = evaluate::read_manifest(&evaluate::speech_manifest())?;
    let mut samples = vec![0i16; RATE];
    let mut clips = Vec::new();
    for clip in manifest {
        let audio = load_wav_8k(&clip.path)?;
        let span = noise::speech_span(&audio);
        let at = samples.len();
        clips.push((at + span.start, at + span.end, clip.reference));
        samples.extend(&audio);
        samples.extend(vec![0i16; (GAP_S * RATE as f32) as usize]);
    }
    Ok(Track8k { samples, clips })
}

/// A babble of six voices: the number test set's utterances (other words, another voice),
/// each stream its own sequence of them, back to back, summed.
fn babble(n: usize) -> anyhow::Result<Vec<f64>> {
    let clips = evaluate::read_number_manifest(&evaluate::numbers_manifest())?;
    let voices: Vec<Vec<i16>> = clips
        .iter()
        .map(|c| load_wav_8k(&c.clip.path))
        .collect::<Result<_, _>>()?;
    let mut out = vec![0.0f64; n];
    for stream in 0..6 {
        let mut at = 0;
        let mut k = stream * 17;
        while at < n {
            for &s in &voices[k % voices.len()] {
                if at >= n {
                    break;
                }
                out[at] += f64::from(s);
                at += 1;
            }
            k += 7;
        }
    }
    Ok(out)
}

/// Hold music: chords of three sines changing every 2 s.
fn hold_music(n: usize) -> Vec<i16> {
    let chords = [
        [261.6, 329.6, 392.0],
        [220.0, 261.6, 329.6],
        [174.6, 220.0, 261.6],
        [196.0, 246.9, 293.7],
    ];
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            let chord = chords[(t / 2.0) as usize % chords.len()];
            let v: f64 = chord
                .iter()
                .map(|f| (2.0 * std::f64::consts::PI * f * t).sin())
                .sum();
            (v / 3.0 * 6000.0) as i16
        })
        .collect()
}

/// DTMF tones: a digit every 300 ms (100 ms tone, 200 ms gap), all twelve keys in turn.
fn dtmf(n: usize) -> Vec<i16> {
    let low = [697.0, 770.0, 852.0, 941.0];
    let high = [1209.0, 1336.0, 1477.0];
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            let slot = (t / 0.3) as usize;
            if t - slot as f64 * 0.3 > 0.1 {
                return 0;
            }
            let (l, h) = (low[slot % 4], high[(slot / 4) % 3]);
            let v = (2.0 * std::f64::consts::PI * l * t).sin()
                + (2.0 * std::f64::consts::PI * h * t).sin();
            (v * 8000.0) as i16
        })
        .collect()
}

/// The caller's track with `noise` at `snr_db` (speech power over the clips' voiced stretches).
fn mix(track: &Track8k, noise_track: &[f64], snr_db: f64) -> Vec<i16> {
    let voiced: Vec<std::ops::Range<usize>> = track.clips.iter().map(|c| c.0..c.1).collect();
    noise::mix(&track.samples, &voiced, noise_track, snr_db)
}

/// What the neural detector costs: one track's audio through it, chunk by chunk, on this thread.
fn vad_cost(samples: &[i16]) -> anyhow::Result<()> {
    let dir = winnerr_models::ModelDir::from_env();
    let model = winnerr_models::SileroVad::load(&dir.silero_vad(), &winnerr_models::Device::Cpu)?;
    let rate = winnerr_models::VadRate::Phone8k;
    let audio: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let mut state = winnerr_models::VadState::new(rate);
    let started = std::time::Instant::now();
    let mut chunks = 0;
    for chunk in audio.chunks_exact(rate.chunk()) {
        model.probability(&mut state, chunk)?;
        chunks += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let audio_s = (chunks * rate.chunk()) as f64 / RATE as f64;
    println!(
        "Silero VAD at 8 kHz: {:.0} µs per 32 ms chunk, {:.2}% of one core per track ({chunks} chunks)",
        seconds / chunks as f64 * 1e6,
        100.0 * seconds / audio_s
    );
    Ok(())
}

/// Each clip with a pause of 400–700 ms (by clip) put into its quietest frame in the middle third
/// of its speech; the spans move with it.
fn hesitating(track: &Track8k) -> Track8k {
    let mut samples = Vec::new();
    let mut clips = Vec::new();
    let mut copied = 0;
    for (i, (start, end, reference)) in track.clips.iter().enumerate() {
        let third = (end - start) / 3;
        let frames = (start + third..end - third).step_by(160);
        let quietest = frames
            .min_by_key(|&f| {
                track.samples[f..f + 160]
                    .iter()
                    .map(|&s| i64::from(s).pow(2))
                    .sum::<i64>()
            })
            .unwrap_or(start + third);
        let pause = (400 + (i * 300 / track.clips.len().max(1))) * RATE / 1000;
        samples.extend(&track.samples[copied..quietest]);
        samples.extend(vec![0i16; pause]);
        let at = samples.len() - quietest - pause;
        let shifted = |x: usize| x + at + if x >= quietest { pause } else { 0 };
        clips.push((shifted(*start), shifted(*end), reference.clone()));
        copied = quietest;
    }
    samples.extend(&track.samples[copied..]);
    Track8k { samples, clips }
}

fn turn_cost() -> anyhow::Result<()> {
    let dir = winnerr_models::ModelDir::from_env();
    let model = winnerr_models::SmartTurn::load(
        &dir.smart_turn(),
        &dir.mel_filters(),
        &winnerr_models::Device::Cpu,
    )?;
    let audio: Vec<f32> = (0..16_000 * 8)
        .map(|i| ((i as f32) * 0.01).sin() * 0.1)
        .collect();
    // One thread, as the engine's turn detector runs it.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut took = pool.install(|| -> anyhow::Result<Vec<f64>> {
        model.probability(&audio)?; // warm
        (0..20)
            .map(|_| {
                let started = std::time::Instant::now();
                model.probability(&audio)?;
                Ok(started.elapsed().as_secs_f64() * 1e3)
            })
            .collect()
    })?;
    took.sort_by(f64::total_cmp);
    println!(
        "Smart Turn: {:.1} ms p50, {:.1} ms p95 per decision on one thread (20 decisions, 8 s window)",
        percentile(&took, 0.5),
        percentile(&took, 0.95)
    );
    Ok(())
}

/// One condition's outcome for one detector.
#[derive(Default)]
struct Outcome {
    utterances: usize,
    own_finals: usize,
    /// Clips that two or more finals overlap.
    split: usize,
    finals: usize,
    errors: usize,
    words: usize,
    delays: Vec<f64>,
}

/// Plays `calls` real-time calls of `audio` (clips where `track` says) and collects the finals.
async fn play(app: &App, track: &Track8k, audio: &[i16], calls: usize, pace: Pace) -> Outcome {
    let mut feed = manager_feed(app, ORG).await;
    let simulator = Simulator::new(app.stream_url(), winnerr::config::DEV_TWILIO_AUTH_TOKEN);
    // Calls are told apart on the feed by their agent.
    let mut starts = Vec::new();
    let mut plays = Vec::new();
    for i in 0..calls {
        let identity = StreamIdentity {
            org_id: OrgId::parse(ORG).unwrap(),
            agent_id: Some(UserId::parse(format!("agent-{i}")).unwrap()),
            lead_id: None,
        };
        let mut script = CallScript::new(identity, audio.to_vec());
        script.pace = pace;
        let simulator = simulator.clone();
        let stagger = Duration::from_millis(i as u64 * 700);
        let (tx, rx) = tokio::sync::oneshot::channel();
        starts.push((format!("agent-{i}"), rx));
        plays.push(tokio::spawn(async move {
            tokio::time::sleep(stagger).await;
            let _ = tx.send(now_ms());
            simulator.play(&script, |_| {}).await.unwrap();
        }));
    }
    let mut started = std::collections::HashMap::new();
    for (sid, rx) in starts {
        started.insert(sid, rx.await.unwrap());
    }
    let mut finals: std::collections::HashMap<String, Vec<(u64, u64, String, u64)>> =
        Default::default();
    let mut ended = 0;
    while ended < calls {
        let text = match tokio::time::timeout(Duration::from_secs(120), feed.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue, // pings
            other => panic!("feed stalled: {other:?}"),
        };
        let FeedMessage::Event { event, .. } = serde_json::from_str(&text).unwrap() else {
            continue;
        };
        match &event.event {
            Event::Transcript(t) if t.is_final && t.track == Track::Inbound => {
                let agent = event
                    .agent_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                finals.entry(agent).or_default().push((
                    t.start_ms,
                    t.end_ms,
                    t.text.clone(),
                    now_ms(),
                ));
            }
            Event::CallEnded(_) => ended += 1,
            _ => {}
        }
    }
    for p in plays {
        p.await.unwrap();
    }
    let mut outcome = Outcome::default();
    let ms = |samples: usize| (samples * 1000 / RATE) as u64;
    for (sid, start_wall) in started {
        let finals = finals.remove(&sid).unwrap_or_default();
        let words: Vec<&str> = finals.iter().map(|f| f.2.as_str()).collect();
        let reference: Vec<&str> = track.clips.iter().map(|c| c.2.as_str()).collect();
        let (errors, n) = word_errors(&reference.join(" "), &words.join(" "));
        if std::env::var_os("WINNERR_BENCH_SHOW").is_some() {
            eprintln!("{sid}: {errors} errors of {n}: {words:?}");
        }
        outcome.errors += errors;
        outcome.words += n;
        outcome.finals += finals.iter().filter(|f| !f.2.is_empty()).count();
        let overlaps = |f: &(u64, u64, String, u64), clip: &(usize, usize, String)| {
            f.0 < ms(clip.1) && f.1 > ms(clip.0)
        };
        for clip in &track.clips {
            outcome.utterances += 1;
            // Its own final: the one final that overlaps this clip's speech and no other clip's.
            let own: Vec<_> = finals
                .iter()
                .filter(|f| overlaps(f, clip))
                .filter(|f| track.clips.iter().filter(|c| overlaps(f, c)).count() == 1)
                .collect();
            if finals.iter().filter(|f| overlaps(f, clip)).count() >= 2 {
                outcome.split += 1;
            }
            if let [f] = own[..] {
                outcome.own_finals += 1;
                let spoken_end_wall = start_wall + ms(clip.1);
                outcome
                    .delays
                    .push(f.3.saturating_sub(spoken_end_wall) as f64);
            }
        }
    }
    outcome.delays.sort_by(f64::total_cmp);
    outcome
}

fn main() -> anyhow::Result<()> {
    let full = is_bench_run();
    let rt = runtime();
    rt.block_on(async {
        let chosen = |var: &str, name: &str| {
            std::env::var(var).map_or(true, |list| list.split(',').any(|n| n.trim() == name))
        };
        let mut engines = Vec::new();
        for (name, vad, turn, speculate_after_ms) in [
            ("energy", "energy", "off", 200),
            ("silero", "silero", "off", 200),
            ("silero (no speculation)", "silero", "off", 0),
            ("silero+turn", "silero", "smart", 200),
        ] {
            if !chosen("WINNERR_BENCH_ENGINES", name) {
                continue;
            }
            let mut config = Config::local("127.0.0.1:0".parse().unwrap());
            config.asr = true;
            config.vad = vad.into();
            config.turn = turn.into();
            config.speculate_after_ms = speculate_after_ms;
            config.database_url = Some(winnerr::config::NO_DATABASE.into());
            engines.push((name, App::start(&config).await.expect("engine starts (`make models`)")));
        }
        let mut track = caller_track()?;
        if !full {
            // Under `cargo test`: the first three clips, to prove it still works.
            track.clips.truncate(3);
            track.samples.truncate(track.clips[2].1 + RATE);
        }
        let n = track.samples.len();
        println!(
            "voice_noise: {}; Whisper tiny.en, defaults; caller track of {} clips, {:.1} s; real-time Twilio calls",
            machine(),
            track.clips.len(),
            n as f64 / RATE as f64
        );
        vad_cost(&track.samples)?;
        turn_cost()?;
        let pink_noise = noise::pink(n, 7);
        let babble_noise = babble(n)?;
        let mut conditions: Vec<(String, Vec<i16>)> = Vec::new();
        if full {
            conditions.push(("clean".into(), track.samples.clone()));
        }
        let snrs: &[f64] = if full { &[25.0, 20.0, 15.0, 10.0] } else { &[15.0] };
        for &snr in snrs {
            conditions.push((format!("pink {snr} dB"), mix(&track, &pink_noise, snr)));
        }
        for &snr in if full { &[20.0, 15.0][..] } else { &[] } {
            conditions.push((format!("babble {snr} dB"), mix(&track, &babble_noise, snr)));
        }
        // Four calls at once where the targets are stated (clean, pink 15 dB, babble 20 dB).
        let call_counts = |name: &str| -> &[usize] {
            let target = ["clean", "pink 15 dB", "babble 20 dB"].contains(&name);
            if full && target { &[1, 4] } else { &[1] }
        };
        println!("| condition | calls | detector | own finals / utterances | WER | end of speech → final p50 / p95 (ms) |");
        println!("|---|---|---|---|---|---|");
        conditions.retain(|(name, _)| chosen("WINNERR_BENCH_CONDITIONS", name));
        for (name, audio) in &conditions {
            for &calls in call_counts(name) {
                for (vad, app) in &engines {
                    let o = play(app, &track, audio, calls, Pace::RealTime).await;
                    let p = |q| if o.delays.is_empty() { f64::NAN } else { percentile(&o.delays, q) };
                    println!(
                        "| {name} | {calls} | {vad} | {}/{} ({:.0}%) | {:.1}% | {:.0} / {:.0} |",
                        o.own_finals,
                        o.utterances,
                        100.0 * o.own_finals as f64 / o.utterances as f64,
                        100.0 * o.errors as f64 / o.words.max(1) as f64,
                        p(0.5),
                        p(0.95)
                    );
                }
            }
        }
        if chosen("WINNERR_BENCH_CONDITIONS", "hesitations") {
            let hesitations = hesitating(&track);
            println!("\nHesitations: each clip with a 400–700 ms pause mid-sentence, clean, one call");
            println!("| detector | clips split into 2+ finals | own finals | WER | end of speech → final p50 / p95 (ms) |");
            println!("|---|---|---|---|---|");
            for (vad, app) in &engines {
                let o = play(app, &hesitations, &hesitations.samples, 1, Pace::RealTime).await;
                let p = |q| if o.delays.is_empty() { f64::NAN } else { percentile(&o.delays, q) };
                println!(
                    "| {vad} | {}/{} ({:.0}%) | {}/{} | {:.1}% | {:.0} / {:.0} |",
                    o.split,
                    o.utterances,
                    100.0 * o.split as f64 / o.utterances.max(1) as f64,
                    o.own_finals,
                    o.utterances,
                    100.0 * o.errors as f64 / o.words.max(1) as f64,
                    p(0.5),
                    p(0.95)
                );
            }
        }
        if full && chosen("WINNERR_BENCH_CONDITIONS", "no speech") {
            let seconds = 60 * RATE;
            let empty = Track8k { samples: Vec::new(), clips: Vec::new() };
            let pink_only: Vec<i16> = {
                let p = noise::pink(seconds, 11);
                let power = (p.iter().map(|s| s * s).sum::<f64>() / p.len() as f64).sqrt();
                p.iter().map(|s| (s / power * 1500.0) as i16).collect()
            };
            println!("\n60 s without speech (as fast as the socket takes it): transcripts produced");
            let names: Vec<&str> = engines.iter().map(|(name, _)| *name).collect();
            println!("| audio | {} |", names.join(" | "));
            println!("|---|{}", "---|".repeat(names.len()));
            for (name, audio) in [
                ("pink noise (-27 dBFS)", pink_only),
                ("hold music (chords)", hold_music(seconds)),
                ("DTMF tones", dtmf(seconds)),
            ] {
                let mut cells = Vec::new();
                for (_, app) in &engines {
                    let o = play(app, &empty, &audio, 1, Pace::Fast).await;
                    cells.push(o.finals.to_string());
                }
                println!("| {name} | {} |", cells.join(" | "));
            }
        }
        for (_, app) in engines {
            app.shutdown().await;
        }
        Ok(())
    })
}
