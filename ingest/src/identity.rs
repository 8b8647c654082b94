//! Who a stream belongs to. The TwiML webhook puts the organization, agent and lead into the
//! stream's `<Parameter>`s together with a signature bound to the call, so a stream's identity
//! cannot be forged or replayed onto another call by whoever can open a WebSocket.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use winnerr_events::{ConsentRecord, InvalidId, LeadId, OrgId, UserId};

type HmacSha256 = Hmac<Sha256>;

/// Names of the custom parameters that carry the identity.
pub const PARAM_ORG: &str = "org";
pub const PARAM_AGENT: &str = "agent";
pub const PARAM_LEAD: &str = "lead";
pub const PARAM_SIGNATURE: &str = "sig";
/// How the webhook obtained the caller's consent (`disclosed`, `opted_in`), and its own
/// signature.
pub const PARAM_CONSENT: &str = "consent";
pub const PARAM_CONSENT_SIGNATURE: &str = "consent_sig";

/// An HMAC over `parts`, each ended by '\n' (no part contains one, so parts cannot be shifted
/// into one another).
fn mac_of(key: &str, parts: &[&str]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts any key");
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac
}

fn consent_mac(key: &str, call_sid: &str, record: &str) -> HmacSha256 {
    mac_of(key, &["consent-v1", call_sid, record])
}

/// Adds to a stream's `params` how its caller's consent was obtained on call `call_sid` (heard
/// the disclosure, or pressed the digit).
pub fn sign_consent(
    params: &mut BTreeMap<String, String>,
    key: &str,
    call_sid: &str,
    record: ConsentRecord,
) {
    let name = record.as_str();
    let mac = consent_mac(key, call_sid, name);
    params.insert(PARAM_CONSENT.to_owned(), name.to_owned());
    params.insert(
        PARAM_CONSENT_SIGNATURE.to_owned(),
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
    );
}

/// How a stream's `params` say, signed for call `call_sid`, its caller's consent was obtained.
pub fn signed_consent(
    params: &BTreeMap<String, String>,
    key: &str,
    call_sid: &str,
) -> Option<ConsentRecord> {
    let given = params.get(PARAM_CONSENT)?;
    let record = ConsentRecord::ALL
        .into_iter()
        .find(|r| r.as_str() == given)?;
    let signature = URL_SAFE_NO_PAD
        .decode(params.get(PARAM_CONSENT_SIGNATURE)?)
        .ok()?;
    consent_mac(key, call_sid, record.as_str())
        .verify_slice(&signature)
        .is_ok()
        .then_some(record)
}

/// The verified owner of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamIdentity {
    pub org_id: OrgId,
    pub agent_id: Option<UserId>,
    pub lead_id: Option<LeadId>,
}

/// Why a stream's identity was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("custom parameter `{0}` is missing")]
    Missing(&'static str),
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error("identity signature does not match")]
    BadSignature,
}

impl StreamIdentity {
    fn mac(&self, key: &str, call_sid: &str) -> HmacSha256 {
        let field = |id: Option<&str>| id.unwrap_or("").to_owned();
        let agent = field(self.agent_id.as_ref().map(UserId::as_str));
        let lead = field(self.lead_id.as_ref().map(LeadId::as_str));
        // Ids cannot contain '\n'.
        mac_of(key, &["v1", call_sid, self.org_id.as_str(), &agent, &lead])
    }

    /// The custom parameters (identity and signature) for a stream of call `call_sid`.
    pub fn to_parameters(&self, key: &str, call_sid: &str) -> BTreeMap<String, String> {
        let mut params = BTreeMap::new();
        params.insert(PARAM_ORG.to_owned(), self.org_id.to_string());
        if let Some(agent) = &self.agent_id {
            params.insert(PARAM_AGENT.to_owned(), agent.to_string());
        }
        if let Some(lead) = &self.lead_id {
            params.insert(PARAM_LEAD.to_owned(), lead.to_string());
        }
        let signature = URL_SAFE_NO_PAD.encode(self.mac(key, call_sid).finalize().into_bytes());
        params.insert(PARAM_SIGNATURE.to_owned(), signature);
        params
    }

    /// Reads and checks the identity in a stream's custom parameters.
    pub fn from_parameters(
        params: &BTreeMap<String, String>,
        key: &str,
        call_sid: &str,
    ) -> Result<Self, IdentityError> {
        let org = params
            .get(PARAM_ORG)
            .ok_or(IdentityError::Missing(PARAM_ORG))?;
        let identity = StreamIdentity {
            org_id: OrgId::parse(org)?,
            agent_id: params.get(PARAM_AGENT).map(UserId::parse).transpose()?,
            lead_id: params.get(PARAM_LEAD).map(LeadId::parse).transpose()?,
        };
        let signature = params
            .get(PARAM_SIGNATURE)
            .ok_or(IdentityError::Missing(PARAM_SIGNATURE))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| IdentityError::BadSignature)?;
        identity
            .mac(key, call_sid)
            .verify_slice(&signature)
            .map_err(|_| IdentityError::BadSignature)?;
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> StreamIdentity {
        StreamIdentity {
            org_id: OrgId::parse("acme").unwrap(),
            agent_id: Some(UserId::parse("agent-7").unwrap()),
            lead_id: None,
        }
    }

    #[test]
    fn signed_parameters_verify_for_their_call_only() {
        let params = identity().to_parameters("k", "CA1");
        assert_eq!(
            StreamIdentity::from_parameters(&params, "k", "CA1").unwrap(),
            identity()
        );
        assert!(matches!(
            StreamIdentity::from_parameters(&params, "k", "CA2"),
            Err(IdentityError::BadSignature)
        ));
        assert!(StreamIdentity::from_parameters(&params, "other key", "CA1").is_err());
    }

    #[test]
    fn a_consent_verifies_for_its_call_and_kind_only() {
        let mut params = identity().to_parameters("k", "CA1");
        assert_eq!(signed_consent(&params, "k", "CA1"), None);
        sign_consent(&mut params, "k", "CA1", ConsentRecord::OptedIn);
        assert_eq!(
            signed_consent(&params, "k", "CA1"),
            Some(ConsentRecord::OptedIn)
        );
        assert_eq!(signed_consent(&params, "k", "CA2"), None);
        assert_eq!(signed_consent(&params, "other key", "CA1"), None);
        // The identity's own signature is unchanged by it.
        assert!(StreamIdentity::from_parameters(&params, "k", "CA1").is_ok());
        // A disclosure's signature does not make an opt-in.
        let mut disclosed = identity().to_parameters("k", "CA1");
        sign_consent(&mut disclosed, "k", "CA1", ConsentRecord::Disclosed);
        assert_eq!(
            signed_consent(&disclosed, "k", "CA1"),
            Some(ConsentRecord::Disclosed)
        );
        disclosed.insert(PARAM_CONSENT.into(), "opted_in".into());
        assert_eq!(signed_consent(&disclosed, "k", "CA1"), None);
        params.remove(PARAM_CONSENT_SIGNATURE);
        assert_eq!(signed_consent(&params, "k", "CA1"), None);
    }

    #[test]
    fn a_changed_organization_or_missing_signature_is_refused() {
        let mut params = identity().to_parameters("k", "CA1");
        params.insert(PARAM_ORG.into(), "evil".into());
        assert!(matches!(
            StreamIdentity::from_parameters(&params, "k", "CA1"),
            Err(IdentityError::BadSignature)
        ));
        params.remove(PARAM_SIGNATURE);
        assert!(matches!(
            StreamIdentity::from_parameters(&params, "k", "CA1"),
            Err(IdentityError::Missing("sig"))
        ));
        assert!(matches!(
            StreamIdentity::from_parameters(&BTreeMap::new(), "k", "CA1"),
            Err(IdentityError::Missing("org"))
        ));
    }
}
