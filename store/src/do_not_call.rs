//! Each organization's do-not-call list. A number is kept only as the keyed hash people's phones
//! are found by (of its E.164 form) and its last four digits: the list can be checked and shown,
//! never read back as numbers. Adding and removing are audited (`dnc.add`, `dnc.remove`, the
//! entry's id as subject).

use serde::Serialize;
use winnerr_events::OrgId;

use crate::audit::{self, AuditEntry, hex};
use crate::{Sql, Store, StoreError, on_tx};

/// One number on a do-not-call list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DoNotCallEntry {
    /// The number's keyed hash, hex: what removes it.
    #[sqlx(skip)]
    pub id: String,
    #[serde(skip)]
    pub phone_lookup: Vec<u8>,
    pub last4: String,
    pub reason: Option<String>,
    pub added_by: String,
    pub added_at_ms: i64,
}

/// The longest reason kept.
const MAX_REASON_CHARS: usize = 300;

/// `phone` in E.164 (`+` and 8–15 digits), the form Twilio gives numbers in; ten digits are a
/// North American number (`+1`), eleven starting with 1 one with its country code.
pub fn e164(phone: &str) -> Result<String, StoreError> {
    let trimmed = phone.trim();
    let valid_chars = trimmed
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let number = match (trimmed.starts_with('+'), digits.len()) {
        _ if !valid_chars || trimmed.get(1..).is_some_and(|rest| rest.contains('+')) => None,
        (true, 8..=15) => Some(format!("+{digits}")),
        (false, 10) => Some(format!("+1{digits}")),
        (false, 11) if digits.starts_with('1') => Some(format!("+{digits}")),
        _ => None,
    };
    number.ok_or_else(|| {
        StoreError::Invalid(format!(
            "{:?} is not a phone number (E.164, e.g. +15550100199)",
            trimmed.chars().take(40).collect::<String>()
        ))
    })
}

const COLUMNS: Sql = Sql {
    postgres: "phone_lookup, last4, reason, added_by, \
               (extract(epoch FROM added_at) * 1000)::bigint AS added_at_ms",
    sqlite: "phone_lookup, last4, reason, added_by, added_at AS added_at_ms",
};

impl Store {
    /// Puts `phone` on `org`'s list for `actor` (adding it again changes nothing); the entry.
    pub async fn add_do_not_call(
        &self,
        org: &OrgId,
        phone: &str,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<DoNotCallEntry, StoreError> {
        let number = e164(phone)?;
        if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS || r.contains('\0')) {
            return Err(StoreError::Invalid(format!(
                "reason: at most {MAX_REASON_CHARS} characters, no NUL"
            )));
        }
        let lookup = self.keys().lookup_hash(org.as_str(), &number);
        let last4 = number[number.len() - 4..].to_owned();
        let mut tx = self.begin(org).await?;
        crate::ensure_organization(&mut tx, org).await?;
        let added = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query(
                "INSERT INTO do_not_call (organization_id, phone_lookup, last4, reason, added_by) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization_id, phone_lookup) DO NOTHING",
            )
            .bind(org.as_str())
            .bind(&lookup)
            .bind(&last4)
            .bind(reason)
            .bind(actor)
            .execute(conn)
            .await?
            .rows_affected()
        });
        let sql = format!(
            "SELECT {} FROM do_not_call WHERE organization_id = $1 AND phone_lookup = $2",
            COLUMNS.of(tx.dialect())
        );
        let mut entry: DoNotCallEntry = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(&sql)
                .bind(org.as_str())
                .bind(&lookup)
                .fetch_one(conn)
                .await?
        });
        entry.id = hex(&entry.phone_lookup);
        if added > 0 {
            let entry = AuditEntry {
                actor,
                action: "dnc.add",
                subject: &entry.id,
                detail: serde_json::json!({ "last4": last4 }).to_string(),
            };
            audit::append(&mut tx, org, &entry).await?;
        }
        tx.commit().await?;
        Ok(entry)
    }

    /// Takes entry `id` off `org`'s list for `actor`; false when it was not there.
    pub async fn remove_do_not_call(
        &self,
        org: &OrgId,
        id: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let Some(lookup) = unhex(id) else {
            return Ok(false);
        };
        let mut tx = self.begin(org).await?;
        let removed = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query("DELETE FROM do_not_call WHERE organization_id = $1 AND phone_lookup = $2")
                .bind(org.as_str())
                .bind(&lookup)
                .execute(conn)
                .await?
                .rows_affected()
        });
        if removed > 0 {
            let entry = AuditEntry {
                actor,
                action: "dnc.remove",
                subject: id,
                detail: "{}".to_owned(),
            };
            audit::append(&mut tx, org, &entry).await?;
        }
        tx.commit().await?;
        Ok(removed > 0)
    }

    /// Takes `phone` off `org`'s list for `actor` (the number texted START); false when it was
    /// not there.
    pub async fn remove_do_not_call_number(
        &self,
        org: &OrgId,
        phone: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let number = e164(phone)?;
        let lookup = self.keys().lookup_hash(org.as_str(), &number);
        self.remove_do_not_call(org, &hex(&lookup), actor).await
    }

    /// `org`'s list, newest first.
    pub async fn list_do_not_call(&self, org: &OrgId) -> Result<Vec<DoNotCallEntry>, StoreError> {
        let mut tx = self.begin(org).await?;
        let sql = format!(
            "SELECT {} FROM do_not_call WHERE organization_id = $1 ORDER BY added_at DESC, phone_lookup",
            COLUMNS.of(tx.dialect())
        );
        let mut entries: Vec<DoNotCallEntry> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_as(&sql)
                .bind(org.as_str())
                .fetch_all(conn)
                .await?
        });
        tx.commit().await?;
        for entry in &mut entries {
            entry.id = hex(&entry.phone_lookup);
        }
        Ok(entries)
    }

    /// Whether `phone` is on `org`'s list (a number that is not one is not on it).
    pub async fn is_do_not_call(&self, org: &OrgId, phone: &str) -> Result<bool, StoreError> {
        let Ok(number) = e164(phone) else {
            return Ok(false);
        };
        let lookup = self.keys().lookup_hash(org.as_str(), &number);
        let mut tx = self.begin(org).await?;
        let found: Option<i32> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_scalar(
                "SELECT 1 FROM do_not_call WHERE organization_id = $1 AND phone_lookup = $2",
            )
            .bind(org.as_str())
            .bind(&lookup)
            .fetch_optional(conn)
            .await?
        });
        tx.commit().await?;
        Ok(found.is_some())
    }
}

/// The bytes of lowercase or uppercase hex `text`; `None` when it is not hex.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_in_one_form() {
        for (written, form) in [
            ("+1 555 010 0199", "+15550100199"),
            ("(555) 010-0199", "+15550100199"),
            ("1-555-010-0199", "+15550100199"),
            ("+44 20 7946 0958", "+442079460958"),
        ] {
            assert_eq!(e164(written).unwrap(), form, "{written}");
        }
        for bad in [
            "",
            "555-0199",
            "+1 555 010 0199 ext 4",
            "++15550100199",
            "+1234567",
        ] {
            assert!(e164(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_hex() {
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex(&hex(&[1, 2, 254])), Some(vec![1, 2, 254]));
        for bad in ["0", "zz", "0g", "é0"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
    }
}
