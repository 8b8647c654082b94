//! Consent to record and transcribe, per organization: what the voice webhook tells or asks the
//! caller before the stream starts.

use winnerr_events::{OrgId, PerOrg};

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

/// A consent policy no setting has (the message names the part).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConsent(String);

impl Consent {
    /// `none`, `disclose`, `opt_in` or `opt_in:DIGIT` (a digit, `*` or `#`; default 1).
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(Consent::None),
            "disclose" => Ok(Consent::Disclose),
            "opt_in" => Ok(Consent::OptIn { digit: '1' }),
            other => match other.strip_prefix("opt_in:").map(str::as_bytes) {
                Some([d]) if d.is_ascii_digit() || *d == b'*' || *d == b'#' => Ok(Consent::OptIn {
                    digit: char::from(*d),
                }),
                _ => Err(format!(
                    "consent {other:?} is not `none`, `disclose` or `opt_in` (`opt_in:DIGIT`, default 1)"
                )),
            },
        }
    }
}

/// Each organization's consent, and what is said to disclose.
#[derive(Debug, Clone)]
pub struct ConsentPolicy {
    consent: PerOrg<Consent>,
    /// The words of the disclosure.
    pub disclosure: String,
}

impl Default for ConsentPolicy {
    fn default() -> Self {
        Self {
            consent: PerOrg::all(Consent::None),
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
        Ok(ConsentPolicy {
            consent: PerOrg::parse(spec, Consent::None, Consent::parse).map_err(InvalidConsent)?,
            disclosure: disclosure.unwrap_or(DISCLOSURE).to_owned(),
        })
    }

    /// `org`'s consent.
    pub fn of(&self, org: &OrgId) -> Consent {
        *self.consent.of(org)
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
        for (spec, says) in [
            ("acme=maybe", "\"maybe\" is not `none`"),
            ("acme=opt_in:55", "\"opt_in:55\" is not `none`"),
            ("acme", "is not `org=value`"),
            ("bad org!=disclose", "is not a valid organization id"),
        ] {
            let error = ConsentPolicy::parse(spec, None).unwrap_err().to_string();
            assert!(error.contains(says), "{spec}: {error}");
        }
    }
}
