//! End of turn: when a speaker pauses (a short run of non-speech by the speech detector), Smart
//! Turn hears the end of the utterance and says whether the turn is over. Yes: the utterance ends
//! now, instead of after a fixed silence. No: it stays open, so a speaker who hesitates mid-sentence
//! keeps one utterance; a long silence (the fallback) still ends it.
//!
//! The model costs tens of milliseconds a decision, so it runs on a thread of its own (with a
//! one-thread Rayon pool: Candle's kernels run on the pool of the thread that calls them, and the
//! speech workers' pools are theirs), never on the async runtime. At most one question per track
//! waits: a newer pause of the same track replaces it. A verdict that comes after the speaker went
//! on is ignored by the segmenter.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use winnerr_events::{CallId, Track};
use winnerr_models::{ModelError, SmartTurn};

use crate::metrics;

/// When the turn model is asked and how its answer is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnConfig {
    /// Non-speech after which the model is asked whether the turn is over.
    pub pause_ms: u64,
    /// The probability of a complete turn at or above which the utterance ends.
    pub threshold: f32,
    /// Silence that ends an utterance the model did not end (it said "not yet", or was busy).
    pub fallback_ms: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            pause_ms: 200,
            threshold: 0.5,
            fallback_ms: 1_500,
        }
    }
}

/// What decides whether a turn is complete from its audio.
pub trait TurnModel: Send + Sync + 'static {
    /// The probability that the turn whose 16 kHz audio ends with `audio` is complete.
    fn complete(&self, audio: &[f32]) -> Result<f32, ModelError>;
}

impl TurnModel for SmartTurn {
    fn complete(&self, audio: &[f32]) -> Result<f32, ModelError> {
        self.probability(audio)
    }
}

/// A question for the model: is this track's turn over at this pause?
pub struct TurnQuestion {
    pub call: CallId,
    pub track: Track,
    /// The utterance and the pause within it that the answer is about.
    pub utterance: u32,
    pub pause: u32,
    /// The utterance's 16 kHz audio up to now (only its last 8 s are heard).
    pub audio: Vec<f32>,
    pub reply: mpsc::UnboundedSender<TurnVerdict>,
    asked: Instant,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnVerdict {
    pub track: Track,
    pub utterance: u32,
    pub pause: u32,
    /// Whether the turn is over (`false` too when the model failed: the fallback silence ends it).
    pub complete: bool,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<TurnQuestion>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    config: TurnConfig,
}

struct Thread {
    shared: Arc<Shared>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Thread {
    fn drop(&mut self) {
        self.shared.queue.lock().expect("turn queue lock").closed = true;
        self.shared.ready.notify_all();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The turn detector every call of a node shares.
#[derive(Clone)]
pub struct TurnDetector {
    shared: Arc<Shared>,
    _thread: Arc<Thread>,
}

impl std::fmt::Debug for TurnDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnDetector")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl TurnDetector {
    /// Starts the detector's thread on `model`.
    pub fn start(model: Arc<dyn TurnModel>, config: TurnConfig) -> Self {
        metrics::describe();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            config,
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "turn-kernels".into())
            .build()
            .expect("the turn detector's thread pool starts");
        let worker = shared.clone();
        let handle = std::thread::Builder::new()
            .name("turn".into())
            .spawn(move || pool.install(|| run(&worker, model.as_ref())))
            .expect("the turn detector's thread starts");
        Self {
            shared: shared.clone(),
            _thread: Arc::new(Thread {
                shared,
                handle: Some(handle),
            }),
        }
    }

    pub fn config(&self) -> TurnConfig {
        self.shared.config
    }

    /// Asks about a pause; a question of the same track still waiting is out of date and goes.
    pub fn ask(
        &self,
        call: CallId,
        track: Track,
        utterance: u32,
        pause: u32,
        audio: Vec<f32>,
        reply: mpsc::UnboundedSender<TurnVerdict>,
    ) {
        let question = TurnQuestion {
            call,
            track,
            utterance,
            pause,
            audio,
            reply,
            asked: Instant::now(),
        };
        let mut q = self.shared.queue.lock().expect("turn queue lock");
        let before = q.waiting.len();
        q.waiting
            .retain(|w| !(w.call == question.call && w.track == question.track));
        for _ in q.waiting.len()..before {
            metrics::turn_decision("superseded");
        }
        q.waiting.push_back(question);
        drop(q);
        self.shared.ready.notify_one();
    }
}

fn next(shared: &Shared) -> Option<TurnQuestion> {
    let mut q = shared.queue.lock().expect("turn queue lock");
    loop {
        if let Some(question) = q.waiting.pop_front() {
            return Some(question);
        }
        if q.closed {
            return None;
        }
        q = shared.ready.wait(q).expect("turn queue lock");
    }
}

fn run(shared: &Shared, model: &dyn TurnModel) {
    while let Some(question) = next(shared) {
        if question.reply.is_closed() {
            continue; // the call is over
        }
        let started = Instant::now();
        let complete = match model.complete(&question.audio) {
            Ok(p) => p >= shared.config.threshold,
            Err(error) => {
                metrics::turn_failed(&question.call, &error.to_string());
                false
            }
        };
        metrics::turn_decided(
            question.asked.elapsed(),
            started.elapsed(),
            if complete { "complete" } else { "not_yet" },
        );
        let _ = question.reply.send(TurnVerdict {
            track: question.track,
            utterance: question.utterance,
            pause: question.pause,
            complete,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Says a turn is complete when its audio ends loud, after `delay`.
    struct EndsLoud(std::time::Duration);

    impl TurnModel for EndsLoud {
        fn complete(&self, audio: &[f32]) -> Result<f32, ModelError> {
            std::thread::sleep(self.0);
            if audio.is_empty() {
                return Err(ModelError::Input("no audio".into()));
            }
            Ok(if audio[audio.len() - 1] > 0.5 {
                1.0
            } else {
                0.0
            })
        }
    }

    #[tokio::test]
    async fn answers_each_pause_and_a_newer_pause_of_a_track_replaces_the_waiting_one() {
        let detector = TurnDetector::start(
            Arc::new(EndsLoud(std::time::Duration::from_millis(50))),
            TurnConfig::default(),
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let call = CallId::parse("CA1").unwrap();
        // The first question occupies the thread; the second waits and is replaced by the third.
        detector.ask(call.clone(), Track::Inbound, 1, 0, vec![1.0], tx.clone());
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        detector.ask(call.clone(), Track::Inbound, 1, 1, vec![0.0], tx.clone());
        detector.ask(call.clone(), Track::Inbound, 1, 2, vec![1.0], tx.clone());
        detector.ask(call.clone(), Track::Outbound, 4, 0, vec![], tx.clone());
        let mut verdicts = Vec::new();
        for _ in 0..3 {
            verdicts.push(rx.recv().await.unwrap());
        }
        verdicts.sort_by_key(|v| (v.track.index(), v.pause));
        let got: Vec<_> = verdicts
            .iter()
            .map(|v| (v.track, v.utterance, v.pause, v.complete))
            .collect();
        assert_eq!(
            got,
            vec![
                (Track::Inbound, 1, 0, true),
                (Track::Inbound, 1, 2, true),
                // A failing model is "not yet": the fallback silence ends the utterance.
                (Track::Outbound, 4, 0, false),
            ]
        );
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), rx.recv())
                .await
                .is_err(),
            "the replaced question is not answered"
        );
    }
}
