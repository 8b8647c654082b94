//! Inbound SMS: Twilio's Messaging webhook (`POST /twilio/sms?org=ID`), form-encoded as Twilio
//! documents it (`MessageSid`, `AccountSid`, `From`, `To`, `Body`, `NumMedia`, …) and signed with
//! `X-Twilio-Signature` like the voice webhook; the organization is the one the webhook URL names.
//!
//! The sender is found by the [`Inbox`] (the binary backs it with the store: the organization's
//! person with that number, or a new lead), which also records the message's sid once, so that
//! Twilio's redeliveries of one message change nothing. The message is then handed to the voice
//! stage for analysis and the webhook answers with empty TwiML.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tracing::{info, warn};
use winnerr_events::{
    CallContext, CallId, InboundMessage, LeadId, MAX_MESSAGE_CHARS, MessageChannel, OrgId, UserId,
    now_ms,
};

use crate::metrics;
use crate::outbound::{form_value, is_e164};
use crate::routes::Ingest;

/// Path of the Messaging webhook.
pub const SMS_PATH: &str = "/twilio/sms";

/// A message as it arrived, before anything is known of its sender.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub org: &'a OrgId,
    pub channel: MessageChannel,
    /// The provider's id of the message (Twilio's `MessageSid`).
    pub id: &'a CallId,
    /// The sender's address: an E.164 number for SMS.
    pub from: &'a str,
    /// When the webhook reached this server (ms since the Unix epoch).
    pub received_at_ms: u64,
}

/// Who sent a message that arrived for the first time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub lead_id: LeadId,
    /// The lead's agent (their owner in the CRM), if any.
    pub agent_id: Option<UserId>,
    /// No person had the address: the lead was created for this message.
    pub new_lead: bool,
}

/// What the inbox made of an arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The first delivery of the message, from this sender.
    First(Sender),
    /// The message was received before: a redelivery, to be answered and otherwise ignored.
    Again,
}

/// Why the inbox could not take a message (its store did not answer, or refused).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct InboxError(#[from] pub Box<dyn std::error::Error + Send + Sync>);

/// Records messages once and finds their senders.
pub trait Inbox: Send + Sync {
    /// Records `arrival` unless its id was recorded before, and finds (or creates) its sender.
    fn receive<'a>(&'a self, arrival: Arrival<'a>) -> BoxFuture<'a, Result<Received, InboxError>>;

    /// Forgets message `id` of `org` (recorded, then not handed on: the server is stopping), so
    /// that its redelivery is taken as new.
    fn forget<'a>(
        &'a self,
        org: &'a OrgId,
        id: &'a CallId,
    ) -> BoxFuture<'a, Result<(), InboxError>>;

    /// `from` texted an opt-out keyword (`opted_out`) or an opt-in one: it goes on `org`'s
    /// do-not-call list, or comes off it.
    fn set_opted_out<'a>(
        &'a self,
        org: &'a OrgId,
        from: &'a str,
        opted_out: bool,
    ) -> BoxFuture<'a, Result<(), InboxError>>;
}

/// Twilio's opt-out and opt-in keywords (its Messaging "Advanced Opt-Out" defaults): a message
/// that is one of them, alone, any case, is the sender's word on being contacted.
const OPT_OUT: [&str; 8] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
const OPT_IN: [&str; 3] = ["START", "YES", "UNSTOP"];

/// `Some(true)` for an opt-out keyword, `Some(false)` for an opt-in one, else `None`.
pub(crate) fn opt_keyword(body: &str) -> Option<bool> {
    let word = body
        .trim()
        .trim_end_matches(['.', '!'])
        .to_ascii_uppercase();
    if OPT_OUT.contains(&word.as_str()) {
        Some(true)
    } else if OPT_IN.contains(&word.as_str()) {
        Some(false)
    } else {
        None
    }
}

/// Where inbound messages go: the voice stage's queue, and the inbox that records them.
#[derive(Clone)]
pub struct MessageIntake {
    pub messages: tokio::sync::mpsc::Sender<InboundMessage>,
    pub inbox: std::sync::Arc<dyn Inbox>,
}

/// Who the messages are for, set in the webhook URL configured at Twilio (which Twilio signs).
#[derive(Debug, Deserialize)]
pub(crate) struct SmsQuery {
    org: Option<String>,
}

/// A bad request, answered 400 with why.
fn refused(outcome: &'static str, why: String) -> Response {
    metrics::sms(outcome);
    warn!(reason = %why, "SMS webhook refused");
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}

/// Empty TwiML: nothing to send back.
fn empty_twiml() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response()
}

fn unavailable(why: &'static str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

/// An SMS body as analysed: at most [`MAX_MESSAGE_CHARS`] characters, control characters other
/// than line breaks and tabs taken out (no NUL can reach a database).
pub fn clean_text(body: &str) -> String {
    body.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

pub(crate) async fn sms_webhook(
    State(ingest): State<Ingest>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(query): Query<SmsQuery>,
    body: Bytes,
) -> Response {
    let received_at_ms = now_ms();
    let Ok(params) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return refused("bad_request", "body is not form-encoded".into());
    };
    if let Err(forbidden) = ingest.check_signature(&headers, &uri, &params, false) {
        metrics::sms("forbidden");
        return forbidden.into_response();
    }
    let org = match query.org.as_deref().map(OrgId::parse) {
        Some(Ok(org)) => org,
        Some(Err(err)) => return refused("bad_request", err.to_string()),
        None => return refused("bad_request", "query parameter `org` is required".into()),
    };
    let id = match form_value(&params, "MessageSid").map(winnerr_events::message::message_id) {
        Some(Ok(id)) => id,
        Some(Err(err)) => return refused("bad_request", format!("MessageSid: {err}")),
        None => {
            return refused(
                "bad_request",
                "form parameter `MessageSid` is required".into(),
            );
        }
    };
    let from = match form_value(&params, "From") {
        Some(from) if is_e164(from) => from,
        Some(_) => return refused("bad_request", "From is not an E.164 number".into()),
        None => return refused("bad_request", "form parameter `From` is required".into()),
    };
    let inbound = Inbound {
        org,
        channel: MessageChannel::Sms,
        id,
        from: from.to_owned(),
        text: clean_text(form_value(&params, "Body").unwrap_or_default()),
        received_at_ms,
    };
    let (outcome, response) = hand_on(&ingest, inbound).await;
    metrics::sms(outcome);
    response.unwrap_or_else(empty_twiml)
}

/// A message that passed its webhook's checks.
pub(crate) struct Inbound {
    pub org: OrgId,
    pub channel: MessageChannel,
    pub id: CallId,
    /// The sender's number or address.
    pub from: String,
    /// Cleaned (see [`clean_text`]).
    pub text: String,
    pub received_at_ms: u64,
}

/// Records `inbound` once and hands it to the voice stage. Returns the outcome (for the
/// webhook's metric) and the response where it is not the webhook's own "done" (a redelivery
/// is done too: it changes nothing).
pub(crate) async fn hand_on(ingest: &Ingest, inbound: Inbound) -> (&'static str, Option<Response>) {
    let Some(intake) = ingest.message_intake() else {
        warn!("this node takes no messages (no store to record them in)");
        return (
            "unavailable",
            Some(unavailable("this server takes no messages")),
        );
    };
    let Inbound {
        org,
        channel,
        id,
        from,
        text,
        received_at_ms,
    } = inbound;
    let arrival = Arrival {
        org: &org,
        channel,
        id: &id,
        from: &from,
        received_at_ms,
    };
    let received = match intake.inbox.receive(arrival).await {
        Ok(received) => received,
        Err(error) => {
            warn!(org_id = %org, message_id = %id, %error, "message not recorded: the inbox failed");
            return (
                "unrecorded",
                Some(unavailable("the message could not be recorded")),
            );
        }
    };
    // Applied on every delivery (it changes nothing the second time), so a redelivery after a
    // failure here still records it; a late redelivery of a STOP after a START opts out again,
    // the safer side for a number that asked not to be contacted.
    let keyword = (channel == MessageChannel::Sms)
        .then(|| opt_keyword(&text))
        .flatten();
    if let Some(opted_out) = keyword {
        // Twilio itself stops delivering to a number that texted STOP; the list keeps the
        // engine's own calls and dials from reaching it too.
        if let Err(error) = intake.inbox.set_opted_out(&org, &from, opted_out).await {
            warn!(org_id = %org, message_id = %id, %error, "opt-out keyword not recorded");
            return (
                "unrecorded",
                Some(unavailable("the opt-out could not be recorded")),
            );
        }
        if matches!(received, Received::First(_)) {
            metrics::sms_opt(opted_out);
            info!(org_id = %org, message_id = %id, opted_out, "the sender's opt-out keyword: do-not-call list updated");
        }
    }
    let sender = match received {
        Received::First(sender) => sender,
        Received::Again => {
            info!(org_id = %org, message_id = %id, channel = channel.as_str(), "message delivered again: ignored");
            return ("duplicate", None);
        }
    };
    if sender.new_lead {
        info!(org_id = %org, message_id = %id, lead_id = %sender.lead_id, channel = channel.as_str(), "message from someone unknown: a new lead");
    }
    let message = InboundMessage {
        message: CallContext {
            org_id: org.clone(),
            call_id: id.clone(),
            agent_id: sender.agent_id,
            lead_id: Some(sender.lead_id),
        },
        channel,
        text,
        received_at_ms,
    };
    // Recorded now: the hand-off must happen even if the sender hangs up first, so it runs on
    // its own task. Bounded: a burst waits here for the voice stage (the provider holds its
    // request) rather than queueing without end; it fails only once the stage has stopped.
    let handed = tokio::spawn(async move {
        if intake.messages.send(message).await.is_ok() {
            return true;
        }
        warn!(org_id = %org, message_id = %id, "message not analysed: the server is stopping");
        if let Err(error) = intake.inbox.forget(&org, &id).await {
            warn!(org_id = %org, message_id = %id, %error, "message recorded but not analysed, and not forgotten: its redelivery will be ignored");
        }
        false
    });
    if handed.await.unwrap_or(false) {
        ("ok", None)
    } else {
        ("unavailable", Some(unavailable("the server is stopping")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_cut_and_cleaned_before_analysis() {
        assert_eq!(clean_text("a\u{0}b\r\nc\td"), "ab\nc\td");
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        assert_eq!(clean_text(&long).chars().count(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn opt_keywords_are_twilios_alone_in_any_case() {
        for out in [
            "STOP",
            "stop",
            " Stop. ",
            "unsubscribe",
            "Cancel",
            "QUIT!",
            "optout",
        ] {
            assert_eq!(opt_keyword(out), Some(true), "{out}");
        }
        for back in ["START", "yes", "Unstop"] {
            assert_eq!(opt_keyword(back), Some(false), "{back}");
        }
        for neither in [
            "stop calling me at work",
            "please stop",
            "HELP",
            "",
            "STOP STOP",
        ] {
            assert_eq!(opt_keyword(neither), None, "{neither}");
        }
    }

    #[test]
    fn a_sender_is_an_e164_number() {
        assert!(is_e164("+15550100199"));
        for bad in [
            "15550100199",
            "+1555",
            "+1555010019912345",
            "+1555abc0199",
            "whatsapp:+15550100199",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }
}
