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
