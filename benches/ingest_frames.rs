//! Twilio `media` frames handled per second on one core: JSON parse, base64, mu-law decode and
//! per-track ordering — the ingest hot path without the socket. Compared, in the same process,
//! with a naive path (parse to `serde_json::Value`, allocate the base64 output, decode mu-law
//! arithmetically) to show what the borrowed parse and the lookup table buy.
//!
//! Target: 200,000 frames/s per core (a live call is 50 frames/s per track).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use winnerr_benches::{is_bench_run, machine, measure};
use winnerr_ingest::protocol::{self, TwilioMessage};
use winnerr_ingest::session::StreamSession;

const TARGET_FRAMES_PER_SECOND: f64 = 200_000.0;
const STREAM_SID: &str = "MZ18eb57d66b835fc900000000000037e6";

/// Frames as Twilio sends them: 160 bytes of varied mu-law (a sweep, not silence).
fn twilio_frames(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let payload: Vec<u8> = (0..160).map(|j| ((i * 31 + j * 7) % 256) as u8).collect();
            format!(
                r#"{{"event":"media","sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{}"}},"streamSid":"{STREAM_SID}"}}"#,
                i + 2,
                i + 1,
                i * 20,
                STANDARD.encode(payload)
            )
        })
        .collect()
}

/// The mu-law decode of G.711 done per sample, without the table.
fn mulaw_arithmetic(byte: u8) -> i16 {
    let u = !byte;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

fn naive(frame: &str) -> usize {
    let value: serde_json::Value = serde_json::from_str(frame).unwrap();
    let payload = value["media"]["payload"].as_str().unwrap();
    let bytes = STANDARD.decode(payload).unwrap();
    let samples: Vec<i16> = bytes.iter().map(|&b| mulaw_arithmetic(b)).collect();
    samples.len()
}

fn main() {
    let bench = is_bench_run();
    let (count, duration, rounds) = if bench {
        (3000, Duration::from_secs(3), 3)
    } else {
        (200, Duration::from_millis(1), 1)
    };
    let frames = twilio_frames(count);

    // The real path: parse + session (base64, mu-law table, ordering), timestamps advancing.
    let mut session = StreamSession::new(STREAM_SID.into(), 8000);
    let mut due = Vec::with_capacity(4);
    let mut decoded = 0usize;
    let engine = measure(&frames, duration, rounds, |frame| {
        let TwilioMessage::Media {
            media, stream_sid, ..
        } = protocol::parse(frame).unwrap()
        else {
            unreachable!()
        };
        if media.timestamp == 0 {
            // Each pass over the inputs is a new stream, so no frame counts as late.
            session = StreamSession::new(STREAM_SID.into(), 8000);
        }
        session.on_media(&stream_sid, &media, &mut due).unwrap();
        decoded += due.drain(..).map(|f| f.samples.len()).sum::<usize>();
    });
    let parse_only = measure(&frames, duration, rounds, |frame| {
        std::hint::black_box(protocol::parse(frame).unwrap());
    });
    let baseline = measure(&frames, duration, rounds, |frame| {
        std::hint::black_box(naive(frame));
    });
    assert!(decoded >= 160 * count, "every frame decoded");

    let per_second = engine.items_per_second;
    println!("ingest_frames: {}", machine());
    println!(
        "  engine path (parse + base64 + mu-law table + ordering): {per_second:>12.0} frames/s per core"
    );
    println!(
        "  parse only:                                             {:>12.0} frames/s",
        parse_only.items_per_second
    );
    println!(
        "  naive baseline (Value + alloc + arithmetic mu-law):     {:>12.0} frames/s",
        baseline.items_per_second
    );
    println!(
        "  engine / baseline:                                      {:>12.2}x",
        per_second / baseline.items_per_second
    );
    println!(
        "  engine / target (200,000 frames/s):                     {:>12.2}x",
        per_second / TARGET_FRAMES_PER_SECOND
    );
    println!(
        "  live tracks one core could ingest (50 frames/s each):   {:>12.0}",
        per_second / 50.0
    );
    if !bench {
        println!("  (smoke run under `cargo test`; figures are not measurements)");
    }
}
