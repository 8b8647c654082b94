//! The gateway's state and routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use winnerr_bus::{Bus, BusError};
use winnerr_store::Store;

use crate::auth::Auth;
use crate::rooms::Rooms;
use crate::{api, dashboard, feed, health, listen, metrics, presence, telemetry};

/// How long a readiness check waits for the database or the bus.
const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Path of the live feed WebSocket.
pub const FEED_PATH: &str = "/feed";

/// Settings of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// HS256 secret of the bearer tokens; `None`: HS256 tokens are refused (the identity
    /// provider's are the only ones).
    pub jwt_secret: Option<String>,
    /// The identity provider's keys, for its RS256 tokens.
    pub jwks: Option<crate::auth::Jwks>,
    /// Items a feed connection may fall behind its room before it loses the oldest.
    pub feed_buffer: usize,
    /// Events each organization's room keeps for clients that reconnect.
    pub feed_history: usize,
    /// Messages queued for one feed client before it counts as too slow.
    pub feed_send_queue: usize,
    /// Channels one feed connection may follow at once.
    pub feed_max_subscriptions: usize,
    /// How often the gateway pings feed clients; one silent for twice this is gone.
    pub feed_heartbeat: std::time::Duration,
    /// The live audio of this process's calls, for listen-in (none: not served here).
    pub audio: Option<Arc<winnerr_events::AudioTap>>,
}

/// What every feed connection is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedSettings {
    pub send_queue: usize,
    pub max_subscriptions: usize,
    pub heartbeat: std::time::Duration,
}

/// The gateway of this process; cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

struct Inner {
    auth: Auth,
    rooms: Arc<Rooms>,
    feed: FeedSettings,
    audio: Option<Arc<winnerr_events::AudioTap>>,
    ready: AtomicBool,
    shutdown: CancellationToken,
    store: Option<Store>,
    bus: Arc<dyn Bus>,
    /// Open feed connections, so shutdown can wait for their close frames.
    connections: TaskTracker,
}

impl Gateway {
    /// With `feeds`, subscribes to `bus` and pumps its events into the organization rooms until
    /// `shutdown`; without, this node serves only metrics and health.
    /// The REST API answers from `store` (503 without one).
    pub async fn new(
        config: &GatewayConfig,
        bus: Arc<dyn Bus>,
        store: Option<Store>,
        shutdown: CancellationToken,
        feeds: bool,
    ) -> Result<Self, BusError> {
        metrics::describe();
        metrics::build_info();
        let node = format!("gateway-{}", winnerr_events::EventId::now_v7().simple());
        let (outbox, presence_changes) = tokio::sync::mpsc::unbounded_channel();
        // Other nodes hear this one's presence only over a bus that reaches them.
        let shares_presence = feeds && bus.reaches_other_processes();
        let rooms = Arc::new(Rooms::new(
            config.feed_buffer,
            config.feed_history,
            node,
            shares_presence.then_some(outbox),
        ));
        if feeds {
            rooms.spawn_pump(bus.subscribe().await?, shutdown.clone());
        }
        if shares_presence {
            presence::spawn(
                rooms.clone(),
                bus.clone(),
                presence_changes,
                config.feed_heartbeat,
                shutdown.clone(),
            );
        }
        Ok(Self(Arc::new(Inner {
            auth: {
                // Without a secret HS256 is refused outright; the empty key is never used.
                let secret = config.jwt_secret.as_deref().unwrap_or_default();
                let mut auth = Auth::new(secret.as_bytes());
                if config.jwt_secret.is_none() {
                    auth = auth.without_hs256();
                }
                match &config.jwks {
                    Some(jwks) => auth.with_jwks(jwks.clone()),
                    None => auth,
                }
            },
            rooms,
            feed: FeedSettings {
                send_queue: config.feed_send_queue.max(2),
                max_subscriptions: config.feed_max_subscriptions.max(1),
                heartbeat: config
                    .feed_heartbeat
                    .max(std::time::Duration::from_millis(10)),
            },
            audio: config.audio.clone(),
            ready: AtomicBool::new(false),
            shutdown,
            store,
            bus,
            connections: TaskTracker::new(),
        })))
    }

    /// Feed, metrics and health routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route(FEED_PATH, get(feed::upgrade))
            .route("/listen/{call}", get(listen::upgrade))
            .merge(api::routes())
            .merge(dashboard::routes())
            .with_state(self.clone())
            .merge(self.ops_router())
    }

    /// Metrics and health routes only, for a node that serves no feeds.
    pub fn ops_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(|| async { telemetry::render() }))
            .route("/healthz", get(health::healthz))
            .route("/readyz", get(health::readyz))
            .with_state(self.clone())
    }

    pub fn auth(&self) -> &Auth {
        &self.0.auth
    }

    pub(crate) fn connections(&self) -> &TaskTracker {
        &self.0.connections
    }

    /// Waits (up to `deadline`) for the feed connections to close; call after cancelling the
    /// gateway's shutdown token.
    pub async fn drain(&self, deadline: std::time::Duration) -> bool {
        self.0.connections.close();
        tokio::time::timeout(deadline, self.0.connections.wait())
            .await
            .is_ok()
    }

    /// Checks a softphone caller's token (header, or `access_token` query value) and that it may
    /// open a call about `lead` on `track`: the claims, or the response refusing it.
    pub async fn softphone_caller(
        &self,
        headers: &axum::http::HeaderMap,
        token: Option<&str>,
        lead: Option<&winnerr_events::LeadId>,
        track: winnerr_events::Track,
    ) -> Result<crate::auth::Claims, axum::response::Response> {
        let claims = self
            .auth()
            .authenticate(headers, token)
            .map_err(axum::response::IntoResponse::into_response)?;
        crate::api::softphone_caller(self, claims, lead, track).await
    }

    pub fn store(&self) -> Option<&Store> {
        self.0.store.as_ref()
    }

    pub(crate) fn audio(&self) -> Option<&Arc<winnerr_events::AudioTap>> {
        self.0.audio.as_ref()
    }

    pub(crate) fn feed_settings(&self) -> FeedSettings {
        self.0.feed
    }

    pub(crate) fn rooms(&self) -> &Rooms {
        &self.0.rooms
    }

    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    /// Says whether `/readyz` should report ready.
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::SeqCst);
    }

    /// Why this node should not get traffic now, if anything: still starting or shutting down,
    /// the database or the bus unreachable.
    pub async fn unready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self.0.ready.load(Ordering::SeqCst) || self.0.shutdown.is_cancelled() {
            reasons.push("starting or shutting down".to_owned());
        }
        if let Some(store) = &self.0.store {
            let answered = tokio::time::timeout(READINESS_TIMEOUT, store.ping()).await;
            if !matches!(answered, Ok(true)) {
                reasons.push("database unreachable".to_owned());
            }
        }
        match tokio::time::timeout(READINESS_TIMEOUT, self.0.bus.check()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => reasons.push(format!("bus: {err}")),
            Err(_) => reasons.push("bus: no answer".to_owned()),
        }
        reasons
    }
}
