//! The demo call that `winnerr serve --demo` plays in a loop: a two-track real-estate call (an
//! agent and a customer, in a neural voice made once with Piper by `deploy/demo-audio.py`)
//! with a keypress, streamed in real time through the Twilio protocol into the server.

use std::io::Cursor;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use winnerr_events::{LeadId, OrgId, Track, UserId};
use winnerr_ingest::simulator::{SimError, decode_wav_8k};
use winnerr_ingest::{CallScript, Pace, Simulator, StreamIdentity};

/// Organization, agent and lead the demo call belongs to.
pub const DEMO_ORG: &str = "demo-realty";
pub const DEMO_AGENT: &str = "agent-1";
pub const DEMO_LEAD: &str = "lead-1";

const CUSTOMER_WAV: &[u8] = include_bytes!("../assets/audio/demo_customer.wav");
const AGENT_WAV: &[u8] = include_bytes!("../assets/audio/demo_agent.wav");

/// The demo organization's keyterms, set when it has none: the words of its call that a general
/// recognizer spells wrong ("Wither Realty", "the House on May 1st").
pub const DEMO_KEYTERMS: &[&str] = &["Winnerr Realty", "Maple Street", "Sam"];

/// Gives the demo organization its keyterms unless it has some (set over REST, say).
pub async fn seed_keyterms(store: &winnerr_store::Store) {
    let org = OrgId::parse(DEMO_ORG).expect("valid");
    let seeded = async {
        if store.keyterms(&org).await?.is_empty() {
            let terms: Vec<String> = DEMO_KEYTERMS.iter().map(|t| t.to_string()).collect();
            store.set_keyterms(&org, &terms, "demo").await?;
        }
        Ok::<_, winnerr_store::StoreError>(())
    };
    if let Err(err) = seeded.await {
        warn!(error = %err, "the demo organization's keyterms were not set");
    }
}

/// The demo call: the customer (inbound) and the agent (outbound) take turns; the customer
/// presses 1 when the call starts.
pub fn demo_script() -> Result<CallScript, SimError> {
    let customer = decode_wav_8k(Cursor::new(CUSTOMER_WAV), "demo_customer.wav")?;
    let agent = decode_wav_8k(Cursor::new(AGENT_WAV), "demo_agent.wav")?;
    let identity = StreamIdentity {
        org_id: OrgId::parse(DEMO_ORG).expect("valid"),
        agent_id: Some(UserId::parse(DEMO_AGENT).expect("valid")),
        lead_id: Some(LeadId::parse(DEMO_LEAD).expect("valid")),
    };
    let mut script = CallScript::new(identity, customer);
    script.outbound = Some(agent);
    script.dtmf = vec![(500, Track::Inbound, '1')];
    script.pace = Pace::RealTime;
    Ok(script)
}

/// Plays the demo call against `stream_url` again and again until `stop`.
pub async fn run_loop(stream_url: String, auth_token: String, stop: CancellationToken) {
    let simulator = Simulator::new(stream_url, auth_token);
    loop {
        let script = match demo_script() {
            Ok(script) => script,
            Err(err) => {
                warn!(error = %err, "demo audio unreadable; demo stopped");
                return;
            }
        };
        let played = tokio::select! {
            played = simulator.play(&script, |_| {}) => played,
            _ = stop.cancelled() => return,
        };
        match played {
            Ok(report) => {
                info!(call_sid = %script.call_sid, frames = report.frames_sent, "demo call finished")
            }
            Err(err) => warn!(error = %err, "demo call failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
