//! Inbound messages (SMS, email), analysed as a call's finals are: redacted with the
//! organization's policy, scored for sentiment by the same model, checked against the watch list,
//! and published as a `message` event (and an `alert` per watched phrase). Messages waiting are
//! analysed in batches of up to [`BATCH`], one batch at a time, on the blocking pool: a burst
//! costs one core at most, and one model pass per batch; a burst the model cannot keep up with
//! is published without sentiment rather than late ([`SHED_SENTIMENT_ABOVE`]).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, warn};
use winnerr_bus::Bus;
use winnerr_events::{
    Alert, AlertKind, Direction, Event, InboundMessage, Message, SentimentScore, Track,
};
use winnerr_models::Sentiment;

use crate::alerts::keywords_in;
use crate::asr::SpeechModels;
use crate::metrics;
use crate::pipeline::{VoiceConfig, publish, redactions_of};

/// Most messages analysed in one model pass.
pub const BATCH: usize = 32;

/// Depth of the queue from ingest: a webhook waits when it is full.
pub const MESSAGE_QUEUE: usize = 1_024;

/// Messages still waiting after a batch is taken beyond which the batch is published without
/// sentiment: the model (about 5 ms a message on two cores, batched) is what a burst waits on,
/// and a message late by seconds is worse than one without its score. The watch list, redaction,
/// scoring, the store and the feed still get every message.
pub const SHED_SENTIMENT_ABOVE: usize = 4 * BATCH;

/// Runs until `messages` closes and every message taken is published. Without `models` messages
/// are published without sentiment.
pub fn spawn_messages(
    mut messages: mpsc::Receiver<InboundMessage>,
    bus: Arc<dyn Bus>,
    config: VoiceConfig,
    models: Option<Arc<dyn SpeechModels>>,
) -> JoinHandle<()> {
    metrics::describe();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while messages.recv_many(&mut batch, BATCH).await > 0 {
            let started = Instant::now();
            let behind = messages.len() > SHED_SENTIMENT_ABOVE;
            if behind {
                metrics::messages_unscored(batch.len());
            }
            let models = models.clone().filter(|_| !behind);
            let analysed = analyse(std::mem::take(&mut batch), &config, models).await;
            metrics::messages_analysed(analysed.len(), started.elapsed());
            for (message, event, alerts) in analysed {
                let span = tracing::info_span!(
                    "message",
                    org_id = %message.message.org_id,
                    message_id = %message.message.call_id
                );
                async {
                    publish(bus.as_ref(), &message.message, Event::Message(event)).await;
                    for alert in alerts {
                        publish(bus.as_ref(), &message.message, Event::Alert(alert)).await;
                    }
                }
                .instrument(span)
                .await;
            }
        }
    })
}

type Analysed = (InboundMessage, Message, Vec<Alert>);

/// Redacts each message, scores the batch's sentiment in one pass, and finds watched phrases.
async fn analyse(
    batch: Vec<InboundMessage>,
    config: &VoiceConfig,
    models: Option<Arc<dyn SpeechModels>>,
) -> Vec<Analysed> {
    let redacted: Vec<(String, Vec<winnerr_events::Redaction>)> = batch
        .iter()
        .map(|message| {
            let policy = config.redaction.policy_for(&message.message.org_id);
            let (text, found) = crate::redact::redact(&message.text, &policy);
            for redaction in &found {
                metrics::redacted(redaction.kind.as_str(), "message");
            }
            let redactions = redactions_of(&text);
            (text, redactions)
        })
        .collect();
    let texts: Vec<String> = redacted.iter().map(|(text, _)| text.clone()).collect();
    let sentiments = match models {
        Some(models) => sentiments(models, texts).await,
        None => vec![None; batch.len()],
    };
    batch
        .into_iter()
        .zip(redacted)
        .zip(sentiments)
        .map(|((message, (text, redactions)), sentiment)| {
            let sentiment = sentiment.map(|s| SentimentScore {
                label: s.label.as_str().to_owned(),
                probabilities: s.probabilities,
                score: s.score(),
                rolling: s.score(),
            });
            let alerts = keywords_in(&text, config.alerts.keywords_for(&message.message.org_id))
                .into_iter()
                .map(|keyword| Alert {
                    track: Track::Inbound,
                    utterance: 0,
                    kind: AlertKind::Keyword { keyword },
                    text: text.clone(),
                    last_voiced_at_ms: 0,
                })
                .collect();
            let event = Message {
                channel: message.channel,
                direction: Direction::Inbound,
                lead_id: message.message.lead_id.clone(),
                text,
                redactions,
                sentiment,
                received_at_ms: message.received_at_ms,
            };
            (message, event, alerts)
        })
        .collect()
}

/// The sentiment of each text (none for an empty one, or for all where the model failed).
async fn sentiments(models: Arc<dyn SpeechModels>, texts: Vec<String>) -> Vec<Option<Sentiment>> {
    let count = texts.len();
    let scored = tokio::task::spawn_blocking(move || {
        let spoken: Vec<&str> = texts
            .iter()
            .map(String::as_str)
            .filter(|t| !t.trim().is_empty())
            .collect();
        let mut scores = models.sentiments(&spoken)?.into_iter();
        Ok::<_, winnerr_models::ModelError>(
            texts
                .iter()
                .map(|t| {
                    if t.trim().is_empty() {
                        None
                    } else {
                        scores.next()
                    }
                })
                .collect::<Vec<_>>(),
        )
    })
    .await;
    match scored {
        Ok(Ok(scores)) => scores,
        Ok(Err(error)) => {
            metrics::message_sentiment_failed();
            warn!(%error, messages = count, "messages published without sentiment: the model failed");
            vec![None; count]
        }
        Err(error) => {
            metrics::message_sentiment_failed();
            warn!(%error, messages = count, "messages published without sentiment: the model's task failed");
            vec![None; count]
        }
    }
}
