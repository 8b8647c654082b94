//! The ingest service as axum routes: the Twilio Media Streams WebSocket (`/twilio/stream`), the
//! TwiML voice webhook (`/twilio/voice`) and the Messaging webhook (`/twilio/sms`), all checked
//! with `X-Twilio-Signature`; plus the
//! handle through which the rest of the process talks to live streams.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{OriginalUri, Query, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dashmap::DashMap;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use winnerr_events::{CallAudio, CallId, ConsentRecord, LeadId, OrgId, UserId};

use crate::identity::StreamIdentity;
use crate::outbound::{self, DialAttempt, DialCheck};
use crate::stream::{self, StreamCommand};
use crate::twiml::{self, Dial};
use crate::{metrics, signature};

/// Path of the Media Streams WebSocket.
pub const STREAM_PATH: &str = "/twilio/stream";
/// Path of the TwiML voice webhook.
pub const VOICE_PATH: &str = "/twilio/voice";

/// Settings of the ingest stage.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The Twilio account's auth token: checks `X-Twilio-Signature` and signs stream identities.
    pub auth_token: String,
    /// Check `X-Twilio-Signature`; switch off only for local development.
    pub verify_signatures: bool,
    /// The URL Twilio reaches this server at (e.g. `https://voice.example.com`), used to check
    /// signatures behind a proxy and to build the stream URL. Without it, the `Host` header is
    /// used, with `https`/`wss` when this server serves TLS itself and `http`/`ws` otherwise.
    pub public_url: Option<String>,
    /// This server terminates TLS itself (no proxy in front).
    pub tls: bool,
    /// Largest text frame accepted from Twilio, in bytes.
    pub max_message_bytes: usize,
    /// Depth of each call's queue towards the voice stage (frames; full means drop newest).
    pub call_queue: usize,
    /// What the voice webhook connects the call to after starting the stream.
    pub dial: Dial,
    /// Calls served at once, in all and per organization.
    pub limits: crate::CallLimits,
    /// What the voice webhook says to the caller (`<Say>`) when the node is full, before
    /// connecting the call untranscribed; `None`: it connects it without a word.
    pub full_say: Option<String>,
    /// What each organization's callers are told before their call is transcribed.
    pub consent: crate::ConsentPolicy,
    /// The Mailgun webhook signing key that authenticates inbound email (none: the email
    /// webhook answers 503).
    pub email_signing_key: Option<String>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            auth_token: String::new(),
            verify_signatures: true,
            public_url: None,
            tls: false,
            max_message_bytes: 64 * 1024,
            call_queue: 500,
            dial: Dial::Agent,
            limits: crate::CallLimits::default(),
            full_say: None,
            consent: crate::ConsentPolicy::default(),
            email_signing_key: None,
        }
    }
}

/// Why a command could not reach a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no live stream {0:?}")]
    NotLive(String),
    #[error("stream {0:?} has too many commands queued")]
    Busy(String),
}

/// The ingest stage of this process; cheap to clone.
#[derive(Clone)]
pub struct Ingest(Arc<Inner>);

struct Inner {
    config: IngestConfig,
    /// Taken at [`Ingest::close`], so the voice stage sees the end of new calls.
    calls: std::sync::Mutex<Option<mpsc::Sender<CallAudio>>>,
    streams: DashMap<String, mpsc::Sender<StreamCommand>>,
    /// Calls with a live stream here: one stream per call.
    live_calls: dashmap::DashSet<CallId>,
    admission: Arc<crate::admission::Admission>,
    /// What may refuse a number before the webhook dials it.
    dial_check: Option<Arc<dyn DialCheck>>,
    /// Where inbound messages go (none: the SMS webhook answers 503); taken at
    /// [`Ingest::close`], so the voice stage sees the end of new messages.
    messages: std::sync::Mutex<Option<crate::sms::MessageIntake>>,
    shutdown: CancellationToken,
    /// Open stream connections, so shutdown can wait for their close frames.
    connections: TaskTracker,
}

impl Ingest {
    /// New calls go to `calls` (the voice stage) and inbound messages to `messages`; `shutdown`
    /// ends every live stream; numbers are dialed only when `dial_check` (if any) allows them.
    pub fn new(
        config: IngestConfig,
        calls: mpsc::Sender<CallAudio>,
        messages: Option<crate::sms::MessageIntake>,
        dial_check: Option<Arc<dyn DialCheck>>,
        shutdown: CancellationToken,
    ) -> Self {
        metrics::describe();
        Self(Arc::new(Inner {
            admission: crate::admission::Admission::new(config.limits),
            dial_check,
            messages: std::sync::Mutex::new(messages),
            config,
            calls: std::sync::Mutex::new(Some(calls)),
            streams: DashMap::new(),
            live_calls: dashmap::DashSet::new(),
            shutdown,
            connections: TaskTracker::new(),
        }))
    }

    /// The routes to mount on the HTTP server.
    pub fn router(&self) -> Router {
        Router::new()
            .route(STREAM_PATH, get(stream_upgrade))
            .route(VOICE_PATH, post(voice_webhook))
            .route(crate::sms::SMS_PATH, post(crate::sms::sms_webhook))
            .route(
                crate::email::EMAIL_PATH,
                post(crate::email::email_webhook).layer(axum::extract::DefaultBodyLimit::max(
                    crate::email::MAX_EMAIL_BYTES,
                )),
            )
            .with_state(self.clone())
    }

    pub fn config(&self) -> &IngestConfig {
        &self.0.config
    }

    /// Where inbound messages go, if this node takes them (and is not closed).
    pub(crate) fn message_intake(&self) -> Option<crate::sms::MessageIntake> {
        self.0
            .messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Who decides whether a new call is served.
    pub(crate) fn admission(&self) -> &Arc<crate::admission::Admission> {
        &self.0.admission
    }

    /// Where new calls go; `None` once closed.
    pub(crate) fn calls(&self) -> Option<mpsc::Sender<CallAudio>> {
        self.0
            .calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Takes no new calls or messages from now on; the voice stage finishes the live ones and
    /// then stops.
    pub fn close(&self) {
        self.0
            .calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        self.0
            .messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }

    /// Waits (up to `deadline`) for the stream connections to close; call after cancelling the
    /// shutdown token.
    pub async fn drain(&self, deadline: std::time::Duration) -> bool {
        self.0.connections.close();
        tokio::time::timeout(deadline, self.0.connections.wait())
            .await
            .is_ok()
    }

    pub(crate) fn connections(&self) -> &TaskTracker {
        &self.0.connections
    }

    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    pub(crate) fn register(&self, stream_sid: String, commands: mpsc::Sender<StreamCommand>) {
        self.0.streams.insert(stream_sid, commands);
    }

    pub(crate) fn unregister(&self, stream_sid: &str) {
        self.0.streams.remove(stream_sid);
    }

    /// Marks `call` as streaming here; false if it already is.
    pub(crate) fn claim_call(&self, call: &CallId) -> bool {
        self.0.live_calls.insert(call.clone())
    }

    /// `call`'s stream has ended.
    pub(crate) fn release_call(&self, call: &CallId) {
        self.0.live_calls.remove(call);
    }

    /// Streams live in this process now.
    pub fn live_streams(&self) -> usize {
        self.0.streams.len()
    }

    /// Sends audio, a mark or a clear to the live stream `stream_sid`.
    pub fn send(&self, stream_sid: &str, command: StreamCommand) -> Result<(), SendError> {
        let sender = self
            .0
            .streams
            .get(stream_sid)
            .map(|entry| entry.value().clone())
            .ok_or_else(|| SendError::NotLive(stream_sid.to_owned()))?;
        sender.try_send(command).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => SendError::Busy(stream_sid.to_owned()),
            mpsc::error::TrySendError::Closed(_) => SendError::NotLive(stream_sid.to_owned()),
        })
    }

    /// The webhook's answer when `dial` is a number the dial check refuses (or cannot check):
    /// the call is not placed, and the caller hears why.
    async fn refused_dial(
        &self,
        identity: &StreamIdentity,
        call_sid: &str,
        dial: &Dial,
    ) -> Option<Response> {
        let (Dial::Number(number), Some(check)) = (dial, &self.0.dial_check) else {
            return None;
        };
        let attempt = DialAttempt {
            org: &identity.org_id,
            call_sid,
            agent: identity.agent_id.as_ref(),
            number,
        };
        let last4 = attempt.last4().to_owned();
        let call_sid: String = call_sid.chars().take(64).collect();
        let say = match check.may_dial(attempt).await {
            Ok(true) => return None,
            Ok(false) => {
                metrics::dial_refused("do_not_call");
                warn!(org_id = %identity.org_id, %call_sid, number = %format!("••••{last4}"), "not dialed: the number is on the do-not-call list");
                DO_NOT_CALL_SAY
            }
            Err(error) => {
                metrics::dial_refused("unchecked");
                warn!(org_id = %identity.org_id, %call_sid, %error, "not dialed: the do-not-call list could not be checked");
                UNCHECKED_SAY
            }
        };
        metrics::webhook("dial_refused");
        Some(twiml_response(twiml::refuse(say)))
    }

    /// The public base URL of this server for a request, as Twilio sees it.
    fn base_url(&self, headers: &HeaderMap) -> Option<String> {
        match &self.0.config.public_url {
            Some(url) => Some(url.trim_end_matches('/').to_owned()),
            None => {
                let scheme = if self.0.config.tls { "https" } else { "http" };
                Some(format!("{scheme}://{}", headers.get(HOST)?.to_str().ok()?))
            }
        }
    }

    /// Refuses a request whose `X-Twilio-Signature` is missing or wrong (unless checks are off).
    pub(crate) fn check_signature(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        params: &[(String, String)],
        websocket: bool,
    ) -> Result<(), Forbidden> {
        if !self.0.config.verify_signatures {
            return Ok(());
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let base = self.base_url(headers).unwrap_or_default();
        let url = if websocket {
            websocket_url(&base)
        } else {
            base
        } + path;
        let signature = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok());
        let key = &self.0.config.auth_token;
        match signature {
            Some(signature)
                if with_and_without_default_port(&url)
                    .iter()
                    .any(|url| signature::verify(key, url, params, signature)) =>
            {
                Ok(())
            }
            found => {
                let reason = if found.is_some() {
                    "bad_signature"
                } else {
                    "missing_signature"
                };
                metrics::bad_input(reason, "refused");
                warn!(%url, reason, "Twilio request refused");
                Err(Forbidden)
            }
        }
    }
}

/// What the caller hears when the number is on the organization's do-not-call list.
const DO_NOT_CALL_SAY: &str = "This number is on the do-not-call list, so the call was not placed.";
/// What the caller hears when the list could not be checked.
const UNCHECKED_SAY: &str =
    "The call was not placed: the do-not-call list could not be checked. Please try again.";

/// A TwiML answer.
fn twiml_response(xml: String) -> Response {
    ([(CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

/// A request refused for its `X-Twilio-Signature`.
pub(crate) struct Forbidden;

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        (
            StatusCode::FORBIDDEN,
            "invalid or missing X-Twilio-Signature\n",
        )
            .into_response()
    }
}

/// The `ws`/`wss` form of an `http`/`https` URL.
/// `url`, and the same URL with its scheme's default port written out or left out (`:443` for
/// https/wss, `:80` for http/ws): Twilio signs the URL as it was configured, and its own
/// validators accept either form. A URL with another port is only itself.
pub fn with_and_without_default_port(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_owned()];
    };
    let default = match scheme {
        "https" | "wss" => ":443",
        "http" | "ws" => ":80",
        _ => return vec![url.to_owned()],
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    let other = match authority.strip_suffix(default) {
        Some(host) => format!("{scheme}://{host}{path}"),
        None if authority[host_end..].contains(':') => return vec![url.to_owned()],
        None => format!("{scheme}://{authority}{default}{path}"),
    };
    vec![url.to_owned(), other]
}

pub fn websocket_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    }
}

async fn stream_upgrade(
    State(ingest): State<Ingest>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Err(refused) = ingest.check_signature(&headers, &uri, &[], true) {
        return refused.into_response();
    }
    // The protocol limit is enforced per message (close 1009); this is only the hard ceiling.
    let ceiling = (ingest.config().max_message_bytes * 4).max(1 << 20);
    let connections = ingest.0.connections.clone();
    upgrade
        .max_message_size(ceiling)
        .on_upgrade(move |socket| connections.track_future(stream::serve(socket, ingest)))
}

/// Who the call is for, set in the webhook URL configured at Twilio (which Twilio signs).
#[derive(Debug, Deserialize)]
struct VoiceQuery {
    org: Option<String>,
    agent: Option<String>,
    lead: Option<String>,
}

async fn voice_webhook(
    State(ingest): State<Ingest>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(query): Query<VoiceQuery>,
    body: Bytes,
) -> Response {
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        metrics::webhook("bad_request");
        return (StatusCode::BAD_REQUEST, "body is not form-encoded\n").into_response();
    };
    if let Err(refused) = ingest.check_signature(&headers, &uri, &params, false) {
        metrics::webhook("forbidden");
        return refused.into_response();
    }
    let identity = (|| -> Result<(StreamIdentity, String), String> {
        let org = query
            .org
            .as_deref()
            .ok_or("query parameter `org` is required")?;
        let identity = StreamIdentity {
            org_id: OrgId::parse(org).map_err(|e| e.to_string())?,
            // A softphone's own call says whose it is in `From`.
            agent_id: query
                .agent
                .as_deref()
                .or_else(|| outbound::client_identity(&params))
                .map(UserId::parse)
                .transpose()
                .map_err(|e| e.to_string())?,
            lead_id: query
                .lead
                .as_deref()
                .map(LeadId::parse)
                .transpose()
                .map_err(|e| e.to_string())?,
        };
        let call_sid = outbound::form_value(&params, "CallSid")
            .ok_or("form parameter `CallSid` is required")?
            .to_owned();
        Ok((identity, call_sid))
    })();
    let (identity, call_sid) = match identity {
        Ok(found) => found,
        Err(error) => {
            metrics::webhook("bad_request");
            warn!(%error, "voice webhook refused");
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    let agent = identity.agent_id.as_ref().map(UserId::as_str);
    // A softphone's outbound call dials its `To`; any other call what is configured.
    let outbound_to = outbound::outbound_number(&params);
    let dial = match outbound_to {
        Some(number) => Dial::Number(number.to_owned()),
        None => ingest.config().dial.clone(),
    };
    if let Some(refused) = ingest.refused_dial(&identity, &call_sid, &dial).await {
        return refused;
    }
    if let Err(full) = ingest.admission().check(&identity.org_id) {
        // Full: the call goes through, untranscribed, rather than not at all.
        metrics::webhook(full.label());
        warn!(org_id = %identity.org_id, call_sid = %call_sid.chars().take(64).collect::<String>(), reason = full.label(), "voice webhook answered without a stream");
        let xml = twiml::dial_without_stream(ingest.config().full_say.as_deref(), &dial, agent);
        return twiml_response(xml);
    }
    let key = &ingest.config().auth_token;
    let mut parameters: BTreeMap<String, String> = identity.to_parameters(key, &call_sid);
    // The customer's number: whom an outbound call dials, else who calls in.
    let customer = outbound_to
        .or_else(|| outbound::form_value(&params, "From").filter(|from| from.starts_with('+')));
    let consent = ingest.config().consent.for_call(&identity.org_id, customer);
    if let Some((ask, digit)) = ingest.config().consent.ask(consent) {
        // Opt-in: ask first; Twilio posts the key pressed back here (same URL, so the same
        // organization, agent and lead), and only that key starts a stream.
        let pressed = outbound::form_value(&params, "Digits");
        match pressed {
            None => {
                metrics::consent_opt_in("asked");
                metrics::webhook("ok");
                let action = uri.path_and_query().map_or(VOICE_PATH, |p| p.as_str());
                let xml = twiml::ask_then_dial(&ask, action, &dial, agent);
                return twiml_response(xml);
            }
            Some(pressed) if pressed.chars().eq([digit]) => {
                metrics::consent_opt_in("opted_in");
                crate::identity::sign_consent(
                    &mut parameters,
                    key,
                    &call_sid,
                    ConsentRecord::OptedIn,
                );
            }
            Some(_) => {
                metrics::consent_opt_in("declined");
                metrics::webhook("ok");
                info!(org_id = %identity.org_id, "caller did not opt in: connected without a stream");
                let xml = twiml::dial_without_stream(None, &dial, agent);
                return twiml_response(xml);
            }
        }
    }
    let base = ingest.base_url(&headers).unwrap_or_default();
    let stream_url = websocket_url(&base) + STREAM_PATH;
    let disclosure = ingest.config().consent.say_before_stream(consent);
    if disclosure.is_some() {
        metrics::consent_disclosed();
        crate::identity::sign_consent(&mut parameters, key, &call_sid, ConsentRecord::Disclosed);
    }
    let xml = twiml::stream_then_dial(disclosure, &stream_url, &parameters, &dial, agent);
    metrics::webhook("ok");
    twiml_response(xml)
}

#[cfg(test)]
mod tests {
    use super::with_and_without_default_port as forms;

    #[test]
    fn a_default_port_is_accepted_written_or_left_out() {
        assert_eq!(
            forms("https://voice.example.com/twilio/voice?org=a"),
            [
                "https://voice.example.com/twilio/voice?org=a",
                "https://voice.example.com:443/twilio/voice?org=a"
            ]
        );
        assert_eq!(
            forms("wss://voice.example.com:443/twilio/stream"),
            [
                "wss://voice.example.com:443/twilio/stream",
                "wss://voice.example.com/twilio/stream"
            ]
        );
        assert_eq!(
            forms("http://[::1]/x"),
            ["http://[::1]/x", "http://[::1]:80/x"]
        );
        assert_eq!(forms("https://host:8443/x"), ["https://host:8443/x"]);
        assert_eq!(forms("http://[::1]:8080/x"), ["http://[::1]:8080/x"]);
    }
}
