//! What ingest hands to voice inside one process: a call's identity and a bounded channel of its
//! decoded audio, DTMF and end. Audio never leaves the process that holds the call's socket.

use tokio::sync::mpsc;

use crate::event::{CallContext, CallEnded, CallStarted, Dtmf, Track};

/// One chunk of one track, decoded to 16-bit linear PCM at the stream's sample rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    pub track: Track,
    /// Presentation time of the first sample, ms from the stream's start.
    pub timestamp_ms: u64,
    pub samples: Vec<i16>,
}

/// Items of a call, in the order they happened.
#[derive(Debug, Clone, PartialEq)]
pub enum CallInput {
    Frame(AudioFrame),
    Dtmf(Dtmf),
    /// The last item of every call.
    Ended(CallEnded),
}

/// A new call for the voice stage: who it is, how it started, and its inputs.
///
/// The `inputs` channel is bounded; the sender drops newest audio frames when it is full (and
/// counts them), and always delivers `Dtmf` and `Ended`.
#[derive(Debug)]
pub struct CallAudio {
    pub call: CallContext,
    pub started: CallStarted,
    pub inputs: mpsc::Receiver<CallInput>,
}

/// Live audio of the calls in this process, for listeners (managers listening in through the
/// gateway). A call's frames are copied here only while someone listens; a listener that falls
/// behind loses the oldest frames.
#[derive(Debug, Default)]
pub struct AudioTap {
    calls: std::sync::Mutex<std::collections::HashMap<crate::ids::CallId, Tapped>>,
}

#[derive(Debug)]
struct Tapped {
    call: CallContext,
    /// The call's audio rate (8 kHz from Twilio, 16 kHz from softphones).
    sample_rate: u32,
    frames: tokio::sync::broadcast::Sender<std::sync::Arc<AudioFrame>>,
}

/// Frames a listener may fall behind (about 2.5 s of both tracks at 20 ms a frame).
const TAP_BUFFER: usize = 256;

impl AudioTap {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    fn calls(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<crate::ids::CallId, Tapped>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `call`, whose audio is at `sample_rate`, listenable until the returned handle is
    /// dropped.
    pub fn open(self: &std::sync::Arc<Self>, call: &CallContext, sample_rate: u32) -> TapHandle {
        let frames = tokio::sync::broadcast::channel(TAP_BUFFER).0;
        self.calls().insert(
            call.call_id.clone(),
            Tapped {
                call: call.clone(),
                sample_rate,
                frames: frames.clone(),
            },
        );
        TapHandle {
            tap: self.clone(),
            call: call.call_id.clone(),
            frames,
        }
    }

    /// Listens to `call`, if it is live in this process: who it belongs to, its audio rate, and
    /// its frames.
    pub fn listen(
        &self,
        call: &crate::ids::CallId,
    ) -> Option<(
        CallContext,
        u32,
        tokio::sync::broadcast::Receiver<std::sync::Arc<AudioFrame>>,
    )> {
        self.calls().get(call).map(|tapped| {
            (
                tapped.call.clone(),
                tapped.sample_rate,
                tapped.frames.subscribe(),
            )
        })
    }

    /// Calls that can be listened to now.
    pub fn live(&self) -> usize {
        self.calls().len()
    }
}

/// A live call's end of the tap.
#[derive(Debug)]
pub struct TapHandle {
    tap: std::sync::Arc<AudioTap>,
    call: crate::ids::CallId,
    frames: tokio::sync::broadcast::Sender<std::sync::Arc<AudioFrame>>,
}

impl TapHandle {
    /// Copies `frame` to the call's listeners, if it has any.
    pub fn send(&self, frame: &AudioFrame) {
        if self.frames.receiver_count() > 0 {
            let _ = self.frames.send(std::sync::Arc::new(frame.clone()));
        }
    }
}

impl Drop for TapHandle {
    fn drop(&mut self) {
        self.tap.calls().remove(&self.call);
    }
}
