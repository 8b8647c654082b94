//! The store's API on both databases, each test on a fresh one: Postgres as the service role the
//! engine uses, and an embedded SQLite file. (What only Postgres does, row-level security and its
//! roles, is in `postgres.rs`.)

mod common;

use common::{call, call_events};
use winnerr_events::OrgId;
use winnerr_store::{
    DealOutcome, ImportedLead, Keyring, PastCall, Store, StoreError, StoreWriter, migrate,
};
use winnerr_testkit::{Owner, TestDb, raw};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Postgres,
    Sqlite,
}

/// A fresh database and the store on it.
struct Fixture {
    db: TestDb,
    store: Store,
}

/// (id, status, agent, inbound talk ms, outbound talk ms, digits, duration, stream stats).
type CallRow = (
    String,
    String,
    Option<String>,
    i64,
    i64,
    String,
    Option<i64>,
    Option<String>,
);

impl Fixture {
    async fn new(kind: Kind) -> Fixture {
        let db = match kind {
            Kind::Postgres => TestDb::postgres().await,
            Kind::Sqlite => TestDb::sqlite(),
        };
        if let TestDb::Postgres(postgres) = &db {
            migrate(&postgres.owner_url).await.expect("migrations run");
        }
        let store = Store::connect(&db.url(), 4, Keyring::development())
            .await
            .expect("the store opens");
        Fixture { db, store }
    }

    /// What the engine's own connection gets when it edits the audit log.
    async fn service_edits_the_audit_log(&self, org: &OrgId) -> String {
        match &self.db {
            TestDb::Postgres(_) => {
                let mut tx = self.store.begin_for(org).await.unwrap();
                sqlx::query("UPDATE audit_log SET actor = 'nobody'")
                    .execute(&mut *tx)
                    .await
                    .unwrap_err()
                    .to_string()
            }
            // The engine's file, opened as the engine opens it: its triggers refuse.
            TestDb::Sqlite(_) => match self.db.owner().await {
                Owner::Sqlite(mut conn) => sqlx::query("UPDATE audit_log SET actor = 'nobody'")
                    .execute(&mut conn)
                    .await
                    .unwrap_err()
                    .to_string(),
                Owner::Postgres(_) => unreachable!(),
            },
        }
    }

    /// Lets `owner` edit the audit log as someone with the file in hand could (Postgres's owner
    /// already may).
    async fn lift_append_only(&self, owner: &mut Owner) {
        if let Owner::Sqlite(conn) = owner {
            for trigger in [
                "audit_log_append_only_update",
                "audit_log_append_only_delete",
            ] {
                sqlx::query(&format!("DROP TRIGGER {trigger}"))
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
        }
    }

    /// `org`'s call rows as stored.
    async fn call_rows(&self, org: &str) -> Vec<CallRow> {
        let mut owner = self.db.owner().await;
        raw!(&mut owner, |conn| {
            sqlx::query_as(
                "SELECT id, status, agent_id, inbound_talk_ms, outbound_talk_ms, dtmf_digits, duration_ms, \
                 CAST(stream_stats AS text) FROM calls WHERE organization_id = $1 ORDER BY id",
            )
            .bind(org)
            .fetch_all(conn)
            .await
            .unwrap()
        })
    }

    async fn finish(self) {
        drop(self.store);
        self.db.remove().await;
    }
}

/// A test per database for each scenario named.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn postgres() {
                    super::$scenario(super::Kind::Postgres).await
                }
                #[tokio::test]
                async fn sqlite() {
                    super::$scenario(super::Kind::Sqlite).await
                }
            }
        )*
    };
}

on_both!(
    a_call_becomes_one_row_and_replays_change_nothing,
    each_organization_reads_only_its_own_records,
    contact_details_are_ciphertext_at_rest_and_found_by_phone,
    the_audit_chain_finds_edited_and_deleted_rows,
    rotating_keys_re_encrypts_every_value_under_the_new_key,
    imported_leads_are_read_back_as_their_record,
    finals_and_scores_are_written_once_and_read_back,
    an_event_the_database_refuses_is_set_aside_and_the_rest_is_stored,
    retention_purges_old_calls_words_and_nothing_else,
    a_calls_consent_is_audited_once,
    a_calls_latest_signals_are_stored_with_it,
    a_call_says_how_it_moved_its_leads_score,
    a_calls_keyterms_are_its_people_its_homes_and_its_organizations_words,
    messages_are_recorded_once_sealed_and_merged_into_the_timeline,
);

/// Messages (issue 23): an inbound message is recorded once by its id, from the person with its
/// number (or a new lead of source `sms`); the writer seals its body; the person's timeline
/// merges calls and messages newest first, keyset-paged, its reads audited; an analysed message
/// is not forgotten, a claimed one not yet analysed is; another organization sees none of it.
async fn messages_are_recorded_once_sealed_and_merged_into_the_timeline(kind: Kind) {
    use winnerr_events::fixtures::TestCall;
    use winnerr_events::{Direction, Event, LeadId, Message, MessageChannel, SentimentScore};
    use winnerr_store::TimelineItem;
    let fixture = Fixture::new(kind).await;
    let store = fixture.store.clone();
    let writer = StoreWriter::new(store.clone());
    let acme = OrgId::parse("acme").unwrap();
    let globex = OrgId::parse("globex").unwrap();
    let dana = store
        .create_person(
            &acme,
            &winnerr_store::PersonFields {
                first_name: Some("Dana".into()),
                phone: Some("(555) 010-0142".into()),
                owner_user_id: Some("agent-1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let now = winnerr_events::now_ms();
    let received = |id: &'static str, from: &'static str, at: u64| {
        let store = store.clone();
        let acme = acme.clone();
        async move {
            store
                .receive_message(&acme, MessageChannel::Sms, id, from, at)
                .await
                .unwrap()
        }
    };
    let first = received("SM1", "+1 555 010 0142", now - 3_000)
        .await
        .unwrap();
    assert_eq!(
        (
            first.person_id.as_str(),
            first.agent_id.as_deref(),
            first.created
        ),
        (dana.id.as_str(), Some("agent-1"), false)
    );
    assert_eq!(
        received("SM1", "+15550100142", now - 3_000).await,
        None,
        "once"
    );
    assert!(received("SM2", "+15550100142", now - 1_000).await.is_some());
    let stranger = received("SM3", "+15550100999", now - 2_000).await.unwrap();
    assert!(stranger.created);
    let new_lead = store
        .get_person(&acme, &stranger.person_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (new_lead.source.as_deref(), new_lead.phone.as_deref()),
        (Some("sms"), Some("+15550100999"))
    );
    assert!(
        new_lead.first_name.ends_with("0999"),
        "{}",
        new_lead.first_name
    );

    let message = |id: &str, text: &str, at: u64| {
        TestCall::new("acme", id)
            .agent("agent-1")
            .event(Event::Message(Message {
                channel: MessageChannel::Sms,
                direction: Direction::Inbound,
                lead_id: Some(LeadId::parse(&dana.id).unwrap()),
                text: text.into(),
                redactions: Vec::new(),
                sentiment: Some(SentimentScore {
                    label: "negative".into(),
                    probabilities: [0.8, 0.15, 0.05],
                    score: -0.75,
                    rolling: -0.75,
                }),
                received_at_ms: at,
            }))
    };
    let call = TestCall::new("acme", "CA7").agent("agent-1").lead(&dana.id);
    let events: Vec<_> = [
        message("SM1", "we lost the house", now - 3_000),
        message("SM2", "are there others nearby", now - 1_000),
        call.started(),
    ]
    .into_iter()
    .map(std::sync::Arc::new)
    .collect();
    assert_eq!(writer.apply(&events).await.unwrap(), 3);
    assert_eq!(
        writer.apply(&events).await.unwrap(),
        0,
        "a replay changes nothing"
    );

    let page = store
        .person_timeline(&acme, &dana.id, None, 2, None, "manager-1")
        .await
        .unwrap();
    let ids = |items: &[TimelineItem]| -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                TimelineItem::Call(call) => call.id.clone(),
                TimelineItem::Message(message) => message.id.clone(),
            })
            .collect()
    };
    assert_eq!(ids(&page.items), ["CA7", "SM2"]);
    let TimelineItem::Message(latest) = &page.items[1] else {
        unreachable!()
    };
    assert_eq!(latest.text.as_deref(), Some("are there others nearby"));
    assert_eq!(latest.sentiment.as_deref(), Some("negative"));
    let rest = store
        .person_timeline(
            &acme,
            &dana.id,
            None,
            2,
            page.next_cursor.as_deref(),
            "manager-1",
        )
        .await
        .unwrap();
    assert_eq!(ids(&rest.items), ["SM1"]);
    assert_eq!(rest.next_cursor, None);
    let agent_2 = winnerr_events::UserId::parse("agent-2").unwrap();
    let theirs = store
        .person_timeline(&acme, &dana.id, Some(&agent_2), 10, None, "agent-2")
        .await
        .unwrap();
    assert_eq!(
        ids(&theirs.items),
        ["SM2", "SM1"],
        "another agent's call is not theirs to list"
    );
    let elsewhere = store
        .person_timeline(&globex, &dana.id, None, 10, None, "manager-9")
        .await
        .unwrap();
    assert!(elsewhere.items.is_empty());

    // Sealed at rest; the reads audited; forgetting spares what was analysed.
    let mut owner = fixture.db.owner().await;
    let bodies: Vec<Vec<u8>> = raw!(&mut owner, |conn| sqlx::query_scalar(
        "SELECT body_ciphertext FROM messages WHERE body_ciphertext IS NOT NULL"
    )
    .fetch_all(conn)
    .await
    .unwrap());
    assert_eq!(bodies.len(), 2);
    assert!(
        bodies
            .iter()
            .all(|b| !String::from_utf8_lossy(b).contains("house"))
    );
    let reads: Vec<String> = raw!(&mut owner, |conn| sqlx::query_scalar(
        "SELECT detail FROM audit_log WHERE action = 'messages.read' ORDER BY seq"
    )
    .fetch_all(conn)
    .await
    .unwrap());
    assert_eq!(reads.len(), 3, "{reads:?}");
    store.forget_message(&acme, "SM1").await.unwrap();
    store.forget_message(&acme, "SM3").await.unwrap();
    let left: Vec<String> = raw!(&mut owner, |conn| sqlx::query_scalar(
        "SELECT id FROM messages ORDER BY id"
    )
    .fetch_all(conn)
    .await
    .unwrap());
    assert_eq!(left, ["SM1", "SM2"]);
    assert_eq!(store.verify_audit(&acme).await.unwrap().problem, None);
    fixture.finish().await;
}

/// Keyterms (issue 21): an organization's list is kept in its order, each term once, audited;
/// a call's terms are its lead's name, its agent's, the addresses the lead viewed (latest first),
/// the organization's name, then its list; another organization's list and people stay out.
async fn a_calls_keyterms_are_its_people_its_homes_and_its_organizations_words(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let store = &fixture.store;
    let (acme, other): (OrgId, OrgId) = ("acme".parse().unwrap(), "other".parse().unwrap());
    let list = |terms: &[&str]| terms.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let kept = store
        .set_keyterms(
            &acme,
            &list(&["Maple Street", " HOA ", "maple street", "escrow"]),
            "u-mgr",
        )
        .await
        .unwrap();
    assert_eq!(kept, list(&["Maple Street", "HOA", "escrow"]));
    store
        .set_keyterms(&other, &list(&["Other Realty"]), "u-x")
        .await
        .unwrap();
    assert!(matches!(
        store
            .set_keyterms(&acme, &list(&["bad\u{7}"]), "u-mgr")
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store.keyterms(&acme).await.unwrap(),
        kept,
        "a refused list changes nothing"
    );

    let mut owner = fixture.db.owner().await;
    let at = |ms: i64| match kind {
        Kind::Postgres => format!("to_timestamp({ms}::float8 / 1000)"),
        Kind::Sqlite => ms.to_string(),
    };
    for sql in [
        "UPDATE organizations SET name = 'Winnerr Realty' WHERE id = 'acme'".to_owned(),
        "INSERT INTO users (organization_id, id, name, role) VALUES ('acme', 'u-ag', 'Priya Raghunathan', 'agent')".to_owned(),
        "INSERT INTO users (organization_id, id, name, role) VALUES ('other', 'u-ag', 'Not Her', 'agent')".to_owned(),
        "INSERT INTO people (organization_id, id, first_name, last_name) VALUES ('acme', 'p-1', 'Xiomara', 'Delacroix')".to_owned(),
        "INSERT INTO people (organization_id, id, first_name, last_name) VALUES ('other', 'p-1', 'Someone', 'Else')".to_owned(),
        "INSERT INTO properties (organization_id, id, address) VALUES ('acme', 'h-1', '12 Tuckahoe Lane')".to_owned(),
        "INSERT INTO properties (organization_id, id, address) VALUES ('acme', 'h-2', '48 Saguaro Vista Drive')".to_owned(),
        format!("INSERT INTO activity (organization_id, person_id, kind, property_id, at) VALUES ('acme', 'p-1', 'property_view', 'h-1', {})", at(1_000_000)),
        format!("INSERT INTO activity (organization_id, person_id, kind, property_id, at) VALUES ('acme', 'p-1', 'property_view', 'h-2', {})", at(2_000_000)),
        format!("INSERT INTO activity (organization_id, person_id, kind, property_id, at) VALUES ('acme', 'p-1', 'email_open', NULL, {})", at(3_000_000)),
    ] {
        raw!(&mut owner, |conn| sqlx::query(&sql).execute(conn).await.unwrap().rows_affected());
    }
    drop(owner);
    assert_eq!(
        store
            .call_keyterms(&acme, Some("u-ag"), Some("p-1"))
            .await
            .unwrap(),
        list(&[
            "Xiomara Delacroix",
            "Priya Raghunathan",
            "48 Saguaro Vista Drive",
            "12 Tuckahoe Lane",
            "Winnerr Realty",
            "Maple Street",
            "HOA",
            "escrow",
        ])
    );
    // Ids that name no one add nothing; a call without them gets the organization's words.
    assert_eq!(
        store
            .call_keyterms(&acme, Some("u-nobody"), Some("p-nobody"))
            .await
            .unwrap(),
        list(&["Winnerr Realty", "Maple Street", "HOA", "escrow"])
    );
    assert_eq!(
        store.call_keyterms(&other, None, None).await.unwrap(),
        list(&["Other Realty"])
    );
    assert_eq!(store.verify_audit(&acme).await.unwrap().problem, None);
    fixture.finish().await;
}

/// One call's record says how it moved its lead's score: the last score before the call, the
/// last by its end, and that score's top reasons in words; a call without a lead says nothing.
async fn a_call_says_how_it_moved_its_leads_score(kind: Kind) {
    use winnerr_events::{Envelope, Event, LeadScore, ScoreFactor};
    let fixture = Fixture::new(kind).await;
    let writer = StoreWriter::new(fixture.store.clone());
    let ctx = call("acme", "CA-scored");
    let factor = |feature: &str, label: &str, contribution: f32| ScoreFactor {
        feature: feature.into(),
        label: label.into(),
        group: "timeline".into(),
        value: 1.0,
        contribution,
    };
    let score = |score: u8, at_ms: u64, factors: Vec<ScoreFactor>| {
        let mut event = Envelope::new(
            &ctx,
            Event::LeadScore(LeadScore {
                lead_id: ctx.lead_id.clone().unwrap(),
                score,
                probability: f32::from(score) / 100.0,
                logit: 0.0,
                intercept: 0.0,
                factors,
                model_version: "prior-1".into(),
                cause: uuid::Uuid::now_v7(),
                cause_ts_ms: at_ms,
            }),
        );
        event.ts_ms = at_ms;
        std::sync::Arc::new(event)
    };
    let events = call_events(&ctx);
    let start = events[0].ts_ms;
    let end = events.last().unwrap().ts_ms;
    let mut all = vec![score(40, start - 60_000, Vec::new())];
    all.extend(events);
    all.push(score(
        71,
        end + 1_000,
        vec![
            factor("moves_soon", "plans to move soon", 0.9),
            factor("urgency_cues", "urgency cues", 0.4),
            factor("no_hurry", "in no hurry", -0.3),
        ],
    ));
    writer.apply(&all).await.unwrap();
    let acme: OrgId = "acme".parse().unwrap();
    let stored = fixture
        .store
        .get_call(&acme, "CA-scored", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.score,
        Some(winnerr_store::ScoreChange {
            before: Some(40),
            after: 71,
            raising: vec!["plans to move soon".into(), "urgency cues".into()],
            lowering: vec!["in no hurry".into()],
        })
    );
    let plain = call("acme", "CA-no-lead");
    let plain = winnerr_events::CallContext {
        lead_id: None,
        ..plain
    };
    writer.apply(&call_events(&plain)).await.unwrap();
    let stored = fixture
        .store
        .get_call(&acme, "CA-no-lead", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.score, None);
    fixture.finish().await;
}

/// A call's talk signals are stored with its row, the latest on the call's clock (its summary's
/// at the end): an older report delivered later (a redelivery) does not replace it; the summary
/// is stored whole.
async fn a_calls_latest_signals_are_stored_with_it(kind: Kind) {
    use winnerr_events::{CallSignals, Envelope, Event};
    let fixture = Fixture::new(kind).await;
    let writer = StoreWriter::new(fixture.store.clone());
    let ctx = call("acme", "CA-talk");
    let report = |at_ms: u64, last: bool| {
        std::sync::Arc::new(Envelope::new(
            &ctx,
            Event::CallSignals(CallSignals {
                at_ms,
                last,
                agent_talk_ms: at_ms / 2,
                agent_talk_ratio: Some(0.5),
                agent_questions: 2,
                ..CallSignals::default()
            }),
        ))
    };
    let mut events = call_events(&ctx);
    let ended = events.pop().unwrap();
    events.push(report(10_000, false));
    let Event::CallSignals(at_end) = &report(20_000, true).event else {
        unreachable!()
    };
    let summary = winnerr_events::PostCallSummary {
        signals: at_end.clone(),
        agent_sentiment: Some(winnerr_events::SentimentArc {
            start: 0.2,
            end: 0.6,
        }),
        customer_sentiment: None,
        alerts: [("monologue".to_owned(), 1)].into(),
        keyterms: vec!["Winnerr Realty".to_owned()],
    };
    events.push(std::sync::Arc::new(Envelope::new(
        &ctx,
        Event::CallSummary(summary.clone()),
    )));
    events.push(ended);
    writer.apply(&events).await.unwrap();
    writer.apply(&[report(10_000, false)]).await.unwrap();
    let acme: OrgId = "acme".parse().unwrap();
    let stored = fixture
        .store
        .get_call(&acme, "CA-talk", None)
        .await
        .unwrap()
        .unwrap();
    let signals = stored.signals.expect("stored").0;
    assert_eq!(
        (signals.at_ms, signals.last, signals.agent_talk_ms),
        (20_000, true, 10_000)
    );
    assert_eq!(
        (signals.agent_talk_ratio, signals.agent_questions),
        (Some(0.5), 2)
    );
    assert_eq!(stored.summary.expect("stored").0, summary);
    fixture.finish().await;
}

/// How a call's consent was obtained is stored with the call and audited (issue 22, item 2),
/// once however often its start is delivered; a call whose policy asked nothing is not.
async fn a_calls_consent_is_audited_once(kind: Kind) {
    use winnerr_events::{ConsentRecord, Envelope, Event};
    let fixture = Fixture::new(kind).await;
    let writer = StoreWriter::new(fixture.store.clone());
    let asked = call("acme", "CA-asked");
    let mut started = common::started(&asked);
    if let Event::CallStarted(start) = &mut started {
        start.consent = Some(ConsentRecord::OptedIn);
    }
    let start = std::sync::Arc::new(Envelope::new(&asked, started));
    let plain = call_events(&call("acme", "CA-plain"));
    writer.apply(std::slice::from_ref(&start)).await.unwrap();
    writer.apply(&[start]).await.unwrap();
    writer.apply(&plain).await.unwrap();
    let mut owner = fixture.db.owner().await;
    let rows: Vec<(String, String, String)> = raw!(&mut owner, |conn| sqlx::query_as(
        "SELECT actor, subject, detail FROM audit_log WHERE action = 'call.consent'"
    )
    .fetch_all(conn)
    .await
    .unwrap());
    assert_eq!(
        rows,
        vec![(
            "caller".to_owned(),
            "CA-asked".to_owned(),
            r#"{"consent":"opted_in"}"#.to_owned()
        )]
    );
    let acme: OrgId = "acme".parse().unwrap();
    assert_eq!(
        fixture.store.verify_audit(&acme).await.unwrap().problem,
        None
    );
    drop(owner);
    fixture.finish().await;
}

/// Retention (issue 22, item 3): a purge deletes the transcript lines, the DTMF digits and the
/// lead scores from before the cutoff, of one organization only (another's call of the same id,
/// just as old, stays), audited with the counts; a dry run counts the same and changes nothing;
/// a second purge finds nothing and audits nothing; the scheduled form purges the organizations
/// the policy names, or every one of the store under a default.
async fn retention_purges_old_calls_words_and_nothing_else(kind: Kind) {
    use winnerr_store::{Purged, Retention};
    let fixture = Fixture::new(kind).await;
    let store = fixture.store.clone();
    let writer = StoreWriter::new(store.clone());
    for (org, id) in [("acme", "CA-old"), ("acme", "CA-new"), ("globex", "CA-old")] {
        writer.apply(&spoken_call(&call(org, id))).await.unwrap();
    }
    let now = winnerr_events::now_ms();
    let day = 86_400_000_i64;
    let old_ms = now as i64 - 100 * day;
    let mut owner = fixture.db.owner().await;
    // Both CA-old calls 100 days old, with digits; acme's first score as old as its call.
    let aged_score = match kind {
        Kind::Postgres => {
            "UPDATE lead_scores SET scored_at = to_timestamp($1::float8 / 1000) WHERE organization_id = $2"
        }
        Kind::Sqlite => "UPDATE lead_scores SET scored_at = $1 WHERE organization_id = $2",
    };
    for org in ["acme", "globex"] {
        raw!(&mut owner, |conn| {
            sqlx::query(
            "UPDATE calls SET started_ms = $1, dtmf_digits = '42' WHERE organization_id = $2 AND id = 'CA-old'"
        )
        .bind(old_ms)
        .bind(org)
        .execute(conn)
        .await
        .unwrap()
        .rows_affected()
        });
    }
    // acme's two calls each scored once: age one of the two.
    raw!(&mut owner, |conn| {
        sqlx::query(&format!(
        "{aged_score} AND scored_at = (SELECT min(scored_at) FROM lead_scores WHERE organization_id = $2)"
    ))
    .bind(old_ms)
    .bind("acme")
    .execute(conn)
    .await
    .unwrap()
    .rows_affected()
    });

    let acme: OrgId = "acme".parse().unwrap();
    let globex: OrgId = "globex".parse().unwrap();
    let reader = "manager-1".parse().unwrap();
    let cutoff = Retention::Days(90).cutoff_ms(now).unwrap();
    let audited = |check: winnerr_store::AuditCheck| check.rows;
    let rows_before = audited(store.verify_audit(&acme).await.unwrap());
    let expected = Purged {
        utterances: 2,
        dead_letters: 0,
        dtmf_cleared: 1,
        scores: 1,
    };

    let dry = store.purge(&acme, cutoff, true, "cli").await.unwrap();
    assert_eq!(dry, expected);
    assert_eq!(
        store
            .read_transcript(&acme, "CA-old", &reader)
            .await
            .unwrap()
            .len(),
        2,
        "a dry run changes nothing"
    );
    assert_eq!(
        audited(store.verify_audit(&acme).await.unwrap()),
        rows_before + 1
    );

    let purged = store.purge(&acme, cutoff, false, "cli").await.unwrap();
    assert_eq!(purged, expected);
    assert!(
        store
            .read_transcript(&acme, "CA-old", &reader)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .read_transcript(&acme, "CA-new", &reader)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .read_transcript(&globex, "CA-old", &reader)
            .await
            .unwrap()
            .len(),
        2,
        "another organization's call of the same id is its own"
    );
    assert_eq!(store.person_scores(&acme, "lead-1").await.unwrap().len(), 1);
    let old_call = store
        .get_call(&acme, "CA-old", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (old_call.status.as_str(), old_call.dtmf_digits.as_str()),
        ("completed", "")
    );
    assert_eq!(
        store
            .get_call(&globex, "CA-old", None)
            .await
            .unwrap()
            .unwrap()
            .dtmf_digits,
        "42"
    );
    // The chain holds, with the purge's row (and the transcript reads above).
    let check = store.verify_audit(&acme).await.unwrap();
    assert_eq!(check.problem, None);
    let (actor, detail): (String, String) = raw!(&mut owner, |conn| {
        sqlx::query_as(
        "SELECT actor, detail FROM audit_log WHERE organization_id = 'acme' AND action = 'retention.purge'"
    )
    .fetch_one(conn)
    .await
    .unwrap()
    });
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(actor, "cli");
    assert_eq!(
        (detail["utterances"].as_u64(), detail["scores"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(detail["cutoff_ms"].as_i64(), Some(cutoff));

    assert_eq!(
        store.purge(&acme, cutoff, false, "cli").await.unwrap(),
        Purged::default(),
        "nothing is left to purge"
    );
    let purges: i64 = raw!(&mut owner, |conn| sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'retention.purge'"
    )
    .fetch_one(conn)
    .await
    .unwrap());
    assert_eq!(purges, 1, "an empty purge is not audited");

    // Scheduled: the named organizations, then every one under a default.
    let named = Retention::policy("acme=90d").unwrap();
    let done = store.purge_all(&named, now, "retention").await.unwrap();
    assert_eq!(done, vec![(acme.clone(), Purged::default())]);
    let everyone = Retention::policy("*=90d;acme=keep").unwrap();
    let done = store.purge_all(&everyone, now, "retention").await.unwrap();
    let globex_old = Purged {
        scores: 0,
        ..expected
    };
    assert_eq!(done, vec![(globex.clone(), globex_old)]);
    assert!(
        store
            .read_transcript(&globex, "CA-old", &reader)
            .await
            .unwrap()
            .is_empty()
    );

    drop(owner);
    fixture.finish().await;
}

/// One event the database refuses (a talk time past its integers; on Postgres also a NUL in a
/// text field) no longer stops storage: before, the writer retried that batch forever and no
/// later call of any organization was stored. Now it is set aside in `dead_letters` with the
/// reason and its payload sealed, and everything else — in its batch and after — is written.
async fn an_event_the_database_refuses_is_set_aside_and_the_rest_is_stored(kind: Kind) {
    use winnerr_events::{ActivityState, AudioActivity, Envelope, Event, Track};
    let fixture = Fixture::new(kind).await;
    let writer = StoreWriter::new(fixture.store.clone());
    let talk = |ctx: &winnerr_events::CallContext, spoken_ms: u64| {
        std::sync::Arc::new(Envelope::new(
            ctx,
            Event::AudioActivity(AudioActivity {
                track: Track::Inbound,
                state: ActivityState::Silent,
                at_ms: 1_000,
                spoken_ms: Some(spoken_ms),
            }),
        ))
    };
    let overflowing = call("acme", "CA2");
    let first = vec![
        std::sync::Arc::new(Envelope::new(&overflowing, common::started(&overflowing))),
        talk(&overflowing, 1_000),
    ];
    assert_eq!(writer.apply(&first).await.unwrap(), 2);

    // One batch: a whole good call of another organization around the poison.
    let good = call_events(&call("globex", "CA1"));
    let mut batch = good[..3].to_vec();
    let poison = talk(&overflowing, u64::MAX);
    batch.push(poison.clone());
    let mut poisons = vec![poison];
    if let Kind::Postgres = kind {
        let nul = call("acme", "CA3");
        let mut started = common::started(&nul);
        if let Event::CallStarted(start) = &mut started {
            start.account_sid = "AC\0\0".into();
        }
        let start = std::sync::Arc::new(Envelope::new(&nul, started));
        batch.push(start.clone());
        poisons.push(start);
    }
    batch.extend(good[3..].iter().cloned());
    assert!(
        writer.apply(&batch).await.is_err(),
        "the batch as one fails"
    );
    let applied = writer.apply_or_set_aside(&batch).await.unwrap();
    assert_eq!(applied, good.len());
    let rows = fixture.call_rows("globex").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].1.as_str(), rows[0].3, rows[0].6),
        ("completed", 1800, Some(6000))
    );

    // Each poison is set aside once, with a reason and its payload sealed to its row.
    let mut owner = fixture.db.owner().await;
    let letters: Vec<(String, String, String, Vec<u8>, String)> = raw!(&mut owner, |conn| {
        sqlx::query_as(
            "SELECT event_id, kind, reason, payload_ciphertext, payload_key_id FROM dead_letters \
             WHERE organization_id = 'acme' ORDER BY kind",
        )
        .fetch_all(conn)
        .await
        .unwrap()
    });
    assert_eq!(letters.len(), poisons.len(), "{letters:?}");
    for (event_id, kind, reason, bytes, key_id) in &letters {
        let poison = poisons
            .iter()
            .find(|p| p.id.to_string() == *event_id)
            .unwrap();
        assert_eq!(kind, poison.event.kind());
        assert!(!reason.is_empty());
        let place = winnerr_store::crypto::FieldPlace {
            org: "acme",
            table: "dead_letters",
            column: "payload",
            row: event_id,
        };
        let payload = Keyring::development()
            .decrypt(key_id, bytes, place)
            .unwrap();
        let kept: Envelope = serde_json::from_str(&payload).unwrap();
        assert_eq!(kept.id, poison.id);
    }
    // Set aside again on a redelivery: still once.
    assert_eq!(writer.apply_or_set_aside(&batch).await.unwrap(), 0);
    let count: i64 = raw!(&mut owner, |conn| {
        sqlx::query_scalar("SELECT count(*) FROM dead_letters")
            .fetch_one(conn)
            .await
            .unwrap()
    });
    assert_eq!(count, poisons.len() as i64);

    // Later calls are stored as ever.
    let later = call_events(&call("acme", "CA4"));
    assert_eq!(
        writer.apply_or_set_aside(&later).await.unwrap(),
        later.len()
    );
    assert!(fixture.call_rows("acme").await.iter().any(|r| r.0 == "CA4"));
    fixture.finish().await;
}

/// A call with two finals (one interim between them), a lead score, its end; and a final of a
/// call this store never saw start.
fn spoken_call(ctx: &winnerr_events::CallContext) -> Vec<std::sync::Arc<winnerr_events::Envelope>> {
    use winnerr_events::{
        CallEnded, EndReason, Envelope, Event, LeadScore, ScoreFactor, SentimentScore, StreamStats,
        Track, Transcript,
    };
    let line = |utterance: u32, is_final: bool, text: &str, start_ms: u64, score: f32| {
        Event::Transcript(Transcript {
            track: if utterance % 2 == 1 {
                Track::Inbound
            } else {
                Track::Outbound
            },
            utterance,
            is_final,
            text: text.into(),
            stable_text: text.into(),
            start_ms,
            end_ms: start_ms + 2000,
            last_voiced_at_ms: 0,
            sentiment: Some(SentimentScore {
                label: if score > 0.0 { "positive" } else { "negative" }.into(),
                probabilities: [(-score).max(0.0), 1.0 - score.abs(), score.max(0.0)],
                score,
                rolling: score,
            }),
            redactions: Vec::new(),
        })
    };
    let events = vec![
        common::started(ctx),
        line(1, true, "We loved the garden.", 500, 0.82),
        line(2, false, "Great, when", 3000, 0.3),
        line(2, true, "Great, when can you come by?", 3000, 0.6),
        Event::LeadScore(LeadScore {
            lead_id: ctx.lead_id.clone().unwrap(),
            score: 71,
            probability: 0.71,
            logit: 0.9,
            intercept: -0.2,
            factors: vec![ScoreFactor {
                feature: "sentiment".into(),
                label: "customer's sentiment".into(),
                group: "engagement".into(),
                value: 0.7,
                contribution: 1.1,
            }],
            model_version: "prior-1".into(),
            cause: uuid::Uuid::now_v7(),
            cause_ts_ms: 1,
        }),
        Event::CallEnded(CallEnded {
            reason: EndReason::Completed,
            duration_ms: 6000,
            stats: StreamStats::default(),
        }),
    ];
    let mut envelopes: Vec<_> = events
        .into_iter()
        .map(|e| std::sync::Arc::new(Envelope::new(ctx, e)))
        .collect();
    let stranger = call("acme", "CA-never-started");
    envelopes.push(std::sync::Arc::new(Envelope::new(
        &stranger,
        line(1, true, "Hello?", 0, 0.1),
    )));
    envelopes
}

async fn finals_and_scores_are_written_once_and_read_back(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let store = fixture.store.clone();
    let writer = StoreWriter::new(store.clone());
    let events = spoken_call(&call("acme", "CA-spoken"));
    writer.apply(&events).await.unwrap();
    assert_eq!(
        writer.apply(&events).await.unwrap(),
        0,
        "a replay applies nothing"
    );

    let acme: OrgId = "acme".parse().unwrap();
    let reader = "manager-1".parse().unwrap();
    let lines = store
        .read_transcript(&acme, "CA-spoken", &reader)
        .await
        .unwrap();
    let said: Vec<(&str, &str, i64, Option<&str>)> = lines
        .iter()
        .map(|u| {
            (
                u.track.as_str(),
                u.text.as_str(),
                u.start_ms,
                u.sentiment.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        said,
        vec![
            ("inbound", "We loved the garden.", 500, Some("positive")),
            (
                "outbound",
                "Great, when can you come by?",
                3000,
                Some("positive")
            ),
        ]
    );
    assert_eq!(lines[0].sentiment_score, Some(0.82));
    assert!(
        store
            .read_transcript(&acme, "CA-never-started", &reader)
            .await
            .unwrap()
            .is_empty(),
        "a final of a call never started is left out"
    );
    let scores = store.person_scores(&acme, "lead-1").await.unwrap();
    assert_eq!(scores.len(), 1);
    assert_eq!(
        (scores[0].score, scores[0].model_version.as_str()),
        (71, "prior-1")
    );
    assert_eq!(scores[0].factors[0]["feature"], "sentiment");
    assert_eq!(scores[0].scored_at_ms, events[4].ts_ms as i64);
    let globex: OrgId = "globex".parse().unwrap();
    assert!(
        store
            .person_scores(&globex, "lead-1")
            .await
            .unwrap()
            .is_empty()
    );
    fixture.finish().await;
}

async fn each_organization_reads_only_its_own_records(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let store = fixture.store.clone();
    let writer = StoreWriter::new(store.clone());
    let mut mixed = call_events(&call("acme", "CA-acme"));
    mixed.extend(call_events(&call("globex", "CA-globex")));
    writer.apply(&mixed).await.unwrap();
    let fields = winnerr_store::PersonFields {
        first_name: Some("Lee".into()),
        phone: Some("+15550100777".into()),
        ..Default::default()
    };
    let person = store
        .create_person(&"acme".parse().unwrap(), &fields)
        .await
        .unwrap();

    for (org, own, other) in [
        ("acme", "CA-acme", "CA-globex"),
        ("globex", "CA-globex", "CA-acme"),
    ] {
        let org: OrgId = org.parse().unwrap();
        let page = store
            .list_calls(&org, &Default::default(), None, 50, None)
            .await
            .unwrap();
        let ids: Vec<&str> = page.items.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec![own]);
        assert_eq!(page.items[0].status, "completed");
        assert_eq!(page.items[0].dtmf_digits, "42");
        assert!(page.items[0].ended_at_ms.is_some());
        assert!(store.get_call(&org, own, None).await.unwrap().is_some());
        assert_eq!(store.get_call(&org, other, None).await.unwrap(), None);
        let reader = "manager-1".parse().unwrap();
        assert!(
            store
                .read_transcript(&org, other, &reader)
                .await
                .unwrap()
                .is_empty()
        );
    }
    let globex: OrgId = "globex".parse().unwrap();
    assert_eq!(store.get_person(&globex, &person.id).await.unwrap(), None);
    assert!(
        store
            .find_people_by_phone(&globex, "+15550100777")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .update_person(&globex, &person.id, &fields)
            .await
            .unwrap()
            .is_none()
    );
    // Only acme's agent-1 calls show for that agent; a cursor pages on.
    let acme: OrgId = "acme".parse().unwrap();
    let agent = "agent-1".parse().unwrap();
    let mine = store
        .list_calls(&acme, &Default::default(), Some(&agent), 1, None)
        .await
        .unwrap();
    assert_eq!(mine.items.len(), 1);
    let other_agent = "agent-2".parse().unwrap();
    let none = store
        .list_calls(&acme, &Default::default(), Some(&other_agent), 10, None)
        .await
        .unwrap();
    assert!(none.items.is_empty());
    fixture.finish().await;
}

async fn imported_leads_are_read_back_as_their_record(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let store = fixture.store.clone();
    let acme: OrgId = "acme".parse().unwrap();
    let day = 86_400_000;
    let now = 1_780_000_000_000_i64;
    let lead = |id: &str, source: &str, won: Option<bool>| ImportedLead {
        id: id.into(),
        first_name: id.to_uppercase(),
        source: Some(source.into()),
        location: Some("Austin".into()),
        budget_min: Some(300_000),
        budget_max: Some(500_000),
        activity: vec![
            winnerr_store::ActivityRow {
                kind: "property_view".into(),
                at_ms: now - 2 * day,
                price: Some(450_000),
                location: Some("Austin".into()),
            },
            winnerr_store::ActivityRow {
                kind: "email_open".into(),
                at_ms: now - 200 * day,
                price: None,
                location: None,
            },
        ],
        calls: vec![PastCall {
            id: format!("CA-{id}"),
            started_ms: now - 5 * day,
            inbound_talk_ms: 60_000,
            outbound_talk_ms: 30_000,
            customer: vec![
                ("We love the house".into(), Some(0.8)),
                ("When can we move".into(), None),
            ],
        }],
        deal: won.map(|won| DealOutcome {
            won,
            closed_ms: now - day,
        }),
    };
    let leads = vec![
        lead("ann", "zillow", None),
        lead("bob", "zillow", Some(true)),
        lead("cat", "referral", Some(false)),
    ];
    assert_eq!(store.import_leads(&acme, &leads, "seed").await.unwrap(), 3);
    assert_eq!(
        store.import_leads(&acme, &leads, "seed").await.unwrap(),
        0,
        "imported once"
    );

    let record = store
        .lead_record_as_of(&acme, "ann", now, "scorer")
        .await
        .unwrap()
        .expect("ann has a record");
    assert_eq!(record.source.as_deref(), Some("zillow"));
    assert_eq!(
        (record.budget_min, record.budget_max),
        (Some(300_000), Some(500_000))
    );
    // Activity of the last 90 days only, with the viewed property's price.
    assert_eq!(record.activity.len(), 1);
    assert_eq!(record.activity[0].kind, "property_view");
    assert_eq!(record.activity[0].at_ms, now - 2 * day);
    assert_eq!(record.activity[0].price, Some(450_000));
    assert_eq!(record.calls.len(), 1);
    assert_eq!(record.calls[0].inbound_talk_ms, 60_000);
    assert_eq!(
        record.calls[0].customer,
        vec![
            ("We love the house".to_string(), Some(0.8)),
            ("When can we move".to_string(), None)
        ]
    );
    assert_eq!((record.source_won, record.source_lost), (1, 0));
    assert_eq!((record.org_won, record.org_lost), (1, 1));
    // As of before the deals closed, none of them counts.
    let earlier = store
        .lead_record_as_of(&acme, "ann", now - 6 * day, "scorer")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((earlier.org_won, earlier.org_lost), (0, 0));
    assert!(earlier.calls.is_empty(), "the call came later");

    let closed = store.closed_deals(&acme).await.unwrap();
    assert_eq!(
        closed,
        vec![
            (
                "bob".to_string(),
                DealOutcome {
                    won: true,
                    closed_ms: now - day
                }
            ),
            (
                "cat".to_string(),
                DealOutcome {
                    won: false,
                    closed_ms: now - day
                }
            ),
        ]
    );
    let globex: OrgId = "globex".parse().unwrap();
    assert_eq!(
        store.lead_record(&globex, "ann", "scorer").await.unwrap(),
        None
    );
    assert!(store.closed_deals(&globex).await.unwrap().is_empty());

    // Models: the newest is read back; another organization has none.
    assert_eq!(store.lead_model(&acme).await.unwrap(), None);
    store
        .save_lead_model(
            &acme,
            "v1",
            r#"{"weights":[1,2]}"#,
            40,
            Some(0.7),
            "trainer",
        )
        .await
        .unwrap();
    let model = store.lead_model(&acme).await.unwrap().unwrap();
    assert_eq!(model.version, "v1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&model.model).unwrap(),
        serde_json::json!({"weights": [1, 2]})
    );
    assert_eq!(store.lead_model(&globex).await.unwrap(), None);
    // The import, the history read and the training are audited.
    let check = store.verify_audit(&acme).await.unwrap();
    assert_eq!((check.rows, check.problem), (4, None));
    fixture.finish().await;
}

async fn a_call_becomes_one_row_and_replays_change_nothing(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let store = fixture.store.clone();
    let writer = StoreWriter::new(store.clone());
    let events = call_events(&call("acme", "CA1"));

    assert_eq!(writer.apply(&events).await.unwrap(), events.len());
    let rows = fixture.call_rows("acme").await;
    assert_eq!(rows.len(), 1);
    let (id, status, agent, inbound, outbound, digits, duration, stats) = rows[0].clone();
    assert_eq!(
        (id.as_str(), status.as_str(), agent.as_deref()),
        ("CA1", "completed", Some("agent-1"))
    );
    assert_eq!(
        (inbound, outbound, digits.as_str(), duration),
        (1800, 2100, "42", Some(6000))
    );
    let stats: serde_json::Value = serde_json::from_str(&stats.unwrap()).unwrap();
    assert_eq!(stats["frames"], serde_json::json!([300, 300]));

    // The same events again, as one batch and one by one: nothing new, nothing changed.
    assert_eq!(writer.apply(&events).await.unwrap(), 0);
    for event in &events {
        assert_eq!(writer.apply(std::slice::from_ref(event)).await.unwrap(), 0);
    }
    assert_eq!(fixture.call_rows("acme").await, rows);
    fixture.finish().await;
}

async fn contact_details_are_ciphertext_at_rest_and_found_by_phone(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let store = fixture.store.clone();
    let acme = "acme".parse().unwrap();
    let fields = winnerr_store::PersonFields {
        first_name: Some("Dana".into()),
        last_name: Some("Reyes".into()),
        email: Some("dana.reyes@example.com".into()),
        phone: Some("+1 (555) 010-0199".into()),
        budget_min: Some(400_000),
        budget_max: Some(650_000),
        location: Some("Austin, TX".into()),
        ..Default::default()
    };
    let person = store.create_person(&acme, &fields).await.unwrap();
    assert_eq!(person.email.as_deref(), Some("dana.reyes@example.com"));
    assert_eq!(
        store.get_person(&acme, &person.id).await.unwrap(),
        Some(person.clone())
    );

    // What the database holds is ciphertext with its key id, not the address or the number.
    let mut owner = fixture.db.owner().await;
    let (email, email_key, phone, lookup): (Vec<u8>, String, Vec<u8>, Vec<u8>) = raw!(
        &mut owner,
        |conn| {
            sqlx::query_as(
        "SELECT email_ciphertext, email_key_id, phone_ciphertext, phone_lookup FROM people WHERE id = $1",
    )
    .bind(&person.id)
    .fetch_one(conn)
    .await
    .unwrap()
        }
    );
    assert_eq!(email_key, "dev1");
    for raw in [&email, &phone, &lookup] {
        let text = String::from_utf8_lossy(raw);
        assert!(
            !text.contains("dana") && !text.contains("0199") && !text.contains("5550100199"),
            "{text}"
        );
    }

    // Any formatting of the number finds the person; another organization finds nobody.
    let found = store
        .find_people_by_phone(&acme, "+15550100199")
        .await
        .unwrap();
    assert_eq!(found, vec![person.clone()]);
    let globex = "globex".parse().unwrap();
    assert!(
        store
            .find_people_by_phone(&globex, "+15550100199")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.get_person(&globex, &person.id).await.unwrap(), None);

    // Updates re-encrypt; bad input is refused with a reason.
    let changed = winnerr_store::PersonFields {
        phone: Some("+1 555 010 0200".into()),
        ..Default::default()
    };
    let updated = store
        .update_person(&acme, &person.id, &changed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.phone.as_deref(), updated.email.as_deref()),
        (Some("+1 555 010 0200"), Some("dana.reyes@example.com"))
    );
    assert!(
        store
            .find_people_by_phone(&acme, "+15550100199")
            .await
            .unwrap()
            .is_empty()
    );
    for bad in [
        winnerr_store::PersonFields {
            first_name: Some(" ".into()),
            ..Default::default()
        },
        winnerr_store::PersonFields {
            email: Some("nobody".into()),
            ..Default::default()
        },
        winnerr_store::PersonFields {
            budget_min: Some(900_000),
            ..Default::default()
        },
    ] {
        let refused = store.update_person(&acme, &person.id, &bad).await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{bad:?}: {refused:?}"
        );
    }
    fixture.finish().await;
}

/// Appends one audit row per (actor, action, subject), each with `detail`.
async fn audit_all(store: &Store, org: &OrgId, entries: &[(&str, &str, &str)], detail: &str) {
    for &(actor, action, subject) in entries {
        let entry = winnerr_store::AuditEntry {
            actor,
            action,
            subject,
            detail: detail.into(),
        };
        store.audit(org, &entry).await.unwrap();
    }
}

async fn the_audit_chain_finds_edited_and_deleted_rows(kind: Kind) {
    let fixture = Fixture::new(kind).await;
    let store = fixture.store.clone();
    let acme = "acme".parse().unwrap();
    audit_all(
        &store,
        &acme,
        &[
            ("u1", "transcript.read", "CA1"),
            ("u2", "person.export", "p_1"),
            ("admin", "keys.rotate", "dev1"),
        ],
        "{\"via\":\"api\"}",
    )
    .await;
    let intact = store.verify_audit(&acme).await.unwrap();
    assert_eq!((intact.rows, intact.problem), (3, None));
    let anchor = intact.head.expect("a chain of three rows has a head");
    assert_eq!(anchor.seq, 3);
    assert_eq!(
        anchor.to_string().parse::<winnerr_store::AuditHead>(),
        Ok(anchor.clone())
    );

    // The service may only append.
    let refused = fixture.service_edits_the_audit_log(&acme).await;
    assert!(
        refused.contains("permission denied") || refused.contains("append-only"),
        "{refused}"
    );

    // Whoever edits a row behind its back is found out...
    let mut owner = fixture.db.owner().await;
    fixture.lift_append_only(&mut owner).await;
    owner
        .execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
        .await;
    let check = store.verify_audit(&acme).await.unwrap();
    assert_eq!(check.problem.as_ref().map(|p| p.0), Some(2), "{check:?}");
    assert!(check.problem.unwrap().1.contains("changed"));

    // ...and so is a deleted row.
    owner
        .execute("UPDATE audit_log SET actor = 'u2' WHERE seq = 2")
        .await;
    assert_eq!(store.verify_audit(&acme).await.unwrap().problem, None);
    owner.execute("DELETE FROM audit_log WHERE seq = 2").await;
    let check = store.verify_audit(&acme).await.unwrap();
    assert_eq!(check.problem, Some((3, "row 2 is missing".into())));

    // Deleting the last rows leaves a chain that checks out on its own; the anchor recorded
    // outside the database finds them gone.
    owner.execute("DELETE FROM audit_log").await;
    audit_all(
        &store,
        &acme,
        &[
            ("u1", "transcript.read", "CA1"),
            ("u2", "person.export", "p_1"),
        ],
        "{}",
    )
    .await;
    let head = store.verify_audit(&acme).await.unwrap().head.unwrap();
    audit_all(&store, &acme, &[("admin", "user.role.change", "u3")], "{}").await;
    let anchored_at_3 = store.verify_audit(&acme).await.unwrap().head.unwrap();
    owner.execute("DELETE FROM audit_log WHERE seq = 3").await;
    assert_eq!(
        store.verify_audit(&acme).await.unwrap().problem,
        None,
        "the chain alone sees nothing"
    );
    let check = store
        .verify_audit_against(&acme, Some(&anchored_at_3))
        .await
        .unwrap();
    assert_eq!(check.problem.as_ref().map(|p| p.0), Some(3), "{check:?}");
    assert!(check.problem.unwrap().1.contains("anchored at row 3"));
    // An older anchor still holds; a forged one does not.
    let check = store
        .verify_audit_against(&acme, Some(&head))
        .await
        .unwrap();
    assert_eq!(check.problem, None);
    let forged = winnerr_store::AuditHead {
        seq: 2,
        hash: "0".repeat(64),
    };
    let check = store
        .verify_audit_against(&acme, Some(&forged))
        .await
        .unwrap();
    assert_eq!(check.problem.as_ref().map(|p| p.0), Some(2), "{check:?}");
    fixture.finish().await;
}

async fn rotating_keys_re_encrypts_every_value_under_the_new_key(kind: Kind) {
    use base64::Engine;
    let fixture = Fixture::new(kind).await;
    let store = fixture.store.clone();
    let acme = "acme".parse().unwrap();
    let fields = winnerr_store::PersonFields {
        first_name: Some("Ana".into()),
        email: Some("ana@example.com".into()),
        phone: Some("+15550100123".into()),
        ..Default::default()
    };
    let person = store.create_person(&acme, &fields).await.unwrap();

    let new_key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let both = winnerr_store::Keyring::parse(
        &format!("k2:{new_key},{}", winnerr_store::crypto::DEV_KEYS),
        winnerr_store::crypto::DEV_LOOKUP_KEY,
    )
    .unwrap();
    let rotated = Store::connect(&fixture.db.url(), 2, both).await.unwrap();
    assert_eq!(rotated.rotate_keys(&acme, "admin-1").await.unwrap(), 2);
    assert_eq!(
        rotated.rotate_keys(&acme, "admin-1").await.unwrap(),
        0,
        "nothing left under the old key"
    );

    // The old key can now be dropped: the new one alone reads everything.
    let only_new = winnerr_store::Keyring::parse(
        &format!("k2:{new_key}"),
        winnerr_store::crypto::DEV_LOOKUP_KEY,
    )
    .unwrap();
    let after = Store::connect(&fixture.db.url(), 1, only_new)
        .await
        .unwrap();
    assert_eq!(
        after.get_person(&acme, &person.id).await.unwrap(),
        Some(person.clone())
    );
    assert_eq!(
        after
            .find_people_by_phone(&acme, "+1 555 010 0123")
            .await
            .unwrap(),
        vec![person]
    );
    let mut owner = fixture.db.owner().await;
    let key_ids: (String, String) = raw!(&mut owner, |conn| {
        sqlx::query_as("SELECT email_key_id, phone_key_id FROM people")
            .fetch_one(conn)
            .await
            .unwrap()
    });
    assert_eq!(key_ids, ("k2".to_string(), "k2".to_string()));
    let check = after.verify_audit(&acme).await.unwrap();
    assert_eq!((check.rows, check.problem), (2, None));
    fixture.finish().await;
}

/// Tables and their columns, as the database itself lists them (the migrations' own bookkeeping
/// left out).
async fn schema(owner: &mut Owner) -> std::collections::BTreeMap<String, Vec<String>> {
    let rows: Vec<(String, String)> = match owner {
        Owner::Postgres(conn) => sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' \
             ORDER BY table_name, column_name",
        )
        .fetch_all(conn)
        .await
        .unwrap(),
        Owner::Sqlite(conn) => sqlx::query_as(
            "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' \
             AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY m.name, c.name",
        )
        .fetch_all(conn)
        .await
        .unwrap(),
    };
    let mut tables = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (table, column) in rows {
        tables.entry(table).or_default().push(column);
    }
    tables
}

/// The two schemas, migrated from their own folders (`store/migrations/`,
/// `store/migrations-sqlite/`), have the same tables with the same columns: a migration added to
/// one database and forgotten in the other fails here, not in production on the other database.
#[tokio::test]
async fn postgres_and_sqlite_migrations_make_the_same_tables_and_columns() {
    let (postgres, sqlite) = (
        Fixture::new(Kind::Postgres).await,
        Fixture::new(Kind::Sqlite).await,
    );
    let on_postgres = schema(&mut postgres.db.owner().await).await;
    let on_sqlite = schema(&mut sqlite.db.owner().await).await;
    assert!(on_postgres.len() >= 10, "{on_postgres:?}");
    let names =
        |s: &std::collections::BTreeMap<String, Vec<String>>| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&on_postgres), names(&on_sqlite), "the same tables");
    for (table, columns) in &on_postgres {
        assert_eq!(columns, &on_sqlite[table], "the columns of {table}");
    }
    postgres.db.remove().await;
    sqlite.db.remove().await;
}
