//! Numbers the voice webhook dials, and what may refuse one: a softphone's outbound call (the
//! Voice SDK's call arrives as `From=client:IDENTITY` with the number in `To`) or the configured
//! forwarding number is checked before any TwiML dials it, against the organization's
//! do-not-call list (the binary backs [`DialCheck`] with the store, and raises the alert).

use futures_util::future::BoxFuture;
use winnerr_events::{OrgId, UserId};

/// A number the webhook is about to dial for a call.
#[derive(Debug, Clone, Copy)]
pub struct DialAttempt<'a> {
    pub org: &'a OrgId,
    pub call_sid: &'a str,
    pub agent: Option<&'a UserId>,
    /// E.164.
    pub number: &'a str,
}

impl DialAttempt<'_> {
    /// The number's last four digits, all that logs and alerts show of it.
    pub fn last4(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }
}

/// Decides whether a number may be dialed.
pub trait DialCheck: Send + Sync {
    /// `Ok(true)`: dial; `Ok(false)`: refused (reporting it is the check's part); `Err`: it
    /// could not tell, and the webhook does not dial.
    fn may_dial<'a>(&'a self, attempt: DialAttempt<'a>) -> BoxFuture<'a, Result<bool, String>>;
}

/// The softphone identity a Voice SDK call comes from (`From=client:IDENTITY`).
pub fn client_identity(params: &[(String, String)]) -> Option<&str> {
    form_value(params, "From")?.strip_prefix("client:")
}

/// The number a softphone's outbound call asks for: `To`, in E.164, of a call from a client.
pub fn outbound_number(params: &[(String, String)]) -> Option<&str> {
    client_identity(params)?;
    let to = form_value(params, "To")?;
    is_e164(to).then_some(to)
}

/// An E.164 number: `+` and 8 to 15 digits.
pub(crate) fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The value of form parameter `name` of a Twilio webhook.
pub(crate) fn form_value<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_outbound_call_is_a_clients_call_to_a_number() {
        let outbound = form(&[("From", "client:agent-1"), ("To", "+15550100199")]);
        assert_eq!(outbound_number(&outbound), Some("+15550100199"));
        assert_eq!(client_identity(&outbound), Some("agent-1"));
        // A customer calling in: from a number, to ours.
        let inbound = form(&[("From", "+15550100199"), ("To", "+15550001111")]);
        assert_eq!(outbound_number(&inbound), None);
        for to in ["client:agent-2", "5550100199", "+1555", "+1555abc0199", ""] {
            let call = form(&[("From", "client:agent-1"), ("To", to)]);
            assert_eq!(outbound_number(&call), None, "{to}");
        }
    }
}
