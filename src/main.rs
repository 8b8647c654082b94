//! `winnerr`: serve the engine, simulate a Twilio call, watch a feed, mint a development token.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use winnerr::config::{Config, DEV_JWT_SECRET, DEV_TWILIO_AUTH_TOKEN, LogFormat};
use winnerr::{App, demo, watch};
use winnerr_events::{LeadId, OrgId, Role, Track, UserId};
use winnerr_gateway::Auth;
use winnerr_ingest::simulator::load_wav_8k;
use winnerr_ingest::{CallScript, Pace, Simulator, StreamIdentity};

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

#[derive(Subcommand)]
enum ScoringCommand {
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

#[derive(Subcommand)]
enum StoreCommand {
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

#[derive(clap::Args)]
struct SimulateArgs {
    /// Stream URL of the server.
    #[arg(long, default_value = "ws://127.0.0.1:8080/twilio/stream")]
    url: String,
    #[arg(long, env = "TWILIO_AUTH_TOKEN", default_value = DEV_TWILIO_AUTH_TOKEN, hide_default_value = true)]
    auth_token: String,
    /// The caller's audio (any WAV; converted to 8 kHz mu-law).
    #[arg(long)]
    inbound: PathBuf,
    /// The agent's audio, as a second track.
    #[arg(long)]
    outbound: Option<PathBuf>,
    #[arg(long, default_value = demo::DEMO_ORG)]
    org: String,
    #[arg(long)]
    agent: Option<String>,
    #[arg(long)]
    lead: Option<String>,
    /// Keys to press, as MS:DIGIT or MS:DIGIT:outbound (repeatable), e.g. 1500:5
    #[arg(long)]
    dtmf: Vec<String>,
    /// Send as fast as possible instead of in real time.
    #[arg(long)]
    fast: bool,
    /// End by dropping the connection instead of sending `stop`.
    #[arg(long)]
    no_stop: bool,
}

#[derive(clap::Args)]
struct TokenArgs {
    #[arg(long, default_value = demo::DEMO_ORG)]
    org: String,
    #[arg(long, default_value = "manager-1")]
    user: String,
    /// agent, manager or admin
    #[arg(long, default_value = "manager")]
    role: Role,
    #[arg(long, default_value_t = 12)]
    hours: u64,
    #[arg(long, env = "WINNERR_JWT_SECRET", default_value = DEV_JWT_SECRET, hide_default_value = true)]
    jwt_secret: String,
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, demo } => serve(config, demo).await,
        Command::Simulate(args) => {
            init_logs(LogFormat::Text);
            simulate(args).await
        }
        Command::Watch {
            url,
            token,
            channels,
        } => watch::run(&url, &token, &channels).await,
        Command::Store { command, config } => store_command(command, config).await,
        Command::Scoring {
            command: ScoringCommand::TrainPrior { out },
        } => tokio::task::spawn_blocking(move || train_prior(&out)).await?,
        Command::Scoring { command } => scoring_command(command).await,
        Command::Models { command } => {
            init_logs(LogFormat::Text);
            tokio::task::spawn_blocking(move || winnerr::models_cli::run(command)).await?
        }
        Command::Health { url } => health(&url).await,
        Command::Token(args) => {
            let auth = Auth::new(args.jwt_secret.as_bytes());
            let org = OrgId::parse(&args.org)?;
            let user = UserId::parse(&args.user)?;
            println!(
                "{}",
                auth.issue(
                    &user,
                    &org,
                    args.role,
                    Duration::from_secs(args.hours * 3600)
                )
            );
            Ok(())
        }
    }
}

/// The store of `config` (DATABASE_URL and the encryption keys).
async fn connect_store(config: &Config) -> anyhow::Result<winnerr_store::Store> {
    let url = config
        .database()
        .context("DATABASE_URL is `none`: there is no store")?;
    let keys = config.keyring().map_err(anyhow::Error::msg)?;
    Ok(winnerr_store::Store::connect(url, 4, keys).await?)
}

async fn scoring_command(command: ScoringCommand) -> anyhow::Result<()> {
    match command {
        ScoringCommand::TrainPrior { .. } => unreachable!("trained without a store"),
        ScoringCommand::Train {
            orgs,
            actor,
            config,
        } => {
            init_logs(config.log_format);
            let store = connect_store(&config).await?;
            let mut refused = false;
            for org in orgs {
                match winnerr::leads::train_organization(&store, &OrgId::parse(&org)?, &actor).await
                {
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
            if refused {
                std::process::exit(1);
            }
        }
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
        }
    }
    Ok(())
}

async fn store_command(command: StoreCommand, config: Config) -> anyhow::Result<()> {
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
        return Ok(());
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
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

async fn serve(config: Config, with_demo: bool) -> anyhow::Result<()> {
    init_logs(config.log_format);
    let app = App::start(&config).await?;
    let stop = app.shutdown_token();
    if with_demo {
        let org = OrgId::parse(demo::DEMO_ORG)?;
        let manager = UserId::parse("manager-1")?;
        let token = app.gateway.auth().issue(
            &manager,
            &org,
            Role::Manager,
            Duration::from_secs(12 * 3600),
        );
        println!(
            "\nWinnerr is serving on {http} with a demo call playing in a loop.\n\n\
             Open the dashboard at {http}/dashboard/ and log in with this token:\n  {token}\n\n\
             or watch organization {org}'s live feed in another terminal:\n  \
             cargo run -q -- watch --url {feed} --token {token}\n\n\
             or connect any WebSocket client to {feed}?access_token={token}\n\
             Metrics: {http}/metrics   Health: {http}/healthz   Ready: {http}/readyz\n",
            http = app.http_url(),
            feed = app.feed_url(),
        );
        tokio::spawn(demo::run_loop(
            app.stream_url(),
            config.twilio_auth_token.clone(),
            stop.clone(),
        ));
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        stop.cancel();
    });
    app.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn parse_dtmf(spec: &str) -> anyhow::Result<(u64, Track, char)> {
    let mut parts = spec.split(':');
    let at = parts
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("DTMF {spec:?}: bad time"))?;
    let digit = parts
        .next()
        .and_then(|d| d.chars().next())
        .with_context(|| format!("DTMF {spec:?}: no digit"))?;
    let track = match parts.next() {
        None | Some("inbound") => Track::Inbound,
        Some("outbound") => Track::Outbound,
        Some(other) => bail!("DTMF {spec:?}: unknown track {other:?}"),
    };
    Ok((at, track, digit))
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let identity = StreamIdentity {
        org_id: OrgId::parse(&args.org)?,
        agent_id: args.agent.as_deref().map(UserId::parse).transpose()?,
        lead_id: args.lead.as_deref().map(LeadId::parse).transpose()?,
    };
    let mut script = CallScript::new(identity, load_wav_8k(&args.inbound)?);
    script.outbound = args.outbound.as_deref().map(load_wav_8k).transpose()?;
    script.dtmf = args
        .dtmf
        .iter()
        .map(|spec| parse_dtmf(spec))
        .collect::<anyhow::Result<_>>()?;
    script.pace = if args.fast {
        Pace::Fast
    } else {
        Pace::RealTime
    };
    script.send_stop = !args.no_stop;
    println!(
        "streaming call {} ({} frames per track) to {}",
        script.call_sid,
        script.frames(),
        args.url
    );
    let simulator = Simulator::new(args.url, args.auth_token);
    let report = simulator
        .play(&script, |message| {
            println!(
                "server sent: {}",
                serde_json::to_string(message).unwrap_or_default()
            )
        })
        .await?;
    println!("sent {} media frames", report.frames_sent);
    match report.close {
        Some((code, reason)) => println!("server closed the stream: {code} {reason}"),
        None if script.send_stop => println!("server did not close the stream"),
        None => println!("dropped the connection without stop"),
    }
    Ok(())
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

/// `winnerr health`: one plain HTTP/1.0 GET of `url` (http only), success on status 200.
async fn health(url: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .context("health checks take an http:// URL")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        let request = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(2), check)
        .await
        .context("no answer within 2 s")?
        .with_context(|| format!("cannot reach {url}"))?;
    let status = String::from_utf8_lossy(&head[9..12]).to_string();
    if status != "200" {
        bail!("{url} answered {status}");
    }
    Ok(())
}
