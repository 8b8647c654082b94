//! `GET /softphone/stream`: a second way in for calls, for clients that send Opus, such as a
//! browser softphone. Authenticated with the feed's bearer JWT (the token's user is the call's
//! agent, its organization the call's); `?lead_id=` names the lead, `?track=` the side the audio
//! is (`outbound`, the agent, by default; or `inbound`, the customer's, for an admin token: an
//! integration bridging the customer's leg). A lead the token's user may not see by the REST
//! rules (an agent: only the leads they own) is refused as the REST API refuses it (404).
//!
//! After the upgrade the server sends `{"event":"started","call_id":"SP…"}`. Each binary message
//! is one Opus packet (any rate the encoder used, 2.5–120 ms; a browser's `MediaRecorder` or
//! WebCodecs `AudioEncoder` gives 48 kHz, 20 ms); the server decodes it to 16 kHz, the speech
//! models' rate, into the same pipeline as Twilio's audio. `{"event":"stop"}` or a close ends the
//! call as completed; a dropped connection as abandoned. A packet that does not decode is counted
//! and skipped.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio::sync::mpsc::error::TrySendError;
use tracing::{info, warn};
use winnerr_events::feed::close::TOKEN_EXPIRED as CLOSE_TOKEN_EXPIRED;
use winnerr_events::{
    AudioFrame, CallAudio, CallContext, CallEnded, CallId, CallInput, CallStarted, EndReason,
    LeadId, MediaFormat, OrgId, StreamStats, Track, UserId,
};

use crate::Ingest;
use crate::metrics;

/// Path of the Opus ingest route.
pub const SOFTPHONE_PATH: &str = "/softphone/stream";

/// The rate packets are decoded to: the speech models', so voice needs no resampling.
const DECODE_RATE: u32 = 16_000;
/// The longest Opus packet: 120 ms.
const MAX_PACKET_SAMPLES: usize = DECODE_RATE as usize * 120 / 1000;
/// Opus packets are at most 1,275 bytes; text messages are small.
const MAX_MESSAGE: usize = 4 * 1024;

/// Who a softphone call's token names.
#[derive(Debug, Clone)]
pub struct Caller {
    pub org: OrgId,
    pub user: UserId,
    /// When the token expires (seconds since the Unix epoch): the call's stream closes then.
    pub expires_at_s: u64,
}

/// Checks a request's bearer token (header, or `access_token` query value) and that its user may
/// open a call about the lead named (if any) on the track asked for: who it names, or the
/// response refusing it.
pub type Verifier = Arc<
    dyn Fn(
            HeaderMap,
            Option<String>,
            Option<LeadId>,
            Track,
        ) -> BoxFuture<'static, Result<Caller, Response>>
        + Send
        + Sync,
>;

#[derive(Debug, Deserialize)]
struct Params {
    access_token: Option<String>,
    lead_id: Option<String>,
    track: Option<String>,
}

impl Ingest {
    /// The Opus route, its callers checked by `verify`.
    pub fn softphone_router(&self, verify: Verifier) -> Router {
        Router::new()
            .route(SOFTPHONE_PATH, get(upgrade))
            .with_state((self.clone(), verify))
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    metrics::bad_input("softphone_request", "refused");
    (status, message + "\n").into_response()
}

async fn upgrade(
    State((ingest, verify)): State<(Ingest, Verifier)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let lead = match params.lead_id.as_deref().map(LeadId::parse).transpose() {
        Ok(lead) => lead,
        Err(err) => return refuse(StatusCode::BAD_REQUEST, format!("lead_id: {err}")),
    };
    let track = match params.track.as_deref() {
        None | Some("outbound") => Track::Outbound,
        Some("inbound") => Track::Inbound,
        Some(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("track {other:?}: expected inbound or outbound"),
            );
        }
    };
    let caller = match verify(headers, params.access_token, lead.clone(), track).await {
        Ok(caller) => caller,
        Err(refused) => {
            metrics::bad_input("softphone_request", "refused");
            warn!(status = %refused.status(), lead_id = ?lead, ?track, "softphone call refused");
            return refused;
        }
    };
    if track == Track::Inbound
        && matches!(
            ingest.config().consent.of(&caller.org),
            crate::Consent::OptIn { .. }
        )
    {
        // The customer's words of an opt-in organization are taken only through the voice
        // webhook, which asks for the key first.
        metrics::consent_opt_in("refused");
        warn!(org_id = %caller.org, "softphone customer track refused: the organization's policy is opt_in");
        // Counted as a consent refusal, not as bad input.
        let message = "the organization's consent policy is opt_in: the customer's track comes \
                       only through the voice webhook, which asks first\n";
        return (StatusCode::FORBIDDEN, message).into_response();
    }
    let admitted = match ingest.admission().admit(&caller.org) {
        Ok(admitted) => admitted,
        Err(full) => {
            warn!(org_id = %caller.org, reason = full.label(), "softphone call refused by admission control");
            let status = match full {
                crate::Full::Node => StatusCode::SERVICE_UNAVAILABLE,
                crate::Full::Organization => StatusCode::TOO_MANY_REQUESTS,
            };
            return refuse(status, format!("call refused: {}", full.label()));
        }
    };
    let call = CallContext {
        org_id: caller.org,
        call_id: CallId::parse(format!("SP{}", winnerr_events::EventId::now_v7().simple()))
            .expect("a valid id"),
        agent_id: Some(caller.user),
        lead_id: lead,
    };
    let connections = ingest.connections().clone();
    let expires_at_s = caller.expires_at_s;
    upgrade
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let expires = winnerr_events::expiry_deadline(expires_at_s);
            connections.track_future(async move {
                // Held for as long as the call streams.
                let _admitted = admitted;
                serve(socket, ingest, call, track, expires).await
            })
        })
}

async fn serve(
    mut socket: WebSocket,
    ingest: Ingest,
    call: CallContext,
    track: Track,
    expires: tokio::time::Instant,
) {
    let Some(calls) = ingest.calls() else {
        let _ = socket.send(Message::Close(None)).await;
        return;
    };
    let started = CallStarted {
        stream_sid: call.call_id.to_string(),
        account_sid: "softphone".into(),
        lead_id: call.lead_id.clone(),
        tracks: vec![track],
        media_format: MediaFormat {
            encoding: "audio/opus".into(),
            sample_rate: DECODE_RATE,
            channels: 1,
        },
        // The agent's own line: no caller policy applies to the softphone's side.
        consent: None,
    };
    let mut decoder = match opus::Decoder::new(DECODE_RATE, opus::Channels::Mono) {
        Ok(decoder) => decoder,
        Err(err) => {
            warn!(error = %err, "no Opus decoder");
            return;
        }
    };
    let (inputs, inputs_rx) = tokio::sync::mpsc::channel(ingest.config().call_queue.max(1));
    let audio = CallAudio {
        call: call.clone(),
        started,
        inputs: inputs_rx,
    };
    if calls.send(audio).await.is_err() {
        return;
    }
    metrics::stream_started();
    info!(call_id = %call.call_id, org_id = %call.org_id, agent_id = ?call.agent_id, "softphone call started");
    let hello = serde_json::json!({ "event": "started", "call_id": call.call_id });
    let _ = socket.send(Message::Text(hello.to_string().into())).await;

    let shutdown = ingest.shutdown().clone();
    let (mut stats, mut at_ms) = (StreamStats::default(), 0u64);
    let mut pcm = vec![0i16; MAX_PACKET_SAMPLES];
    let reason = loop {
        let message = tokio::select! {
            message = socket.recv() => message,
            _ = shutdown.cancelled() => break EndReason::Shutdown,
            _ = tokio::time::sleep_until(expires) => {
                let close = axum::extract::ws::CloseFrame {
                    code: CLOSE_TOKEN_EXPIRED,
                    reason: "token expired".into(),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
                info!(call_id = %call.call_id, "softphone token expired");
                break EndReason::Completed;
            }
        };
        match message {
            Some(Ok(Message::Binary(packet))) => match decoder.decode(&packet, &mut pcm, false) {
                Ok(samples) => {
                    let frame = AudioFrame {
                        track,
                        timestamp_ms: at_ms,
                        samples: pcm[..samples].to_vec(),
                    };
                    at_ms += samples as u64 * 1000 / u64::from(DECODE_RATE);
                    match inputs.try_send(CallInput::Frame(frame)) {
                        Ok(()) => {
                            stats.frames[track.index()] += 1;
                            metrics::frame(track.as_str());
                        }
                        Err(TrySendError::Full(_)) => {
                            stats.dropped += 1;
                            metrics::frame_dropped("backpressure");
                        }
                        Err(TrySendError::Closed(_)) => break EndReason::Shutdown,
                    }
                }
                Err(err) => {
                    stats.bad_frames += 1;
                    metrics::bad_input("opus_packet", "skipped");
                    winnerr_events::warn_throttled!(call_id = %call.call_id, error = %err, bytes = packet.len(), "Opus packet skipped");
                }
            },
            Some(Ok(Message::Text(text))) => {
                if serde_json::from_str::<serde_json::Value>(text.as_str())
                    .is_ok_and(|v| v["event"] == "stop")
                {
                    break EndReason::Completed;
                }
                metrics::bad_input("softphone_message", "skipped");
            }
            Some(Ok(Message::Close(_))) => break EndReason::Completed,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break EndReason::Abandoned,
        }
    };
    let ended = CallEnded {
        reason,
        duration_ms: at_ms,
        stats,
    };
    let _ = inputs.send(CallInput::Ended(ended)).await;
    metrics::stream_ended(crate::stream::end_reason_label(reason));
    info!(call_id = %call.call_id, ?reason, "softphone call ended");
}
