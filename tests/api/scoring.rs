//! Lead scoring end to end: a call moves its lead's score on the feed and in Postgres, up for an
//! urgent, warm customer and down for a hostile one, and no organization's events touch another's
//! lead of the same id.

use std::sync::Arc;

use winnerr_events::{
    ActivityState, AudioActivity, CallContext, CallEnded, CallId, CallStarted, EndReason, Envelope,
    Event, LeadId, LeadScore, MediaFormat, OrgId, Role, SentimentScore, StreamStats, Track,
    Transcript, UserId,
};
use winnerr_ingest::simulator::decode_wav_8k;
use winnerr_ingest::{CallScript, Pace};
use winnerr_scoring::{NoCrm, Scorer};

use crate::helpers::*;

/// The demo call's first 23.5 s, up to the end of the customer's second line.
fn demo_track(name: &str) -> Vec<i16> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/audio")
        .join(name);
    let mut audio = decode_wav_8k(std::fs::File::open(&path).unwrap(), name).unwrap();
    audio.truncate(23_500 * 8);
    audio
}

/// The score events of `call` on `feed`: those before its end, and any its end caused (a score
/// event comes only when the score or its reasons changed, so the end may cause none).
async fn scores_of(feed: &mut FeedClient, call: &CallId) -> Vec<LeadScore> {
    scores_and_finals(feed, call).await.0
}

/// The score events of `call` and the customer's final transcripts, in order.
async fn scores_and_finals(feed: &mut FeedClient, call: &CallId) -> (Vec<LeadScore>, Vec<String>) {
    let (mut scores, mut finals) = (Vec::new(), Vec::new());
    let mut ended = false;
    loop {
        let event = if ended {
            // Quiet for this long after the end: the scorer has nothing more to say.
            match tokio::time::timeout(std::time::Duration::from_secs(3), feed.next_event()).await {
                Ok(event) => event,
                Err(_) => return (scores, finals),
            }
        } else {
            feed.next_event().await
        };
        assert_eq!(&event.call_id, call, "event of another call: {event:?}");
        match &event.event {
            Event::CallEnded(_) => ended = true,
            Event::LeadScore(score) => scores.push(score.clone()),
            Event::Transcript(t) if t.is_final && t.track == Track::Inbound => {
                finals.push(t.text.clone())
            }
            _ => {}
        }
    }
}

fn check_explained(score: &LeadScore) {
    let sum = score.intercept + score.factors.iter().map(|f| f.contribution).sum::<f32>();
    assert!(
        (sum - score.logit).abs() < 1e-3,
        "contributions add up to {sum}, the logit is {}",
        score.logit
    );
    assert_eq!(
        score.score,
        (100.0 / (1.0 + (-score.logit).exp())).round() as u8
    );
}

fn top_positive(score: &LeadScore) -> Vec<&str> {
    score.raising(3).map(|f| f.feature.as_str()).collect()
}

fn top_negative(score: &LeadScore) -> Vec<&str> {
    score.lowering(3).map(|f| f.feature.as_str()).collect()
}

/// The demo call, spoken: the customer loves the photos, is pre-approved and their lease ends
/// next month (the call's first two customer lines). Transcribed by Whisper, scored for sentiment, scored as a lead, stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_warm_call_raises_its_leads_score_on_the_feed_and_in_postgres() {
    let db = winnerr_testkit::TestDatabase::create().await;
    let test = spawn_app_with(|c| {
        c.asr = true;
        c.scoring = true;
        on_postgres(c, &db);
    })
    .await;
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut script = CallScript::new(
        identity("acme", Some("agent-1"), Some("lead-warm")),
        demo_track("demo_customer.wav"),
    );
    script.outbound = Some(demo_track("demo_agent.wav"));
    // In real time: played as fast as the socket takes it, a loaded test machine's voice stage
    // falls behind and drops audio, as it would for a real caller on an overloaded node.
    script.pace = Pace::RealTime;
    test.simulator().play(&script, |_| {}).await.unwrap();
    let (scores, finals) = scores_and_finals(&mut manager, &call_id(&script.call_sid)).await;
    println!("the customer said: {finals:?}");

    let (first, last) = (&scores[0], scores.last().unwrap());
    for score in &scores {
        check_explained(score);
        assert_eq!(score.lead_id.as_str(), "lead-warm");
        assert_eq!(score.model_version, "prior-1");
    }
    println!(
        "scores over the call: {:?}; reasons up {:?}, down {:?}",
        scores.iter().map(|s| s.score).collect::<Vec<_>>(),
        top_positive(last),
        top_negative(last)
    );
    assert!(
        last.score >= first.score + 10,
        "the call should raise the score: {} → {}",
        first.score,
        last.score
    );
    assert!(
        top_positive(last).contains(&"urgency_cues"),
        "urgency is a top reason: {:?}",
        top_positive(last)
    );

    // Every score the feed showed is in the lead's history in Postgres.
    let store =
        winnerr_store::Store::connect(&db.service_url, 1, winnerr_store::Keyring::development())
            .await
            .unwrap();
    let org = OrgId::parse("acme").unwrap();
    let stored = tokio::time::timeout(WAIT, async {
        loop {
            let stored = store.person_scores(&org, "lead-warm").await.unwrap();
            if stored.len() >= scores.len() {
                return stored;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the scores are stored");
    assert_eq!(stored.len(), scores.len());
    assert_eq!(stored[0].score, i16::from(last.score));
    // The CRM's record of the call says how it moved the score, and why, in words.
    let call = test.completed_call("acme", &script.call_sid).await;
    assert_eq!(call["score"]["after"], last.score, "{call}");
    assert!(
        call["score"]["raising"].as_array().is_some_and(|r| r
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.starts_with("urgency cues")))),
        "{call}"
    );
    test.app.shutdown().await;
}

/// A call as the voice stage would report it, for a lead of an organization.
struct SimulatedCall {
    ctx: CallContext,
}

impl SimulatedCall {
    fn new(org: &str, call: &str, lead: &str) -> Self {
        Self {
            ctx: CallContext {
                org_id: OrgId::parse(org).unwrap(),
                call_id: CallId::parse(call).unwrap(),
                agent_id: Some(UserId::parse("agent-1").unwrap()),
                lead_id: Some(LeadId::parse(lead).unwrap()),
            },
        }
    }

    fn started(&self) -> Envelope {
        Envelope::new(
            &self.ctx,
            Event::CallStarted(CallStarted {
                stream_sid: format!("MZ{}", self.ctx.call_id),
                account_sid: "AC1".into(),
                lead_id: self.ctx.lead_id.clone(),
                tracks: vec![Track::Inbound, Track::Outbound],
                media_format: MediaFormat::twilio_mulaw(),
                consent: None,
            }),
        )
    }

    /// The agent speaking for 4 s, then the customer saying `text` (3 s) with sentiment `score`.
    fn says(&self, utterance: u32, text: &str, score: f32) -> [Envelope; 3] {
        let start_ms = u64::from(utterance) * 10_000;
        [
            Envelope::new(
                &self.ctx,
                Event::AudioActivity(AudioActivity {
                    track: Track::Outbound,
                    state: ActivityState::Silent,
                    at_ms: start_ms - 1_000,
                    spoken_ms: Some(4_000),
                }),
            ),
            Envelope::new(
                &self.ctx,
                Event::AudioActivity(AudioActivity {
                    track: Track::Inbound,
                    state: ActivityState::Silent,
                    at_ms: start_ms + 3_000,
                    spoken_ms: Some(3_000),
                }),
            ),
            Envelope::new(
                &self.ctx,
                Event::Transcript(Transcript {
                    track: Track::Inbound,
                    utterance,
                    is_final: true,
                    text: text.into(),
                    stable_text: text.into(),
                    start_ms,
                    end_ms: start_ms + 3_000,
                    last_voiced_at_ms: winnerr_events::now_ms(),
                    sentiment: Some(SentimentScore {
                        label: if score > 0.0 { "positive" } else { "negative" }.into(),
                        probabilities: [(-score).max(0.0), 1.0 - score.abs(), score.max(0.0)],
                        score,
                        rolling: score,
                    }),
                    redactions: Vec::new(),
                }),
            ),
        ]
    }

    fn ended(&self) -> Envelope {
        Envelope::new(
            &self.ctx,
            Event::CallEnded(CallEnded {
                reason: EndReason::Completed,
                duration_ms: 30_000,
                stats: StreamStats::default(),
            }),
        )
    }

    /// Everything the call publishes, in order.
    fn events(&self, lines: &[(&str, f32)]) -> Vec<Envelope> {
        let mut events = vec![self.started()];
        for (n, (text, score)) in lines.iter().enumerate() {
            events.extend(self.says(n as u32 + 1, text, *score));
        }
        events.push(self.ended());
        events
    }
}

const HOSTILE: &[(&str, f32)] = &[
    ("Who is this? I'm not interested.", -0.7),
    ("This is a waste of time, we're just looking.", -0.85),
    ("Stop calling me.", -0.9),
];
const URGENT: &[(&str, f32)] = &[
    ("Hi! Yes, we loved the house.", 0.8),
    ("We're pre-approved and our lease ends next month.", 0.6),
    ("Could we see it this weekend?", 0.7),
];

/// Two organizations each have a lead `lead-1` on a call at the same time: one hostile, one
/// urgent and warm. Each feed shows only its own lead's scores, moving the right way, and exactly
/// the scores that organization's events alone give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_call_lowers_its_leads_score_and_no_organization_sees_anothers() {
    let test = spawn_app_with(|c| c.scoring = true).await;
    let mut acme = test.feed("acme", "manager-1", Role::Manager).await;
    let mut globex = test.feed("globex", "manager-1", Role::Manager).await;
    let hostile = SimulatedCall::new("acme", "CA-hostile", "lead-1");
    let urgent = SimulatedCall::new("globex", "CA-urgent", "lead-1");
    let hostile_events = hostile.events(HOSTILE);
    let urgent_events = urgent.events(URGENT);
    // Interleaved, as two live calls are.
    for pair in hostile_events.iter().zip(&urgent_events) {
        test.app.bus.publish(pair.0.clone()).await.unwrap();
        test.app.bus.publish(pair.1.clone()).await.unwrap();
    }

    let acme_scores = scores_of(&mut acme, &hostile.ctx.call_id).await;
    let globex_scores = scores_of(&mut globex, &urgent.ctx.call_id).await;
    for score in acme_scores.iter().chain(&globex_scores) {
        check_explained(score);
    }
    let (first, last) = (&acme_scores[0], acme_scores.last().unwrap());
    assert!(
        last.score < first.score && last.logit < first.logit - 1.0,
        "a hostile call lowers the score: {} → {} (logit {} → {})",
        first.score,
        last.score,
        first.logit,
        last.logit
    );
    let down = top_negative(last);
    assert!(
        down.contains(&"no_hurry") && down.contains(&"sentiment_mean"),
        "the reasons say why: {down:?}"
    );
    let (first, last) = (&globex_scores[0], globex_scores.last().unwrap());
    assert!(
        last.score >= first.score + 10,
        "an urgent, warm call raises the score: {} → {}",
        first.score,
        last.score
    );

    // Each organization's scores are exactly those of its own events scored alone.
    for (events, seen) in [
        (&hostile_events, &acme_scores),
        (&urgent_events, &globex_scores),
    ] {
        let mut alone = Scorer::new(Arc::new(NoCrm));
        let mut expected = Vec::new();
        for event in events.iter() {
            if let Some(Envelope {
                event: Event::LeadScore(score),
                ..
            }) = alone.handle(event).await
            {
                expected.push((score.score, score.logit));
            }
        }
        let seen: Vec<(u8, f32)> = seen.iter().map(|s| (s.score, s.logit)).collect();
        assert_eq!(seen, expected);
    }
    test.app.shutdown().await;
}

/// A synthetic history in Postgres (`winnerr scoring seed`) trains the organization's own model
/// (`winnerr scoring train`): each lead's record, read back as of its deal's close, gives the
/// features the generator made it with; the trained model measures well on held-out deals and
/// scores the organization's next call, while an organization with too few deals keeps the prior.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_trains_its_own_model_from_its_deals_in_postgres() {
    use winnerr::leads::{StoreLeads, history, synthetic_import, train_organization};
    use winnerr_scoring::features::{FEATURES, features};
    use winnerr_scoring::synth;

    let db = winnerr_testkit::TestDatabase::create().await;
    winnerr_store::migrate(&db.owner_url).await.unwrap();
    let store =
        winnerr_store::Store::connect(&db.service_url, 4, winnerr_store::Keyring::development())
            .await
            .unwrap();
    let (acme, globex) = (
        OrgId::parse("acme").unwrap(),
        OrgId::parse("globex").unwrap(),
    );
    let now = winnerr_events::now_ms();
    let generated = synth::generate(11, 1_000, now);
    let import = synthetic_import(&generated, 10);
    assert_eq!(
        store.import_leads(&acme, &import, "test").await.unwrap(),
        1_000
    );
    assert_eq!(
        store.import_leads(&acme, &import, "test").await.unwrap(),
        0,
        "a second import changes nothing"
    );
    // Globex has the same lead ids, fewer of them, and other histories.
    let small = synth::generate(12, 100, now);
    store
        .import_leads(&globex, &synthetic_import(&small, 10), "test")
        .await
        .unwrap();

    // Each closed lead's record as of its close gives back its generated features: activity,
    // calls, the customer's words (decrypted) and their sentiment. The source's closing rate is
    // the organization's record of other leads, not the generator's long-run rate.
    let window_ms = 90 * 86_400_000;
    let mut compared = 0;
    for (lead, imported) in generated.leads.iter().zip(&import) {
        let Some(deal) = imported.deal else { continue };
        if lead
            .history
            .activity
            .iter()
            .any(|a| a.at_ms + window_ms <= now)
        {
            continue; // older activity than a record holds
        }
        let record = store
            .lead_record_as_of(&acme, &lead.id, deal.closed_ms, "test")
            .await
            .unwrap()
            .expect("an imported lead has a record");
        let said: Vec<&str> = record
            .calls
            .iter()
            .flat_map(|c| c.customer.iter().map(|(text, _)| text.as_str()))
            .collect();
        let generated_said: Vec<&str> = lead
            .calls
            .iter()
            .flat_map(|c| c.lines.iter().map(|l| l.text))
            .collect();
        assert_eq!(said, generated_said, "{}", lead.id);
        let from_store = features(&history(record), now);
        let from_generator = features(&lead.history, now);
        for (j, feature) in FEATURES.iter().enumerate() {
            if feature.name != "source_conversion" {
                assert!(
                    (from_store[j] - from_generator[j]).abs() < 1e-4,
                    "{}: {} is {} from the store, {} generated",
                    lead.id,
                    feature.name,
                    from_store[j],
                    from_generator[j]
                );
            }
        }
        compared += 1;
    }
    println!("{compared} closed leads' records match their generated features");
    assert!(compared >= 700, "only {compared} leads compared");
    // The source's closing rate is what the organization's other closed leads of that source
    // say, smoothed toward its overall rate.
    for source in ["referral", "facebook"] {
        let lead = import
            .iter()
            .find(|l| l.source.as_deref() == Some(source))
            .unwrap();
        let others = || {
            import
                .iter()
                .filter(|l| l.id != lead.id)
                .filter_map(|l| Some((l, l.deal?)))
        };
        let count = |same: bool, won: bool| {
            others()
                .filter(|(l, d)| d.won == won && (!same || l.source == lead.source))
                .count() as u32
        };
        let overall = count(false, true) as f32 / (count(false, true) + count(false, false)) as f32;
        let expected =
            winnerr_scoring::features::source_rate(count(true, true), count(true, false), overall);
        let record = store
            .lead_record(&acme, &lead.id, "test")
            .await
            .unwrap()
            .unwrap();
        let rate = history(record).source_conversion;
        println!(
            "{source}: {} won, {} lost; rate {rate:.3}",
            count(true, true),
            count(true, false)
        );
        assert!(
            (rate - expected).abs() < 1e-5,
            "{source}: {rate}, expected {expected}"
        );
    }

    // Training: refused with too few deals, done with enough.
    let refused = train_organization(&store, &globex, "test")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("needs 200 closed deals"),
        "{refused}"
    );
    assert!(store.lead_model(&globex).await.unwrap().is_none());
    let trained = train_organization(&store, &acme, "test").await.unwrap();
    println!(
        "acme: {} won, {} lost, held-out AUC {:.3}",
        trained.won, trained.lost, trained.held_out_auc
    );
    assert_eq!(trained.won + trained.lost, 900);
    assert!(
        trained.held_out_auc >= 0.75,
        "held-out AUC {}",
        trained.held_out_auc
    );
    assert_eq!(
        store.lead_model(&acme).await.unwrap().unwrap().version,
        trained.version
    );

    // The next calls: acme's open lead under acme's model, globex's lead of the same id under
    // the prior, each with its own organization's history.
    let open = &import.iter().find(|l| l.deal.is_none()).unwrap().id;
    let mut scorer = Scorer::new(Arc::new(StoreLeads(store.clone())));
    let mut versions = Vec::new();
    for (org, call) in [("acme", "CA-acme-next"), ("globex", "CA-globex-next")] {
        let started = SimulatedCall::new(org, call, open).started();
        let score = match scorer.handle(&started).await.map(|e| e.event) {
            Some(Event::LeadScore(score)) => score,
            other => panic!("a call start scores its lead: {other:?}"),
        };
        versions.push(score.model_version);
    }
    assert_eq!(versions, [trained.version.clone(), "prior-1".to_owned()]);

    for org in [&acme, &globex] {
        let check = store.verify_audit(org).await.unwrap();
        assert!(check.problem.is_none(), "{org}: {:?}", check.problem);
    }
}
