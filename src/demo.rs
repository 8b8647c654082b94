//! The demo call that `winnerr serve --demo` plays in a loop: two real voices (a caller and an
//! agent) and a few keypresses, streamed in real time through the Twilio protocol into the server.

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

const CALLER_WAV: &[u8] = include_bytes!("../assets/audio/ps_goforward.wav");
const AGENT_WAV: &[u8] = include_bytes!("../assets/audio/ps_cards_005.wav");

/// The demo call: the caller speaks, then the agent answers; the caller presses 1, 2, 3.
pub fn demo_script() -> Result<CallScript, SimError> {
    let caller = decode_wav_8k(Cursor::new(CALLER_WAV), "ps_goforward.wav")?;
    let agent = decode_wav_8k(Cursor::new(AGENT_WAV), "ps_cards_005.wav")?;
    let pause = vec![0i16; 8000];
    // Caller: speech, then silence while the agent talks. Agent: silence, then speech.
    let mut inbound = caller.clone();
    inbound.extend(&pause);
    inbound.extend(vec![0i16; agent.len()]);
    let mut outbound = vec![0i16; caller.len()];
    outbound.extend(&pause);
    outbound.extend(&agent);
    let identity = StreamIdentity {
        org_id: OrgId::parse(DEMO_ORG).expect("valid"),
        agent_id: Some(UserId::parse(DEMO_AGENT).expect("valid")),
        lead_id: Some(LeadId::parse(DEMO_LEAD).expect("valid")),
    };
    let mut script = CallScript::new(identity, inbound);
    script.outbound = Some(outbound);
    script.dtmf = vec![
        (3000, Track::Inbound, '1'),
        (3200, Track::Inbound, '2'),
        (3400, Track::Inbound, '3'),
    ];
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
