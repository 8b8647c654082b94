//! The Kafka bus against the in-process bus, in one run on a real broker process:
//! - throughput: call events per second from publish to a gateway subscriber, with many calls
//!   publishing at once (each call's events in order, as the voice stage does);
//! - latency at live-call rates: publish-to-subscriber delay, p50 and p99, of each bus, and what
//!   Kafka adds.
//!
//! Targets: at least 50,000 call events/s end to end, at most 20 ms added at p99.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use winnerr_benches::{is_bench_run, machine, percentile, runtime};
use winnerr_bus::{Bus, Delivery, InProcessBus, KafkaBus, KafkaConfig};
use winnerr_events::fixtures::TestCall;
use winnerr_events::{Envelope, EventId};
use winnerr_testkit::Broker;

fn call(index: usize) -> TestCall {
    TestCall::new("bench-org", &format!("CA{index:032}")).agent("agent-1")
}

fn event(call: &TestCall) -> Envelope {
    call.dtmf('5')
}

/// Publishes `per_call` events on each of `calls` calls at once; returns events/s until the
/// subscriber has them all.
async fn throughput(bus: Arc<dyn Bus>, calls: usize, per_call: usize) -> f64 {
    let mut subscription = bus.subscribe().await.unwrap();
    let total = calls * per_call;
    let started = Instant::now();
    let publishers: Vec<_> = (0..calls)
        .map(|index| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let call = call(index);
                for _ in 0..per_call {
                    bus.publish(event(&call)).await.unwrap();
                }
            })
        })
        .collect();
    let mut received = 0;
    while received < total {
        match tokio::time::timeout(Duration::from_secs(60), subscription.next()).await {
            Ok(Some(Delivery::Event(_))) => received += 1,
            Ok(Some(Delivery::Lagged(missed))) => received += missed as usize,
            Ok(None) | Err(_) => panic!("subscription ended after {received} of {total}"),
        }
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Publishes `rate` events/s (spread over calls) for `seconds`; returns sorted delays in ms.
async fn latency(bus: Arc<dyn Bus>, rate: u32, seconds: u32) -> Vec<f64> {
    let mut subscription = bus.subscribe().await.unwrap();
    let sent: Arc<Mutex<HashMap<EventId, Instant>>> = Arc::default();
    let total = (rate * seconds) as usize;
    let publisher = {
        let (bus, sent) = (bus.clone(), sent.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
            for index in 0..total {
                tick.tick().await;
                let event = event(&call(index % 100));
                sent.lock().unwrap().insert(event.id, Instant::now());
                let bus = bus.clone();
                // Calls publish independently: do not wait for this one before the next.
                tokio::spawn(async move { bus.publish(event).await.unwrap() });
            }
        })
    };
    let mut delays = Vec::with_capacity(total);
    while delays.len() < total {
        match tokio::time::timeout(Duration::from_secs(60), subscription.next()).await {
            Ok(Some(Delivery::Event(event))) => {
                if let Some(at) = sent.lock().unwrap().get(&event.id) {
                    delays.push(at.elapsed().as_secs_f64() * 1000.0);
                }
            }
            Ok(Some(Delivery::Lagged(_))) => panic!("subscriber lagged"),
            Ok(None) | Err(_) => panic!("subscription ended"),
        }
    }
    publisher.await.unwrap();
    delays.sort_by(f64::total_cmp);
    delays
}

fn main() {
    let bench = is_bench_run();
    let runtime = runtime();
    runtime.block_on(async {
        let Some(broker) = Broker::start_if_installed().await else {
            println!(
                "bus_kafka: skipped, WINNERR_KAFKA_BROKER_BIN is not set (make bench sets it)"
            );
            assert!(!bench, "make bench installs the broker; run it that way");
            return;
        };
        let (calls, per_call, rate, seconds) = if bench {
            (200, 500, 1000, 5)
        } else {
            (4, 25, 200, 1)
        };
        let mut config = KafkaConfig::new(broker.brokers());
        config.partitions = 6;
        let kafka: Arc<dyn Bus> = Arc::new(KafkaBus::connect(config).await.unwrap());
        let in_process: Arc<dyn Bus> = Arc::new(InProcessBus::new(1 << 20));

        let kafka_rate = throughput(kafka.clone(), calls, per_call).await;
        let local_rate = throughput(in_process.clone(), calls, per_call).await;
        let kafka_delays = latency(kafka, rate, seconds).await;
        let local_delays = latency(in_process, rate, seconds).await;

        println!("bus_kafka: {}, broker noida-db on loopback", machine());
        println!("  throughput, {calls} calls x {per_call} events, publish -> gateway subscriber:");
        println!(
            "    Kafka bus:      {kafka_rate:>10.0} events/s   (target 50,000: {:.2}x)",
            kafka_rate / 50_000.0
        );
        println!("    in-process bus: {local_rate:>10.0} events/s");
        println!(
            "  latency at {rate} events/s for {seconds} s (100 calls), publish -> subscriber, ms:"
        );
        for (name, delays) in [
            ("Kafka bus", &kafka_delays),
            ("in-process bus", &local_delays),
        ] {
            println!(
                "    {name:<15} p50 {:>7.2}   p99 {:>7.2}   max {:>7.2}",
                percentile(delays, 0.5),
                percentile(delays, 0.99),
                delays[delays.len() - 1]
            );
        }
        println!(
            "  added by Kafka:  p50 {:>7.2}   p99 {:>7.2}   (target p99 <= 20 ms)",
            percentile(&kafka_delays, 0.5) - percentile(&local_delays, 0.5),
            percentile(&kafka_delays, 0.99) - percentile(&local_delays, 0.99)
        );
        if !bench {
            println!("  (smoke run under `cargo test`; figures are not measurements)");
        }
    });
}
