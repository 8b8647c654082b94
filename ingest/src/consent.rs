//! Consent to record and transcribe, per organization and per caller state: what the voice
//! webhook tells or asks the caller before the stream starts. A call needs the stricter of its
//! organization's policy and its caller's state's (none < disclose < opt_in), the state read from
//! the caller's area code where it is an all-party-consent state ([`crate::caller_state`]).

use std::collections::HashMap;

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
    /// How much the policy asks of the caller.
    fn rank(self) -> u8 {
        match self {
            Consent::None => 0,
            Consent::Disclose => 1,
            Consent::OptIn { .. } => 2,
        }
    }

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
    /// What callers from each state need at least.
    by_state: HashMap<&'static str, Consent>,
    /// The words of the disclosure.
    pub disclosure: String,
}

impl Default for ConsentPolicy {
    fn default() -> Self {
        Self {
            consent: PerOrg::all(Consent::None),
            by_state: HashMap::new(),
            disclosure: DISCLOSURE.to_owned(),
        }
    }
}

/// What a caller hears by default where the policy is `disclose`.
pub const DISCLOSURE: &str =
    "This call is recorded and transcribed so that we can serve you better.";

impl ConsentPolicy {
    /// Reads `org=disclose;other=opt_in:5;*=none` (`*`: every other organization; default none)
    /// and, for callers by state, `CA=opt_in;WA=disclose` (`all_party` for every state
    /// [`crate::caller_state`] knows; a state named after it overrides it).
    pub fn parse(
        spec: &str,
        states: &str,
        disclosure: Option<&str>,
    ) -> Result<Self, InvalidConsent> {
        let mut by_state = HashMap::new();
        for part in states.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (state, text) = part.split_once('=').ok_or_else(|| {
                InvalidConsent(format!(
                    "{part:?} is not `STATE=policy` or `all_party=policy`"
                ))
            })?;
            let consent = Consent::parse(text.trim())
                .map_err(|e| InvalidConsent(format!("{part:?}: {e}")))?;
            match state.trim() {
                "all_party" => {
                    for state in crate::caller_state::all_party_states() {
                        by_state.entry(state).or_insert(consent);
                    }
                }
                named => {
                    let state = crate::caller_state::all_party_states()
                        .find(|s| *s == named)
                        .ok_or_else(|| {
                            InvalidConsent(format!(
                                "{part:?}: {named:?} is not an all-party-consent state this \
                                 engine places by area code (CA, CT, DE, FL, IL, MD, MA, MI, MT, \
                                 NV, NH, OR, PA, WA)"
                            ))
                        })?;
                    by_state.insert(state, consent);
                }
            }
        }
        Ok(ConsentPolicy {
            consent: PerOrg::parse(spec, Consent::None, Consent::parse).map_err(InvalidConsent)?,
            by_state,
            disclosure: disclosure.unwrap_or(DISCLOSURE).to_owned(),
        })
    }

    /// `org`'s consent, whoever calls.
    pub fn of(&self, org: &OrgId) -> Consent {
        *self.consent.of(org)
    }

    /// What a call of `org` with the customer on `customer` (E.164, where known) needs: the
    /// stricter of the organization's policy and the customer's state's.
    pub fn for_call(&self, org: &OrgId, customer: Option<&str>) -> Consent {
        let own = self.of(org);
        let state = customer
            .and_then(crate::caller_state::state_of)
            .and_then(|state| self.by_state.get(state).copied());
        match state {
            Some(state) if state.rank() > own.rank() => state,
            _ => own,
        }
    }

    /// What the webhook says before streaming a call that needs `consent`, if anything.
    pub fn say_before_stream(&self, consent: Consent) -> Option<&str> {
        (consent == Consent::Disclose).then_some(self.disclosure.as_str())
    }

    /// What the caller of a call that needs `consent` is asked where it is `opt_in`: the
    /// disclosure, and which key to press to agree.
    pub fn ask(&self, consent: Consent) -> Option<(String, char)> {
        match consent {
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
        let policy = ConsentPolicy::parse("acme=disclose; *=none", "", Some("Recorded.")).unwrap();
        let of = |org_id: &str| policy.say_before_stream(policy.of(&org(org_id)));
        assert_eq!(of("acme"), Some("Recorded."));
        assert_eq!(of("globex"), None);
        let everyone = ConsentPolicy::parse("*=disclose;open-book=none", "", None).unwrap();
        assert_eq!(
            everyone.say_before_stream(everyone.of(&org("globex"))),
            Some(DISCLOSURE)
        );
        assert_eq!(everyone.of(&org("open-book")), Consent::None);
        assert_eq!(ConsentPolicy::default().of(&org("acme")), Consent::None);
        let asking =
            ConsentPolicy::parse("acme=opt_in:5;globex=opt_in", "", Some("Recorded.")).unwrap();
        assert_eq!(
            asking.ask(asking.of(&org("acme"))),
            Some(("Recorded. To agree, press 5.".to_owned(), '5'))
        );
        assert_eq!(asking.of(&org("globex")), Consent::OptIn { digit: '1' });
        assert_eq!(asking.ask(asking.of(&org("initech"))), None);
    }

    #[test]
    fn a_callers_state_can_only_ask_for_more() {
        let policy = ConsentPolicy::parse(
            "acme=none;strict=opt_in:9",
            "all_party=disclose;CA=opt_in",
            None,
        )
        .unwrap();
        let acme = org("acme");
        // California asks for an opt-in, Washington (all-party) for the disclosure, Texas for
        // nothing; an unknown or foreign number is the organization's policy.
        assert_eq!(
            policy.for_call(&acme, Some("+14155550100")),
            Consent::OptIn { digit: '1' }
        );
        assert_eq!(
            policy.for_call(&acme, Some("+12065550100")),
            Consent::Disclose
        );
        assert_eq!(policy.for_call(&acme, Some("+15125550100")), Consent::None);
        assert_eq!(policy.for_call(&acme, Some("+442079460958")), Consent::None);
        assert_eq!(policy.for_call(&acme, None), Consent::None);
        // An organization that asks more keeps asking it, with its own key.
        let strict = org("strict");
        assert_eq!(
            policy.for_call(&strict, Some("+12065550100")),
            Consent::OptIn { digit: '9' }
        );
        assert_eq!(
            policy.for_call(&strict, Some("+14155550100")),
            Consent::OptIn { digit: '9' }
        );
        for bad in ["TX=opt_in", "CA", "CA=maybe"] {
            assert!(ConsentPolicy::parse("", bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_policy_that_says_nothing_clear_is_refused() {
        for (spec, says) in [
            ("acme=maybe", "\"maybe\" is not `none`"),
            ("acme=opt_in:55", "\"opt_in:55\" is not `none`"),
            ("acme", "is not `org=value`"),
            ("bad org!=disclose", "is not a valid organization id"),
        ] {
            let error = ConsentPolicy::parse(spec, "", None)
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{spec}: {error}");
        }
    }
}
