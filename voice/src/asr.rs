//! The shared speech worker: one model serves every call. It owns its queue on dedicated threads
//! (never the async runtime); calls submit utterances and get results back on their own channel.
//!
//! Policy: finals before interims. Finals are never dropped, and they are fair across
//! organizations (see [`Finals`]): a burst of one organization's calls cannot hold another's
//! finals back by more than one utterance per organization waiting; finals of calls that are
//! still live go before those of calls that have ended. Interims go oldest first: at most one
//! interim per track waits (a newer one replaces it, a final removes it), and when more than
//! `max_interims_waiting` wait, the oldest is dropped. Interims of calls that ended are skipped.
//! Speculative finals (an utterance's final decoded from a pause, before the utterance has ended)
//! are taken only while no final waits, at most one waiting per worker, and go between finals and
//! interims; once the utterance ends in that pause, [`AsrWorker::promote`] makes a waiting one a
//! final. One that is used costs nothing (it is the final); one whose speaker went on costs a
//! decode the workers had time for.
//!
//! Layout: `workers` threads each run one utterance at a time, each on a Rayon pool of its own
//! of `threads` threads (Candle's matrix and convolution kernels run on the pool of the thread
//! that calls them), so the layout is the engine's choice, not the global pool's.
//! Utterances are not batched: batching gained at most ~20% throughput here and multiplied each
//! utterance's latency (see the models issue), and latency is what agents feel.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use winnerr_events::{CallId, OrgId, Track};
use winnerr_models::{DecodeOptions, ModelError, Prompt, Sentiment, SentimentModel, Whisper};

use crate::metrics;

/// What the worker runs: speech to text, and text to sentiment.
pub trait SpeechModels: Send + Sync + 'static {
    /// Text of 16 kHz mono audio ("" for silence or noise), expecting the words of `words`.
    fn transcribe(&self, audio: &[f32], words: &Prompt) -> Result<String, ModelError>;
    fn sentiment(&self, text: &str) -> Result<Sentiment, ModelError>;
    /// The sentiment of each of `texts`, in order (one model pass where the model batches).
    fn sentiments(&self, texts: &[&str]) -> Result<Vec<Sentiment>, ModelError> {
        texts.iter().map(|text| self.sentiment(text)).collect()
    }
    /// The words to expect on a call whose keyterms are `terms` (most important first); models
    /// that take no hint give an empty prompt.
    fn prompt(&self, _terms: &[String]) -> Result<Prompt, ModelError> {
        Ok(Prompt::default())
    }
}

/// How much of a call's keyterms goes into Whisper's prompt (the rest get the decoding bonus
/// only): on the keyterm test set 64 tokens (the call's own names and the first of its
/// organization's words) recalled as many terms as the whole 223, at a third of the prompt's cost
/// (`benches/keyterms.rs`).
pub const KEYTERM_PROMPT_TOKENS: usize = 64;

/// Whisper and the sentiment model, loaded once per process.
pub struct Models {
    pub whisper: Whisper,
    pub sentiment: SentimentModel,
    pub options: DecodeOptions,
}

impl SpeechModels for Models {
    fn transcribe(&self, audio: &[f32], words: &Prompt) -> Result<String, ModelError> {
        self.whisper
            .transcribe_with(audio, &self.options, words)
            .map(|t| t.text)
    }

    fn prompt(&self, terms: &[String]) -> Result<Prompt, ModelError> {
        self.whisper.keyterm_prompt(terms, KEYTERM_PROMPT_TOKENS)
    }

    fn sentiments(&self, texts: &[&str]) -> Result<Vec<Sentiment>, ModelError> {
        self.sentiment.classify(texts)
    }

    fn sentiment(&self, text: &str) -> Result<Sentiment, ModelError> {
        let mut all = self.sentiment.classify(&[text])?;
        all.pop()
            .ok_or_else(|| ModelError::Input("no sentiment for the text".into()))
    }
}

/// Interim hypotheses or the final transcript of an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Interim,
    Final,
    /// The final of an utterance that may be over: its audio up to its pause `pause`.
    Speculative {
        pause: u32,
    },
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Interim => "interim",
            JobKind::Final => "final",
            JobKind::Speculative { .. } => "speculative",
        }
    }

    /// Whether the result is (or may become) an utterance's final: it gets sentiment.
    pub fn is_final(self) -> bool {
        !matches!(self, JobKind::Interim)
    }
}

/// Which utterance a job or result belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtteranceKey {
    pub call: CallId,
    pub track: Track,
    pub utterance: u32,
}

impl UtteranceKey {
    /// Whether `other` is of the same call's same track.
    fn same_track(&self, other: &UtteranceKey) -> bool {
        self.call == other.call && self.track == other.track
    }
}

/// One utterance (or its start, for an interim) to transcribe.
pub struct Job {
    /// Whose call it is: finals are shared fairly between organizations.
    pub org: OrgId,
    pub key: UtteranceKey,
    pub kind: JobKind,
    /// 16 kHz mono.
    pub audio: Vec<f32>,
    /// Where the result goes: the call's own channel.
    pub reply: mpsc::UnboundedSender<AsrResult>,
    /// Cleared when the call ends: its waiting interims are skipped.
    pub live: Arc<AtomicBool>,
    /// The words the call is expected to hold (its keyterms), shared by the call's jobs.
    pub words: Arc<Prompt>,
    enqueued: Instant,
    /// The call's span, entered on the worker's thread while the job runs.
    span: tracing::Span,
}

impl Job {
    pub fn new(
        org: OrgId,
        key: UtteranceKey,
        kind: JobKind,
        audio: Vec<f32>,
        reply: mpsc::UnboundedSender<AsrResult>,
        live: Arc<AtomicBool>,
    ) -> Self {
        Self {
            org,
            key,
            kind,
            audio,
            reply,
            live,
            words: Arc::default(),
            enqueued: Instant::now(),
            span: tracing::Span::current(),
        }
    }

    /// The job, expecting the words of `words`.
    pub fn expecting(self, words: Arc<Prompt>) -> Self {
        Self { words, ..self }
    }
}

/// What the worker made of a job.
#[derive(Debug)]
pub struct AsrResult {
    pub key: UtteranceKey,
    pub kind: JobKind,
    pub text: Result<String, ModelError>,
    /// Finals with text only.
    pub sentiment: Option<Sentiment>,
    pub waited: Duration,
    pub took: Duration,
}

/// Worker settings.
#[derive(Debug, Clone, Copy)]
pub struct AsrConfig {
    /// Utterances run at once, each on a thread of its own.
    pub workers: usize,
    /// Threads each of them runs the model on.
    pub threads: usize,
    pub max_interims_waiting: usize,
}

impl Default for AsrConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            threads: 1,
            max_interims_waiting: 8,
        }
    }
}

impl AsrConfig {
    /// The layout that served the most calls on this machine's kind (`benches/voice_load.rs`,
    /// layouts side by side): one single-threaded worker per core. It needs Candle to split its
    /// kernels for one thread (`RAYON_NUM_THREADS=1`, which `winnerr serve` sets); with Candle
    /// splitting them for every core on a one-thread pool, it did worse than one worker on
    /// every core.
    pub fn for_cores(cores: usize) -> Self {
        Self {
            workers: cores.max(1),
            ..Self::default()
        }
    }
}

/// Finals waiting, fair across organizations: the next is the oldest final of the organization
/// served the fewest audio seconds since it began waiting (start-time fair queueing on audio
/// time), taking live calls' finals before those of calls that have ended. An organization that
/// starts waiting starts level with the least-served one, so idle time earns no credit.
#[derive(Default)]
struct Finals {
    by_org: HashMap<OrgId, VecDeque<Job>>,
    /// Audio seconds served to each waiting organization, on one scale.
    served: HashMap<OrgId, f64>,
    len: usize,
}

impl Finals {
    fn push(&mut self, job: Job) {
        if !self.by_org.contains_key(&job.org) {
            let level = self
                .served
                .values()
                .copied()
                .reduce(f64::min)
                .unwrap_or(0.0);
            self.served.insert(job.org.clone(), level);
        }
        self.by_org
            .entry(job.org.clone())
            .or_default()
            .push_back(job);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Job> {
        let live = |job: &Job| job.live.load(Ordering::Relaxed);
        let (org, index) = self
            .pick(|queue| queue.iter().position(live))
            .or_else(|| self.pick(|_| Some(0)))?;
        let queue = self.by_org.get_mut(&org).expect("picked from the map");
        let job = queue.remove(index).expect("picked from the queue");
        if queue.is_empty() {
            self.by_org.remove(&org);
            self.served.remove(&org);
        } else if let Some(served) = self.served.get_mut(&org) {
            *served += job.audio.len() as f64 / 16_000.0;
        }
        self.len -= 1;
        Some(job)
    }

    /// The least-served organization with a job `choose` finds in its queue (ties: the oldest
    /// job), and where the job is.
    fn pick(&self, choose: impl Fn(&VecDeque<Job>) -> Option<usize>) -> Option<(OrgId, usize)> {
        self.by_org
            .iter()
            .filter_map(|(org, queue)| {
                let index = choose(queue)?;
                Some((org, index, self.served[org], queue[index].enqueued))
            })
            .min_by(|a, b| a.2.total_cmp(&b.2).then(a.3.cmp(&b.3)))
            .map(|(org, index, ..)| (org.clone(), index))
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[derive(Default)]
struct Queue {
    finals: Finals,
    speculative: VecDeque<Job>,
    interims: VecDeque<Job>,
    closed: bool,
}

impl Queue {
    fn submit(&mut self, job: Job, max_interims_waiting: usize) {
        let same_track = |j: &Job| j.key.same_track(&job.key);
        // Whatever interim of this track waits is out of date now.
        let before = self.interims.len();
        self.interims.retain(|j| !same_track(j));
        for _ in self.interims.len()..before {
            metrics::asr_dropped("superseded");
        }
        match job.kind {
            JobKind::Final => {
                // A speculation of the track that waits is moot: its utterance went on, or
                // ended elsewhere than at its pause.
                self.speculative.retain(|j| !same_track(j));
                self.finals.push(job);
            }
            JobKind::Speculative { .. } => self.speculative.push_back(job),
            JobKind::Interim => {
                self.interims.push_back(job);
                while self.interims.len() > max_interims_waiting {
                    self.interims.pop_front();
                    metrics::asr_dropped("overload");
                }
            }
        }
        self.report_depth();
    }

    fn speculate(&mut self, job: Job, workers: usize) -> bool {
        debug_assert!(matches!(job.kind, JobKind::Speculative { .. }));
        self.speculative.retain(|j| !j.key.same_track(&job.key));
        let queued = self.finals.len() == 0 && self.speculative.len() < workers;
        if queued {
            self.speculative.push_back(job);
        }
        self.report_depth();
        queued
    }

    fn promote(&mut self, key: &UtteranceKey, pause: u32) {
        let waiting = self
            .speculative
            .iter()
            .position(|j| j.key == *key && j.kind == JobKind::Speculative { pause });
        if let Some(job) = waiting.and_then(|index| self.speculative.remove(index)) {
            self.finals.push(job);
            self.report_depth();
        }
    }

    /// The next job to run: finals, then speculations, then interims, skipping what no one
    /// waits for any more. A speculation still runs once its call has ended (the call's last
    /// utterance may have ended in its pause and wait for it); an interim does not.
    fn take(&mut self) -> Option<Job> {
        let wanted = |job: &Job| {
            !job.reply.is_closed()
                && (job.kind != JobKind::Interim || job.live.load(Ordering::Relaxed))
        };
        let mut next = self.finals.pop();
        while next.is_none() {
            let job = self
                .speculative
                .pop_front()
                .or_else(|| self.interims.pop_front())?;
            if wanted(&job) {
                next = Some(job);
            } else {
                metrics::asr_dropped("call_ended");
            }
        }
        self.report_depth();
        next
    }

    fn report_depth(&self) {
        metrics::asr_queue(
            self.finals.len(),
            self.speculative.len(),
            self.interims.len(),
        );
    }
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// Handle to the worker; dropping the last one stops its threads after the queue drains.
#[derive(Clone)]
pub struct AsrWorker {
    shared: Arc<Shared>,
    config: AsrConfig,
    models: Arc<dyn SpeechModels>,
    _threads: Arc<Threads>,
}

struct Threads {
    shared: Arc<Shared>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shared.queue.lock().expect("asr queue lock").closed = true;
        self.shared.ready.notify_all();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

impl AsrWorker {
    /// Starts `config.workers` workers running `models`, each on `config.threads` threads.
    pub fn start(models: Arc<dyn SpeechModels>, config: AsrConfig) -> Self {
        metrics::describe();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        let threads = config.threads.max(1);
        let handles = (0..config.workers.max(1))
            .map(|i| {
                let shared = shared.clone();
                let models = models.clone();
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(move |t| format!("asr-{i}-{t}"))
                    .build()
                    .expect("a speech worker's thread pool starts");
                std::thread::Builder::new()
                    .name(format!("asr-{i}"))
                    .spawn(move || pool.install(|| run(&shared, models.as_ref())))
                    .expect("an ASR thread starts")
            })
            .collect();
        Self {
            shared: shared.clone(),
            config,
            models,
            _threads: Arc::new(Threads { shared, handles }),
        }
    }

    /// The models the workers run (for the sentiment of messages).
    pub fn models(&self) -> Arc<dyn SpeechModels> {
        self.models.clone()
    }

    /// The words to expect on a call with `terms` (see [`SpeechModels::prompt`]).
    pub fn prompt(&self, terms: &[String]) -> Result<Prompt, ModelError> {
        self.models.prompt(terms)
    }

    /// Queues a job under the policy above.
    pub fn submit(&self, job: Job) {
        let mut q = self.shared.queue.lock().expect("asr queue lock");
        q.submit(job, self.config.max_interims_waiting);
        drop(q);
        self.shared.ready.notify_one();
    }

    /// Queues a speculative final if the workers have time for it (no final waits, and fewer
    /// speculations than workers wait); false, and nothing queued, when they have not. A newer
    /// speculation of the track replaces a waiting one.
    pub fn speculate(&self, job: Job) -> bool {
        let mut q = self.shared.queue.lock().expect("asr queue lock");
        let queued = q.speculate(job, self.config.workers.max(1));
        drop(q);
        if queued {
            self.shared.ready.notify_one();
        }
        queued
    }

    /// The utterance `key` ended in pause `pause`: its speculative final, if it still waits,
    /// becomes a final (queued fairly as one); one that is running or done is left as it is.
    pub fn promote(&self, key: &UtteranceKey, pause: u32) {
        let mut q = self.shared.queue.lock().expect("asr queue lock");
        q.promote(key, pause);
    }

    /// Jobs waiting now (finals; speculations and interims).
    pub fn waiting(&self) -> (usize, usize) {
        let q = self.shared.queue.lock().expect("asr queue lock");
        (q.finals.len(), q.speculative.len() + q.interims.len())
    }
}

fn next_job(shared: &Shared) -> Option<Job> {
    let mut q = shared.queue.lock().expect("asr queue lock");
    loop {
        if let Some(job) = q.take() {
            return Some(job);
        }
        if q.closed {
            return None;
        }
        q = shared.ready.wait(q).expect("asr queue lock");
    }
}

fn run(shared: &Shared, models: &dyn SpeechModels) {
    while let Some(job) = next_job(shared) {
        let _call = job.span.clone().entered();
        let waited = job.enqueued.elapsed();
        let started = Instant::now();
        let text = models.transcribe(&job.audio, &job.words);
        let sentiment = match &text {
            Ok(text) if job.kind.is_final() && !text.is_empty() => match models.sentiment(text) {
                Ok(s) => Some(s),
                Err(error) => {
                    tracing::warn!(call_id = %job.key.call, %error, "sentiment failed");
                    None
                }
            },
            _ => None,
        };
        let took = started.elapsed();
        let audio_s = job.audio.len() as f64 / 16_000.0;
        metrics::asr_done(job.kind.as_str(), waited, took, audio_s, text.is_err());
        if let Err(error) = &text {
            tracing::warn!(call_id = %job.key.call, track = job.key.track.as_str(), %error, "transcription failed");
        }
        let result = AsrResult {
            key: job.key,
            kind: job.kind,
            text,
            sentiment,
            waited,
            took,
        };
        let _ = job.reply.send(result); // the call may have gone; nothing to do then
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use winnerr_models::SentimentLabel;

    /// Echoes the audio length and blocks until released, so the queue can be inspected.
    struct Gate {
        open: Mutex<bool>,
        cv: Condvar,
    }

    impl Gate {
        /// A model that holds every job until [`Gate::release`]; none when `open`.
        fn new(open: bool) -> Arc<Self> {
            Arc::new(Gate {
                open: Mutex::new(open),
                cv: Condvar::new(),
            })
        }

        fn release(&self) {
            *self.open.lock().unwrap() = true;
            self.cv.notify_all();
        }
    }

    impl SpeechModels for Gate {
        fn transcribe(&self, audio: &[f32], _: &Prompt) -> Result<String, ModelError> {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.cv.wait(open).unwrap();
            }
            Ok(format!("{} samples", audio.len()))
        }
        fn sentiment(&self, _: &str) -> Result<Sentiment, ModelError> {
            Ok(Sentiment {
                label: SentimentLabel::Neutral,
                probabilities: [0.0, 1.0, 0.0],
            })
        }
    }

    fn org(id: &str) -> OrgId {
        OrgId::parse(id).unwrap()
    }

    fn key(call: &str, track: Track, utterance: u32) -> UtteranceKey {
        UtteranceKey {
            call: CallId::parse(call).unwrap(),
            track,
            utterance,
        }
    }

    #[tokio::test]
    async fn finals_go_first_interims_are_superseded_and_dropped_under_overload() {
        let gate = Gate::new(false);
        let worker = AsrWorker::start(
            gate.clone(),
            AsrConfig {
                max_interims_waiting: 2,
                ..AsrConfig::default()
            },
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let live = Arc::new(AtomicBool::new(true));
        let job =
            |k, kind, n| Job::new(org("acme"), k, kind, vec![0.0; n], tx.clone(), live.clone());
        // The first job occupies the worker (blocked at the gate).
        worker.submit(job(key("CA0", Track::Inbound, 1), JobKind::Interim, 1));
        while worker.waiting() != (0, 0) {
            tokio::task::yield_now().await;
        }
        worker.submit(job(key("CA1", Track::Inbound, 1), JobKind::Interim, 10));
        worker.submit(job(key("CA1", Track::Inbound, 1), JobKind::Interim, 20)); // replaces 10
        worker.submit(job(key("CA2", Track::Inbound, 1), JobKind::Interim, 30));
        worker.submit(job(key("CA3", Track::Outbound, 1), JobKind::Interim, 40)); // 20 dropped
        worker.submit(job(key("CA2", Track::Inbound, 1), JobKind::Final, 50)); // removes 30
        assert_eq!(worker.waiting(), (1, 1));
        gate.release();
        let mut order = Vec::new();
        for _ in 0..3 {
            let r = rx.recv().await.unwrap();
            order.push((r.kind, r.text.unwrap()));
        }
        assert_eq!(
            order,
            vec![
                (JobKind::Interim, "1 samples".to_string()),
                (JobKind::Final, "50 samples".to_string()),
                (JobKind::Interim, "40 samples".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn interims_of_an_ended_call_are_skipped_but_finals_run() {
        let gate = Gate::new(true);
        let worker = AsrWorker::start(gate, AsrConfig::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let live = Arc::new(AtomicBool::new(false));
        worker.submit(Job::new(
            org("acme"),
            key("CA1", Track::Inbound, 1),
            JobKind::Interim,
            vec![0.0; 5],
            tx.clone(),
            live.clone(),
        ));
        worker.submit(Job::new(
            org("acme"),
            key("CA1", Track::Outbound, 2),
            JobKind::Final,
            vec![0.0; 7],
            tx,
            live,
        ));
        let r = rx.recv().await.unwrap();
        assert_eq!(
            (r.kind, r.text.unwrap()),
            (JobKind::Final, "7 samples".to_string())
        );
        assert!(r.sentiment.is_some(), "finals with text get a sentiment");
    }

    /// One organization's burst of 12 finals waits its turn: another organization's final,
    /// queued after all of them, is served second, not thirteenth; a call that ended waits
    /// behind live calls' finals but still runs.
    #[tokio::test]
    async fn finals_are_fair_across_organizations_and_live_calls_go_first() {
        let gate = Gate::new(false);
        let worker = AsrWorker::start(gate.clone(), AsrConfig::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let live = Arc::new(AtomicBool::new(true));
        let ended = Arc::new(AtomicBool::new(false));
        let final_of = |org_id: &str, call: &str, live: &Arc<AtomicBool>, seconds: usize| {
            Job::new(
                org(org_id),
                key(call, Track::Inbound, 1),
                JobKind::Final,
                vec![0.0; seconds * 16_000],
                tx.clone(),
                live.clone(),
            )
        };
        // The first job occupies the worker.
        worker.submit(final_of("busy", "CA-first", &live, 1));
        while worker.waiting() != (0, 0) {
            tokio::task::yield_now().await;
        }
        worker.submit(final_of("quiet", "CA-ended", &ended, 1));
        for i in 0..12 {
            worker.submit(final_of("busy", &format!("CA-busy-{i}"), &live, 3));
        }
        worker.submit(final_of("quiet", "CA-quiet", &live, 3));
        assert_eq!(worker.waiting(), (14, 0));
        gate.release();
        let mut order = Vec::new();
        for _ in 0..15 {
            order.push(rx.recv().await.unwrap().key.call.to_string());
        }
        assert_eq!(
            &order[..3],
            ["CA-first", "CA-busy-0", "CA-quiet"],
            "{order:?}"
        );
        assert_eq!(order.last().unwrap(), "CA-ended", "{order:?}");
    }

    /// A speculative final is taken while no final waits, one waiting per worker, and is
    /// served after finals and before interims, with its sentiment.
    #[tokio::test]
    async fn speculation_waits_behind_finals_ahead_of_interims_and_only_while_no_final_waits() {
        let gate = Gate::new(false);
        let worker = AsrWorker::start(gate.clone(), AsrConfig::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let live = Arc::new(AtomicBool::new(true));
        let job =
            |k, kind, n| Job::new(org("acme"), k, kind, vec![0.0; n], tx.clone(), live.clone());
        let paused = JobKind::Speculative { pause: 0 };
        // The first occupies the worker at the gate.
        assert!(worker.speculate(job(key("CA1", Track::Inbound, 1), paused, 1)));
        while worker.waiting() != (0, 0) {
            tokio::task::yield_now().await;
        }
        assert!(worker.speculate(job(key("CA2", Track::Inbound, 1), paused, 2)));
        assert!(
            !worker.speculate(job(key("CA3", Track::Inbound, 1), paused, 3)),
            "one waits for the one worker already"
        );
        worker.submit(job(key("CA4", Track::Inbound, 1), JobKind::Interim, 4));
        worker.submit(job(key("CA5", Track::Inbound, 1), JobKind::Final, 5));
        assert!(
            !worker.speculate(job(key("CA2", Track::Outbound, 1), paused, 6)),
            "a final waits"
        );
        gate.release();
        let mut served = Vec::new();
        for _ in 0..4 {
            let r = rx.recv().await.unwrap();
            assert_eq!(r.sentiment.is_some(), r.kind.is_final(), "{r:?}");
            served.push((r.kind, r.text.unwrap()));
        }
        let samples = |n: usize| format!("{n} samples");
        assert_eq!(
            served,
            vec![
                (paused, samples(1)),
                (JobKind::Final, samples(5)),
                (paused, samples(2)),
                (JobKind::Interim, samples(4)),
            ]
        );
    }

    /// Promotion itself, on the queue (a waiting speculation cannot be held waiting through the
    /// threads): a promoted speculation goes before an interim queued ahead of it and keeps its
    /// kind (its call knows it is the final); a final of the track sets a waiting one aside.
    #[test]
    fn a_promoted_speculation_waits_as_a_final_and_a_final_of_its_track_sets_one_aside() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let live = Arc::new(AtomicBool::new(true));
        let job =
            |k, kind, n| Job::new(org("acme"), k, kind, vec![0.0; n], tx.clone(), live.clone());
        let paused = JobKind::Speculative { pause: 2 };
        let mut q = Queue::default();
        q.submit(job(key("CA1", Track::Inbound, 1), JobKind::Interim, 1), 8);
        assert!(q.speculate(job(key("CA2", Track::Inbound, 4), paused, 2), 2));
        assert!(
            !q.speculate(job(key("CA3", Track::Inbound, 1), paused, 3), 1),
            "the one worker's time is taken by the waiting speculation"
        );
        q.promote(&key("CA2", Track::Inbound, 4), 1); // another pause: nothing
        assert_eq!((q.finals.len(), q.speculative.len()), (0, 1));
        q.promote(&key("CA2", Track::Inbound, 4), 2);
        assert_eq!((q.finals.len(), q.speculative.len()), (1, 0));
        let order: Vec<_> = std::iter::from_fn(|| q.take())
            .map(|j| (j.kind, j.audio.len()))
            .collect();
        assert_eq!(order, vec![(paused, 2), (JobKind::Interim, 1)]);

        assert!(q.speculate(job(key("CA2", Track::Inbound, 5), paused, 5), 3));
        q.submit(job(key("CA2", Track::Inbound, 6), JobKind::Final, 6), 8);
        let order: Vec<_> = std::iter::from_fn(|| q.take())
            .map(|j| (j.kind, j.audio.len()))
            .collect();
        assert_eq!(order, vec![(JobKind::Final, 6)]);
    }
}
