//! Calls through the real WebSocket with the real models: transcripts per track, interims before
//! their finals, sentiment on every final, nothing for silence and line noise, and a final for a
//! track cut off mid-word.

use std::sync::Arc;

use winnerr_events::{Envelope, Event, Role, Track, Transcript};
use winnerr_ingest::simulator::decode_wav_8k;
use winnerr_ingest::{CallScript, Pace};
use winnerr_models::text::word_errors;

use crate::helpers::*;

fn clip(name: &str) -> Vec<i16> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/audio")
        .join(name);
    decode_wav_8k(std::fs::File::open(&path).unwrap(), name).unwrap()
}

fn silence(seconds: f32) -> Vec<i16> {
    vec![0; (seconds * 8000.0) as usize]
}

fn transcripts(events: &[Arc<Envelope>]) -> Vec<&Transcript> {
    events
        .iter()
        .filter_map(|e| {
            if let Event::Transcript(t) = &e.event {
                Some(t)
            } else {
                None
            }
        })
        .collect()
}

fn finals_text(events: &[Arc<Envelope>], track: Track) -> String {
    let finals: Vec<&str> = transcripts(events)
        .into_iter()
        .filter(|t| t.is_final && t.track == track)
        .map(|t| t.text.as_str())
        .collect();
    finals.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_track_call_is_transcribed_per_track_with_interims_first_and_sentiment_on_finals() {
    let test = spawn_app_with(|c| c.asr = true).await;
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    // The caller says two things; the agent answers after both.
    let (goforward, forever, cards) = (
        clip("ps_goforward.wav"),
        clip("ps_forever_input_2.wav"),
        clip("ps_cards_005.wav"),
    );
    let mut inbound = goforward.clone();
    inbound.extend(silence(1.2));
    inbound.extend(&forever);
    inbound.extend(silence(1.2 + cards.len() as f32 / 8000.0 + 1.0));
    let mut outbound =
        silence(goforward.len() as f32 / 8000.0 + 1.2 + forever.len() as f32 / 8000.0 + 1.2);
    outbound.extend(&cards);
    outbound.extend(silence(1.0));
    outbound.truncate(inbound.len());
    let mut script = CallScript::new(identity("acme", Some("agent-1"), Some("lead-1")), inbound);
    script.outbound = Some(outbound);
    script.pace = Pace::RealTime;
    test.simulator().play(&script, |_| {}).await.unwrap();

    let events = manager.call_events(&call_id(&script.call_sid)).await;
    let caller = finals_text(&events, Track::Inbound);
    let agent = finals_text(&events, Track::Outbound);
    let (errors, words) = word_errors(
        "go forward ten meters feels like these days go on forever",
        &caller,
    );
    assert!(errors as f64 / words as f64 <= 0.15, "caller: {caller:?}");
    let (errors, words) = word_errors("eight of spades four of clubs seven of hearts", &agent);
    assert!(errors as f64 / words as f64 <= 0.15, "agent: {agent:?}");

    let all = transcripts(&events);
    let finals: Vec<&&Transcript> = all.iter().filter(|t| t.is_final).collect();
    assert_eq!(finals.len(), 3, "three utterances: {all:#?}");
    for f in &finals {
        let s = f
            .sentiment
            .as_ref()
            .unwrap_or_else(|| panic!("final without sentiment: {f:?}"));
        assert!((s.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-3);
        assert!(f.start_ms < f.end_ms && f.last_voiced_at_ms > 0);
        // Interims of this utterance all come before it.
        let position = all.iter().position(|t| std::ptr::eq(*t, **f)).unwrap();
        let interims: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.is_final && t.track == f.track && t.utterance == f.utterance)
            .map(|(i, _)| i)
            .collect();
        assert!(
            interims.iter().all(|&i| i < position),
            "an interim after its final: {all:#?}"
        );
        for &i in &interims {
            assert!(all[i].text.starts_with(&all[i].stable_text), "{:?}", all[i]);
        }
    }
    // Interims came. Not one for every utterance: a worker that falls behind (on a busy machine,
    // as in CI beside other builds) sheds interims so finals keep their latency, and a 2 s
    // utterance may then get none.
    assert!(
        all.iter().any(|t| !t.is_final),
        "no interim in the call: {all:#?}"
    );
    // The end of the call comes after every transcript.
    assert!(matches!(
        events.last().map(|e| &e.event),
        Some(Event::CallEnded(_))
    ));
}

/// Hiss (about -30 dBFS) between stretches of silence.
fn hiss() -> Vec<i16> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut audio = silence(1.0);
    audio.extend((0..2 * 8000).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 48) as i16 as f32 * 0.05) as i16
    }));
    audio.extend(silence(1.0));
    audio
}

/// Whisper's own guards: with the energy detector the hiss is "speech" and reaches the model,
/// which must still give no text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_and_line_noise_give_no_transcript() {
    let test = spawn_app_with(|c| {
        c.asr = true;
        c.vad = "energy".into();
    })
    .await;
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), hiss());
    script.pace = Pace::Fast;
    test.simulator().play(&script, |_| {}).await.unwrap();
    let events = manager.call_events(&call_id(&script.call_sid)).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, Event::AudioActivity(_))),
        "the noise should count as activity, or this test shows nothing"
    );
    assert!(
        transcripts(&events).is_empty(),
        "noise was transcribed: {:?}",
        transcripts(&events)
    );
}

/// The neural detector (the default) does not take the hiss for speech at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_noise_is_not_speech_to_the_neural_detector() {
    let test = spawn_app_with(|c| c.asr = true).await;
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), hiss());
    script.pace = Pace::Fast;
    test.simulator().play(&script, |_| {}).await.unwrap();
    let events = manager.call_events(&call_id(&script.call_sid)).await;
    let activity: Vec<_> = events
        .iter()
        .filter(|e| matches!(&e.event, Event::AudioActivity(_)))
        .collect();
    assert!(activity.is_empty(), "noise counted as speech: {activity:?}");
    assert!(transcripts(&events).is_empty());
}

/// A caller over continuous pink noise (15 dB below the speech: a car, a kitchen) who says three
/// things with pauses between: one final per utterance, each with sentiment, on the
/// organization's feed. The energy gate never saw the pauses in such noise and made one long
/// utterance of the three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_background_noise_gets_one_final_per_utterance_with_sentiment() {
    let test = spawn_app_with(|c| c.asr = true).await;
    noisy_call_gets_one_final_per_utterance(&test, Pace::Fast).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_turn_model_a_noisy_call_still_gets_one_final_per_utterance() {
    let test = spawn_app_with(|c| {
        c.asr = true;
        c.turn = "smart".into();
    })
    .await;
    // In real time, so the model's answers come before the fallback silence ends the utterances.
    noisy_call_gets_one_final_per_utterance(&test, Pace::RealTime).await;
    let metrics = test.metrics().await;
    let decided = ["complete", "not_yet"].map(|o| {
        metric(
            &metrics,
            &format!("winnerr_voice_turn_decisions_total{{outcome=\"{o}\"}}"),
        )
    });
    assert!(
        decided.iter().sum::<f64>() >= 3.0,
        "the model heard each pause: {decided:?}"
    );
}

/// Three clips with 1.5 s gaps over pink noise at 15 dB SNR: a final per clip, each covering its
/// own clip's speech, with text and sentiment, on the organization's feed.
async fn noisy_call_gets_one_final_per_utterance(test: &TestApp, pace: Pace) {
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut speech = silence(1.0);
    let mut voiced = Vec::new();
    for name in [
        "ps_goforward.wav",
        "ps_forever_input_2.wav",
        "ps_cards_005.wav",
    ] {
        let clip = clip(name);
        let span = winnerr_testkit::noise::speech_span(&clip);
        voiced.push(speech.len() + span.start..speech.len() + span.end);
        speech.extend(&clip);
        speech.extend(silence(1.5));
    }
    let noise = winnerr_testkit::noise::pink(speech.len(), 3);
    let audio = winnerr_testkit::noise::mix(&speech, &voiced, &noise, 15.0);
    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), audio);
    script.pace = pace;
    test.simulator().play(&script, |_| {}).await.unwrap();
    let events = manager.call_events(&call_id(&script.call_sid)).await;
    let finals: Vec<&Transcript> = transcripts(&events)
        .into_iter()
        .filter(|t| t.is_final && t.track == Track::Inbound)
        .collect();
    let summary: Vec<_> = finals
        .iter()
        .map(|t| (t.start_ms, t.end_ms, t.text.as_str()))
        .collect();
    assert_eq!(finals.len(), 3, "one final per utterance: {summary:?}");
    for (t, range) in finals.iter().zip(&voiced) {
        let (start, end) = (range.start as u64 / 8, range.end as u64 / 8);
        assert!(
            t.start_ms < end && t.end_ms > start,
            "each final covers its own utterance: {summary:?}"
        );
        assert!(!t.text.is_empty() && t.sentiment.is_some(), "{t:?}");
    }
}

/// A clip's speech without the quiet before and after it.
fn speech_of(name: &str) -> Vec<i16> {
    let clip = clip(name);
    clip[winnerr_testkit::noise::speech_span(&clip)].to_vec()
}

/// Each pause starts the utterance's final (a speculation, while the worker has time): the one
/// the caller goes on after (300 ms, under the end-of-utterance silence) is set aside, so the
/// utterance's one final holds the words after it too; an utterance that ends in its pause is
/// published from its speculation, with sentiment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_speculative_final_is_set_aside_when_the_caller_goes_on_after_the_pause() {
    let test = spawn_app_with(|c| c.asr = true).await;
    assert_eq!(test.config.speculate_after_ms, 200, "on by default");
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut audio = silence(1.0);
    audio.extend(speech_of("ps_goforward.wav")); // go forward ten meters
    audio.extend(silence(0.3));
    audio.extend(speech_of("ps_cards_003.wav")); // seven of clubs
    audio.extend(silence(1.5));
    audio.extend(speech_of("ps_cards_005.wav")); // eight of spades four of clubs seven of hearts
    audio.extend(silence(1.5));
    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), audio);
    script.pace = Pace::RealTime;
    test.simulator().play(&script, |_| {}).await.unwrap();
    let events = manager.call_events(&call_id(&script.call_sid)).await;
    let finals: Vec<(String, bool)> = transcripts(&events)
        .into_iter()
        .filter(|t| t.is_final && t.track == Track::Inbound)
        .map(|t| (t.text.to_lowercase(), t.sentiment.is_some()))
        .collect();
    assert_eq!(finals.len(), 2, "{finals:?}");
    let (first, second) = (&finals[0].0, &finals[1].0);
    assert!(
        first.contains("forward") && first.contains("clubs"),
        "the final holds the speech after the pause: {finals:?}"
    );
    assert!(
        second.contains("spades") && !second.contains("forward"),
        "{finals:?}"
    );
    assert!(finals.iter().all(|f| f.1), "sentiment on each: {finals:?}");
    let metrics = test.metrics().await;
    let outcome = |o: &str| {
        metric(
            &metrics,
            &format!("winnerr_voice_speculative_finals_total{{outcome=\"{o}\"}}"),
        )
    };
    assert!(
        outcome("wasted") >= 1.0,
        "the 300 ms pause was speculated on"
    );
    assert!(outcome("used") >= 1.0, "a final came from its pause");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_that_stops_mid_word_gets_its_final_at_stop() {
    let test = spawn_app_with(|c| c.asr = true).await;
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    // "go forward ten meters", cut inside "ten", and the stream stops right there.
    let mut audio = clip("ps_goforward.wav");
    audio.truncate((1.9 * 8000.0) as usize);
    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), audio);
    script.pace = Pace::Fast;
    test.simulator().play(&script, |_| {}).await.unwrap();
    let events = manager.call_events(&call_id(&script.call_sid)).await;
    let text = finals_text(&events, Track::Inbound);
    assert!(
        text.to_lowercase().contains("forward"),
        "final at stop: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_transcripts_are_stored_encrypted_and_served_by_the_rest_api() {
    let db = winnerr_testkit::TestDatabase::create().await;
    let test = spawn_app_with(|c| {
        c.asr = true;
        on_postgres(c, &db);
    })
    .await;
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut audio = clip("ps_goforward.wav");
    audio.extend(silence(1.0));
    let mut script = CallScript::new(identity("acme", Some("agent-1"), None), audio);
    script.pace = Pace::Fast;
    test.simulator().play(&script, |_| {}).await.unwrap();
    let events = manager.call_events(&call_id(&script.call_sid)).await;
    let spoken = finals_text(&events, Track::Inbound);
    assert!(!spoken.is_empty());

    let token = test.token("acme", "manager-1", Role::Manager);
    let url = format!(
        "http://{}/api/calls/{}/utterances",
        test.app.addr, script.call_sid
    );
    let items = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let response = reqwest::Client::new()
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            match body["items"].as_array() {
                Some(items) if !items.is_empty() => return items.clone(),
                _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("the utterance is stored");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["text"], spoken.as_str());
    assert_eq!(items[0]["track"], "inbound");
    assert!(items[0]["sentiment"].is_string(), "{items:?}");
    // At rest the text is ciphertext.
    use sqlx::Connection;
    let mut owner = sqlx::PgConnection::connect(&db.owner_url).await.unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT text_ciphertext FROM utterances")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("forward"));
    test.app.shutdown().await;
    db.drop_database().await;
}

/// Card numbers read out on a call (synthesized callers of `assets/numbers`, through the phone
/// path) never leave the voice stage: the finals and interims on the feed carry `[CARD]` and list
/// the redaction (kind and span, no value), the stored transcript holds the mask too, and each is
/// counted; an organization whose policy turns cards off gets the digits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_numbers_are_redacted_before_anything_leaves_the_voice_stage() {
    let test = spawn_app_with(|c| {
        c.asr = true;
        c.redact = Some("open-book=card:off".into());
    })
    .await;
    let numbers = |name: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/numbers")
            .join(name);
        decode_wav_8k(std::fs::File::open(&path).unwrap(), name).unwrap()
    };
    let before = test.metrics().await;
    let mut said = Vec::new();
    for (org, clips) in [
        ("acme", ["cards_001.wav", "cards_002.wav"]),
        ("open-book", ["cards_001.wav", "cards_002.wav"]),
    ] {
        // 15 s of speech at once per call: the finals come as fast as Whisper gets through it.
        let mut manager = test
            .feed(org, "manager-1", Role::Manager)
            .await
            .with_patience(std::time::Duration::from_secs(60));
        let mut audio = Vec::new();
        for name in clips {
            audio.extend(numbers(name));
            audio.extend(silence(1.5));
        }
        let mut script = CallScript::new(identity(org, Some("agent-1"), None), audio);
        script.pace = Pace::Fast;
        test.simulator().play(&script, |_| {}).await.unwrap();
        let events = manager.call_events(&call_id(&script.call_sid)).await;
        said.push((org, script.call_sid.clone(), events));
    }
    let digits_of = |text: &str| -> String { text.chars().filter(char::is_ascii_digit).collect() };
    let (_, acme_call, acme) = &said[0];
    let finals: Vec<&Transcript> = transcripts(acme)
        .into_iter()
        .filter(|t| t.is_final)
        .collect();
    println!(
        "acme heard {:?}",
        finals.iter().map(|t| &t.text).collect::<Vec<_>>()
    );
    let masked: usize = finals.iter().map(|t| t.redactions.len()).sum();
    assert!(masked >= 1, "a card was redacted: {finals:?}");
    for t in transcripts(acme) {
        assert!(
            !digits_of(&t.text).contains("41111111") && !digits_of(&t.text).contains("42424242"),
            "card digits on the feed: {:?}",
            t.text
        );
        assert!(
            !digits_of(&t.stable_text).contains("41111111"),
            "{:?}",
            t.stable_text
        );
        for r in &t.redactions {
            assert_eq!(r.kind, "card");
            assert!(
                t.text[r.start..r.end].starts_with("[CARD"),
                "{:?} {r:?}",
                t.text
            );
        }
    }
    // The policy that keeps cards: the digits come through.
    let (_, _, open) = &said[1];
    let kept: Vec<&Transcript> = transcripts(open)
        .into_iter()
        .filter(|t| t.is_final)
        .collect();
    let digits: String = kept.iter().map(|t| digits_of(&t.text)).collect();
    assert!(digits.len() >= 12, "the digits heard are kept: {kept:?}");
    assert!(
        kept.iter()
            .all(|t| t.redactions.is_empty() && !t.text.contains("[CARD"))
    );

    // Stored as redacted.
    let token = test.token("acme", "manager-1", Role::Manager);
    let url = format!("http://{}/api/calls/{acme_call}/utterances", test.app.addr);
    let items = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let body: serde_json::Value = reqwest::Client::new()
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_default();
            match body["items"].as_array() {
                Some(items) if items.len() >= finals.len() => return items.clone(),
                _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("the utterances are stored");
    let stored: String = items
        .iter()
        .map(|i| i["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(stored.contains("[CARD]"), "{stored}");
    assert!(!digits_of(&stored).contains("41111111"), "{stored}");
    let series = r#"winnerr_voice_redactions_total{kind="card",transcript="final"}"#;
    let page = test.metrics().await;
    assert!(metric(&page, series) - metric(&before, series) >= masked as f64);
    test.app.shutdown().await;
}

/// Talk signals and coaching (issue 21, item 2) over real sockets: an agent who talks while the
/// customer says nothing gets a monologue alert on the manager's feed (the organization's
/// threshold, 2 s here); the call's summary before its end says the agent did all the talking and
/// counts the alert, and the CRM's record of the call keeps both; another organization's calls,
/// with coaching off, raise none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_monologue_raises_a_coaching_alert_and_the_signals_say_who_talked() {
    use winnerr_events::AlertKind;
    let test = spawn_app_with(|c| {
        c.coaching =
            Some("acme=monologue:2,talk_ratio:off,silence:off,interruptions:off;*=off".into());
    })
    .await;
    for (org, coached) in [("acme", true), ("globex", false)] {
        let mut manager = test.feed(org, "manager-1", Role::Manager).await;
        let mut script = CallScript::new(identity(org, Some("agent-1"), None), silence(5.0));
        script.outbound = Some(agent_speech());
        test.simulator().play(&script, |_| {}).await.unwrap();
        let events = manager.call_events(&call_id(&script.call_sid)).await;
        let monologues: Vec<u64> = events
            .iter()
            .filter_map(|e| match &e.event {
                Event::Alert(alert) => match alert.kind {
                    AlertKind::Monologue { ms } => {
                        assert_eq!(alert.track, Track::Outbound);
                        Some(ms)
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(monologues.len(), usize::from(coached), "{org}: {events:?}");
        assert!(monologues.iter().all(|&ms| ms > 2_000), "{monologues:?}");
        let Some(Event::CallSummary(summary)) = events.iter().rev().nth(1).map(|e| &e.event) else {
            panic!("the call's summary comes just before its end: {events:?}")
        };
        assert_eq!(
            summary.alerts.get("monologue").copied(),
            coached.then_some(1),
            "{summary:?}"
        );
        assert_eq!(
            summary.customer_sentiment, None,
            "the customer said nothing"
        );
        let last = &summary.signals;
        assert!(last.last, "{last:?}");
        assert_eq!((last.agent_turns, last.customer_turns), (1, 0), "{last:?}");
        assert!(last.agent_talk_ms > 2_000, "{last:?}");
        assert_eq!(last.customer_talk_ms, 0, "{last:?}");
        assert_eq!(last.agent_talk_ratio, Some(1.0), "{last:?}");
        assert!(last.longest_agent_turn_ms > 2_000, "{last:?}");
        // The CRM's record of the call keeps them.
        let stored = test.completed_call(org, &script.call_sid).await;
        assert_eq!(
            stored["signals"],
            serde_json::to_value(last).unwrap(),
            "{stored}"
        );
        assert_eq!(
            stored["summary"],
            serde_json::to_value(summary).unwrap(),
            "{stored}"
        );
    }
}
