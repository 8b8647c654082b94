//! A two-track call with DTMF reaches the feeds of its organization, in order, and nobody else's.

use winnerr_events::{ActivityState, EndReason, Event, Role, Track};
use winnerr_ingest::{CallScript, Pace};

use crate::helpers::*;

/// Caller speaks, 1 s pause, agent answers; keys pressed between.
fn conversation(org: &str, agent: &str) -> CallScript {
    let caller = caller_speech();
    let agent_audio = agent_speech();
    let gap = vec![0i16; 8000];
    let mut inbound = caller.clone();
    inbound.extend(&gap);
    inbound.extend(vec![0i16; agent_audio.len()]);
    let mut outbound = vec![0i16; caller.len()];
    outbound.extend(&gap);
    outbound.extend(&agent_audio);
    let mut script = CallScript::new(identity(org, Some(agent), Some("lead-42")), inbound);
    script.outbound = Some(outbound);
    script.dtmf = vec![
        (3000, Track::Inbound, '1'),
        (3100, Track::Inbound, '2'),
        (3200, Track::Outbound, '#'),
    ];
    script.pace = Pace::Fast;
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_track_call_arrives_in_order_on_its_organizations_feeds_only() {
    // The script hands over the call's audio at socket speed, many times real time: room for
    // all of it, so that the voice stage falling behind on a loaded machine (which a real-time
    // stream never makes it) does not drop frames this test counts.
    let test = spawn_app_with(|c| c.call_queue = 10_000).await;
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut own_agent = test.feed("acme", "agent-1", Role::Agent).await;
    let mut other_agent = test.feed("acme", "agent-2", Role::Agent).await;
    let mut other_org = test.feed("globex", "manager-9", Role::Manager).await;

    let script = conversation("acme", "agent-1");
    let frames = script.frames() as u64;
    let report = test.simulator().play(&script, |_| {}).await.unwrap();
    assert_eq!(report.close, Some((1000, "stream stopped".to_string())));
    assert_eq!(report.frames_sent, 2 * frames);

    let call = call_id(&script.call_sid);
    let events = manager.call_events(&call).await;
    for event in &events {
        assert_eq!(event.org_id.as_str(), "acme");
        assert_eq!(event.agent_id.as_ref().map(|a| a.as_str()), Some("agent-1"));
    }

    let Event::CallStarted(started) = &events[0].event else {
        panic!("first is {:?}", events[0])
    };
    assert_eq!(started.stream_sid, script.stream_sid);
    assert_eq!(started.tracks, vec![Track::Inbound, Track::Outbound]);
    assert_eq!(
        started.lead_id.as_ref().map(|l| l.as_str()),
        Some("lead-42")
    );

    let digits: Vec<(Track, char)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Dtmf(d) => Some((d.track, d.digit)),
            _ => None,
        })
        .collect();
    assert_eq!(
        digits,
        vec![
            (Track::Inbound, '1'),
            (Track::Inbound, '2'),
            (Track::Outbound, '#')
        ]
    );

    // Speech: the caller speaks first (from ~0.5 s), then the agent after the pause.
    let activity: Vec<(Track, ActivityState, u64)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::AudioActivity(a) => Some((a.track, a.state, a.at_ms)),
            _ => None,
        })
        .collect();
    let of = |track| {
        activity
            .iter()
            .filter(|a| a.0 == track)
            .map(|a| (a.1, a.2))
            .collect::<Vec<_>>()
    };
    let inbound = of(Track::Inbound);
    let outbound = of(Track::Outbound);
    assert!(inbound.len() >= 2 && outbound.len() >= 2, "{activity:?}");
    assert_eq!(inbound[0].0, ActivityState::Speaking);
    assert_eq!(inbound.last().unwrap().0, ActivityState::Silent);
    assert_eq!(outbound[0].0, ActivityState::Speaking);
    let caller_ms = caller_speech().len() as u64 / 8;
    assert!(
        inbound[0].1 < 1000,
        "caller starts speaking early: {inbound:?}"
    );
    assert!(inbound.last().unwrap().1 <= caller_ms, "{inbound:?}");
    assert!(
        outbound[0].1 >= caller_ms + 1000,
        "agent speaks after the pause: {outbound:?}"
    );

    let Event::CallEnded(ended) = &events.last().unwrap().event else {
        unreachable!()
    };
    assert_eq!(ended.reason, EndReason::Completed);
    assert_eq!(ended.stats.frames, [frames, frames]);
    assert_eq!(
        (
            ended.stats.missing,
            ended.stats.late,
            ended.stats.bad_frames,
            ended.stats.dropped
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(ended.duration_ms, frames * 20);

    // The call's own agent sees the very same events.
    let agent_view = own_agent.call_events(&call).await;
    assert_eq!(
        agent_view.iter().map(|e| e.id).collect::<Vec<_>>(),
        events.iter().map(|e| e.id).collect::<Vec<_>>()
    );

    // Another agent of the organization, and another organization, saw none of it: the first
    // event each receives is of a later call of their own.
    for (org, agent, feed) in [
        ("acme", "agent-2", &mut other_agent),
        ("globex", "agent-7", &mut other_org),
    ] {
        let mut script = CallScript::new(identity(org, Some(agent), None), vec![0i16; 1600]);
        script.pace = Pace::Fast;
        test.simulator().play(&script, |_| {}).await.unwrap();
        let first = feed.next_event().await;
        assert_eq!(
            first.call_id,
            call_id(&script.call_sid),
            "{org}/{agent} saw {first:?}"
        );
        assert!(matches!(first.event, Event::CallStarted(_)));
        assert_eq!(first.org_id.as_str(), org);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_ends_the_call_as_abandoned() {
    let test = spawn_app().await;
    let mut manager = test.feed("acme", "manager-1", Role::Manager).await;
    let mut script = CallScript::new(identity("acme", None, None), caller_speech());
    script.send_stop = false;
    test.simulator().play(&script, |_| {}).await.unwrap();
    let events = manager.call_events(&call_id(&script.call_sid)).await;
    let Event::CallEnded(ended) = &events.last().unwrap().event else {
        unreachable!()
    };
    assert_eq!(ended.reason, EndReason::Abandoned);
    assert_eq!(ended.stats.frames, [script.frames() as u64, 0]);
}

/// A token whose `exp` lies centuries ahead (validly signed: the issuer's mistake, or a forged
/// development token) neither panics the connection nor leaves a ghost member: the connection
/// works, and when it goes its presence goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_token_expiry_is_clamped_not_a_panic() {
    use winnerr_events::{OrgId, UserId};
    let test = spawn_app().await;
    let (mut manager, _) = test.org_feed("acme", "manager-1", Role::Manager).await;
    let token = test.app.gateway.auth().issue(
        &UserId::parse("agent-9").unwrap(),
        &OrgId::parse("acme").unwrap(),
        Role::Agent,
        std::time::Duration::from_secs(u64::MAX / 2),
    );
    let mut agent = FeedClient::connect(&test.app.feed_url(), &token).await;
    assert!(matches!(
        agent.next_message().await,
        Some(winnerr_events::FeedMessage::Hello { .. })
    ));
    let (change, member) = manager.next_presence().await;
    assert_eq!(
        (change, member.user_id.as_str()),
        (winnerr_events::PresenceChange::Join, "agent-9")
    );
    // Still served after the join.
    let (subscribed, _) = agent.subscribe("calls", None).await;
    assert!(matches!(
        subscribed,
        winnerr_events::FeedMessage::Subscribed { .. }
    ));
    drop(agent);
    let (change, member) = manager.next_presence().await;
    assert_eq!(
        (change, member.user_id.as_str()),
        (winnerr_events::PresenceChange::Leave, "agent-9")
    );
}
