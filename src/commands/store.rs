//! `winnerr store`: operations on the CRM store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use winnerr::config::Config;
use winnerr_events::OrgId;

use super::{connect_store, init_logs};

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Bring the schema up to date (Postgres: with DATABASE_MIGRATION_URL; a SQLite file migrates
    /// whenever it opens).
    Migrate,
    /// Re-encrypt every value under an older key with the current one (the first of
    /// WINNERR_ENCRYPTION_KEYS); afterwards the old keys can be removed.
    RotateKey {
        /// Organizations to rotate (repeatable).
        #[arg(long = "org", required = true)]
        orgs: Vec<String>,
        /// Who rotates, for the audit log.
        #[arg(long, default_value = "cli")]
        actor: String,
    },
    /// Delete what organizations keep past their retention (WINNERR_RETENTION, or --days):
    /// transcript lines, events set aside and DTMF digits of older calls, older lead scores;
    /// audited as `retention.purge` with the counts.
    Purge {
        #[arg(long = "org", required = true)]
        orgs: Vec<String>,
        /// Keep this many days (at least one) instead of the organization's retention.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        days: Option<u32>,
        /// Only count what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who purges, for the audit log.
        #[arg(long, default_value = "cli")]
        actor: String,
    },
    /// Check organizations' audit chains; exits with 1 when one has an edited or missing row.
    VerifyAudit {
        #[arg(long = "org", required = true)]
        orgs: Vec<String>,
        /// A JSON file of each organization's last verified head (`{"acme": "SEQ:HASH"}`), kept
        /// outside the database: each chain must still hold its anchored row (rows deleted from
        /// the end are found); when every check passes, the file gets the new heads.
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
}

/// Runs `command` on the store of `config`.
pub async fn run(command: StoreCommand, config: Config) -> anyhow::Result<ExitCode> {
    init_logs(config.log_format);
    if let StoreCommand::Migrate = command {
        match config.database_migration_url.as_deref() {
            Some(owner) => winnerr_store::migrate(owner).await?,
            // A SQLite store migrates itself when it opens.
            None if config.database().is_some_and(winnerr_store::is_sqlite_url) => {
                connect_store(&config).await?;
            }
            None => bail!("DATABASE_MIGRATION_URL is required (a role that owns the schema)"),
        }
        println!("schema is up to date");
        return Ok(ExitCode::SUCCESS);
    }
    let store = connect_store(&config).await?;
    match command {
        StoreCommand::Migrate => unreachable!("handled above"),
        StoreCommand::RotateKey { orgs, actor } => {
            for org in orgs {
                let changed = store.rotate_keys(&OrgId::parse(&org)?, &actor).await?;
                println!(
                    "{org}: {changed} values re-encrypted under key {}",
                    store.keys().current_key_id()
                );
            }
        }
        StoreCommand::Purge {
            orgs,
            days,
            dry_run,
            actor,
        } => {
            let policy = config.retention().map_err(anyhow::Error::msg)?;
            let now = winnerr_events::now_ms();
            for org in orgs {
                let org = OrgId::parse(&org)?;
                let retention = days.map_or(*policy.of(&org), winnerr_store::Retention::Days);
                let Some(cutoff) = retention.cutoff_ms(now) else {
                    println!("{org}: retention is keep; nothing to purge (--days to choose)");
                    continue;
                };
                let purged = store.purge(&org, cutoff, dry_run, &actor).await?;
                let verb = if dry_run { "would delete" } else { "deleted" };
                println!(
                    "{org}: {verb} {} transcript lines, {} events set aside, {} lead scores, \
                     the DTMF digits of {} calls (kept: {retention})",
                    purged.utterances, purged.dead_letters, purged.scores, purged.dtmf_cleared
                );
            }
        }
        StoreCommand::VerifyAudit { orgs, anchor } => {
            let mut anchors: std::collections::BTreeMap<String, String> = match &anchor {
                Some(path) if path.exists() => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not an anchor file", path.display()))?
                }
                _ => Default::default(),
            };
            let mut broken = false;
            for org in orgs {
                let anchored = anchors
                    .get(&org)
                    .map(|head| head.parse::<winnerr_store::AuditHead>())
                    .transpose()
                    .map_err(anyhow::Error::msg)?;
                let check = store
                    .verify_audit_against(&OrgId::parse(&org)?, anchored.as_ref())
                    .await?;
                match (check.problem, check.head) {
                    (None, head) => {
                        let head = head.map(|h| h.to_string());
                        println!(
                            "{org}: {} rows, chain intact{}, head {}",
                            check.rows,
                            if anchored.is_some() {
                                " and holding its anchor"
                            } else {
                                ""
                            },
                            head.as_deref().unwrap_or("-")
                        );
                        if let Some(head) = head {
                            anchors.insert(org, head);
                        }
                    }
                    (Some((seq, problem)), _) => {
                        broken = true;
                        println!("{org}: row {seq} {problem} ({} rows read)", check.rows);
                    }
                }
            }
            if let (Some(path), false) = (&anchor, broken) {
                let partial = path.with_extension("partial");
                std::fs::write(&partial, serde_json::to_string_pretty(&anchors)? + "\n")?;
                std::fs::rename(&partial, path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if broken {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
