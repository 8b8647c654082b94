//! Consent to record and transcribe, per organization: what the voice webhook tells or asks the
//! caller before the stream starts.

use std::collections::HashMap;

use winnerr_events::OrgId;

/// What an organization's calls need before they are transcribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Nothing: the organization's calls are transcribed from the start.
    None,
    /// The caller hears the disclosure (`<Say>`) before the media stream starts.
    Disclose,
    /// The caller is asked to press `digit` (`<Gather>`); only then does the stream start, and a
    /// call without the digit is connected untranscribed.
    OptIn { digit: char },
}

/// A consent policy no setting has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConsent {
    #[error("consent {0:?} is not `none`, `disclose` or `opt_in` (`opt_in:DIGIT`, default 1)")]
    Unknown(String),
    #[error("consent policy part {0:?} is not `org=policy` or `*=policy`")]
    Malformed(String),
    #[error("consent policy names organization {0:?}, which is not a valid id")]
    BadOrg(String),
}

/// Each organization's consent, and what is said to disclose.
#[derive(Debug, Clone)]
pub struct ConsentPolicy {
    by_org: HashMap<OrgId, Consent>,
    default: Consent,
    /// The words of the disclosure.
    pub disclosure: String,
}

impl Default for ConsentPolicy {
    fn default() -> Self {
        Self {
            by_org: HashMap::new(),
            default: Consent::None,
            disclosure: DISCLOSURE.to_owned(),
        }
    }
}

/// What a caller hears by default where the policy is `disclose`.
pub const DISCLOSURE: &str =
    "This call is recorded and transcribed so that we can serve you better.";

impl ConsentPolicy {
    /// Reads `org=disclose;other=opt_in:5;*=none` (`*`: every other organization; default none).
    pub fn parse(spec: &str, disclosure: Option<&str>) -> Result<Self, InvalidConsent> {
        let mut policy = ConsentPolicy::default();
        if let Some(disclosure) = disclosure {
            policy.disclosure = disclosure.to_owned();
        }
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (org, consent) = part
                .split_once('=')
                .ok_or_else(|| InvalidConsent::Malformed(part.to_owned()))?;
            let consent = match consent.trim() {
                "none" => Consent::None,
                "disclose" => Consent::Disclose,
                "opt_in" => Consent::OptIn { digit: '1' },
                other => match other.strip_prefix("opt_in:").map(str::as_bytes) {
                    Some([d]) if d.is_ascii_digit() || *d == b'*' || *d == b'#' => Consent::OptIn {
                        digit: char::from(*d),
                    },
                    _ => return Err(InvalidConsent::Unknown(other.to_owned())),
                },
            };
            match org.trim() {
                "*" => policy.default = consent,
                org => {
                    let org =
                        OrgId::parse(org).map_err(|_| InvalidConsent::BadOrg(org.to_owned()))?;
                    policy.by_org.insert(org, consent);
                }
            }
        }
        Ok(policy)
    }

    /// `org`'s consent.
    pub fn of(&self, org: &OrgId) -> Consent {
        self.by_org.get(org).copied().unwrap_or(self.default)
    }

    /// What the webhook says to `org`'s callers before streaming, if anything.
    pub fn say_before_stream(&self, org: &OrgId) -> Option<&str> {
        (self.of(org) == Consent::Disclose).then_some(self.disclosure.as_str())
    }

    /// What `org`'s callers are asked where the policy is `opt_in`: the disclosure, and which key
    /// to press to agree.
    pub fn ask(&self, org: &OrgId) -> Option<(String, char)> {
        match self.of(org) {
            Consent::OptIn { digit } => {
                let key = match digit {
                    '*' => "star".to_owned(),
                    '#' => "pound".to_owned(),
                    d => d.to_string(),
                };
                Some((format!("{} To agree, press {key}.", self.disclosure), digit))
            }
            Consent::None | Consent::Disclose => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(id: &str) -> OrgId {
        OrgId::parse(id).unwrap()
    }

    #[test]
    fn organizations_get_their_own_policy_and_the_rest_the_default() {
        let policy = ConsentPolicy::parse("acme=disclose; *=none", Some("Recorded.")).unwrap();
        assert_eq!(policy.say_before_stream(&org("acme")), Some("Recorded."));
        assert_eq!(policy.say_before_stream(&org("globex")), None);
        let everyone = ConsentPolicy::parse("*=disclose;open-book=none", None).unwrap();
        assert_eq!(everyone.say_before_stream(&org("globex")), Some(DISCLOSURE));
        assert_eq!(everyone.of(&org("open-book")), Consent::None);
        assert_eq!(ConsentPolicy::default().of(&org("acme")), Consent::None);
        let asking =
            ConsentPolicy::parse("acme=opt_in:5;globex=opt_in", Some("Recorded.")).unwrap();
        assert_eq!(
            asking.ask(&org("acme")),
            Some(("Recorded. To agree, press 5.".to_owned(), '5'))
        );
        assert_eq!(asking.of(&org("globex")), Consent::OptIn { digit: '1' });
        assert_eq!(asking.ask(&org("initech")), None);
    }

    #[test]
    fn a_policy_that_says_nothing_clear_is_refused() {
        assert!(matches!(
            ConsentPolicy::parse("acme=maybe", None),
            Err(InvalidConsent::Unknown(_))
        ));
        assert!(matches!(
            ConsentPolicy::parse("acme=opt_in:55", None),
            Err(InvalidConsent::Unknown(_))
        ));
        assert!(matches!(
            ConsentPolicy::parse("acme", None),
            Err(InvalidConsent::Malformed(_))
        ));
        assert!(matches!(
            ConsentPolicy::parse("bad org!=disclose", None),
            Err(InvalidConsent::BadOrg(_))
        ));
    }
}
