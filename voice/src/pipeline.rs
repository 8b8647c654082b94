//! One task per call: reads the call's inputs in order and publishes its events.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use winnerr_events::{
    Bus, CallAudio, CallContext, CallEnded, CallInput, EndReason, Envelope, Event, StreamStats,
    Track,
};

use crate::activity::{ActivityConfig, ActivityDetector};
use crate::metrics;

/// Settings of the voice stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct VoiceConfig {
    pub activity: ActivityConfig,
}

/// Runs the voice stage: every call that arrives on `calls` is processed on its own task until
/// its `Ended`. Returns when `calls` closes and every call has finished.
pub fn spawn(
    mut calls: mpsc::Receiver<CallAudio>,
    bus: Arc<dyn Bus>,
    config: VoiceConfig,
) -> JoinHandle<()> {
    metrics::describe();
    tokio::spawn(async move {
        let mut running = tokio::task::JoinSet::new();
        while let Some(call) = calls.recv().await {
            running.spawn(run_call(call, bus.clone(), config));
            // Reap finished calls so the set does not grow with the process's lifetime.
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    })
}

async fn publish(bus: &dyn Bus, call: &CallContext, event: Event) {
    let kind = event.kind();
    match bus.publish(Envelope::new(call, event)).await {
        Ok(()) => metrics::emitted(kind),
        Err(err) => {
            metrics::publish_failed(kind);
            warn!(call_id = %call.call_id, org_id = %call.org_id, kind, error = %err, "event not published");
        }
    }
}

async fn run_call(audio: CallAudio, bus: Arc<dyn Bus>, config: VoiceConfig) {
    let CallAudio {
        call,
        started,
        mut inputs,
    } = audio;
    let sample_rate = started.media_format.sample_rate;
    metrics::call_started();
    publish(bus.as_ref(), &call, Event::CallStarted(started)).await;
    let mut detectors = Track::ALL.map(|track| ActivityDetector::new(track, config.activity));
    let ended = loop {
        match inputs.recv().await {
            Some(CallInput::Frame(frame)) => {
                metrics::frame(frame.track.as_str());
                if let Some(change) = detectors[frame.track.index()].push(&frame, sample_rate) {
                    publish(bus.as_ref(), &call, Event::AudioActivity(change)).await;
                }
            }
            Some(CallInput::Dtmf(dtmf)) => publish(bus.as_ref(), &call, Event::Dtmf(dtmf)).await,
            Some(CallInput::Ended(ended)) => break ended,
            None => {
                debug!(call_id = %call.call_id, "call inputs closed without an end");
                break CallEnded {
                    reason: EndReason::Abandoned,
                    duration_ms: 0,
                    stats: StreamStats::default(),
                };
            }
        }
    };
    for detector in &mut detectors {
        if let Some(change) = detector.stop() {
            publish(bus.as_ref(), &call, Event::AudioActivity(change)).await;
        }
    }
    publish(bus.as_ref(), &call, Event::CallEnded(ended)).await;
    metrics::call_ended();
}
