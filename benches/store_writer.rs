//! Store-writer throughput into the real Postgres server: call events per second written in
//! batches (as the in-process writer does) against one event per transaction (as a Kafka worker
//! that commits after every effect does), in one run, on fresh databases; and the same batches
//! into the embedded SQLite default, for comparison.
//!
//! Target: at least 20,000 events/s written (into Postgres).

use std::sync::Arc;
use std::time::Instant;

use winnerr_benches::{is_bench_run, machine, runtime};
use winnerr_events::fixtures::TestCall;
use winnerr_events::{
    ActivityState, AudioActivity, CallEnded, Dtmf, EndReason, Envelope, Event, StreamStats, Track,
};
use winnerr_store::{Store, StoreWriter, migrate, writer::MAX_BATCH};
use winnerr_testkit::{TestDatabase, TestSqlite};

/// A call as the voice stage publishes it: start, 10 turns of speech, 2 keys, end (14 events).
fn call_events(org: usize, index: usize) -> Vec<Arc<Envelope>> {
    let call = TestCall::new(&format!("org-{org}"), &format!("CA{index:032}"))
        .agent("agent-1")
        .lead("lead-1")
        .two_tracks();
    let ctx = call.ctx.clone();
    let mut events = vec![call.started().event];
    for turn in 0..10u64 {
        let track = if turn % 2 == 0 {
            Track::Inbound
        } else {
            Track::Outbound
        };
        events.push(Event::AudioActivity(AudioActivity {
            track,
            state: ActivityState::Silent,
            at_ms: turn * 3000 + 2500,
            spoken_ms: Some(2500),
        }));
    }
    events.push(Event::Dtmf(Dtmf {
        track: Track::Inbound,
        digit: '1',
    }));
    events.push(Event::Dtmf(Dtmf {
        track: Track::Inbound,
        digit: '2',
    }));
    events.push(Event::CallEnded(CallEnded {
        reason: EndReason::Completed,
        duration_ms: 30_000,
        stats: StreamStats::default(),
    }));
    events
        .into_iter()
        .map(|event| Arc::new(Envelope::new(&ctx, event)))
        .collect()
}

fn workload(calls: usize) -> Vec<Arc<Envelope>> {
    // Calls of 10 organizations, interleaved as a busy bus delivers them.
    let per_call: Vec<Vec<Arc<Envelope>>> = (0..calls).map(|i| call_events(i % 10, i)).collect();
    let mut events = Vec::new();
    for step in 0..14 {
        for call in &per_call {
            events.push(call[step].clone());
        }
    }
    events
}

async fn fresh_writer() -> (TestDatabase, StoreWriter) {
    let db = TestDatabase::try_create()
        .await
        .expect("make bench needs the Postgres that make test ensures");
    migrate(&db.owner_url).await.unwrap();
    let store = Store::connect(&db.service_url, 4, winnerr_store::Keyring::development())
        .await
        .unwrap();
    (db, StoreWriter::new(store))
}

fn main() {
    let bench = is_bench_run();
    let runtime = runtime();
    runtime.block_on(async {
        if !bench && TestDatabase::try_create().await.map(runtime_drop).is_err() {
            println!("store_writer: skipped, no test Postgres (make test ensures one)");
            return;
        }
        let calls = if bench { 2000 } else { 20 };

        let (db, writer) = fresh_writer().await;
        let events = workload(calls);
        let started = Instant::now();
        for batch in events.chunks(MAX_BATCH) {
            writer.apply(batch).await.unwrap();
        }
        let batched = events.len() as f64 / started.elapsed().as_secs_f64();
        db.drop_database().await;

        let (db, writer) = fresh_writer().await;
        let events = workload(calls);
        let started = Instant::now();
        for event in &events {
            writer.apply(std::slice::from_ref(event)).await.unwrap();
        }
        let single = events.len() as f64 / started.elapsed().as_secs_f64();
        db.drop_database().await;

        let file = TestSqlite::new();
        let store = Store::connect(&file.url, 1, winnerr_store::Keyring::development())
            .await
            .unwrap();
        let writer = StoreWriter::new(store);
        let events = workload(calls);
        let started = Instant::now();
        for batch in events.chunks(MAX_BATCH) {
            writer.apply(batch).await.unwrap();
        }
        let sqlite = events.len() as f64 / started.elapsed().as_secs_f64();
        drop(writer);
        file.remove();

        println!("store_writer: {}, Postgres on loopback", machine());
        println!(
            "  {} events ({calls} calls of 14 events, 10 organizations, interleaved)",
            events.len()
        );
        println!(
            "  batches of {MAX_BATCH}:       {batched:>10.0} events/s   (target 20,000: {:.2}x)",
            batched / 20_000.0
        );
        println!("  one per transaction: {single:>10.0} events/s");
        println!("  batched / single:    {:>10.2}x", batched / single);
        println!(
            "  SQLite file (embedded default), batches of {MAX_BATCH}: {sqlite:>10.0} events/s ({:.2}x Postgres batched)",
            sqlite / batched
        );
        if !bench {
            println!("  (smoke run under `cargo test`; figures are not measurements)");
        }
    });
}

/// Drops a probe database in the background of the check above.
fn runtime_drop(db: TestDatabase) {
    tokio::spawn(db.drop_database());
}
