//! A setting per organization with a default for the rest, written as
//! `acme=VALUE;globex=VALUE;*=VALUE`: the one form of every per-organization policy (consent,
//! redaction, alerts' watch lists, retention), so each reads only its own values.

use std::collections::HashMap;

use crate::ids::OrgId;

/// Each named organization's value, and the default (`*`) for every other one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerOrg<T> {
    by_org: HashMap<OrgId, T>,
    default: T,
}

impl<T: Default> Default for PerOrg<T> {
    fn default() -> Self {
        Self::all(T::default())
    }
}

impl<T> PerOrg<T> {
    /// `default` for every organization.
    pub fn all(default: T) -> Self {
        Self {
            by_org: HashMap::new(),
            default,
        }
    }

    /// Reads `org=VALUE;…;*=VALUE` (parts separated by `;`, blank parts ignored), each value with
    /// `value`; an organization not named gets `*`'s value, else `default`. Errors name the part.
    pub fn parse(
        spec: &str,
        default: T,
        mut value: impl FnMut(&str) -> Result<T, String>,
    ) -> Result<Self, String> {
        let mut policy = Self::all(default);
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (org, text) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not `org=value` or `*=value`"))?;
            let parsed = value(text.trim()).map_err(|e| format!("{part:?}: {e}"))?;
            match org.trim() {
                "*" => policy.default = parsed,
                org => {
                    let org = OrgId::parse(org)
                        .map_err(|_| format!("{part:?}: {org:?} is not a valid organization id"))?;
                    policy.by_org.insert(org, parsed);
                }
            }
        }
        Ok(policy)
    }

    /// `org`'s value.
    pub fn of(&self, org: &OrgId) -> &T {
        self.by_org.get(org).unwrap_or(&self.default)
    }

    /// The organizations named, with their values (the default is not among them).
    pub fn named(&self) -> impl Iterator<Item = (&OrgId, &T)> {
        self.by_org.iter()
    }

    /// The value of every organization not named.
    pub fn default_value(&self) -> &T {
        &self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Result<u32, String> {
        text.parse()
            .map_err(|_| format!("{text:?} is not a number"))
    }

    #[test]
    fn named_organizations_get_theirs_and_the_rest_the_default() {
        let policy = PerOrg::parse(" acme=3; ;*=7 ;globex=1", 0, number).unwrap();
        assert_eq!(*policy.of(&OrgId::parse("acme").unwrap()), 3);
        assert_eq!(*policy.of(&OrgId::parse("globex").unwrap()), 1);
        assert_eq!(*policy.of(&OrgId::parse("initech").unwrap()), 7);
        assert_eq!(policy.named().count(), 2);
        let plain = PerOrg::parse("", 5, number).unwrap();
        assert_eq!(*plain.of(&OrgId::parse("acme").unwrap()), 5);
    }

    #[test]
    fn a_part_that_says_nothing_clear_is_refused_by_name() {
        for (spec, says) in [
            ("acme", "\"acme\" is not `org=value`"),
            ("acme=x", "\"acme=x\": \"x\" is not a number"),
            ("bad org!=1", "is not a valid organization id"),
        ] {
            let error = PerOrg::parse(spec, 0, number).unwrap_err();
            assert!(error.contains(says), "{spec}: {error}");
        }
    }
}
