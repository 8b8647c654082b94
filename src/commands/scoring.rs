//! `winnerr scoring`: lead scoring's models.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use winnerr::config::Config;
use winnerr_events::OrgId;

use super::{connect_store, init_logs};

#[derive(Subcommand)]
pub enum ScoringCommand {
    /// Train the global prior on the synthetic organization (deterministic) and write it where
    /// the build embeds it, printing its held-out AUC and calibration.
    TrainPrior {
        #[arg(long, default_value = "scoring/assets/prior-model.json")]
        out: std::path::PathBuf,
    },
    /// Train organizations' own models from their won and lost deals in the store (DATABASE_URL
    /// and keys as for `serve`), each lead's features as of its deal's close; the organization's
    /// scorers pick the new model up within five minutes. An organization with too few deals
    /// keeps the prior (exit status 1).
    Train {
        /// Organizations to train (repeatable).
        #[arg(long = "org", required = true)]
        orgs: Vec<String>,
        /// Who trains, for the audit log.
        #[arg(long, default_value = "cli")]
        actor: String,
        #[command(flatten)]
        config: Config,
    },
    /// Import a synthetic organization history into the store: leads with activity, calls,
    /// what the customer said and deal outcomes, made up by a deterministic generator (no real
    /// person is in it), for demos and for `train` to learn from. Every tenth lead stays open.
    Seed {
        #[arg(long)]
        org: String,
        #[arg(long, default_value_t = 1000)]
        leads: usize,
        /// The generator's seed: the same seed gives the same history.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[command(flatten)]
        config: Config,
    },
}

/// Runs `command`.
pub async fn run(command: ScoringCommand) -> anyhow::Result<ExitCode> {
    match command {
        ScoringCommand::TrainPrior { out } => {
            tokio::task::spawn_blocking(move || train_prior(&out)).await??;
            Ok(ExitCode::SUCCESS)
        }
        ScoringCommand::Train {
            orgs,
            actor,
            config,
        } => train(&orgs, &actor, &config).await,
        ScoringCommand::Seed {
            org,
            leads,
            seed,
            config,
        } => {
            init_logs(config.log_format);
            let store = connect_store(&config).await?;
            let history =
                winnerr_scoring::synth::generate(seed, leads, winnerr_events::event::now_ms());
            let import = winnerr::leads::synthetic_import(&history, 10);
            let added = store
                .import_leads(&OrgId::parse(&org)?, &import, "cli:seed")
                .await?;
            println!(
                "{org}: {added} synthetic leads imported ({} were there already)",
                leads - added
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `winnerr scoring train`: each organization's own model; failure when one keeps the prior.
async fn train(orgs: &[String], actor: &str, config: &Config) -> anyhow::Result<ExitCode> {
    init_logs(config.log_format);
    let store = connect_store(config).await?;
    let mut refused = false;
    for org in orgs {
        match winnerr::leads::train_organization(&store, &OrgId::parse(org)?, actor).await {
            Ok(trained) => {
                println!(
                    "{org}: model {} from {} won and {} lost deals; held-out AUC {:.3}",
                    trained.version, trained.won, trained.lost, trained.held_out_auc
                );
                for (predicted, observed, leads) in trained.calibration {
                    println!(
                        "  decile of {leads}: predicted {predicted:.3}, observed {observed:.3}"
                    );
                }
            }
            Err(err) => {
                refused = true;
                eprintln!("{err:#}");
            }
        }
    }
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `winnerr scoring train-prior`: trains, checks on held-out synthetic leads, writes.
fn train_prior(out: &std::path::Path) -> anyhow::Result<()> {
    use winnerr_models::leadscore::{auc, calibration_deciles};
    use winnerr_scoring::model::{self, PRIOR_NOW_MS};
    let model = model::train_prior()?;
    let held_out = winnerr_scoring::synth::generate(model::PRIOR_SEED + 1, 10_000, PRIOR_NOW_MS);
    let probabilities = model.probabilities(&held_out.rows(), &winnerr_models::device())?;
    let closed = held_out.outcomes();
    println!(
        "{}: {} examples, {} closed",
        model.version, model.examples, model.positives
    );
    println!("held-out AUC {:.3}", auc(&probabilities, &closed));
    for (predicted, observed, leads) in calibration_deciles(&probabilities, &closed) {
        println!("  decile of {leads}: predicted {predicted:.3}, observed {observed:.3}");
    }
    std::fs::write(out, model.to_json() + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
