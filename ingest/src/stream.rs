//! The server side of one Twilio Media Streams WebSocket: reads Twilio's messages, drives the
//! [`StreamSession`], hands audio to the voice stage, sends media/mark/clear back, and closes
//! with a documented code ([`Refusal`]) on bad input. A bad stream only ever ends itself.

use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, warn};
use winnerr_events::{
    AudioFrame, CallAudio, CallContext, CallId, CallInput, CallStarted, ConsentRecord, Dtmf,
    EndReason, MediaFormat,
};

use crate::consent::Consent;
use crate::identity::StreamIdentity;
use crate::metrics;
use crate::protocol::{self, MULAW_ENCODING, ServerMessage, StartMeta, TwilioMessage};
use crate::routes::Ingest;
use crate::session::{MarkEcho, MediaOutcome, StreamSession};

/// Why the server closes a stream: the WebSocket close code and reason it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    /// Label for the `winnerr_ingest_bad_input_total` metric.
    pub label: &'static str,
}

impl Refusal {
    pub const STOPPED: Refusal = Refusal {
        code: 1000,
        reason: "stream stopped",
        label: "stop",
    };
    pub const SHUTTING_DOWN: Refusal = Refusal {
        code: 1001,
        reason: "server shutting down",
        label: "shutdown",
    };
    pub const BINARY_FRAME: Refusal = Refusal {
        code: 1003,
        reason: "binary frames are not part of the protocol",
        label: "binary_frame",
    };
    pub const MALFORMED: Refusal = Refusal {
        code: 1007,
        reason: "malformed message",
        label: "malformed_json",
    };
    pub const TOO_BIG: Refusal = Refusal {
        code: 1009,
        reason: "message over the size limit",
        label: "message_too_big",
    };
    pub const UNAVAILABLE: Refusal = Refusal {
        code: 1011,
        reason: "voice pipeline unavailable",
        label: "voice_unavailable",
    };
    pub const BEFORE_START: Refusal = Refusal {
        code: 4001,
        reason: "message before start",
        label: "before_start",
    };
    pub const SECOND_START: Refusal = Refusal {
        code: 4002,
        reason: "second start on one stream",
        label: "second_start",
    };
    pub const BAD_IDENTITY: Refusal = Refusal {
        code: 4003,
        reason: "stream identity missing or not signed",
        label: "bad_identity",
    };
    pub const UNSUPPORTED_FORMAT: Refusal = Refusal {
        code: 4004,
        reason: "only 8 kHz mono audio/x-mulaw is supported",
        label: "unsupported_format",
    };
    pub const DUPLICATE_STREAM: Refusal = Refusal {
        code: 4005,
        reason: "the call already has a live stream",
        label: "duplicate_stream",
    };
    pub const NODE_FULL: Refusal = Refusal {
        code: 4007,
        reason: "the node serves as many calls as it can",
        label: "node_full",
    };
    pub const ORG_LIMIT: Refusal = Refusal {
        code: 4009,
        reason: "the organization has as many calls as it may",
        label: "org_limit",
    };
    pub const NO_CONSENT: Refusal = Refusal {
        code: 4010,
        reason: "the organization asks callers to opt in and this one did not",
        label: "no_consent",
    };
    pub const BAD_START: Refusal = Refusal {
        code: 4006,
        reason: "start fields out of range",
        label: "bad_start",
    };
}

/// Longest SID Twilio writes (two letters and 32 hex digits) with room to spare.
const MAX_SID_LEN: usize = 64;

/// Whether `sid` looks like a Twilio SID: 1–64 ASCII letters and digits (what every store and
/// log downstream can hold; a NUL or a megabyte cannot get past here).
fn plausible_sid(sid: &str) -> bool {
    (1..=MAX_SID_LEN).contains(&sid.len()) && sid.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Something the server asks a live stream to send to Twilio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamCommand {
    /// Audio to play to the caller, 8 kHz mu-law bytes.
    Play(Vec<u8>),
    /// A named mark after the audio sent so far; Twilio echoes it once that audio has played.
    Mark(String),
    /// Drop audio sent but not yet played.
    Clear,
}

/// Depth of the queue of commands to one stream.
pub(crate) const COMMAND_QUEUE: usize = 64;

/// What the loop does after a message.
enum Step {
    Continue,
    /// Twilio said `stop`.
    Stopped,
    /// The peer went away without `stop`.
    Dropped,
    /// The server closes the stream.
    Close(Refusal),
}

/// A stream after its `start`.
struct LiveCall {
    session: StreamSession,
    call: CallContext,
    inputs: mpsc::Sender<CallInput>,
    /// The call's place under the node's and the organization's limits, while it streams.
    _admitted: crate::admission::Admitted,
}

struct Connection {
    ingest: Ingest,
    live: Option<LiveCall>,
    commands: mpsc::Sender<StreamCommand>,
    /// Reused buffer of frames due for the voice stage.
    due: Vec<AudioFrame>,
}

type Sink = SplitSink<WebSocket, Message>;

/// Serves one upgraded Twilio WebSocket until it ends, in a span that names its call once the
/// stream has started.
pub(crate) async fn serve(socket: WebSocket, ingest: Ingest) {
    let span = tracing::info_span!(
        "twilio_stream",
        stream_sid = tracing::field::Empty,
        org_id = tracing::field::Empty,
        call_id = tracing::field::Empty
    );
    serve_stream(socket, ingest).instrument(span).await
}

async fn serve_stream(socket: WebSocket, ingest: Ingest) {
    let (mut sink, mut source) = socket.split();
    let (commands_tx, mut commands) = mpsc::channel(COMMAND_QUEUE);
    let shutdown = ingest.shutdown().clone();
    let mut conn = Connection {
        ingest,
        live: None,
        commands: commands_tx,
        due: Vec::new(),
    };
    let end = loop {
        let step = tokio::select! {
            message = source.next() => match message {
                Some(Ok(Message::Text(text))) => conn.on_text(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => Step::Close(Refusal::BINARY_FRAME),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
                Some(Ok(Message::Close(_))) | None => Step::Dropped,
                Some(Err(err)) => {
                    debug!(stream_sid = conn.stream_sid(), error = %err, "Twilio socket failed");
                    Step::Dropped
                }
            },
            Some(command) = commands.recv() => conn.on_command(command, &mut sink).await,
            _ = shutdown.cancelled() => Step::Close(Refusal::SHUTTING_DOWN),
        };
        if !matches!(step, Step::Continue) {
            break step;
        }
    };
    conn.end(end, &mut sink).await;
}

impl Connection {
    fn stream_sid(&self) -> &str {
        self.live
            .as_ref()
            .map_or("", |live| live.session.stream_sid())
    }

    async fn on_text(&mut self, text: &str) -> Step {
        let started = Instant::now();
        if text.len() > self.ingest.config().max_message_bytes {
            return Step::Close(Refusal::TOO_BIG);
        }
        let message = match protocol::parse(text) {
            Ok(message) => message,
            Err(err) => {
                warn!(stream_sid = self.stream_sid(), error = %err, "malformed Twilio message");
                return Step::Close(Refusal::MALFORMED);
            }
        };
        metrics::message(message.kind());
        let step = self.on_message(message, text).await;
        metrics::message_handled(started.elapsed());
        step
    }

    async fn on_message(&mut self, message: TwilioMessage<'_>, text: &str) -> Step {
        if let (Some(live), Some(sequence)) = (&mut self.live, message.sequence_number()) {
            let missing = live.session.on_sequence(sequence);
            if missing > 0 {
                metrics::sequence_missing(missing);
            }
        }
        match message {
            TwilioMessage::Connected { .. } => Step::Continue,
            TwilioMessage::Unknown => {
                debug!(stream_sid = self.stream_sid(), message = %text.chars().take(120).collect::<String>(), "unknown Twilio event ignored");
                Step::Continue
            }
            TwilioMessage::Start {
                sequence_number,
                start,
                stream_sid,
            } => {
                if self.live.is_some() {
                    return Step::Close(Refusal::SECOND_START);
                }
                match self.begin(start, stream_sid).await {
                    Ok(()) => {
                        if let Some(live) = &mut self.live {
                            live.session.on_sequence(sequence_number);
                            let span = tracing::Span::current();
                            span.record("stream_sid", live.session.stream_sid());
                            span.record("org_id", live.call.org_id.as_str());
                            span.record("call_id", live.call.call_id.as_str());
                        }
                        Step::Continue
                    }
                    Err(refusal) => Step::Close(refusal),
                }
            }
            TwilioMessage::Media {
                media, stream_sid, ..
            } => {
                let Some(live) = &mut self.live else {
                    return Step::Close(Refusal::BEFORE_START);
                };
                match live.session.on_media(&stream_sid, &media, &mut self.due) {
                    Ok(MediaOutcome::Accepted) => metrics::frame(media.track.as_str()),
                    Ok(MediaOutcome::Late) => metrics::frame_dropped("late"),
                    Err(err) => {
                        metrics::bad_input(err.reason(), "skipped");
                        winnerr_events::warn_throttled!(stream_sid = %live.session.stream_sid(), call_id = %live.call.call_id, error = %err, "media frame skipped");
                    }
                }
                self.forward_due()
            }
            TwilioMessage::Dtmf { dtmf, .. } => {
                let Some(live) = &self.live else {
                    return Step::Close(Refusal::BEFORE_START);
                };
                let mut chars = dtmf.digit.chars();
                let digit = match (chars.next(), chars.next()) {
                    (Some(d), None) if d.is_ascii_digit() || "*#ABCD".contains(d) => d,
                    _ => {
                        metrics::bad_input("bad_dtmf", "skipped");
                        warn!(stream_sid = %live.session.stream_sid(), digit = %dtmf.digit.chars().take(8).collect::<String>(), "DTMF digit skipped");
                        return Step::Continue;
                    }
                };
                let input = CallInput::Dtmf(Dtmf {
                    track: dtmf.track.into(),
                    digit,
                });
                if live.inputs.send(input).await.is_err() {
                    return Step::Close(Refusal::UNAVAILABLE);
                }
                Step::Continue
            }
            TwilioMessage::Mark { mark, .. } => {
                let Some(live) = &mut self.live else {
                    return Step::Close(Refusal::BEFORE_START);
                };
                match live.session.mark_echoed(&mark.name) {
                    MarkEcho::Matched => metrics::mark("matched"),
                    MarkEcho::Unexpected => {
                        metrics::mark("unexpected");
                        debug!(stream_sid = %live.session.stream_sid(), mark = %mark.name, "echo of a mark never sent");
                    }
                }
                Step::Continue
            }
            TwilioMessage::Stop { .. } => {
                if self.live.is_none() {
                    return Step::Close(Refusal::BEFORE_START);
                }
                Step::Stopped
            }
        }
    }

    /// Checks a `start` and opens the call towards the voice stage.
    async fn begin(&mut self, start: StartMeta, stream_sid: String) -> Result<(), Refusal> {
        if !plausible_sid(&stream_sid)
            || !plausible_sid(&start.account_sid)
            || start.tracks.is_empty()
            || start.tracks.len() > 2
        {
            warn!(
                stream_sid = %stream_sid.escape_debug().take(MAX_SID_LEN).collect::<String>(),
                account_sid = %start.account_sid.escape_debug().take(MAX_SID_LEN).collect::<String>(),
                tracks = start.tracks.len(),
                "stream refused: start fields out of range"
            );
            return Err(Refusal::BAD_START);
        }
        let format = &start.media_format;
        if format.encoding != MULAW_ENCODING || format.sample_rate != 8000 || format.channels != 1 {
            warn!(%stream_sid, encoding = %format.encoding, rate = format.sample_rate, "unsupported media format");
            return Err(Refusal::UNSUPPORTED_FORMAT);
        }
        let identity = CallId::parse(&start.call_sid)
            .map_err(|err| err.to_string())
            .and_then(|call_id| {
                let key = &self.ingest.config().auth_token;
                StreamIdentity::from_parameters(&start.custom_parameters, key, &start.call_sid)
                    .map(|identity| (call_id, identity))
                    .map_err(|err| err.to_string())
            });
        let (call_id, identity) = identity.map_err(|error| {
            warn!(%stream_sid, call_sid = %start.call_sid.chars().take(64).collect::<String>(), %error, "stream refused");
            Refusal::BAD_IDENTITY
        })?;
        // The webhook read the same policy when it answered this call's TwiML.
        let key = &self.ingest.config().auth_token;
        // The webhook signed how it obtained consent where the organization's policy or the
        // caller's state asked for it.
        let signed =
            crate::identity::signed_consent(&start.custom_parameters, key, &start.call_sid);
        let consent = match self.ingest.config().consent.of(&identity.org_id) {
            Consent::OptIn { .. } if signed != Some(ConsentRecord::OptedIn) => {
                // Nothing of a call whose caller did not agree is transcribed or stored.
                metrics::consent_opt_in("refused");
                warn!(%stream_sid, org_id = %identity.org_id, "stream refused: no signed opt-in");
                return Err(Refusal::NO_CONSENT);
            }
            Consent::Disclose => signed.or(Some(ConsentRecord::Disclosed)),
            Consent::None | Consent::OptIn { .. } => signed,
        };
        let call = CallContext {
            org_id: identity.org_id,
            call_id,
            agent_id: identity.agent_id,
            lead_id: identity.lead_id,
        };
        let (inputs, inputs_rx) = mpsc::channel(self.ingest.config().call_queue);
        let started = CallStarted {
            stream_sid: stream_sid.clone(),
            account_sid: start.account_sid,
            lead_id: call.lead_id.clone(),
            tracks: start.tracks,
            media_format: MediaFormat::twilio_mulaw(),
            consent,
        };
        let audio = CallAudio {
            call: call.clone(),
            started,
            inputs: inputs_rx,
        };
        let Some(calls) = self.ingest.calls() else {
            return Err(Refusal::SHUTTING_DOWN);
        };
        // One live stream per call: a replayed `start` (its signature is valid, it is a copy)
        // must not become a second call that ends the real one.
        if !self.ingest.claim_call(&call.call_id) {
            warn!(%stream_sid, call_id = %call.call_id, "a second stream for a live call refused");
            return Err(Refusal::DUPLICATE_STREAM);
        }
        let admitted = match self.ingest.admission().admit(&call.org_id) {
            Ok(admitted) => admitted,
            Err(full) => {
                self.ingest.release_call(&call.call_id);
                warn!(%stream_sid, call_id = %call.call_id, org_id = %call.org_id, reason = full.label(), "stream refused by admission control");
                return Err(match full {
                    crate::Full::Node => Refusal::NODE_FULL,
                    crate::Full::Organization => Refusal::ORG_LIMIT,
                });
            }
        };
        if calls.send(audio).await.is_err() {
            self.ingest.release_call(&call.call_id);
            return Err(Refusal::UNAVAILABLE);
        }
        self.ingest
            .register(stream_sid.clone(), self.commands.clone());
        metrics::stream_started();
        info!(%stream_sid, call_id = %call.call_id, org_id = %call.org_id, "stream started");
        self.live = Some(LiveCall {
            session: StreamSession::new(stream_sid, 8000),
            call,
            inputs,
            _admitted: admitted,
        });
        Ok(())
    }

    /// Hands the frames now due to the voice stage; drops the newest when its queue is full.
    fn forward_due(&mut self) -> Step {
        let Some(live) = &mut self.live else {
            return Step::Continue;
        };
        for frame in self.due.drain(..) {
            match live.inputs.try_send(CallInput::Frame(frame)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    live.session.note_dropped();
                    metrics::frame_dropped("backpressure");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Step::Close(Refusal::UNAVAILABLE);
                }
            }
        }
        Step::Continue
    }

    async fn on_command(&mut self, command: StreamCommand, sink: &mut Sink) -> Step {
        let Some(live) = &mut self.live else {
            return Step::Continue;
        };
        let stream_sid = live.session.stream_sid().to_owned();
        let message = match command {
            StreamCommand::Play(mulaw) => ServerMessage::Media {
                stream_sid,
                media: protocol::OutboundMedia {
                    payload: STANDARD.encode(mulaw),
                },
            },
            StreamCommand::Mark(name) => {
                live.session.mark_sent(name.clone());
                ServerMessage::Mark {
                    stream_sid,
                    mark: protocol::MarkLabel { name },
                }
            }
            StreamCommand::Clear => ServerMessage::Clear { stream_sid },
        };
        let text = serde_json::to_string(&message).expect("server messages always serialize");
        match sink.send(Message::Text(text.into())).await {
            Ok(()) => Step::Continue,
            Err(_) => Step::Dropped,
        }
    }

    /// Ends the stream: flushes the call to the voice stage, then closes the socket.
    async fn end(mut self, step: Step, sink: &mut Sink) {
        let (reason, close) = match step {
            Step::Stopped => (EndReason::Completed, Some(Refusal::STOPPED)),
            Step::Dropped | Step::Continue => (EndReason::Abandoned, None),
            Step::Close(refusal) if refusal == Refusal::SHUTTING_DOWN => {
                (EndReason::Shutdown, Some(refusal))
            }
            Step::Close(refusal) => {
                metrics::bad_input(refusal.label, "closed");
                warn!(
                    stream_sid = self.stream_sid(),
                    code = refusal.code,
                    reason = refusal.reason,
                    "closing Twilio stream"
                );
                (EndReason::Rejected, Some(refusal))
            }
        };
        if let Some(mut live) = self.live.take() {
            let ended = live.session.finish(reason, &mut self.due);
            self.live = Some(live);
            self.forward_due();
            let live = self.live.take().expect("put back above");
            let stream_sid = live.session.stream_sid().to_owned();
            info!(%stream_sid, call_id = %live.call.call_id, reason = ?reason, duration_ms = ended.duration_ms, stats = ?ended.stats, "stream ended");
            // The voice stage may already be gone at shutdown; nothing is left to tell then.
            let _ = live.inputs.send(CallInput::Ended(ended)).await;
            self.ingest.unregister(&stream_sid);
            self.ingest.release_call(&live.call.call_id);
            metrics::stream_ended(end_reason_label(reason));
        }
        if let Some(refusal) = close {
            let frame = CloseFrame {
                code: refusal.code,
                reason: refusal.reason.into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
    }
}

pub(crate) fn end_reason_label(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Completed => "completed",
        EndReason::Abandoned => "abandoned",
        EndReason::Rejected => "rejected",
        EndReason::Shutdown => "shutdown",
    }
}
