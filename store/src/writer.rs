//! The store writer: call events in, call rows out. Each event is applied at most once — its id
//! goes into `applied_events` in the same transaction as its effect — so replays and bus
//! redeliveries leave the rows as they were. Events are written in batches, one transaction each.
//! Each organization's events take a handful of set-based statements rather than one statement
//! per event: on Postgres `unnest` of arrays, on SQLite `json_each` of one JSON array ([`sqlite`]).

mod sqlite;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use sqlx::{Postgres, Transaction};
use tracing::{error, warn};
use uuid::Uuid;
use winnerr_bus::{Group, Worker, WorkerError};
use winnerr_events::{
    ActivityState, CallEnded, CallSignals, CallStarted, ConsentRecord, EndReason, Envelope, Event,
    LeadScore, Message, OrgId, PostCallSummary, Track, Transcript,
};

use crate::crypto::{FieldPlace, Keyring, Sealed};
use crate::{Store, StoreError, Tx, metrics, set_organization};

/// Most events written in one transaction.
pub const MAX_BATCH: usize = 512;
/// The writer's consumer group.
const GROUP: &str = "winnerr-store";

/// Writes call events into the store.
#[derive(Clone, Debug)]
pub struct StoreWriter {
    store: Store,
}

/// An event's part (talk signals, a post-call summary) as the JSON text a column stores.
pub(crate) fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("events always serialize")
}

fn status(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Completed => "completed",
        EndReason::Abandoned => "abandoned",
        EndReason::Rejected => "rejected",
        EndReason::Shutdown => "shutdown",
    }
}

impl StoreWriter {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Applies `events` in one transaction, skipping any applied before; returns how many were
    /// new. Nothing is written if any fails. Each organization's events are written with a few
    /// set-based statements, whatever their number.
    pub async fn apply(&self, events: &[Arc<Envelope>]) -> Result<usize, StoreError> {
        let started = Instant::now();
        // Gateways' presence is not a call's record.
        let events: Vec<Arc<Envelope>> = events
            .iter()
            .filter(|e| !matches!(e.event, Event::Presence(_)))
            .cloned()
            .collect();
        let events = &events[..];
        let mut tx = self.store.begin_any().await?;
        let mut applied = 0;
        for (org, events) in by_organization(events) {
            set_organization(&mut tx, org).await?;
            crate::ensure_organization(&mut tx, org).await?;
            let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
            let mut new: HashSet<Uuid> = match &mut tx {
                Tx::Postgres(tx) => mark_applied(tx, org, &ids).await?,
                Tx::Sqlite(tx) => sqlite::mark_applied(tx, org, &ids).await?,
            };
            // `remove` also keeps an event listed twice in this batch from applying twice.
            let fresh: Vec<&Envelope> = events
                .into_iter()
                .filter(|e| new.remove(&e.id))
                .map(|e| &**e)
                .collect();
            for _ in fresh.len()..ids.len() {
                metrics::repeated();
            }
            let changes = CallChanges::gather(&fresh);
            let keys = self.store.keys();
            match &mut tx {
                Tx::Postgres(tx) => apply_all(tx, org, &changes, keys).await?,
                Tx::Sqlite(tx) => sqlite::apply_all(tx, org, &changes, keys).await?,
            }
            for event in &fresh {
                metrics::applied(event.event.kind());
                if let Event::CallStarted(CallStarted {
                    consent: Some(record),
                    ..
                }) = &event.event
                {
                    // How the caller's consent was obtained is audited with the call's row.
                    let entry = crate::audit::AuditEntry {
                        actor: "caller",
                        action: "call.consent",
                        subject: event.call_id.as_str(),
                        detail: serde_json::json!({ "consent": record.as_str() }).to_string(),
                    };
                    crate::audit::append(&mut tx, org, &entry).await?;
                }
            }
            applied += fresh.len();
        }
        tx.commit().await?;
        metrics::batch(events.len(), started.elapsed());
        Ok(applied)
    }

    /// Applies `events` as [`apply`](Self::apply) does; where the batch fails while the database
    /// answers, applies them one by one, in order, and sets aside in `dead_letters` each event
    /// that fails twice on its own (with the reason; counted and logged), so one event the
    /// database refuses cannot stop storage for everyone. Fails only while the database does not
    /// answer (the caller retries the batch; what was applied is skipped then).
    pub async fn apply_or_set_aside(&self, events: &[Arc<Envelope>]) -> Result<usize, StoreError> {
        let err = match self.apply(events).await {
            Ok(applied) => return Ok(applied),
            Err(err) => err,
        };
        if !self.store.ping().await {
            return Err(err);
        }
        warn!(events = events.len(), error = %err, "store batch failed with the database up; writing its events one by one");
        let mut applied = 0;
        for event in events {
            let one = std::slice::from_ref(event);
            let err = match self.apply(one).await {
                Ok(n) => {
                    applied += n;
                    continue;
                }
                Err(err) => err,
            };
            match self.apply(one).await {
                Ok(n) => applied += n,
                Err(_) if !self.store.ping().await => return Err(err),
                Err(_) => self.set_aside(event, &err).await?,
            }
        }
        Ok(applied)
    }

    /// Keeps `event`, which the database refuses, in `dead_letters` with why.
    async fn set_aside(&self, event: &Envelope, err: &StoreError) -> Result<(), StoreError> {
        let reason: String = err
            .to_string()
            .chars()
            .filter(|c| *c != '\0')
            .take(1_000)
            .collect();
        let event_id = event.id.to_string();
        let org = &event.org_id;
        let payload =
            serde_json::to_string(event).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let place = FieldPlace {
            org: org.as_str(),
            table: "dead_letters",
            column: "payload",
            row: &event_id,
        };
        let sealed = self.store.keys().encrypt(&payload, place);
        let mut tx = self.store.begin(org).await?;
        crate::ensure_organization(&mut tx, org).await?;
        crate::on_tx!(&mut tx, |conn, dialect| {
            sqlx::query(
                "INSERT INTO dead_letters (organization_id, event_id, call_id, kind, reason, payload_ciphertext, payload_key_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(org.as_str())
            .bind(&event_id)
            .bind(event.call_id.as_str())
            .bind(event.event.kind())
            .bind(&reason)
            .bind(&sealed.bytes)
            .bind(&sealed.key_id)
            .execute(conn)
            .await
            .map(drop)?
        });
        tx.commit().await?;
        metrics::set_aside(event.event.kind());
        error!(org_id = %org, call_id = %event.call_id, event_id = %event.id, kind = event.event.kind(), %reason, "event the database refuses set aside in dead_letters");
        Ok(())
    }
}

/// The store writer on the bus: consumer group `winnerr-store`, the events that change a call's
/// record. Interim transcripts and alerts change none, and interims are most of a call's events:
/// they never take room in the writer's queue nor a row in `applied_events`.
impl StoreWriter {
    pub fn group() -> Group {
        Group::new(GROUP, MAX_BATCH).wanting(|event| {
            matches!(
                event,
                Event::CallStarted(_)
                    | Event::AudioActivity(_)
                    | Event::Dtmf(_)
                    | Event::Transcript(Transcript { is_final: true, .. })
                    | Event::LeadScore(_)
                    | Event::CallSignals(_)
                    | Event::CallSummary(_)
                    | Event::CallEnded(_)
                    | Event::Message(_)
            )
        })
    }
}

impl Worker for StoreWriter {
    /// Writes a batch; fails (to be handed the batch again) only while the database does not
    /// answer, so nothing is lost while it is away.
    fn handle<'a>(
        &'a mut self,
        events: &'a [Arc<Envelope>],
    ) -> BoxFuture<'a, Result<(), WorkerError>> {
        Box::pin(async move {
            match self.apply_or_set_aside(events).await {
                Ok(_) => Ok(()),
                Err(err) => {
                    metrics::write_failed();
                    Err(err.into())
                }
            }
        })
    }
}

/// A count of milliseconds from outside (an event) as the database's signed 64 bits, saturating:
/// a value past them is stored as the largest rather than wrapped or refused.
pub(crate) fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Events grouped by organization, each group in the order given (so each call's order holds).
fn by_organization(events: &[Arc<Envelope>]) -> Vec<(&OrgId, Vec<&Arc<Envelope>>)> {
    let mut groups: Vec<(&OrgId, Vec<&Arc<Envelope>>)> = Vec::new();
    let mut index: HashMap<&OrgId, usize> = HashMap::new();
    for event in events {
        let slot = *index.entry(&event.org_id).or_insert_with(|| {
            groups.push((&event.org_id, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(event);
    }
    groups
}

/// Marks `ids` applied in `org`; returns those that were not before.
async fn mark_applied(
    tx: &mut Transaction<'static, Postgres>,
    org: &OrgId,
    ids: &[Uuid],
) -> Result<HashSet<Uuid>, StoreError> {
    let new = sqlx::query_scalar(
        "INSERT INTO applied_events (organization_id, event_id) SELECT $1, unnest($2::uuid[]) \
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(org.as_str())
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(new.into_iter().collect())
}

/// What a batch of one organization's events does to its calls, gathered per call.
#[derive(Default)]
struct CallChanges<'a> {
    /// Calls started: the last start of each call.
    started: HashMap<&'a str, (&'a Envelope, &'a CallStarted)>,
    /// Talk time to add per call: (inbound, outbound).
    talk: HashMap<&'a str, (i64, i64)>,
    /// Keys pressed per call, in order.
    digits: HashMap<&'a str, String>,
    /// Calls ended: the last end of each call.
    ended: HashMap<&'a str, (&'a Envelope, &'a CallEnded)>,
    /// Final transcripts: one utterance row each.
    utterances: Vec<(&'a str, &'a Transcript)>,
    /// Lead scores by lead and time (ms): the last of any two at the same millisecond.
    scores: HashMap<(&'a str, u64), &'a LeadScore>,
    /// Talk signals per call: the latest on the call's clock.
    signals: HashMap<&'a str, &'a CallSignals>,
    /// Post-call summaries: the last of each call.
    summaries: HashMap<&'a str, &'a PostCallSummary>,
    /// Messages analysed: their bodies and sentiment, by message id (the envelope's call id).
    messages: Vec<(&'a Envelope, &'a Message)>,
}

impl<'a> CallChanges<'a> {
    /// Keeps `signals` for `call` if they are the latest on its clock.
    fn signals_at(&mut self, call: &'a str, signals: &'a CallSignals) {
        let latest = self.signals.entry(call).or_insert(signals);
        if signals.at_ms >= latest.at_ms {
            *latest = signals;
        }
    }

    fn gather(events: &[&'a Envelope]) -> Self {
        let mut changes = Self::default();
        for &event in events {
            let call = event.call_id.as_str();
            match &event.event {
                Event::CallStarted(started) => {
                    changes.started.insert(call, (event, started));
                }
                Event::AudioActivity(activity) => {
                    if let (ActivityState::Silent, Some(spoken)) =
                        (activity.state, activity.spoken_ms)
                    {
                        let talk = changes.talk.entry(call).or_default();
                        match activity.track {
                            Track::Inbound => talk.0 = talk.0.saturating_add(ms(spoken)),
                            Track::Outbound => talk.1 = talk.1.saturating_add(ms(spoken)),
                        }
                    }
                }
                Event::Dtmf(dtmf) => changes.digits.entry(call).or_default().push(dtmf.digit),
                Event::CallEnded(ended) => {
                    changes.ended.insert(call, (event, ended));
                }
                Event::Transcript(t) if t.is_final => changes.utterances.push((call, t)),
                Event::LeadScore(score) => {
                    changes
                        .scores
                        .insert((score.lead_id.as_str(), event.ts_ms), score);
                }
                Event::CallSignals(signals) => changes.signals_at(call, signals),
                Event::CallSummary(summary) => {
                    changes.signals_at(call, &summary.signals);
                    changes.summaries.insert(call, summary);
                }
                Event::Message(message) => changes.messages.push((event, message)),
                Event::Transcript(_) | Event::Alert(_) | Event::Presence(_) | Event::Unknown => {}
            }
        }
        changes
    }
}

/// Columns of the calls started in a batch, for one `unnest` insert.
#[derive(Default)]
struct StartedRows<'a> {
    ids: Vec<&'a str>,
    streams: Vec<&'a str>,
    accounts: Vec<&'a str>,
    agents: Vec<Option<&'a str>>,
    leads: Vec<Option<&'a str>>,
    consents: Vec<Option<&'static str>>,
    at: Vec<f64>,
}

/// Columns of the calls ended in a batch, for one `unnest` upsert.
#[derive(Default)]
struct EndedRows<'a> {
    ids: Vec<&'a str>,
    agents: Vec<Option<&'a str>>,
    statuses: Vec<&'static str>,
    at: Vec<f64>,
    durations: Vec<i64>,
    stats: Vec<String>,
}

fn seconds(event: &Envelope) -> f64 {
    event.ts_ms as f64 / 1000.0
}

/// Applies one organization's new events: starts, then talk time and keys, then ends.
async fn apply_all(
    tx: &mut Transaction<'static, Postgres>,
    org: &OrgId,
    changes: &CallChanges<'_>,
    keys: &Keyring,
) -> Result<(), StoreError> {
    if !changes.started.is_empty() {
        let mut rows = StartedRows::default();
        for (call, (event, started)) in &changes.started {
            rows.ids.push(call);
            rows.streams.push(&started.stream_sid);
            rows.accounts.push(&started.account_sid);
            rows.agents
                .push(event.agent_id.as_ref().map(|a| a.as_str()));
            rows.leads
                .push(started.lead_id.as_ref().map(|l| l.as_str()));
            rows.consents
                .push(started.consent.map(ConsentRecord::as_str));
            rows.at.push(seconds(event));
        }
        sqlx::query(
            "INSERT INTO calls (organization_id, id, stream_sid, account_sid, agent_id, lead_id, consent, status, started_at, started_ms) \
             SELECT $1, u.id, u.stream, u.account, u.agent, u.lead, u.consent, 'live', to_timestamp(u.at), (u.at * 1000)::bigint \
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::float8[]) \
                  AS u(id, stream, account, agent, lead, consent, at) \
             ON CONFLICT (organization_id, id) DO UPDATE SET stream_sid = EXCLUDED.stream_sid, \
             account_sid = EXCLUDED.account_sid, agent_id = EXCLUDED.agent_id, lead_id = EXCLUDED.lead_id, \
             consent = EXCLUDED.consent, started_at = EXCLUDED.started_at, started_ms = EXCLUDED.started_ms",
        )
        .bind(org.as_str())
        .bind(rows.ids)
        .bind(rows.streams)
        .bind(rows.accounts)
        .bind(rows.agents)
        .bind(rows.leads)
        .bind(rows.consents)
        .bind(rows.at)
        .execute(&mut **tx)
        .await?;
    }
    if !changes.talk.is_empty() {
        let (ids, inbound, outbound): (Vec<&str>, Vec<i64>, Vec<i64>) =
            changes
                .talk
                .iter()
                .fold(Default::default(), |mut columns, (call, (i, o))| {
                    columns.0.push(call);
                    columns.1.push(*i);
                    columns.2.push(*o);
                    columns
                });
        sqlx::query(
            "UPDATE calls c SET inbound_talk_ms = c.inbound_talk_ms + u.inbound, \
             outbound_talk_ms = c.outbound_talk_ms + u.outbound \
             FROM unnest($2::text[], $3::int8[], $4::int8[]) AS u(id, inbound, outbound) \
             WHERE c.organization_id = $1 AND c.id = u.id",
        )
        .bind(org.as_str())
        .bind(ids)
        .bind(inbound)
        .bind(outbound)
        .execute(&mut **tx)
        .await?;
    }
    if !changes.digits.is_empty() {
        let (ids, digits): (Vec<&str>, Vec<&str>) = changes
            .digits
            .iter()
            .map(|(call, digits)| (*call, digits.as_str()))
            .unzip();
        sqlx::query(
            "UPDATE calls c SET dtmf_digits = c.dtmf_digits || u.digits \
             FROM unnest($2::text[], $3::text[]) AS u(id, digits) \
             WHERE c.organization_id = $1 AND c.id = u.id",
        )
        .bind(org.as_str())
        .bind(ids)
        .bind(digits)
        .execute(&mut **tx)
        .await?;
    }
    if !changes.utterances.is_empty() {
        write_utterances(tx, org, &changes.utterances, keys).await?;
    }
    if !changes.summaries.is_empty() {
        let (ids, summaries): (Vec<&str>, Vec<String>) = changes
            .summaries
            .iter()
            .map(|(call, summary)| (*call, json_text(summary)))
            .unzip();
        sqlx::query(
            "UPDATE calls c SET summary = u.summary::jsonb \
             FROM unnest($2::text[], $3::text[]) AS u(id, summary) \
             WHERE c.organization_id = $1 AND c.id = u.id",
        )
        .bind(org.as_str())
        .bind(ids)
        .bind(summaries)
        .execute(&mut **tx)
        .await?;
    }
    if !changes.signals.is_empty() {
        let (ids, signals): (Vec<&str>, Vec<String>) = changes
            .signals
            .iter()
            .map(|(call, signals)| (*call, json_text(signals)))
            .unzip();
        // A redelivered older report does not replace a newer one.
        sqlx::query(
            "UPDATE calls c SET signals = u.signals::jsonb \
             FROM unnest($2::text[], $3::text[]) AS u(id, signals) \
             WHERE c.organization_id = $1 AND c.id = u.id \
               AND (c.signals IS NULL OR (c.signals ->> 'at_ms')::bigint <= (u.signals::jsonb ->> 'at_ms')::bigint)",
        )
        .bind(org.as_str())
        .bind(ids)
        .bind(signals)
        .execute(&mut **tx)
        .await?;
    }
    if !changes.scores.is_empty() {
        write_scores(tx, org, &changes.scores).await?;
    }
    if !changes.messages.is_empty() {
        write_messages(tx, org, &changes.messages, keys).await?;
    }
    if !changes.ended.is_empty() {
        let mut rows = EndedRows::default();
        for (call, (event, ended)) in &changes.ended {
            rows.ids.push(call);
            rows.agents
                .push(event.agent_id.as_ref().map(|a| a.as_str()));
            rows.statuses.push(status(ended.reason));
            rows.at.push(seconds(event));
            rows.durations.push(ms(ended.duration_ms));
            rows.stats
                .push(serde_json::to_string(&ended.stats).expect("stats serialize"));
        }
        sqlx::query(
            "INSERT INTO calls (organization_id, id, agent_id, status, ended_at, duration_ms, stream_stats) \
             SELECT $1, u.id, u.agent, u.status, to_timestamp(u.at), u.duration, u.stats::jsonb \
             FROM unnest($2::text[], $3::text[], $4::text[], $5::float8[], $6::int8[], $7::text[]) \
                  AS u(id, agent, status, at, duration, stats) \
             ON CONFLICT (organization_id, id) DO UPDATE SET status = EXCLUDED.status, \
             ended_at = EXCLUDED.ended_at, duration_ms = EXCLUDED.duration_ms, stream_stats = EXCLUDED.stream_stats",
        )
        .bind(org.as_str())
        .bind(rows.ids)
        .bind(rows.agents)
        .bind(rows.statuses)
        .bind(rows.at)
        .bind(rows.durations)
        .bind(rows.stats)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Inserts lead scores into `lead_scores`, the history the CRM charts a lead's score from.
async fn write_scores(
    tx: &mut Transaction<'static, Postgres>,
    org: &OrgId,
    scores: &HashMap<(&str, u64), &LeadScore>,
) -> Result<(), StoreError> {
    let mut leads = Vec::with_capacity(scores.len());
    let mut at = Vec::with_capacity(scores.len());
    let mut values = Vec::with_capacity(scores.len());
    let mut factors = Vec::with_capacity(scores.len());
    let mut versions = Vec::with_capacity(scores.len());
    for ((lead, ts_ms), score) in scores {
        leads.push(*lead);
        at.push(*ts_ms as f64 / 1000.0);
        values.push(i16::from(score.score));
        factors.push(serde_json::to_string(&score.factors).expect("factors serialize"));
        versions.push(score.model_version.as_str());
    }
    sqlx::query(
        "INSERT INTO lead_scores (organization_id, person_id, scored_at, score, factors, model_version) \
         SELECT $1, u.lead, to_timestamp(u.at), u.score, u.factors::jsonb, u.version \
         FROM unnest($2::text[], $3::float8[], $4::int2[], $5::text[], $6::text[]) \
              AS u(lead, at, score, factors, version) \
         ON CONFLICT (organization_id, person_id, scored_at) DO UPDATE SET score = EXCLUDED.score, \
         factors = EXCLUDED.factors, model_version = EXCLUDED.model_version",
    )
    .bind(org.as_str())
    .bind(leads)
    .bind(at)
    .bind(values)
    .bind(factors)
    .bind(versions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes analysed messages: the row their webhook made gets the sealed body and sentiment (one
/// with no row, from a node without the inbox, is inserted whole).
async fn write_messages(
    tx: &mut Transaction<'static, Postgres>,
    org: &OrgId,
    messages: &[(&Envelope, &Message)],
    keys: &Keyring,
) -> Result<(), StoreError> {
    let rows = MessageRows::of(org, messages, keys);
    sqlx::query(
        "INSERT INTO messages (organization_id, id, channel, direction, person_id, agent_id, received_ms, \
         body_ciphertext, body_key_id, sentiment, sentiment_score) \
         SELECT $1, u.id, u.channel, u.direction, u.person, u.agent, u.received, u.ciphertext, u.key_id, u.label, u.score \
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::bytea[], \
                     $9::text[], $10::text[], $11::float4[]) \
              AS u(id, channel, direction, person, agent, received, ciphertext, key_id, label, score) \
         ON CONFLICT (organization_id, id) DO UPDATE SET body_ciphertext = EXCLUDED.body_ciphertext, \
         body_key_id = EXCLUDED.body_key_id, sentiment = EXCLUDED.sentiment, sentiment_score = EXCLUDED.sentiment_score, \
         person_id = COALESCE(messages.person_id, EXCLUDED.person_id), agent_id = COALESCE(messages.agent_id, EXCLUDED.agent_id)",
    )
    .bind(org.as_str())
    .bind(rows.ids)
    .bind(rows.channels)
    .bind(rows.directions)
    .bind(rows.people)
    .bind(rows.agents)
    .bind(rows.received)
    .bind(rows.ciphertexts)
    .bind(rows.key_ids)
    .bind(rows.labels)
    .bind(rows.scores)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Columns of the messages of a batch, bodies sealed.
#[derive(Default)]
pub(crate) struct MessageRows<'a> {
    pub ids: Vec<&'a str>,
    pub channels: Vec<&'static str>,
    pub directions: Vec<&'static str>,
    pub people: Vec<Option<&'a str>>,
    pub agents: Vec<Option<&'a str>>,
    pub received: Vec<i64>,
    pub ciphertexts: Vec<Vec<u8>>,
    pub key_ids: Vec<String>,
    pub labels: Vec<Option<&'a str>>,
    pub scores: Vec<Option<f32>>,
}

impl<'a> MessageRows<'a> {
    pub(crate) fn of(
        org: &OrgId,
        messages: &[(&'a Envelope, &'a Message)],
        keys: &Keyring,
    ) -> Self {
        let mut rows = Self::default();
        for (event, message) in messages {
            let id = event.call_id.as_str();
            let sealed = crate::messages::seal_body(keys, org, id, &message.text);
            rows.ids.push(id);
            rows.channels.push(message.channel.as_str());
            rows.directions.push(message.direction.as_str());
            rows.people
                .push(message.lead_id.as_ref().map(|l| l.as_str()));
            rows.agents
                .push(event.agent_id.as_ref().map(|a| a.as_str()));
            rows.received.push(ms(message.received_at_ms));
            rows.ciphertexts.push(sealed.bytes);
            rows.key_ids.push(sealed.key_id);
            rows.labels
                .push(message.sentiment.as_ref().map(|s| s.label.as_str()));
            rows.scores
                .push(message.sentiment.as_ref().map(|s| s.score));
        }
        rows
    }
}

/// An utterance's row id: its track and number, so a replayed final writes the same row.
pub fn utterance_id(transcript: &Transcript) -> String {
    format!("{}-{:05}", transcript.track.as_str(), transcript.utterance)
}

/// Where an utterance's text lives, bound into its ciphertext: utterance ids are unique within
/// their call, so the row is `call/id`.
fn utterance_place<'a>(org: &'a OrgId, row: &'a str) -> FieldPlace<'a> {
    FieldPlace {
        org: org.as_str(),
        table: "utterances",
        column: "text",
        row,
    }
}

/// An utterance's text, encrypted in its place.
pub(crate) fn seal_utterance(
    keys: &Keyring,
    org: &OrgId,
    call_id: &str,
    id: &str,
    text: &str,
) -> Sealed {
    keys.encrypt(text, utterance_place(org, &format!("{call_id}/{id}")))
}

/// An utterance's text, decrypted from its place; `None` where it does not decrypt (counted and
/// logged), so one bad row costs only itself.
pub(crate) fn open_utterance(
    keys: &Keyring,
    org: &OrgId,
    call_id: &str,
    id: &str,
    key_id: &str,
    ciphertext: &[u8],
) -> Option<String> {
    let opened = keys.decrypt(
        key_id,
        ciphertext,
        utterance_place(org, &format!("{call_id}/{id}")),
    );
    crate::crypto::readable(opened, "utterance_text", org, &format!("{call_id}/{id}"))
}

/// Final transcripts as utterance rows, the text encrypted in its place; a replay rewrites the
/// same rows. Finals of a call this store never saw start (a writer started mid-call) are left
/// out rather than failing the batch.
async fn write_utterances(
    tx: &mut Transaction<'static, Postgres>,
    org: &OrgId,
    finals: &[(&str, &Transcript)],
    keys: &Keyring,
) -> Result<(), StoreError> {
    let (mut calls, mut ids, mut tracks, mut starts, mut ends) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ciphertexts, mut key_ids, mut labels, mut scores) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (call, t) in finals {
        let id = utterance_id(t);
        let sealed = seal_utterance(keys, org, call, &id, &t.text);
        calls.push(*call);
        ids.push(id);
        tracks.push(t.track.as_str());
        starts.push(ms(t.start_ms));
        ends.push(ms(t.end_ms));
        ciphertexts.push(sealed.bytes);
        key_ids.push(sealed.key_id);
        labels.push(t.sentiment.as_ref().map(|s| s.label.clone()));
        scores.push(t.sentiment.as_ref().map(|s| s.score));
    }
    sqlx::query(
        "INSERT INTO utterances (organization_id, call_id, id, track, start_ms, end_ms, text_ciphertext, text_key_id, sentiment, sentiment_score) \
         SELECT $1, u.call, u.id, u.track, u.start_ms, u.end_ms, u.ciphertext, u.key_id, u.label, u.score \
         FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::bytea[], $8::text[], $9::text[], $10::float4[]) \
              AS u(call, id, track, start_ms, end_ms, ciphertext, key_id, label, score) \
         WHERE EXISTS (SELECT 1 FROM calls c WHERE c.organization_id = $1 AND c.id = u.call) \
         ON CONFLICT (organization_id, call_id, id) DO UPDATE SET start_ms = EXCLUDED.start_ms, end_ms = EXCLUDED.end_ms, \
         text_ciphertext = EXCLUDED.text_ciphertext, text_key_id = EXCLUDED.text_key_id, \
         sentiment = EXCLUDED.sentiment, sentiment_score = EXCLUDED.sentiment_score",
    )
    .bind(org.as_str())
    .bind(calls)
    .bind(ids)
    .bind(tracks)
    .bind(starts)
    .bind(ends)
    .bind(ciphertexts)
    .bind(key_ids)
    .bind(labels)
    .bind(scores)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use winnerr_events::fixtures::TestCall;

    use super::*;

    /// The writer's group takes what changes a call's record, and not the interims and alerts
    /// that change none.
    #[test]
    fn the_writer_wants_what_changes_a_calls_record() {
        let call = TestCall::new("acme", "CA1");
        let wants = StoreWriter::group().wants;
        for event in [
            call.started(),
            call.dtmf('4'),
            call.said(1, "hello", None),
            call.ended(),
        ] {
            assert!(wants(&event.event), "{event:?}");
        }
        assert!(!wants(&call.interim(1, "hel").event));
    }
}
