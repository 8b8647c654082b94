//! Identifiers. Each can only exist if valid ("parse, don't validate"), so code that holds an
//! `OrgId` never re-checks it, and ids from outside cannot smuggle separators or unbounded text.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

fn check_id(kind: &'static str, value: &str) -> Result<(), InvalidId> {
    let reason = if value.is_empty() {
        "empty"
    } else if value.len() > MAX_ID_LEN {
        "longer than 64 bytes"
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        "only ASCII letters, digits, '-', '_', '.' and ':' are allowed"
    } else {
        return Ok(());
    };
    Err(InvalidId {
        kind,
        value: value.chars().take(MAX_ID_LEN).collect(),
        reason,
    })
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// Checks `value` and wraps it.
            pub fn parse(value: impl AsRef<str>) -> Result<Self, InvalidId> {
                let value = value.as_ref();
                check_id($kind, value)?;
                Ok(Self(value.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(value: &str) -> Result<Self, InvalidId> {
                Self::parse(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An organization (tenant): every record and event belongs to exactly one.
    OrgId,
    "organization id"
);
id_type!(
    /// A CRM user: an agent, a manager or an admin.
    UserId,
    "user id"
);
id_type!(
    /// A lead (a person the organization may sell to).
    LeadId,
    "lead id"
);
id_type!(
    /// A phone call; for Twilio calls this is the CallSid.
    CallId,
    "call id"
);

/// What a user may see: an agent their own calls, a manager or admin the whole organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Manager,
    Admin,
}

impl Role {
    /// Whether this role sees every call of its organization, not only its own.
    pub fn sees_whole_org(self) -> bool {
        matches!(self, Role::Manager | Role::Admin)
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "agent" => Ok(Role::Agent),
            "manager" => Ok(Role::Manager),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?} (agent, manager or admin)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_the_rest() {
        assert_eq!(
            OrgId::parse("acme-realty_1").unwrap().as_str(),
            "acme-realty_1"
        );
        assert!(OrgId::parse("").is_err());
        assert!(OrgId::parse("a/b").is_err());
        assert!(OrgId::parse("x".repeat(65)).is_err());
        let err = UserId::parse("bad id").unwrap_err();
        assert_eq!(err.kind, "user id");
    }

    #[test]
    fn deserializing_checks_the_id() {
        assert!(serde_json::from_str::<OrgId>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<OrgId>("\"not ok\"").is_err());
    }
}
