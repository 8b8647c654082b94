//! `GET /feed`: a WebSocket of the caller's organization's live events. Managers and admins get
//! every call of their organization, agents their own calls. Messages are [`FeedMessage`]s as JSON
//! text; the first is `hello`. Close codes: 1001 server shutting down, 4001 token expired.

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info};
use winnerr_events::{FEED_PROTOCOL_VERSION, FeedMessage};

use crate::auth::Claims;
use crate::metrics;
use crate::rooms::FeedItem;
use crate::server::Gateway;

/// Close code sent when the client's token expires.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    access_token: Option<String>,
}

pub(crate) async fn upgrade(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    match gateway
        .auth()
        .authenticate(&headers, query.access_token.as_deref())
    {
        Ok(claims) => {
            let connections = gateway.connections().clone();
            upgrade
                .on_upgrade(move |socket| connections.track_future(serve(socket, gateway, claims)))
        }
        Err(err) => err.into_response(),
    }
}

fn visible(claims: &Claims, item: &FeedItem) -> bool {
    claims.role.sees_whole_org() || item.agent_id.as_ref() == Some(&claims.sub)
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn serve(mut socket: WebSocket, gateway: Gateway, claims: Claims) {
    let mut room = gateway.rooms().join(&claims.org);
    metrics::feed_connected();
    info!(user_id = %claims.sub, org_id = %claims.org, role = ?claims.role, "feed client connected");
    let expires = tokio::time::Instant::now()
        + (UNIX_EPOCH + Duration::from_secs(claims.exp))
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
    let hello = FeedMessage::Hello {
        protocol: FEED_PROTOCOL_VERSION,
        user_id: claims.sub.clone(),
        org_id: claims.org.clone(),
        role: claims.role,
    };
    let hello = serde_json::to_string(&hello).expect("feed messages always serialize");
    let shutdown = gateway.shutdown().clone();
    if socket.send(Message::Text(hello.into())).await.is_ok() {
        loop {
            tokio::select! {
                item = room.recv() => match item {
                    Ok(item) => {
                        if !visible(&claims, &item) {
                            continue;
                        }
                        if socket.send(Message::Text(item.text.clone())).await.is_err() {
                            break;
                        }
                        let now = winnerr_events::event::now_ms();
                        metrics::feed_sent(now.saturating_sub(item.ts_ms) as f64 / 1000.0);
                        if let Some((kind, spoken_at)) = item.spoken {
                            metrics::speech_delivered(kind, now.saturating_sub(spoken_at) as f64 / 1000.0);
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        metrics::feed_dropped(missed);
                        debug!(user_id = %claims.sub, missed, "feed client fell behind");
                        let lagged = serde_json::to_string(&FeedMessage::Lagged { missed }).expect("serializes");
                        if socket.send(Message::Text(lagged.into())).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                incoming = socket.recv() => match incoming {
                    // Clients have nothing to say yet; pings are answered by the socket itself.
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(expires) => {
                    close(&mut socket, CLOSE_TOKEN_EXPIRED, "token expired").await;
                    break;
                }
                _ = shutdown.cancelled() => {
                    close(&mut socket, 1001, "server shutting down").await;
                    break;
                }
            }
        }
    }
    drop(room);
    gateway.rooms().leave(&claims.org);
    metrics::feed_disconnected();
    info!(user_id = %claims.sub, org_id = %claims.org, "feed client disconnected");
}
