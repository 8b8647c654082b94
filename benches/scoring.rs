//! Lead scoring: how many scores per second, and how long from the event that moves a score to
//! its score event.
//!
//! - Scores/s: features of a synthetic lead plus an explained score (every factor, sorted), one
//!   lead at a time as the live scorer does; and probabilities of a whole organization at once
//!   (one Candle matrix product), as after retraining. Baseline in the same run: the features
//!   alone.
//! - Delay: 200 live calls on the in-process bus, each customer utterance a final transcript;
//!   from publishing the transcript to a subscriber receiving the score event it caused (the
//!   scorer runs on the bus as in `serve`). Target: p99 within 100 ms.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use winnerr_benches::{is_bench_run, machine, measure, percentile, runtime};
use winnerr_bus::{Bus, Delivery, InProcessBus};
use winnerr_events::fixtures::TestCall;
use winnerr_events::{Envelope, Event};
use winnerr_scoring::model::{PRIOR_NOW_MS, explain};
use winnerr_scoring::{NoCrm, Scorer, features, prior, synth};

fn context(call: usize) -> TestCall {
    TestCall::new(&format!("org-{}", call % 20), &format!("CA{call:06}"))
        .lead(&format!("lead-{call}"))
}

const LINES: [(&str, f32); 4] = [
    ("We loved the photos of the kitchen.", 0.7),
    ("We're pre-approved and our lease ends next month.", 0.4),
    ("Honestly the price is too high for us.", -0.6),
    ("Could we see it this weekend?", 0.5),
];

fn utterance(call: &TestCall, n: u32) -> Envelope {
    let (text, score) = LINES[n as usize % LINES.len()];
    call.said(n, text, Some(score))
}

async fn delays(calls: usize, utterances: u32, gap: Duration) -> (Vec<f64>, usize) {
    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new(1 << 16));
    let mut subscriber = bus.subscribe().await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let group = Scorer::group();
    let source = bus.join_group(&group).await.unwrap();
    let worker = Scorer::new(Arc::new(NoCrm)).worker(bus.clone());
    let scorer = tokio::spawn(winnerr_bus::run_group(source, group, worker, stop.clone()));
    let contexts: Vec<TestCall> = (0..calls).map(context).collect();
    let published = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let publisher = {
        let (bus, published) = (bus.clone(), published.clone());
        tokio::spawn(async move {
            for ctx in &contexts {
                bus.publish(ctx.started()).await.unwrap();
            }
            for n in 1..=utterances {
                for ctx in &contexts {
                    let event = utterance(ctx, n);
                    published.lock().unwrap().insert(event.id, Instant::now());
                    bus.publish(event).await.unwrap();
                }
                tokio::time::sleep(gap).await;
            }
        })
    };
    // Read until the bus has been quiet for a second: every score the utterances caused is in.
    let mut samples = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(1), subscriber.next()).await {
            Ok(Some(Delivery::Event(event))) => {
                if let Event::LeadScore(score) = &event.event {
                    if let Some(at) = published.lock().unwrap().remove(&score.cause) {
                        samples.push(at.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
            Ok(Some(Delivery::Lagged(missed))) => {
                panic!("the bench's subscriber missed {missed} events")
            }
            Ok(None) | Err(_) => break,
        }
    }
    publisher.await.unwrap();
    let unchanged = published.lock().unwrap().len();
    stop.cancel();
    let _ = scorer.await;
    samples.sort_by(f64::total_cmp);
    (samples, unchanged)
}

fn main() {
    let bench = is_bench_run();
    let leads = if bench { 10_000 } else { 200 };
    let org = synth::generate(9, leads, PRIOR_NOW_MS);
    let model = prior();
    let window = Duration::from_secs(if bench { 3 } else { 0 });
    let rounds = if bench { 3 } else { 1 };
    let features_only = measure(&org.leads, window, rounds, |lead| {
        std::hint::black_box(features(&lead.history, org.now_ms));
    });
    let explained = measure(&org.leads, window, rounds, |lead| {
        std::hint::black_box(explain(&model, &features(&lead.history, org.now_ms)));
    });
    let rows = org.rows();
    let started = Instant::now();
    let batch_rounds = if bench { 20 } else { 1 };
    for _ in 0..batch_rounds {
        std::hint::black_box(
            model
                .probabilities(&rows, &candle_core::Device::Cpu)
                .unwrap(),
        );
    }
    let batch_rate = (batch_rounds * rows.len()) as f64 / started.elapsed().as_secs_f64();

    let (calls, utterances, gap) = if bench {
        (200, 20, Duration::from_millis(50))
    } else {
        (10, 3, Duration::from_millis(5))
    };
    let (samples, unchanged) = runtime().block_on(delays(calls, utterances, gap));

    println!("scoring: {}", machine());
    println!(
        "  {leads} synthetic leads, {} features, model {}",
        winnerr_scoring::FEATURES.len(),
        model.version
    );
    println!(
        "  features alone (baseline):   {:>12.0} leads/s",
        features_only.items_per_second
    );
    println!(
        "  features + explained score:  {:>12.0} scores/s  ({:.2}x the baseline's time)",
        explained.items_per_second,
        features_only.items_per_second / explained.items_per_second
    );
    println!(
        "  batch probabilities (Candle): {:>11.0} scores/s",
        batch_rate
    );
    println!(
        "  utterance -> score event, in-process bus, {calls} live calls x {utterances} utterances:"
    );
    if samples.is_empty() {
        println!("    no score events arrived");
    } else {
        println!(
            "    p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms   ({} scores, {} utterances left the score unchanged; target p99 <= 100 ms)",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples[samples.len() - 1],
            samples.len(),
            unchanged
        );
    }
    assert!(!samples.is_empty(), "the scorer published no score");
}
