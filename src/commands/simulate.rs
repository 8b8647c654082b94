//! `winnerr simulate`: stream WAV audio into a server as a Twilio Media Stream.

use std::path::PathBuf;

use anyhow::{Context, bail};
use winnerr::config::DEV_TWILIO_AUTH_TOKEN;
use winnerr::demo;
use winnerr_events::{LeadId, OrgId, Track, UserId};
use winnerr_ingest::simulator::load_wav_8k;
use winnerr_ingest::{CallScript, Pace, Simulator, StreamIdentity};

#[derive(clap::Args)]
pub struct SimulateArgs {
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

/// Plays the call `args` describe and prints what the server answered.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
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
