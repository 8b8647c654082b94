//! The subcommands of `winnerr`, one module each; each answers with the process's exit code.

pub mod health;
pub mod scoring;
pub mod serve;
pub mod simulate;
pub mod store;
pub mod token;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use winnerr::config::{Config, LogFormat};

/// Logs to stderr in `format`, filtered by `RUST_LOG` (default `info`).
pub fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The store of `config` (DATABASE_URL and the encryption keys).
pub async fn connect_store(config: &Config) -> anyhow::Result<winnerr_store::Store> {
    let url = config
        .database()
        .context("DATABASE_URL is `none`: there is no store")?;
    let keys = config.keyring().map_err(anyhow::Error::msg)?;
    Ok(winnerr_store::Store::connect(url, 4, keys).await?)
}
