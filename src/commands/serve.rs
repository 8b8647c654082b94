//! `winnerr serve`: the engine until SIGINT or SIGTERM, with a demo call in a loop if asked.

use std::time::Duration;

use secrecy::ExposeSecret;

use winnerr::config::Config;
use winnerr::{App, demo};
use winnerr_events::{OrgId, Role, UserId};

use super::init_logs;

/// Serves on `config` until a shutdown signal, then drains.
pub async fn run(config: Config, with_demo: bool) -> anyhow::Result<()> {
    init_logs(config.log_format);
    let app = App::start(&config).await?;
    let stop = app.shutdown_token();
    if with_demo {
        if let Some(store) = app.gateway.store() {
            demo::seed_keyterms(store).await;
        }
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
            config.twilio_auth_token.expose_secret().clone(),
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
