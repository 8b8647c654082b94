//! `GET /feed`: the feed protocol (`docs/feed-protocol.md`) over a WebSocket. A client of an
//! organization subscribes to channels (`org`, `calls`, `call:<id>`, `lead:<id>`); managers and
//! admins see every call of their organization, agents their own. Each connection has a bounded
//! send queue: when it runs low, interim transcripts are skipped; when it is full, the client is
//! closed (4008), and nobody else waits for it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};
use winnerr_events::feed::close::{
    HEARTBEAT as CLOSE_HEARTBEAT, TOKEN_EXPIRED as CLOSE_TOKEN_EXPIRED, TOO_SLOW as CLOSE_TOO_SLOW,
};
use winnerr_events::{
    Channel, ClientMessage, ErrorCode, FEED_PROTOCOL_VERSION, FeedMessage, Member, PresenceStatus,
    Role, expiry_deadline,
};

use crate::auth::Claims;
use crate::metrics;
use crate::rooms::{EventItem, FeedItem, Room, channel_json};
use crate::server::Gateway;

/// The longest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Room items taken at once before the socket is written again.
const READ_BATCH: usize = 32;
/// A connection's socket read buffer.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes gathered before a write to the socket (a batch is flushed whatever its size).
const WRITE_BUFFER: usize = 8 * 1024;
/// How long a closing connection may take to send what it has queued and its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

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
                .max_message_size(MAX_CLIENT_MESSAGE)
                // Clients say little; the default 128 KiB buffers each would cost ~10x the
                // rest of a connection's memory.
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(WRITE_BUFFER)
                .on_upgrade(move |socket| {
                    let span = tracing::info_span!(
                        "feed",
                        org_id = %claims.org,
                        user_id = %claims.sub,
                        role = ?claims.role
                    );
                    connections.track_future(serve(socket, gateway, claims).instrument(span))
                })
        }
        Err(err) => err.into_response(),
    }
}

/// A message on its way to the client; events carry what their delivery delay is measured from.
struct Outgoing {
    message: Message,
    event: Option<(u64, Option<(&'static str, u64)>)>,
}

impl Outgoing {
    fn text(message: &FeedMessage) -> Self {
        let text = serde_json::to_string(message).expect("feed messages always serialize");
        Self {
            message: Message::Text(text.into()),
            event: None,
        }
    }
}

/// Why the gateway ends a connection.
struct Closing {
    code: u16,
    reason: &'static str,
    metric: &'static str,
}

const TOO_SLOW: Closing = Closing {
    code: CLOSE_TOO_SLOW,
    reason: "too slow: send queue full",
    metric: "too_slow",
};

const REPLAY_UNREAD: Closing = Closing {
    code: CLOSE_TOO_SLOW,
    reason: "too slow: a replay asked for while the last one is unread",
    metric: "replay_unread",
};

/// A connection's messages waiting for its socket, bounded.
struct SendQueue {
    items: VecDeque<Outgoing>,
    size: usize,
    /// Full at this length: `size`, or more while a recovery's replay drains.
    limit: usize,
}

impl SendQueue {
    fn new(size: usize) -> Self {
        Self {
            items: VecDeque::with_capacity(16),
            size,
            limit: size,
        }
    }

    /// Queues a message, or says the client is too slow to take it.
    fn push(&mut self, outgoing: Outgoing) -> Result<(), Closing> {
        if self.items.len() >= self.limit {
            return Err(TOO_SLOW);
        }
        self.items.push_back(outgoing);
        Ok(())
    }

    /// Queues an event on the channel named `channel` (JSON); interim words are worth less than
    /// keeping up, so they are skipped while the queue is half full.
    fn push_event(&mut self, event: &EventItem, channel: &str) -> Result<(), Closing> {
        if event.interim && self.items.len() >= self.size / 2 {
            metrics::feed_dropped("interim", 1);
            return Ok(());
        }
        self.push(event_message(event, channel))
    }

    /// Queues a recovery's replay whatever its length (the history is bounded); live messages
    /// count as too many only past the replay plus half a queue. One replay at a time: a client
    /// that asks for another while the last is still unread is too slow (4008), so what one
    /// connection holds stays under a history and one and a half queues.
    fn replay(&mut self, messages: Vec<Outgoing>) -> Result<(), Closing> {
        if messages.is_empty() {
            return Ok(());
        }
        if self.limit > self.size {
            return Err(REPLAY_UNREAD);
        }
        self.items.extend(messages);
        self.limit = self.limit.max(self.items.len() + self.size / 2);
        Ok(())
    }

    /// After a write: once below its size, the queue is back to its own bound.
    fn written(&mut self) {
        if self.items.len() < self.size {
            self.limit = self.size;
        }
    }
}

fn event_message(event: &EventItem, channel: &str) -> Outgoing {
    Outgoing {
        message: Message::Text(event.message(channel)),
        event: Some((event.ts_ms, event.spoken)),
    }
}

/// A channel a connection follows.
struct Following {
    /// The offset its live messages start after.
    from: u64,
    /// Its name as a JSON string, written into each of its messages.
    name: String,
}

/// One client's connection: who it is, what it follows, and its send queue.
struct Connection {
    gateway: Gateway,
    claims: Claims,
    room: Arc<Room>,
    queue: SendQueue,
    /// What this connection may still change of its user's presence.
    presence_budget: crate::presence::Budget,
    subscriptions: HashMap<Channel, Following>,
    expires: Instant,
}

impl Connection {
    fn sees(&self, event: &EventItem) -> bool {
        self.claims.role.sees_whole_org() || event.agent_id.as_ref() == Some(&self.claims.sub)
    }

    /// The client fell `missed` items behind its room: they are gone for it, and it is told
    /// (it may recover them from its last position).
    fn lagged(&mut self, missed: u64) -> Result<(), Closing> {
        metrics::feed_dropped("lagged", missed);
        debug!(user_id = %self.claims.sub, missed, "feed client fell behind its room");
        self.reply(&FeedMessage::Lagged { missed })
    }

    fn reply(&mut self, message: &FeedMessage) -> Result<(), Closing> {
        self.queue.push(Outgoing::text(message))
    }

    /// Hands a room item to the client on every channel it follows that the item is on.
    fn forward(&mut self, item: &FeedItem) -> Result<(), Closing> {
        match item {
            FeedItem::Presence { offset, text } => {
                if self
                    .subscriptions
                    .get(&Channel::Org)
                    .is_some_and(|org| *offset > org.from)
                {
                    self.queue.push(Outgoing {
                        message: Message::Text(text.clone()),
                        event: None,
                    })?;
                }
            }
            FeedItem::Lost { missed } => {
                debug!(user_id = %self.claims.sub, missed, "events lost before the room; client told");
                self.reply(&FeedMessage::Lagged { missed: *missed })?;
            }
            FeedItem::Event(event) => {
                if !self.sees(event) {
                    return Ok(());
                }
                for (channel, following) in &self.subscriptions {
                    if event.offset > following.from && event.on(channel) {
                        self.queue.push_event(event, &following.name)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn refuse(
        &mut self,
        code: ErrorCode,
        message: String,
        channel: Option<&str>,
    ) -> Result<(), Closing> {
        metrics::request_rejected(code);
        debug!(user_id = %self.claims.sub, org_id = %self.claims.org, ?code, %message, "feed request refused");
        self.reply(&FeedMessage::Error {
            code,
            message,
            channel: channel.map(str::to_owned),
        })
    }

    /// Does what the client asked.
    fn request(&mut self, text: &str) -> Result<(), Closing> {
        let request = match serde_json::from_str::<ClientMessage>(text) {
            Ok(request) => request,
            Err(err) => {
                return self.refuse(
                    ErrorCode::BadRequest,
                    format!("not a feed protocol message: {err}"),
                    None,
                );
            }
        };
        match request {
            ClientMessage::Subscribe {
                channel: name,
                since,
            } => {
                let channel = match Channel::parse(&name) {
                    Ok(channel) => channel,
                    Err(err) => {
                        return self.refuse(
                            ErrorCode::UnknownChannel,
                            err.to_string(),
                            Some(&name),
                        );
                    }
                };
                if let Channel::Call(call) = &channel
                    && self.claims.role == Role::Agent
                    && let Some(agent) = self.room.call_agent(call)
                    && agent.as_ref() != Some(&self.claims.sub)
                {
                    return self.refuse(
                        ErrorCode::Forbidden,
                        "an agent follows only their own calls".into(),
                        Some(&name),
                    );
                }
                if !self.subscriptions.contains_key(&channel)
                    && self.subscriptions.len() >= self.gateway.feed_settings().max_subscriptions
                {
                    return self.refuse(
                        ErrorCode::TooManySubscriptions,
                        format!(
                            "a connection follows at most {} channels",
                            self.gateway.feed_settings().max_subscriptions
                        ),
                        Some(&name),
                    );
                }
                let start = self.room.start(&channel, since);
                let name = channel_json(&channel);
                let replay: Vec<Outgoing> = start
                    .replay
                    .iter()
                    .filter_map(|item| match &**item {
                        FeedItem::Event(event) if self.sees(event) => {
                            Some(event_message(event, &name))
                        }
                        _ => None,
                    })
                    .collect();
                self.queue.replay(replay)?;
                let following = Following {
                    from: start.position.offset,
                    name,
                };
                self.subscriptions.insert(channel.clone(), following);
                self.reply(&FeedMessage::Subscribed {
                    channel,
                    position: start.position,
                    recovered: start.recovered,
                })?;
                if let Some(members) = start.members {
                    self.reply(&FeedMessage::PresenceState { members })?;
                }
                Ok(())
            }
            ClientMessage::Unsubscribe { channel: name } => match Channel::parse(&name) {
                Ok(channel) => {
                    self.subscriptions.remove(&channel);
                    self.reply(&FeedMessage::Unsubscribed { channel })
                }
                Err(err) => self.refuse(ErrorCode::UnknownChannel, err.to_string(), Some(&name)),
            },
            ClientMessage::Presence { status, call_id } => {
                if !self.presence_budget.take()
                    || !self.room.update(&self.claims.sub, status, call_id)
                {
                    return self.refuse(
                        ErrorCode::RateLimited,
                        "presence changes are limited: 10 at once, then 2 a second per connection and 4 per user".into(),
                        None,
                    );
                }
                Ok(())
            }
            ClientMessage::Refresh { token } => match self.gateway.auth().verify(&token) {
                Ok(fresh) if fresh.sub == self.claims.sub && fresh.org == self.claims.org => {
                    self.expires = expiry_deadline(fresh.exp);
                    let expires_at = fresh.exp;
                    self.claims = fresh;
                    self.reply(&FeedMessage::Refreshed { expires_at })
                }
                Ok(_) => self.refuse(
                    ErrorCode::BadToken,
                    "the token is another user's or organization's".into(),
                    None,
                ),
                Err(err) => self.refuse(ErrorCode::BadToken, err.to_string(), None),
            },
            ClientMessage::Ping => self.reply(&FeedMessage::Pong),
        }
    }
}

/// Moves queued messages into the socket and flushes them: one write for what is waiting. Safe
/// to cancel at any await: a message leaves the queue only once the socket has taken it, and
/// what the socket has taken is flushed by the next call.
async fn write_queued(
    sink: &mut SplitSink<WebSocket, Message>,
    queue: &mut VecDeque<Outgoing>,
) -> Result<(), axum::Error> {
    std::future::poll_fn(|cx| {
        while !queue.is_empty() {
            std::task::ready!(sink.poll_ready_unpin(cx))?;
            let Outgoing { message, event } = queue.pop_front().expect("not empty");
            sink.start_send_unpin(message)?;
            if let Some((ts_ms, spoken)) = event {
                let now = winnerr_events::event::now_ms();
                metrics::feed_sent(now.saturating_sub(ts_ms) as f64 / 1000.0);
                if let Some((kind, spoken_at)) = spoken {
                    metrics::speech_delivered(kind, now.saturating_sub(spoken_at) as f64 / 1000.0);
                }
            }
        }
        sink.poll_flush_unpin(cx)
    })
    .await
}

async fn serve(socket: WebSocket, gateway: Gateway, claims: Claims) {
    let settings = gateway.feed_settings();
    let room = gateway.rooms().room(&claims.org);
    let mut items = room.receiver();
    let (mut sink, mut incoming) = socket.split();
    metrics::feed_connected();
    info!(user_id = %claims.sub, org_id = %claims.org, role = ?claims.role, "feed client connected");

    let user = claims.sub.clone();
    room.join(Member {
        user_id: user.clone(),
        role: claims.role,
        status: PresenceStatus::Available,
        call_id: None,
    });
    let mut connection = Connection {
        expires: expiry_deadline(claims.exp),
        gateway: gateway.clone(),
        room: room.clone(),
        queue: SendQueue::new(settings.send_queue),
        presence_budget: crate::presence::connection_budget(),
        subscriptions: HashMap::new(),
        claims,
    };
    let hello = FeedMessage::Hello {
        protocol: FEED_PROTOCOL_VERSION,
        user_id: connection.claims.sub.clone(),
        org_id: connection.claims.org.clone(),
        role: connection.claims.role,
        expires_at: connection.claims.exp,
        heartbeat_ms: settings.heartbeat.as_millis() as u64,
    };
    let shutdown = gateway.shutdown().clone();
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + settings.heartbeat, settings.heartbeat);
    let mut last_heard = Instant::now();
    let mut closing = connection.reply(&hello).err();
    // One task reads the room, answers the client and writes to its socket: a message takes no
    // hop between tasks on its way out. The socket is written whenever something is queued, and
    // everything else goes on meanwhile, so a slow socket fills only its own queue.
    while closing.is_none() {
        closing = tokio::select! {
            written = write_queued(&mut sink, &mut connection.queue.items), if !connection.queue.items.is_empty() => {
                if written.is_err() {
                    break;
                }
                connection.queue.written();
                None
            }
            item = items.recv() => match item {
                Ok(item) => {
                    // Whatever else the room has ready joins it, so a burst is written together.
                    let mut closing = connection.forward(&item).err();
                    for _ in 1..READ_BATCH {
                        if closing.is_some() {
                            break;
                        }
                        closing = match items.try_recv() {
                            Ok(item) => connection.forward(&item).err(),
                            Err(TryRecvError::Lagged(missed)) => connection.lagged(missed).err(),
                            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                        };
                    }
                    closing
                }
                Err(RecvError::Lagged(missed)) => connection.lagged(missed).err(),
                Err(RecvError::Closed) => break,
            },
            message = incoming.next() => match message {
                Some(Ok(message)) => {
                    last_heard = Instant::now();
                    match message {
                        Message::Text(text) => connection.request(text.as_str()).err(),
                        Message::Binary(_) => connection
                            .refuse(ErrorCode::BadRequest, "feed messages are JSON text frames".into(), None)
                            .err(),
                        Message::Close(_) => break,
                        Message::Ping(_) | Message::Pong(_) => None,
                    }
                }
                Some(Err(err)) => {
                    debug!(user_id = %user, error = %err, "feed client socket failed");
                    break;
                }
                None => break,
            },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > settings.heartbeat * 2 {
                    Some(Closing { code: CLOSE_HEARTBEAT, reason: "heartbeat timeout", metric: "heartbeat" })
                } else {
                    connection.queue.push(Outgoing { message: Message::Ping(Default::default()), event: None }).err()
                }
            }
            _ = tokio::time::sleep_until(connection.expires) => Some(Closing {
                code: CLOSE_TOKEN_EXPIRED, reason: "token expired", metric: "token_expired",
            }),
            _ = shutdown.cancelled() => Some(Closing {
                code: 1001, reason: "server shutting down", metric: "shutdown",
            }),
        };
    }
    room.leave(&user);
    if let Some(closing) = closing {
        metrics::feed_closed(closing.metric);
        let frame = CloseFrame {
            code: closing.code,
            reason: Utf8Bytes::from_static(closing.reason),
        };
        let mut queue = std::mem::take(&mut connection.queue.items);
        if closing.code == CLOSE_TOO_SLOW {
            // Ahead of what is queued: the client would not read that anyway.
            warn!(user_id = %user, "feed client too slow for its send queue: closed");
            queue.clear();
        }
        queue.push_back(Outgoing {
            message: Message::Close(Some(frame)),
            event: None,
        });
        // A client that reads nothing gets no more time than this; then the socket is dropped.
        if tokio::time::timeout(CLOSE_WAIT, write_queued(&mut sink, &mut queue))
            .await
            .is_err()
        {
            debug!(user_id = %user, "feed client did not take its close in time");
        }
    }
    metrics::feed_disconnected();
    info!(user_id = %user, "feed client disconnected");
}
