//! Inbound email: Mailgun's inbound route webhook (`POST /email/inbound?org=ID`), the "forward"
//! action's post of the parsed message, form-encoded or `multipart/form-data` as Mailgun sends it
//! (`sender`, `from`, `subject`, `body-plain`, `stripped-text`, `body-html`, `message-headers`,
//! `timestamp`, `token`, `signature`). It is authenticated as Mailgun documents: `signature` is the
//! hex HMAC-SHA256 of `timestamp` followed by `token`, keyed by the webhook signing key, and the
//! timestamp must be recent. What is analysed is the new text only: Mailgun's `stripped-text`
//! where it sent one, else the plain body (or the HTML reduced to text), with quoted history and
//! the signature cut off here. The message is recorded once by its `Message-Id` and then takes
//! the SMS path (see [`crate::sms`]).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tracing::warn;
use winnerr_events::{CallId, MessageChannel, OrgId, now_ms};

use crate::metrics;
use crate::routes::Ingest;
use crate::sms::{Inbound, hand_on};

/// Path of the inbound email webhook.
pub const EMAIL_PATH: &str = "/email/inbound";

/// How far a webhook's timestamp may lie from this server's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(10 * 60);

/// Largest post accepted (the text parts of a long email; attachments are not read).
pub const MAX_EMAIL_BYTES: usize = 4 * 1024 * 1024;

/// The fields of Mailgun's post this server reads.
#[derive(Debug, Default)]
struct Post {
    timestamp: String,
    token: String,
    signature: String,
    sender: String,
    from: String,
    stripped_text: String,
    body_plain: String,
    body_html: String,
    message_headers: String,
}

impl Post {
    fn set(&mut self, name: &str, value: String) {
        let slot = match name {
            "timestamp" => &mut self.timestamp,
            "token" => &mut self.token,
            "signature" => &mut self.signature,
            "sender" => &mut self.sender,
            "from" => &mut self.from,
            "stripped-text" => &mut self.stripped_text,
            "body-plain" => &mut self.body_plain,
            "body-html" => &mut self.body_html,
            "message-headers" => &mut self.message_headers,
            _ => return,
        };
        *slot = value;
    }

    /// The `Message-Id` header, from `message-headers` (a JSON list of `[name, value]`).
    fn message_id(&self) -> Option<String> {
        let headers: Vec<(String, String)> = serde_json::from_str(&self.message_headers).ok()?;
        headers
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("Message-Id"))
            .map(|(_, value)| value.trim().to_owned())
            .filter(|id| !id.is_empty())
    }

    /// The sender's address: the envelope `sender`, else the address in `from`.
    fn address(&self) -> Option<String> {
        let raw = if self.sender.trim().is_empty() {
            let from = self.from.trim();
            match (from.rfind('<'), from.rfind('>')) {
                (Some(open), Some(close)) if open < close => &from[open + 1..close],
                _ => from,
            }
        } else {
            self.sender.trim()
        };
        let at = raw.find('@')?;
        (raw.len() <= 320 && at > 0 && at < raw.len() - 1 && !raw.contains(char::is_whitespace))
            .then(|| raw.to_lowercase())
    }

    /// What the sender wrote in this email: without quoted history or signature.
    fn new_text(&self) -> String {
        let text = if !self.stripped_text.trim().is_empty() {
            self.stripped_text.clone()
        } else if !self.body_plain.trim().is_empty() {
            self.body_plain.clone()
        } else {
            html2text::from_read(self.body_html.as_bytes(), 10_000).unwrap_or_default()
        };
        strip_quoted(&text)
    }
}

/// The text of an email above its quoted history and its signature: everything from the first
/// line that starts a quote (`>`), an attribution (`On … wrote:`), a forwarded or original
/// message's header, or the signature delimiter (`-- `) is cut.
pub fn strip_quoted(text: &str) -> String {
    let mut kept = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let starts_history = trimmed.starts_with('>')
            || (trimmed.starts_with("On ") && trimmed.ends_with("wrote:"))
            || trimmed.starts_with("-----Original Message-----")
            || trimmed.starts_with("---------- Forwarded message")
            || line == "-- "
            || trimmed == "--"
            || (trimmed.starts_with("From: ")
                && kept.last().is_some_and(|l: &&str| l.trim().is_empty()));
        if starts_history {
            break;
        }
        kept.push(line);
    }
    kept.join("\n").trim().to_owned()
}

/// Whether `signature` is Mailgun's for `timestamp` and `token` under `key`.
pub fn verify(key: &str, timestamp: &str, token: &str, signature: &str) -> bool {
    let Ok(expected) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

/// Mailgun's signature of `timestamp` and `token` under `key` (for tests and tools).
pub fn sign(key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The id an email travels under: `em` and the first 32 hex digits of the SHA-256 of its
/// `Message-Id` (a header may hold any characters; ids may not).
pub fn email_id(message_id: &str) -> CallId {
    let digest = Sha256::digest(message_id.as_bytes());
    CallId::parse(format!("em{}", hex::encode(&digest[..16]))).expect("em and hex digits are an id")
}

/// Reads Mailgun's post, form-encoded or multipart; attachments are skipped.
async fn read_post(request: Request) -> Result<Post, String> {
    let multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut post = Post::default();
    if multipart {
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|e| format!("not a multipart form: {e}"))?;
        while let Some(field) = form.next_field().await.map_err(|e| e.to_string())? {
            let name = field.name().unwrap_or_default().to_owned();
            if field.file_name().is_some() {
                continue;
            }
            let value = field.text().await.map_err(|e| e.to_string())?;
            post.set(&name, value);
        }
    } else {
        let body = Bytes::from_request(request, &())
            .await
            .map_err(|e| format!("body not read: {e}"))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|_| "body is not form-encoded".to_owned())?;
        for (name, value) in fields {
            post.set(&name, value);
        }
    }
    Ok(post)
}

fn refused(status: StatusCode, outcome: &'static str, why: String) -> Response {
    metrics::email(outcome);
    warn!(reason = %why, "email webhook refused");
    (status, format!("{why}\n")).into_response()
}

/// Who the email is for, set in the route's URL.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct EmailQuery {
    org: Option<String>,
}

pub(crate) async fn email_webhook(
    State(ingest): State<Ingest>,
    Query(query): Query<EmailQuery>,
    request: Request,
) -> Response {
    let received_at_ms = now_ms();
    let Some(key) = ingest.config().email_signing_key.clone() else {
        metrics::email("unavailable");
        warn!("email webhook: no signing key configured (WINNERR_MAILGUN_SIGNING_KEY)");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "inbound email is not configured\n",
        )
            .into_response();
    };
    let post = match read_post(request).await {
        Ok(post) => post,
        Err(why) => return refused(StatusCode::BAD_REQUEST, "bad_request", why),
    };
    if !verify(&key, &post.timestamp, &post.token, &post.signature) {
        return refused(
            StatusCode::FORBIDDEN,
            "forbidden",
            "bad or missing Mailgun signature".into(),
        );
    }
    let fresh = post
        .timestamp
        .parse::<u64>()
        .is_ok_and(|at| (at * 1000).abs_diff(received_at_ms) <= MAX_CLOCK_SKEW.as_millis() as u64);
    if !fresh {
        return refused(
            StatusCode::FORBIDDEN,
            "stale",
            "the signed timestamp is not recent".into(),
        );
    }
    let org = match query.org.as_deref().map(OrgId::parse) {
        Some(Ok(org)) => org,
        Some(Err(err)) => return refused(StatusCode::BAD_REQUEST, "bad_request", err.to_string()),
        None => {
            return refused(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "query parameter `org` is required".into(),
            );
        }
    };
    let Some(message_id) = post.message_id() else {
        return refused(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "no Message-Id in message-headers".into(),
        );
    };
    let Some(from) = post.address() else {
        return refused(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "no sender address".into(),
        );
    };
    let inbound = Inbound {
        org,
        channel: MessageChannel::Email,
        id: email_id(&message_id),
        from,
        text: crate::sms::clean_text(&post.new_text()),
        received_at_ms,
    };
    let (outcome, response) = hand_on(&ingest, inbound).await;
    metrics::email(outcome);
    match response {
        Some(response) => response,
        None => (StatusCode::OK, "ok\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_history_and_the_signature_are_cut() {
        let email = "Thanks, Saturday works.\nCan we see the garden too?\n\n\
                     On Tue, Dec 1, 2026 at 9:00 AM Sam <sam@winnerr.example> wrote:\n\
                     > This is awful, I want to cancel.\n";
        assert_eq!(
            strip_quoted(email),
            "Thanks, Saturday works.\nCan we see the garden too?"
        );
        assert_eq!(
            strip_quoted("Sounds good.\n-- \nDana\n555-0100"),
            "Sounds good."
        );
        assert_eq!(
            strip_quoted("Yes.\n\nFrom: Sam\nSent: Monday\nOld words"),
            "Yes."
        );
        assert_eq!(strip_quoted("> only quote"), "");
    }

    #[test]
    fn a_signature_is_mailguns_hmac_of_timestamp_and_token() {
        let signature = sign("key-1", "1796000000", "abc");
        assert!(verify("key-1", "1796000000", "abc", &signature));
        assert!(!verify("key-2", "1796000000", "abc", &signature));
        assert!(!verify("key-1", "1796000001", "abc", &signature));
        assert!(!verify("key-1", "1796000000", "abc", "zz"));
    }

    #[test]
    fn an_email_id_is_an_id_whatever_its_header_holds() {
        let id = email_id("<CAF=x+y@mail.example.com>");
        assert!(id.as_str().starts_with("em") && id.as_str().len() == 34);
        assert_eq!(id, email_id("<CAF=x+y@mail.example.com>"));
    }

    #[test]
    fn html_is_read_as_text() {
        let post = Post {
            body_html: "<p>We <b>love</b> the house!</p><blockquote>old</blockquote>".into(),
            ..Default::default()
        };
        assert!(
            post.new_text().contains("We love the house!"),
            "{}",
            post.new_text()
        );
    }
}
