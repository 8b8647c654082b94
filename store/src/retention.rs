//! Retention: an organization keeps what its calls said only as long as its policy says. A purge
//! deletes, for calls that started before the cutoff, their transcript lines and their events set
//! aside, and clears their DTMF digits; and lead scores older than the cutoff. The calls stay
//! (agent, times, status, consent), so the call log is whole. Transcript lines go in batches of
//! calls, one transaction each, so a first purge of years of calls never holds a long lock; the
//! rest and the audit row (`retention.purge`, with the counts) go in one last transaction.

use serde::Serialize;
use winnerr_events::{OrgId, PerOrg};

use crate::audit::{self, AuditEntry};
use crate::{Dialect, Sql, Store, StoreError, Tx, on_tx};

/// How long an organization keeps its calls' words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Keep,
    Days(u32),
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retention::Keep => f.write_str("keep"),
            Retention::Days(days) => write!(f, "{days} days"),
        }
    }
}

/// Each organization's retention (`acme=90d;*=keep`); default keep.
pub type RetentionPolicy = PerOrg<Retention>;

impl Retention {
    /// `keep`, or `Nd`: N days (at least one).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "keep" {
            return Ok(Retention::Keep);
        }
        match text.strip_suffix('d').map(str::parse::<u32>) {
            Some(Ok(days)) if days > 0 => Ok(Retention::Days(days)),
            _ => Err(format!(
                "{text:?} is not `keep` or a number of days (`90d`)"
            )),
        }
    }

    /// Reads a whole policy, `org=90d;*=keep`.
    pub fn policy(spec: &str) -> Result<RetentionPolicy, String> {
        PerOrg::parse(spec, Retention::Keep, Retention::parse)
    }

    /// What is older than this (ms since the epoch) goes, as of `now_ms`; `None`: nothing does.
    pub fn cutoff_ms(self, now_ms: u64) -> Option<i64> {
        match self {
            Retention::Keep => None,
            Retention::Days(days) => Some(now_ms as i64 - i64::from(days) * 86_400_000),
        }
    }
}

/// What a purge deleted (or, dry, would delete).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub utterances: u64,
    pub dead_letters: u64,
    /// Calls whose DTMF digits were cleared.
    pub dtmf_cleared: u64,
    pub scores: u64,
}

impl Purged {
    fn is_empty(&self) -> bool {
        *self == Purged::default()
    }
}

/// Calls of `$1` that started before `$2` (ms; 0 is unknown, never old).
const OLD_CALLS: &str =
    "SELECT id FROM calls WHERE organization_id = $1 AND started_ms > 0 AND started_ms < $2";

/// Calls in a transaction whose transcript lines are deleted at once.
const BATCH_CALLS: i64 = 200;

/// Lead scores of `$1` from before `$2` (ms).
const OLD_SCORES: Sql = Sql {
    postgres: "lead_scores WHERE organization_id = $1 AND scored_at < to_timestamp($2::float8 / 1000)",
    sqlite: "lead_scores WHERE organization_id = $1 AND scored_at < $2",
};

impl Store {
    /// Deletes what `org` keeps from before `cutoff_ms` (see the module's note) for `actor`, or
    /// with `dry_run` only counts it, changing nothing.
    pub async fn purge(
        &self,
        org: &OrgId,
        cutoff_ms: i64,
        dry_run: bool,
        actor: &str,
    ) -> Result<Purged, StoreError> {
        let mut purged = Purged::default();
        if dry_run {
            let mut tx = self.begin(org).await?;
            purged.utterances = count(&mut tx, org, cutoff_ms, |_| {
                format!("utterances WHERE organization_id = $1 AND call_id IN ({OLD_CALLS})")
            })
            .await?;
            purged.dead_letters = count(&mut tx, org, cutoff_ms, |_| {
                format!("dead_letters WHERE organization_id = $1 AND call_id IN ({OLD_CALLS})")
            })
            .await?;
            purged.dtmf_cleared = count(&mut tx, org, cutoff_ms, |_| {
                format!(
                    "calls WHERE organization_id = $1 AND id IN ({OLD_CALLS}) AND dtmf_digits <> ''"
                )
            })
            .await?;
            purged.scores = count(&mut tx, org, cutoff_ms, |d| OLD_SCORES.of(d).to_owned()).await?;
            tx.commit().await?;
            return Ok(purged);
        }
        let batch = format!(
            "DELETE FROM utterances WHERE organization_id = $1 AND call_id IN ( \
               SELECT DISTINCT u.call_id FROM utterances u JOIN calls c \
                 ON c.organization_id = u.organization_id AND c.id = u.call_id \
               WHERE u.organization_id = $1 AND c.started_ms > 0 AND c.started_ms < $2 LIMIT {BATCH_CALLS})"
        );
        loop {
            let mut tx = self.begin(org).await?;
            let deleted = execute(&mut tx, org, cutoff_ms, &batch).await?;
            tx.commit().await?;
            if deleted == 0 {
                break;
            }
            purged.utterances += deleted;
        }
        let mut tx = self.begin(org).await?;
        purged.dead_letters = execute(
            &mut tx,
            org,
            cutoff_ms,
            &format!(
                "DELETE FROM dead_letters WHERE organization_id = $1 AND call_id IN ({OLD_CALLS})"
            ),
        )
        .await?;
        purged.dtmf_cleared = execute(
            &mut tx,
            org,
            cutoff_ms,
            &format!("UPDATE calls SET dtmf_digits = '' WHERE organization_id = $1 AND id IN ({OLD_CALLS}) AND dtmf_digits <> ''"),
        )
        .await?;
        let scores = format!("DELETE FROM {}", OLD_SCORES.of(tx.dialect()));
        purged.scores = execute(&mut tx, org, cutoff_ms, &scores).await?;
        if !purged.is_empty() {
            let mut detail = serde_json::to_value(&purged).expect("counts serialize");
            detail["cutoff_ms"] = cutoff_ms.into();
            let entry = AuditEntry {
                actor,
                action: "retention.purge",
                subject: org.as_str(),
                detail: detail.to_string(),
            };
            audit::append(&mut tx, org, &entry).await?;
        }
        tx.commit().await?;
        crate::metrics::purged(&purged);
        Ok(purged)
    }

    /// Purges, as of `now_ms`, every organization whose retention is not keep (the named ones,
    /// and every other one of the store when the default is not keep), for `actor`; what each
    /// lost. An organization that fails is logged and the others are still purged.
    pub async fn purge_all(
        &self,
        policy: &RetentionPolicy,
        now_ms: u64,
        actor: &str,
    ) -> Result<Vec<(OrgId, Purged)>, StoreError> {
        let orgs = if policy.default_value().cutoff_ms(now_ms).is_some() {
            self.organizations()
                .await
                .inspect_err(|_| crate::metrics::purge_failed())?
        } else {
            policy.named().map(|(org, _)| org.clone()).collect()
        };
        let mut done = Vec::new();
        for org in orgs {
            let Some(cutoff) = policy.of(&org).cutoff_ms(now_ms) else {
                continue;
            };
            match self.purge(&org, cutoff, false, actor).await {
                Ok(purged) => done.push((org, purged)),
                Err(err) => {
                    crate::metrics::purge_failed();
                    tracing::warn!(org_id = %org, error = %err, "retention purge failed");
                }
            }
        }
        Ok(done)
    }

    /// Every organization of the store (on Postgres through `organization_ids()`, which runs as
    /// the schema's owner: the service role sees only one organization at a time).
    pub async fn organizations(&self) -> Result<Vec<OrgId>, StoreError> {
        const IDS: Sql = Sql {
            postgres: "SELECT organization_ids()",
            sqlite: "SELECT id FROM organizations ORDER BY id",
        };
        let mut tx = self.begin_any().await?;
        let ids: Vec<String> = on_tx!(&mut tx, |conn, dialect| {
            sqlx::query_scalar(IDS.of(dialect)).fetch_all(conn).await?
        });
        tx.commit().await?;
        ids.iter()
            .map(|id| OrgId::parse(id).map_err(|e| StoreError::Invalid(e.to_string())))
            .collect()
    }
}

/// Rows of `FROM …` (`rows`, given the dialect) on `$1` = `org` and `$2` = `cutoff_ms`.
async fn count(
    tx: &mut Tx,
    org: &OrgId,
    cutoff_ms: i64,
    rows: impl Fn(Dialect) -> String,
) -> Result<u64, StoreError> {
    let sql = format!("SELECT count(*) FROM {}", rows(tx.dialect()));
    let found: i64 = on_tx!(tx, |conn, dialect| {
        sqlx::query_scalar(&sql)
            .bind(org.as_str())
            .bind(cutoff_ms)
            .fetch_one(conn)
            .await?
    });
    Ok(found as u64)
}

/// Runs `sql` on `$1` = `org` and `$2` = `cutoff_ms`; the rows it touched.
async fn execute(tx: &mut Tx, org: &OrgId, cutoff_ms: i64, sql: &str) -> Result<u64, StoreError> {
    Ok(on_tx!(tx, |conn, dialect| {
        sqlx::query(sql)
            .bind(org.as_str())
            .bind(cutoff_ms)
            .execute(conn)
            .await?
            .rows_affected()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_keeps_unless_it_names_days() {
        let policy = Retention::policy("acme=90d;*=keep;globex=1d").unwrap();
        let acme = OrgId::parse("acme").unwrap();
        assert_eq!(*policy.of(&acme), Retention::Days(90));
        assert_eq!(
            *policy.of(&OrgId::parse("initech").unwrap()),
            Retention::Keep
        );
        assert_eq!(
            Retention::Days(1).cutoff_ms(86_400_000 * 3),
            Some(86_400_000 * 2)
        );
        assert_eq!(Retention::Keep.cutoff_ms(5), None);
        for bad in ["acme=0d", "acme=90", "acme=forever", "acme=-3d"] {
            assert!(Retention::policy(bad).is_err(), "{bad}");
        }
    }
}
