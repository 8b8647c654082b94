//! Listen-in's tap: calls' audio copied, on its way into the voice stage, to whoever listens.

use std::sync::Arc;

use tokio::sync::mpsc;
use winnerr_events::{AudioTap, CallAudio, CallInput};

/// New calls that may wait to be handed on to the voice stage (here and where ingest hands them).
pub const NEW_CALL_QUEUE: usize = 64;

/// Hands each call on from `calls` with its audio also copied to `tap` for listeners. Each call's
/// inputs pass through a channel of `queue` items: when voice falls behind, ingest's own bounded
/// channel fills and drops the newest audio, as without the tap.
pub fn tap_calls(
    mut calls: mpsc::Receiver<CallAudio>,
    tap: Arc<AudioTap>,
    queue: usize,
) -> mpsc::Receiver<CallAudio> {
    let (tapped, tapped_rx) = mpsc::channel(NEW_CALL_QUEUE);
    tokio::spawn(async move {
        while let Some(mut call) = calls.recv().await {
            let (inputs, inputs_rx) = mpsc::channel(queue.max(1));
            let handle = tap.open(&call.call, call.started.media_format.sample_rate);
            let mut from_ingest = std::mem::replace(&mut call.inputs, inputs_rx);
            tokio::spawn(async move {
                while let Some(input) = from_ingest.recv().await {
                    if let CallInput::Frame(frame) = &input {
                        handle.send(frame);
                    }
                    if inputs.send(input).await.is_err() {
                        break;
                    }
                }
                // The call's end: its listeners are told when the handle goes.
                drop(handle);
            });
            if tapped.send(call).await.is_err() {
                break;
            }
        }
    });
    tapped_rx
}
