//! `winnerr watch`: a small feed client that follows channels of an organization's feed and
//! prints what arrives, one line each.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use winnerr_events::{ClientMessage, Event, FeedMessage};

/// Connects to `feed_url` with `token`, subscribes to `channels` and prints every message until
/// the server closes.
pub async fn run(feed_url: &str, token: &str, channels: &[String]) -> anyhow::Result<()> {
    let mut request = feed_url.into_client_request()?;
    request.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    for channel in channels {
        let subscribe = ClientMessage::Subscribe {
            channel: channel.clone(),
            since: None,
        };
        let text = serde_json::to_string(&subscribe)?;
        socket.send(Message::Text(text.into())).await?;
    }
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => match serde_json::from_str::<FeedMessage>(text.as_str()) {
                Ok(message) => {
                    // Following several channels, an event on two of them shows twice: say where.
                    let on = match &message {
                        FeedMessage::Event { channel, .. } if channels.len() > 1 => {
                            format!("[{channel}] ")
                        }
                        _ => String::new(),
                    };
                    println!("{on}{}", describe(&message))
                }
                Err(_) => println!("{text}"),
            },
            Message::Close(frame) => {
                if let Some(frame) = frame {
                    println!(
                        "closed by server: {} {}",
                        u16::from(frame.code),
                        frame.reason
                    );
                }
                break;
            }
            _ => {}
        }
    }
    Ok(())
}

/// One line for a feed message.
pub fn describe(message: &FeedMessage) -> String {
    match message {
        FeedMessage::Hello {
            user_id,
            org_id,
            role,
            ..
        } => {
            format!("watching organization {org_id} as {user_id} ({role:?})")
        }
        FeedMessage::Lagged { missed } => format!("!! fell behind: {missed} events dropped"),
        FeedMessage::Subscribed {
            channel, position, ..
        } => format!("following {channel} from offset {}", position.offset),
        FeedMessage::Unsubscribed { channel } => format!("stopped following {channel}"),
        FeedMessage::PresenceState { members } => {
            let online: Vec<String> = members
                .iter()
                .map(|m| format!("{} ({:?}, {:?})", m.user_id, m.role, m.status))
                .collect();
            format!("online: {}", online.join(", "))
        }
        FeedMessage::Presence { change, member } => format!(
            "presence: {} {change:?} ({:?}, {:?})",
            member.user_id, member.role, member.status
        ),
        FeedMessage::Refreshed { expires_at } => format!("token refreshed until {expires_at}"),
        FeedMessage::Error {
            code,
            message,
            channel,
        } => format!(
            "!! refused ({code:?}{}): {message}",
            channel
                .as_ref()
                .map(|c| format!(", {c}"))
                .unwrap_or_default()
        ),
        FeedMessage::Pong => "pong".into(),
        FeedMessage::Event { event, .. } => {
            let detail = match &event.event {
                Event::CallStarted(started) => format!(
                    "agent={} lead={} tracks={:?}",
                    event.agent_id.as_ref().map_or("-", |a| a.as_str()),
                    started.lead_id.as_ref().map_or("-", |l| l.as_str()),
                    started.tracks
                ),
                Event::AudioActivity(activity) => format!(
                    "{} {:?} at {} ms{}",
                    activity.track.as_str(),
                    activity.state,
                    activity.at_ms,
                    activity
                        .spoken_ms
                        .map(|ms| format!(" (spoke {ms} ms)"))
                        .unwrap_or_default()
                ),
                Event::Dtmf(dtmf) => format!("{} pressed {}", dtmf.track.as_str(), dtmf.digit),
                Event::Transcript(t) => {
                    let sentiment = t.sentiment.as_ref().map_or(String::new(), |s| {
                        format!("  [{} {:+.2}, rolling {:+.2}]", s.label, s.score, s.rolling)
                    });
                    let tail = t.text.strip_prefix(t.stable_text.as_str()).unwrap_or("");
                    let shown = if t.is_final {
                        t.text.clone()
                    } else {
                        format!("{}…{}", t.stable_text, tail)
                    };
                    format!(
                        "{} #{} {:?}{sentiment}",
                        t.track.as_str(),
                        t.utterance,
                        shown
                    )
                }
                Event::Alert(alert) => format!(
                    "!! {} #{} {:?}: {:?}",
                    alert.track.as_str(),
                    alert.utterance,
                    alert.kind,
                    alert.text
                ),
                Event::CallEnded(ended) => format!(
                    "{:?} after {} ms, frames {:?}, missing {}, late {}, bad {}, dropped {}",
                    ended.reason,
                    ended.duration_ms,
                    ended.stats.frames,
                    ended.stats.missing,
                    ended.stats.late,
                    ended.stats.bad_frames,
                    ended.stats.dropped
                ),
                Event::LeadScore(score) => {
                    let reasons =
                        |factors: &mut dyn Iterator<Item = &winnerr_events::ScoreFactor>| {
                            factors
                                .map(|f| format!("{} {:+.2}", f.name(), f.contribution))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                    format!(
                        "lead {} scores {} ({}) — up: {} — down: {}",
                        score.lead_id,
                        score.score,
                        score.model_version,
                        reasons(&mut score.raising(3)),
                        reasons(&mut score.lowering(3)),
                    )
                }
                Event::CallSignals(signals) => format!(
                    "agent {:.0}% of the talk, longest turns {} / {} s, interruptions {} / {}, \
                     silences {}, agent questions {}",
                    signals.agent_talk_ratio.unwrap_or(0.0) * 100.0,
                    signals.longest_agent_turn_ms / 1000,
                    signals.longest_customer_turn_ms / 1000,
                    signals.agent_interruptions,
                    signals.customer_interruptions,
                    signals.silences,
                    signals.agent_questions
                ),
                Event::CallSummary(summary) => format!(
                    "turns {} / {}, agent {:.0}% of the talk, sentiment agent {} customer {}, alerts {:?}",
                    summary.signals.agent_turns,
                    summary.signals.customer_turns,
                    summary.signals.agent_talk_ratio.unwrap_or(0.0) * 100.0,
                    arc(summary.agent_sentiment),
                    arc(summary.customer_sentiment),
                    summary.alerts
                ),
                Event::Message(message) => format!(
                    "{} {} from {}: {}{}",
                    message.direction.as_str(),
                    message.channel.as_str(),
                    message.lead_id.as_ref().map_or("?", |l| l.as_str()),
                    message.text,
                    message
                        .sentiment
                        .as_ref()
                        .map(|s| format!(" [{} {:+.2}]", s.label, s.score))
                        .unwrap_or_default()
                ),
                Event::Presence(_) | Event::Unknown => String::new(),
            };
            format!(
                "{} {:<14} {:<16} {}",
                event.call_id,
                event.event.kind(),
                event.org_id,
                detail
            )
        }
    }
}

/// A side's sentiment from its first final to its last, as `+0.20 → -0.35`.
fn arc(arc: Option<winnerr_events::SentimentArc>) -> String {
    arc.map_or_else(
        || "–".to_owned(),
        |arc| format!("{:+.2} → {:+.2}", arc.start, arc.end),
    )
}
