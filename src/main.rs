//! `winnerr`: serve the engine, simulate a Twilio call, watch a feed, mint a development token.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commands::scoring::ScoringCommand;
use commands::simulate::SimulateArgs;
use commands::store::StoreCommand;
use commands::token::TokenArgs;
use winnerr::config::{Config, LogFormat};
use winnerr::watch;

#[derive(Parser)]
#[command(
    name = "winnerr",
    version,
    about = "Real-time communications and AI engine of the Winnerr CRM"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine (every role in one process).
    Serve {
        #[command(flatten)]
        config: Config,
        /// Also play a demo call into this server in a loop, and print how to watch it.
        #[arg(long)]
        demo: bool,
    },
    /// Stream WAV audio into a server as a Twilio Media Stream.
    Simulate(SimulateArgs),
    /// Print an organization's live events.
    Watch {
        /// Feed URL.
        #[arg(long, default_value = "ws://127.0.0.1:8080/feed")]
        url: String,
        /// Bearer token (see `winnerr token`).
        #[arg(long, env = "WINNERR_TOKEN")]
        token: String,
        /// Channels to follow (repeatable): calls, org, call:<id>, lead:<id>.
        #[arg(long = "channel", default_value = "calls")]
        channels: Vec<String>,
    },
    /// Exit 0 when the engine at `url` answers 200 (a container health check: the runtime image
    /// has no curl).
    Health {
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Mint a bearer token (for development and tests).
    Token(TokenArgs),
    /// Fetch, run, evaluate and train the models.
    Models {
        #[command(subcommand)]
        command: winnerr::models_cli::ModelsCommand,
    },
    /// Lead scoring's models.
    Scoring {
        #[command(subcommand)]
        command: ScoringCommand,
    },
    /// Operations on the CRM store (DATABASE_URL, keys as for `serve`).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
        #[command(flatten)]
        config: Config,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let args = winnerr::config::with_config_file(std::env::args_os().collect())
        .map_err(anyhow::Error::msg)?;
    let cli = Cli::parse_from(args);
    if let Command::Serve { config, .. } = &cli.command {
        // Candle splits each matrix product for as many threads as it believes there are
        // (RAYON_NUM_THREADS, else every core), whatever pool it runs on: it must believe what
        // each speech worker has. Set here, before any thread exists.
        winnerr::startup::match_kernel_threads(&config.asr_layout());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

/// Runs the subcommand; its exit code.
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = ExitCode::SUCCESS;
    match cli.command {
        Command::Serve { config, demo } => commands::serve::run(config, demo).await.map(|()| done),
        Command::Simulate(args) => {
            commands::init_logs(LogFormat::Text);
            commands::simulate::run(args).await.map(|()| done)
        }
        Command::Watch {
            url,
            token,
            channels,
        } => watch::run(&url, &token, &channels).await.map(|()| done),
        Command::Store { command, config } => commands::store::run(command, config).await,
        Command::Scoring { command } => commands::scoring::run(command).await,
        Command::Models { command } => {
            commands::init_logs(LogFormat::Text);
            tokio::task::spawn_blocking(move || winnerr::models_cli::run(command)).await??;
            Ok(done)
        }
        Command::Health { url } => commands::health::run(&url).await.map(|()| done),
        Command::Token(args) => commands::token::run(args).map(|()| done),
    }
}
