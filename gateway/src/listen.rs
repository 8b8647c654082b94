//! `GET /listen/{call_id}`: listen-in. A WebSocket that carries a live call's audio, both tracks
//! encoded with Opus, to a manager of the call's organization or the call's own agent. Served by
//! the node that holds the call (audio never leaves the process that took the Twilio stream).
//!
//! The first message is text: `{"type":"listening","call_id":…,"codec":"opus","sample_rate":8000,
//! "channels":1,"frame_ms":20}` (the call's own rate: 8000 for Twilio calls, 16000 for softphone
//! calls); then one binary message per 20 ms Opus packet: one byte of track
//! (0 the customer, 1 the agent), the packet's time on the call's clock in ms (u64, big-endian),
//! and the packet. The socket closes with 1000 when the call ends, and with 4001 when the
//! listener's token expires.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info, warn};
use winnerr_events::feed::close::TOKEN_EXPIRED as CLOSE_TOKEN_EXPIRED;
use winnerr_events::{AudioFrame, CallId, Track, expiry_deadline};

use crate::metrics;
use crate::server::Gateway;

/// One Opus packet: 20 ms.
const PACKET_MS: u32 = 20;
/// Largest Opus packet kept (far above what 20 ms of voice at 16 kHz takes).
const MAX_PACKET: usize = 1_000;

#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenQuery {
    access_token: Option<String>,
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// Listeners only receive: a message from one larger than this ends its connection instead of
/// being buffered (the default limit is 64 MiB).
const MAX_CLIENT_MESSAGE: usize = 1024;

pub(crate) async fn upgrade(
    State(gateway): State<Gateway>,
    Path(call): Path<String>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let claims = match gateway
        .auth()
        .authenticate(&headers, query.access_token.as_deref())
    {
        Ok(claims) => claims,
        Err(err) => return err.into_response(),
    };
    let Ok(call) = CallId::parse(&call) else {
        return refuse(StatusCode::BAD_REQUEST, "not a call id");
    };
    let Some(tap) = gateway.audio() else {
        return refuse(StatusCode::NOT_FOUND, "this node does not serve listen-in");
    };
    // Another organization's call is as unknown as one that does not exist.
    let Some((ctx, sample_rate, frames)) = tap
        .listen(&call)
        .filter(|(ctx, _, _)| ctx.org_id == claims.org)
    else {
        return refuse(StatusCode::NOT_FOUND, "no such live call on this node");
    };
    if !claims.role.sees_whole_org() && ctx.agent_id.as_ref() != Some(&claims.sub) {
        return refuse(
            StatusCode::FORBIDDEN,
            "an agent listens only to their own calls",
        );
    }
    info!(user_id = %claims.sub, org_id = %claims.org, call_id = %call, "listening in");
    let connections = gateway.connections().clone();
    let shutdown = gateway.shutdown().clone();
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| {
            let expires = expiry_deadline(claims.exp);
            connections.track_future(serve(socket, call, sample_rate, expires, frames, shutdown))
        })
}

/// One track's Opus encoder, with the samples waiting for a whole packet.
struct TrackEncoder {
    encoder: opus::Encoder,
    /// Samples of one packet at the call's rate.
    packet_samples: usize,
    waiting: Vec<i16>,
    /// Call-clock time of the first waiting sample.
    waiting_from_ms: u64,
}

impl TrackEncoder {
    /// An encoder at `sample_rate` (8 or 16 kHz: rates Opus takes).
    fn new(sample_rate: u32) -> Result<Self, opus::Error> {
        let packet_samples = (sample_rate * PACKET_MS / 1000) as usize;
        Ok(Self {
            encoder: opus::Encoder::new(
                sample_rate,
                opus::Channels::Mono,
                opus::Application::Voip,
            )?,
            packet_samples,
            waiting: Vec::with_capacity(packet_samples * 2),
            waiting_from_ms: 0,
        })
    }

    /// The messages of every whole packet `frame` completes.
    fn encode(&mut self, track: Track, frame: &AudioFrame) -> Result<Vec<Message>, opus::Error> {
        if self.waiting.is_empty() {
            self.waiting_from_ms = frame.timestamp_ms;
        }
        self.waiting.extend_from_slice(&frame.samples);
        let mut messages = Vec::new();
        let mut packet = [0u8; MAX_PACKET];
        while self.waiting.len() >= self.packet_samples {
            let size = self
                .encoder
                .encode(&self.waiting[..self.packet_samples], &mut packet)?;
            let mut message = BytesMut::with_capacity(9 + size);
            message.put_u8(match track {
                Track::Inbound => 0,
                Track::Outbound => 1,
            });
            message.put_u64(self.waiting_from_ms);
            message.put_slice(&packet[..size]);
            messages.push(Message::Binary(message.freeze()));
            self.waiting.drain(..self.packet_samples);
            self.waiting_from_ms += u64::from(PACKET_MS);
        }
        Ok(messages)
    }
}

async fn serve(
    mut socket: WebSocket,
    call: CallId,
    sample_rate: u32,
    expires: tokio::time::Instant,
    mut frames: tokio::sync::broadcast::Receiver<Arc<AudioFrame>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    metrics::listeners(1.0);
    let hello = serde_json::json!({
        "type": "listening", "call_id": call, "codec": "opus",
        "sample_rate": sample_rate, "channels": 1, "frame_ms": PACKET_MS,
    });
    let mut encoders: [Option<TrackEncoder>; 2] = [None, None];
    let mut ended = socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err();
    while !ended {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    let slot = &mut encoders[usize::from(frame.track == Track::Outbound)];
                    if slot.is_none() {
                        match TrackEncoder::new(sample_rate) {
                            Ok(encoder) => *slot = Some(encoder),
                            Err(err) => {
                                warn!(call_id = %call, error = %err, "no Opus encoder for listen-in");
                                break;
                            }
                        }
                    }
                    let encoded = slot.as_mut().map(|e| e.encode(frame.track, &frame));
                    match encoded {
                        Some(Ok(messages)) => {
                            for message in messages {
                                metrics::listen_packet();
                                if socket.send(message).await.is_err() {
                                    ended = true;
                                    break;
                                }
                            }
                        }
                        Some(Err(err)) => {
                            warn!(call_id = %call, error = %err, "Opus encoding failed; frame skipped");
                        }
                        None => {}
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    metrics::listen_dropped(missed);
                    debug!(call_id = %call, missed, "listener fell behind the call's audio");
                }
                Err(RecvError::Closed) => {
                    let frame = CloseFrame { code: 1000, reason: Utf8Bytes::from_static("call ended") };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
            },
            _ = tokio::time::sleep_until(expires) => {
                let frame = CloseFrame { code: CLOSE_TOKEN_EXPIRED, reason: Utf8Bytes::from_static("token expired") };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
            incoming = socket.recv() => match incoming {
                Some(Err(err)) => {
                    debug!(call_id = %call, error = %err, "listener connection failed");
                    break;
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
            },
            _ = shutdown.cancelled() => {
                let frame = CloseFrame { code: 1001, reason: Utf8Bytes::from_static("server shutting down") };
                let _ = socket.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
    metrics::listeners(-1.0);
}
