//! `winnerr token`: mint a bearer token (for development and tests).

use std::time::Duration;

use winnerr::config::DEV_JWT_SECRET;
use winnerr::demo;
use winnerr_events::{OrgId, Role, UserId};
use winnerr_gateway::Auth;

#[derive(clap::Args)]
pub struct TokenArgs {
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

/// Prints a token for `args`.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
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
