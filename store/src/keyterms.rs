//! Each organization's keyterms: the words its calls are expected to hold (its name, its agents',
//! streets and neighbourhoods, listing words) that the recognizer is told to expect, in the order
//! the organization puts them (most important first: a recognizer keeps as many as fit). Setting
//! the list replaces it and is audited (`keyterms.set`, with the count).

use winnerr_events::OrgId;

use crate::audit::{self, AuditEntry};
use crate::{Store, StoreError, on_tx};

/// The most terms an organization keeps, and the longest term.
pub const MAX_KEYTERMS: usize = 200;
pub const MAX_KEYTERM_CHARS: usize = 64;

/// How many of the lead's most recently viewed properties give their addresses to a call.
const VIEWED_ADDRESSES: i64 = 5;

/// `terms` trimmed, each once (case-insensitively, the first spelling kept), or why not: a
/// blank term, one over [`MAX_KEYTERM_CHARS`], one with a control character (a term becomes
/// part of the recognizer's prompt), or more than [`MAX_KEYTERMS`].
pub fn checked_keyterms(terms: &[String]) -> Result<Vec<String>, StoreError> {
    let mut seen = std::collections::HashSet::new();
    let mut kept = Vec::new();
    for (i, term) in terms.iter().enumerate() {
        let term = term.trim();
        let problem = if term.is_empty() {
            Some("is blank".to_owned())
        } else if term.chars().count() > MAX_KEYTERM_CHARS {
            Some(format!("is longer than {MAX_KEYTERM_CHARS} characters"))
        } else if term.chars().any(char::is_control) {
            Some("holds a control character".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(StoreError::Invalid(format!("keyterm {i} {problem}")));
        }
        if seen.insert(term.to_lowercase()) {
            kept.push(term.to_owned());
        }
    }
    if kept.len() > MAX_KEYTERMS {
        return Err(StoreError::Invalid(format!(
            "{} keyterms: at most {MAX_KEYTERMS}",
            kept.len()
        )));
    }
    Ok(kept)
}

impl Store {
    /// `org`'s keyterms, in its order.
    pub async fn keyterms(&self, org: &OrgId) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin(org).await?;
        let terms = listed(&mut tx, org).await?;
        tx.commit().await?;
        Ok(terms)
    }

    /// Replaces `org`'s keyterms with `terms` for `actor`; the list as kept (see
    /// [`checked_keyterms`]).
    pub async fn set_keyterms(
        &self,
        org: &OrgId,
        terms: &[String],
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let terms = checked_keyterms(terms)?;
        let mut tx = self.begin(org).await?;
        crate::ensure_organization(&mut tx, org).await?;
        on_tx!(&mut tx, |conn, dialect| {
            sqlx::query("DELETE FROM keyterms WHERE organization_id = $1")
                .bind(org.as_str())
                .execute(&mut *conn)
                .await?;
            for (position, term) in terms.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO keyterms (organization_id, position, term) VALUES ($1, $2, $3)",
                )
                .bind(org.as_str())
                .bind(position as i32)
                .bind(term)
                .execute(&mut *conn)
                .await?;
            }
        });
        let entry = AuditEntry {
            actor,
            action: "keyterms.set",
            subject: org.as_str(),
            detail: serde_json::json!({ "count": terms.len() }).to_string(),
        };
        audit::append(&mut tx, org, &entry).await?;
        tx.commit().await?;
        Ok(terms)
    }

    /// The words a call of `org` with `agent` and `lead` is expected to hold, most important
    /// first: the lead's name, the agent's, the addresses of the homes the lead viewed last, the
    /// organization's name, then its keyterms. Ids that name no one add nothing.
    pub async fn call_keyterms(
        &self,
        org: &OrgId,
        agent: Option<&str>,
        lead: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin(org).await?;
        let mut terms = Vec::new();
        if let Some(lead) = lead {
            let name: Option<(String, String)> = on_tx!(&mut tx, |conn, dialect| {
                sqlx::query_as(
                    "SELECT first_name, last_name FROM people \
                     WHERE organization_id = $1 AND id = $2",
                )
                .bind(org.as_str())
                .bind(lead)
                .fetch_optional(conn)
                .await?
            });
            terms.extend(name.map(|(first, last)| format!("{first} {last}")));
        }
        if let Some(agent) = agent {
            let name: Option<String> = on_tx!(&mut tx, |conn, dialect| {
                sqlx::query_scalar("SELECT name FROM users WHERE organization_id = $1 AND id = $2")
                    .bind(org.as_str())
                    .bind(agent)
                    .fetch_optional(conn)
                    .await?
            });
            terms.extend(name);
        }
        if let Some(lead) = lead {
            let addresses: Vec<String> = on_tx!(&mut tx, |conn, dialect| {
                sqlx::query_scalar(
                    "SELECT p.address FROM activity a JOIN properties p \
                     ON p.organization_id = a.organization_id AND p.id = a.property_id \
                     WHERE a.organization_id = $1 AND a.person_id = $2 AND a.kind = 'property_view' \
                     GROUP BY p.address ORDER BY max(a.at) DESC LIMIT $3",
                )
                .bind(org.as_str())
                .bind(lead)
                .bind(VIEWED_ADDRESSES)
                .fetch_all(conn)
                .await?
            });
            terms.extend(addresses);
        }
        let name: Option<Option<String>> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_scalar("SELECT name FROM organizations WHERE id = $1")
                .bind(org.as_str())
                .fetch_optional(conn)
                .await?
        });
        terms.extend(name.flatten());
        terms.extend(listed(&mut tx, org).await?);
        tx.commit().await?;
        terms.retain(|t| !t.trim().is_empty());
        Ok(terms)
    }
}

/// `org`'s keyterms in its order, read in `tx`.
async fn listed(tx: &mut crate::Tx, org: &OrgId) -> Result<Vec<String>, StoreError> {
    Ok(on_tx!(tx, |conn, dialect| {
        sqlx::query_scalar("SELECT term FROM keyterms WHERE organization_id = $1 ORDER BY position")
            .bind(org.as_str())
            .fetch_all(conn)
            .await?
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(terms: &[&str]) -> Vec<String> {
        terms.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn a_list_is_trimmed_and_each_term_kept_once() {
        let kept = checked_keyterms(&list(&[" Winnerr Realty ", "HOA", "winnerr realty"])).unwrap();
        assert_eq!(kept, list(&["Winnerr Realty", "HOA"]));
    }

    #[test]
    fn terms_that_cannot_be_a_prompt_are_refused() {
        for bad in [
            list(&["ok", "  "]),
            list(&["a\u{0}b"]),
            list(&["line\nbreak"]),
            vec!["x".repeat(MAX_KEYTERM_CHARS + 1)],
            (0..=MAX_KEYTERMS).map(|i| format!("term {i}")).collect(),
        ] {
            assert!(
                matches!(checked_keyterms(&bad), Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
