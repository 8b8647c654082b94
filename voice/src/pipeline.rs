//! One task per call: reads the call's inputs in order, cuts each track into utterances, sends
//! them to the shared speech worker, and publishes the call's events — activity, interim and final
//! transcripts with sentiment, alerts, DTMF, start and end — in the order they happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, warn};
use winnerr_bus::Bus;
use winnerr_events::{
    Alert, CallAudio, CallContext, CallEnded, CallInput, EndReason, Envelope, Event,
    SentimentScore, StreamStats, Track, Transcript,
};

use crate::alerts::{AlertConfig, Rolling, keywords_in};
use crate::asr::{AsrResult, AsrWorker, Job, JobKind, UtteranceKey};
use crate::keyterms::{self, Keyterms};
use crate::metrics;
use crate::turn::{TurnDetector, TurnVerdict};
use crate::utterance::{Segmented, Segmenter, StablePrefix, UtteranceConfig};
use crate::vad::SpeechDetector;

/// Settings of the voice stage.
#[derive(Debug, Clone, Default)]
pub struct VoiceConfig {
    pub utterance: UtteranceConfig,
    pub alerts: AlertConfig,
    /// What finds speech in each track.
    pub speech: SpeechDetector,
    /// What ends an utterance at a pause when the turn is over (`None`: the silence alone).
    pub turn: Option<TurnDetector>,
    /// Non-speech after which an utterance's final is decoded speculatively, while a worker is
    /// free, so that it is ready when the utterance ends there (with a turn model, its pause);
    /// `None`: finals are decoded once their utterance has ended.
    pub speculate_after_ms: Option<u64>,
    /// What each organization's transcripts have redacted before they leave the stage.
    pub redaction: crate::redact::RedactionConfig,
    /// When each organization's coaching alerts are raised.
    pub coaching: winnerr_events::PerOrg<crate::signals::Coaching>,
}

/// The longest pause between two utterances of a card number read out.
const CARD_PAUSE_MS: u64 = 5_000;

/// How long a call waits for its keyterms before it goes on with the trade's words only.
const KEYTERMS_DEADLINE: Duration = Duration::from_secs(2);

/// How long a call's end waits for its last finals from the speech worker.
const FINALS_DEADLINE: Duration = Duration::from_secs(30);

/// Runs the voice stage: every call that arrives on `calls` is processed on its own task until
/// its `Ended`, its speech decoded expecting the words `keyterms` gives for it. Without a speech
/// worker, calls get activity, DTMF, start and end only. Returns when `calls` closes and every
/// call has finished.
pub fn spawn(
    mut calls: mpsc::Receiver<CallAudio>,
    bus: Arc<dyn Bus>,
    config: VoiceConfig,
    asr: Option<AsrWorker>,
    keyterms: Keyterms,
) -> JoinHandle<()> {
    metrics::describe();
    let config = Arc::new(config);
    tokio::spawn(async move {
        let mut running = tokio::task::JoinSet::new();
        while let Some(call) = calls.recv().await {
            let span = tracing::info_span!(
                "call",
                org_id = %call.call.org_id,
                call_id = %call.call.call_id
            );
            let run = run_call(
                call,
                bus.clone(),
                config.clone(),
                asr.clone(),
                keyterms.clone(),
            );
            running.spawn(run.instrument(span));
            // Reap finished calls so the set does not grow with the process's lifetime.
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    })
}

pub(crate) async fn publish(bus: &dyn Bus, call: &CallContext, event: Event) {
    let kind = event.kind();
    match bus.publish(Envelope::new(call, event)).await {
        Ok(()) => metrics::emitted(kind),
        Err(err) => {
            metrics::publish_failed(kind);
            winnerr_events::warn_throttled!(call_id = %call.call_id, org_id = %call.org_id, kind, error = %err, "event not published");
        }
    }
}

/// Where one track's open utterance stands.
#[derive(Default)]
struct TrackState {
    /// The open utterance's number and its stable prefix.
    open: Option<(u32, StablePrefix)>,
    /// Times of utterances waiting for their final: number → (start, end, last voiced).
    pending: std::collections::HashMap<u32, (u64, u64, u64)>,
    /// Times of the open utterance's latest interim snapshot.
    interim_times: Option<(u64, u64, u64)>,
    /// The open utterance, when the turn model said "not yet" at its last pause: if the silence
    /// ends it anyway, the fallback did.
    not_yet: Option<u32>,
    /// The end (call clock) of the last final when it ended on a card's digits: the next
    /// utterance, soon after, may go on with them.
    card_open_at: Option<u64>,
    /// The open utterance's final decoded from its latest pause, before it ended.
    speculation: Option<Speculation>,
    /// Utterances that ended in a pause whose speculation is still decoding: number → pause.
    /// Its result is the utterance's final.
    promoted: std::collections::HashMap<u32, u32>,
    rolling: Rolling,
}

/// A final decoded from a pause (see [`VoiceConfig::speculate_after_ms`]).
struct Speculation {
    utterance: u32,
    pause: u32,
    /// Its result, once the worker is done.
    result: Option<AsrResult>,
}

impl Speculation {
    fn is_of(&self, utterance: u32, pause: u32) -> bool {
        (self.utterance, self.pause) == (utterance, pause)
    }
}

struct CallRun {
    call: CallContext,
    bus: Arc<dyn Bus>,
    config: Arc<VoiceConfig>,
    asr: Option<AsrWorker>,
    results: mpsc::UnboundedSender<AsrResult>,
    /// Where the turn model answers this call's pauses.
    verdicts: mpsc::UnboundedSender<TurnVerdict>,
    live: Arc<AtomicBool>,
    tracks: [TrackState; 2],
    /// The call's organization's redaction policy.
    redaction: crate::redact::Policy,
    /// Who talked how much, and the coaching alerts it raises.
    signals: crate::signals::Signals,
    /// The furthest the call's clock has come (ms from the stream's start).
    clock_ms: u64,
    /// Alerts raised, by kind.
    alerts_raised: std::collections::BTreeMap<String, u32>,
    /// The words the call's speech is decoded expecting (empty until its keyterms are read)...
    words: Arc<winnerr_models::Prompt>,
    /// ...its keyterms, and those heard in its finals, in the order first heard.
    keyterms: Vec<String>,
    keyterms_heard: Vec<String>,
    /// Finals cut while the keyterms are being read (`None` once they are, or without a worker).
    held: Option<Vec<Job>>,
}

impl CallRun {
    async fn segmented(&mut self, track: Track, outputs: Vec<Segmented>) {
        for output in outputs {
            match output {
                Segmented::Activity(change) => {
                    let speaking = change.state == winnerr_events::ActivityState::Speaking;
                    let coached = self.signals.activity(track, speaking, change.at_ms);
                    publish(self.bus.as_ref(), &self.call, Event::AudioActivity(change)).await;
                    self.coach(coached).await;
                }
                Segmented::Interim {
                    number,
                    audio,
                    start_ms,
                    end_ms,
                    last_voiced_at_ms,
                } => {
                    let state = &mut self.tracks[track.index()];
                    if state.open.as_ref().is_none_or(|(n, _)| *n != number) {
                        state.open = Some((number, StablePrefix::default()));
                    }
                    state.interim_times = Some((start_ms, end_ms, last_voiced_at_ms));
                    self.submit(track, number, JobKind::Interim, audio);
                }
                Segmented::Pause {
                    number,
                    pause,
                    audio,
                } => {
                    if self.config.speculate_after_ms.is_some() {
                        self.speculate(track, number, pause, &audio);
                    }
                    if let Some(turn) = &self.config.turn {
                        let call = self.call.call_id.clone();
                        turn.ask(call, track, number, pause, audio, self.verdicts.clone());
                    }
                }
                Segmented::Final(u) => {
                    let state = &mut self.tracks[track.index()];
                    if state.open.as_ref().is_some_and(|(n, _)| *n == u.number) {
                        state.open = None;
                    }
                    if state.not_yet.take() == Some(u.number) {
                        metrics::turn_decision("fallback");
                    }
                    state
                        .pending
                        .insert(u.number, (u.start_ms, u.end_ms, u.last_voiced_at_ms));
                    metrics::utterance(track.as_str(), u.audio.len() as f64 / 16_000.0);
                    let speculated = match (state.speculation.take(), u.ended_in_pause) {
                        (Some(spec), Some(pause)) if spec.is_of(u.number, pause) => Some(spec),
                        (Some(_), _) => {
                            metrics::speculative("wasted");
                            None
                        }
                        (None, _) => None,
                    };
                    match speculated {
                        Some(Speculation {
                            result: Some(result),
                            ..
                        }) => {
                            metrics::speculative("used");
                            self.result(AsrResult {
                                kind: JobKind::Final,
                                ..result
                            })
                            .await;
                        }
                        Some(spec) => {
                            // Still decoding, or waiting: it is the final, and waits as one.
                            if let Some(asr) = &self.asr {
                                asr.promote(&self.key(track, u.number), spec.pause);
                            }
                            let state = &mut self.tracks[track.index()];
                            state.promoted.insert(u.number, spec.pause);
                        }
                        None => self.submit(track, u.number, JobKind::Final, u.audio),
                    }
                }
            }
        }
    }

    /// The call's clock reached `at_ms`: coaching alerts now due, and the periodic report.
    async fn tick(&mut self, at_ms: u64) {
        self.clock_ms = self.clock_ms.max(at_ms);
        let coached = self.signals.tick(self.clock_ms);
        self.coach(coached).await;
        if self.signals.report_due(self.clock_ms) {
            let report = self.signals.report(self.clock_ms, false);
            publish(self.bus.as_ref(), &self.call, Event::CallSignals(report)).await;
        }
    }

    /// Publishes coaching alerts (no utterance raised them: no speech time to measure from).
    async fn coach(&mut self, coached: Vec<crate::signals::Coached>) {
        for coached in coached {
            metrics::coaching_alert(coached.kind.name());
            let alert = Alert {
                track: coached.track,
                utterance: 0,
                kind: coached.kind,
                text: coached.text,
                last_voiced_at_ms: 0,
            };
            self.raise(alert).await;
        }
    }

    /// Publishes `alert`, counted by kind for the call's summary.
    async fn raise(&mut self, alert: Alert) {
        *self
            .alerts_raised
            .entry(alert.kind.name().to_owned())
            .or_default() += 1;
        publish(self.bus.as_ref(), &self.call, Event::Alert(alert)).await;
    }

    fn key(&self, track: Track, utterance: u32) -> UtteranceKey {
        UtteranceKey {
            call: self.call.call_id.clone(),
            track,
            utterance,
        }
    }

    fn job(&self, track: Track, utterance: u32, kind: JobKind, audio: Vec<f32>) -> Job {
        Job::new(
            self.call.org_id.clone(),
            self.key(track, utterance),
            kind,
            audio,
            self.results.clone(),
            self.live.clone(),
        )
    }

    /// Sends an utterance to the speech worker; a final cut before the call's keyterms are read
    /// waits for them (an interim, a preview, goes without).
    fn submit(&mut self, track: Track, utterance: u32, kind: JobKind, audio: Vec<f32>) {
        let Some(asr) = &self.asr else { return };
        let job = self.job(track, utterance, kind, audio);
        match &mut self.held {
            Some(held) if kind == JobKind::Final => held.push(job),
            _ => asr.submit(job.expecting(self.words.clone())),
        }
    }

    /// Starts decoding the final of `track`'s open utterance from its pause `pause`, if a worker
    /// is free for it and the call's keyterms have been read; a speculation of an earlier pause
    /// is moot (the speaker went on).
    fn speculate(&mut self, track: Track, utterance: u32, pause: u32, audio: &[f32]) {
        let Some(asr) = &self.asr else { return };
        if self.tracks[track.index()].speculation.take().is_some() {
            metrics::speculative("wasted");
        }
        if self.held.is_some() {
            return;
        }
        let job = self
            .job(
                track,
                utterance,
                JobKind::Speculative { pause },
                audio.to_vec(),
            )
            .expecting(self.words.clone());
        if asr.speculate(job) {
            self.tracks[track.index()].speculation = Some(Speculation {
                utterance,
                pause,
                result: None,
            });
        } else {
            metrics::speculative("busy");
        }
    }

    /// The call's keyterms came (`None`: they could not be made): later utterances, and the
    /// finals held for them, are decoded expecting them.
    fn words_read(&mut self, read: Option<(Vec<String>, winnerr_models::Prompt)>) {
        if let Some((terms, prompt)) = read {
            self.keyterms = terms;
            self.words = Arc::new(prompt);
        }
        let held = self.held.take().unwrap_or_default();
        if let Some(asr) = &self.asr {
            for job in held {
                asr.submit(job.expecting(self.words.clone()));
            }
        }
    }

    /// The turn model's answer about a pause of `segmenter`'s track.
    async fn verdict(&mut self, verdict: TurnVerdict, segmenter: &mut Segmenter) {
        let state = &mut self.tracks[verdict.track.index()];
        if !verdict.complete {
            state.not_yet = Some(verdict.utterance);
            return;
        }
        let outputs = segmenter.end_turn(verdict.utterance, verdict.pause);
        if !outputs.is_empty() {
            state.not_yet = None;
        }
        self.segmented(verdict.track, outputs).await;
    }

    fn pending_finals(&self) -> usize {
        self.tracks.iter().map(|t| t.pending.len()).sum()
    }

    async fn result(&mut self, result: AsrResult) {
        let track = result.key.track;
        let number = result.key.utterance;
        let result = match result.kind {
            JobKind::Speculative { pause } => {
                let state = &mut self.tracks[track.index()];
                if state.promoted.get(&number) != Some(&pause) {
                    // For the open utterance: kept until it ends, or goes on.
                    let open = state
                        .speculation
                        .as_mut()
                        .filter(|s| s.is_of(number, pause));
                    match open {
                        Some(spec) if result.text.is_ok() => spec.result = Some(result),
                        Some(_) => {
                            state.speculation = None; // its final is decoded when it ends
                            metrics::speculative("wasted");
                        }
                        None => {} // moot: counted when it was set aside
                    }
                    return;
                }
                state.promoted.remove(&number);
                metrics::speculative("used");
                AsrResult {
                    kind: JobKind::Final,
                    ..result
                }
            }
            _ => result,
        };
        let Ok(text) = result.text else {
            self.tracks[track.index()].pending.remove(&number);
            return;
        };
        // Nothing below sees the words redaction takes out: not the feed, the bus, the store,
        // alerts or lead scoring.
        let state = &self.tracks[track.index()];
        let starts_ms = match result.kind {
            JobKind::Interim => state.interim_times.map(|t| t.0),
            JobKind::Final | JobKind::Speculative { .. } => state.pending.get(&number).map(|t| t.0),
        };
        let card_open = state
            .card_open_at
            .zip(starts_ms)
            .is_some_and(|(ended, starts)| starts.saturating_sub(ended) <= CARD_PAUSE_MS);
        let (text, redacted) = crate::redact::redact_continuing(&text, &self.redaction, card_open);
        if result.kind.is_final() {
            let ends_on_card = crate::redact::ends_on_a_card(&text, &redacted);
            let state = &mut self.tracks[track.index()];
            state.card_open_at = ends_on_card
                .then(|| state.pending.get(&number).map(|t| t.1))
                .flatten();
        }
        for redaction in &redacted {
            metrics::redacted(redaction.kind.as_str(), result.kind.as_str());
        }
        let state = &mut self.tracks[track.index()];
        match result.kind {
            JobKind::Interim => {
                // Only for the utterance still open: a late interim must not follow its final.
                let Some((open, prefix)) = &mut state.open else {
                    return;
                };
                if *open != number || text.is_empty() {
                    return;
                }
                let Some((shown, stable)) = prefix.update(&text) else {
                    return; // the same as the last interim: nothing new for the feed
                };
                let Some((start_ms, end_ms, last_voiced_at_ms)) = state.interim_times else {
                    return;
                };
                let event = Transcript {
                    track,
                    utterance: number,
                    is_final: false,
                    redactions: redactions_of(&shown),
                    text: shown,
                    stable_text: stable,
                    start_ms,
                    end_ms,
                    last_voiced_at_ms,
                    sentiment: None,
                };
                publish(self.bus.as_ref(), &self.call, Event::Transcript(event)).await;
            }
            JobKind::Final | JobKind::Speculative { .. } => {
                let Some((start_ms, end_ms, last_voiced_at_ms)) = state.pending.remove(&number)
                else {
                    return;
                };
                if text.is_empty() {
                    metrics::empty_final(track.as_str());
                    return;
                }
                self.signals.said(track, &text);
                for term in keyterms::heard(&text, &self.keyterms) {
                    if !self.keyterms_heard.iter().any(|t| t == term) {
                        self.keyterms_heard.push(term.to_owned());
                    }
                }
                let state = &mut self.tracks[track.index()];
                let mut alerts = Vec::new();
                let sentiment = result.sentiment.map(|s| {
                    let (rolling, drop) = state.rolling.add(s.score(), &self.config.alerts);
                    alerts.extend(drop);
                    SentimentScore {
                        label: s.label.as_str().to_string(),
                        probabilities: s.probabilities,
                        score: s.score(),
                        rolling,
                    }
                });
                for keyword in
                    keywords_in(&text, self.config.alerts.keywords_for(&self.call.org_id))
                {
                    alerts.push(winnerr_events::AlertKind::Keyword { keyword });
                }
                let event = Transcript {
                    track,
                    utterance: number,
                    is_final: true,
                    redactions: redactions_of(&text),
                    stable_text: text.clone(),
                    text: text.clone(),
                    start_ms,
                    end_ms,
                    last_voiced_at_ms,
                    sentiment,
                };
                publish(self.bus.as_ref(), &self.call, Event::Transcript(event)).await;
                for kind in alerts {
                    let alert = Alert {
                        track,
                        utterance: number,
                        kind,
                        text: text.clone(),
                        last_voiced_at_ms,
                    };
                    self.raise(alert).await;
                }
            }
        }
    }
}

/// The redactions of a published text, as the event lists them.
pub(crate) fn redactions_of(text: &str) -> Vec<winnerr_events::Redaction> {
    crate::redact::mask_spans(text)
        .into_iter()
        .map(|r| winnerr_events::Redaction {
            kind: r.kind.as_str().to_owned(),
            start: r.start,
            end: r.end,
        })
        .collect()
}

/// Reads the call's keyterms (the trade's words when they cannot be read in time) and makes
/// them the words its speech is decoded expecting.
async fn call_words(
    call: CallContext,
    source: Keyterms,
    asr: AsrWorker,
) -> (Vec<String>, winnerr_models::Prompt) {
    let terms = tokio::time::timeout(KEYTERMS_DEADLINE, source.keyterms(&call))
        .await
        .unwrap_or_else(|_| Err(format!("not read in {KEYTERMS_DEADLINE:?}")))
        .unwrap_or_else(|error| {
            metrics::keyterms_failed(&call, "keyterms not read; the trade's words only", &error);
            keyterms::trade_terms()
        });
    let prompt = asr.prompt(&terms).unwrap_or_else(|error| {
        metrics::keyterms_failed(&call, "keyterms not made into a prompt", &error.to_string());
        winnerr_models::Prompt::default()
    });
    (terms, prompt)
}

async fn run_call(
    audio: CallAudio,
    bus: Arc<dyn Bus>,
    config: Arc<VoiceConfig>,
    asr: Option<AsrWorker>,
    keyterm_source: Keyterms,
) {
    let CallAudio {
        call,
        started,
        mut inputs,
    } = audio;
    let sample_rate = started.media_format.sample_rate;
    metrics::call_started();
    publish(bus.as_ref(), &call, Event::CallStarted(started)).await;
    let (results_tx, mut results) = mpsc::unbounded_channel();
    let (verdicts_tx, mut verdicts) = mpsc::unbounded_channel();
    let call_org = call.org_id.clone();
    let transcribing = asr.is_some();
    let mut run = CallRun {
        call,
        bus,
        config: config.clone(),
        asr,
        results: results_tx,
        verdicts: verdicts_tx,
        live: Arc::new(AtomicBool::new(true)),
        tracks: Default::default(),
        redaction: config.redaction.policy_for(&call_org),
        signals: crate::signals::Signals::new(*config.coaching.of(&call_org)),
        clock_ms: 0,
        alerts_raised: Default::default(),
        words: Arc::default(),
        keyterms: Vec::new(),
        keyterms_heard: Vec::new(),
        held: transcribing.then(Vec::new),
    };
    // The call's keyterms are read beside its audio: no frame waits for them; interims until
    // they come are decoded without them, finals wait for them.
    let (words_tx, mut words) = tokio::sync::oneshot::channel();
    if let Some(asr) = run.asr.clone() {
        let call = run.call.clone();
        tokio::spawn(async move {
            let _ = words_tx.send(call_words(call, keyterm_source, asr).await);
        });
    }
    // With a turn model the pause asks it (and starts the speculative final), and the silence
    // that ends speech is its fallback.
    let mut utterance = config.utterance;
    utterance.pause_ms = config.speculate_after_ms;
    if let Some(turn) = &config.turn {
        utterance.pause_ms = Some(turn.config().pause_ms);
        utterance.activity.hangover_ms = turn.config().fallback_ms;
    }
    let mut segmenters = Track::ALL
        .map(|track| Segmenter::with_audio(track, utterance, &config.speech, transcribing));
    let ended = loop {
        tokio::select! {
            biased;
            read = &mut words, if run.held.is_some() => run.words_read(read.ok()),
            Some(result) = results.recv() => run.result(result).await,
            Some(verdict) = verdicts.recv() => {
                let segmenter = &mut segmenters[verdict.track.index()];
                run.verdict(verdict, segmenter).await;
            }
            input = inputs.recv() => match input {
                Some(CallInput::Frame(frame)) => {
                    metrics::frame(frame.track.as_str());
                    match segmenters[frame.track.index()].push(&frame, sample_rate) {
                        Ok(outputs) => run.segmented(frame.track, outputs).await,
                        Err(error) => winnerr_events::warn_throttled!(call_id = %run.call.call_id, %error, "frame not resampled"),
                    }
                    run.tick(frame.timestamp_ms).await;
                }
                Some(CallInput::Dtmf(dtmf)) => publish(run.bus.as_ref(), &run.call, Event::Dtmf(dtmf)).await,
                Some(CallInput::Ended(ended)) => break ended,
                None => {
                    debug!(call_id = %run.call.call_id, "call inputs closed without an end");
                    break CallEnded { reason: EndReason::Abandoned, duration_ms: 0, stats: StreamStats::default() };
                }
            },
        }
    };
    // Speech in progress ends with the call; its final still comes, before the call's end.
    run.live.store(false, Ordering::Relaxed);
    for (track, segmenter) in Track::ALL.into_iter().zip(&mut segmenters) {
        let outputs = segmenter.stop();
        run.segmented(track, outputs).await;
    }
    if run.held.is_some() {
        // At most KEYTERMS_DEADLINE: the read gives up then.
        let read = (&mut words).await.ok();
        run.words_read(read);
    }
    let deadline = tokio::time::Instant::now() + FINALS_DEADLINE;
    while run.asr.is_some() && run.pending_finals() > 0 {
        match tokio::time::timeout_at(deadline, results.recv()).await {
            Ok(Some(result)) => run.result(result).await,
            _ => {
                warn!(call_id = %run.call.call_id, pending = run.pending_finals(), "call ended before its last finals");
                break;
            }
        }
    }
    let summary = winnerr_events::PostCallSummary {
        signals: run.signals.report(run.clock_ms, true),
        agent_sentiment: run.tracks[Track::Outbound.index()].rolling.arc(),
        customer_sentiment: run.tracks[Track::Inbound.index()].rolling.arc(),
        alerts: std::mem::take(&mut run.alerts_raised),
        keyterms: std::mem::take(&mut run.keyterms_heard),
    };
    publish(run.bus.as_ref(), &run.call, Event::CallSummary(summary)).await;
    publish(run.bus.as_ref(), &run.call, Event::CallEnded(ended)).await;
    metrics::call_ended();
}
