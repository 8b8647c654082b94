//! A call's talk signals, live, from its two tracks' speech activity and its finals: how much each
//! side talked, the longest turn each held, who started speaking over whom, silences, speaking
//! rate and the agent's questions; and the coaching alerts an organization sets thresholds for.
//! No I/O: the pipeline feeds it speech starts and ends, finals and the call's clock, and
//! publishes what it returns.
//!
//! The agent is the outbound track, the customer the inbound one. A side takes the floor when it
//! speaks for a second or more; shorter speech (a backchannel: "uh-huh", "right") neither takes
//! the floor nor counts as an interruption, though it counts as talk.

use winnerr_events::{AlertKind, CallSignals, Track};

/// Speech shorter than this is a backchannel.
const BACKCHANNEL_MS: u64 = 1_000;
/// Both sides silent this long is a silence.
const SILENCE_MS: u64 = 3_000;
/// Talk under this is too little for a speaking rate.
const RATE_MIN_TALK_MS: u64 = 10_000;
/// How often a live call reports its signals, on its clock.
pub const REPORT_EVERY_MS: u64 = 10_000;

const AGENT: usize = 1;
const CUSTOMER: usize = 0;

/// When an organization's coaching alerts are raised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coaching {
    /// The agent holds the floor longer than this.
    pub monologue_ms: Option<u64>,
    /// The agent's share of the talk stays above `.0` for `.1` ms.
    pub talk_ratio: Option<(f32, u64)>,
    /// The customer says nothing for this long.
    pub customer_silent_ms: Option<u64>,
    /// The agent starts speaking over the customer this many times.
    pub interruptions: Option<u32>,
}

impl Default for Coaching {
    /// An agent monologue over 60 s, a talk ratio above 70% for 2 min, a customer silent for
    /// 20 s, three interruptions.
    fn default() -> Self {
        Coaching {
            monologue_ms: Some(60_000),
            talk_ratio: Some((0.7, 120_000)),
            customer_silent_ms: Some(20_000),
            interruptions: Some(3),
        }
    }
}

impl Coaching {
    /// `monologue:60,talk_ratio:0.7/120,silence:20,interruptions:3` (seconds; a rule named
    /// `:off` is off, one not named keeps its default); `off` alone turns every rule off.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Coaching {
                monologue_ms: None,
                talk_ratio: None,
                customer_silent_ms: None,
                interruptions: None,
            });
        }
        let seconds = |value: &str| -> Result<u64, String> {
            match value.parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok((s * 1000.0) as u64),
                _ => Err(format!("{value:?} is not a number of seconds")),
            }
        };
        let mut coaching = Coaching::default();
        for rule in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (name, value) = rule
                .split_once(':')
                .ok_or_else(|| format!("{rule:?} is not `rule:value`"))?;
            let off = value == "off";
            match name {
                "monologue" => {
                    coaching.monologue_ms = if off { None } else { Some(seconds(value)?) }
                }
                "silence" => {
                    coaching.customer_silent_ms = if off { None } else { Some(seconds(value)?) }
                }
                "interruptions" => {
                    coaching.interruptions = match value.parse::<u32>() {
                        _ if off => None,
                        Ok(n) if n > 0 => Some(n),
                        _ => return Err(format!("{rule:?}: a count of at least 1")),
                    }
                }
                "talk_ratio" => {
                    coaching.talk_ratio = if off {
                        None
                    } else {
                        let (ratio, over) = value
                            .split_once('/')
                            .ok_or_else(|| format!("{rule:?}: expected RATIO/SECONDS"))?;
                        match ratio.parse::<f32>() {
                            Ok(r) if (0.0..1.0).contains(&r) => Some((r, seconds(over)?)),
                            _ => return Err(format!("{rule:?}: a ratio between 0 and 1")),
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown rule {other:?} (monologue, talk_ratio, silence, interruptions)"
                    ));
                }
            }
        }
        Ok(coaching)
    }
}

/// A coaching alert: the side it is about, why, and a sentence for a manager.
#[derive(Debug, Clone, PartialEq)]
pub struct Coached {
    pub track: Track,
    pub kind: AlertKind,
    pub text: String,
}

/// A side's speech that started at `since` and may yet prove a backchannel.
#[derive(Debug, Clone, Copy)]
struct Claim {
    since: u64,
    /// The other side was speaking when it started.
    over_the_other: bool,
}

/// The talk signals of one call so far.
#[derive(Debug)]
pub struct Signals {
    coaching: Coaching,
    /// Since when each side is speaking.
    speaking: [Option<u64>; 2],
    talk_ms: [u64; 2],
    /// Speech of a side not holding the floor, until it lasts a second.
    claim: [Option<Claim>; 2],
    /// Who holds the floor.
    floor: Option<usize>,
    /// When each side's turn began: while it holds the floor, and, having lost it, until it
    /// stops speaking.
    turn_since: [Option<u64>; 2],
    last_end_ms: [u64; 2],
    longest_turn_ms: [u64; 2],
    turns: [u32; 2],
    interruptions: [u32; 2],
    overlap_ms: u64,
    /// Both silent since (`None` while anyone speaks).
    quiet_since: Option<u64>,
    silences: u32,
    longest_silence_ms: u64,
    words: [u32; 2],
    agent_questions: u32,
    customer_last_spoke_ms: u64,
    ratio_high_since: Option<u64>,
    /// Alerts already raised: the monologue for the floor taken at this time, the ratio and
    /// silence until they end, the interruptions once.
    monologue_raised: Option<u64>,
    ratio_raised: bool,
    silence_raised: bool,
    interruptions_raised: bool,
    next_report_ms: u64,
}

impl Signals {
    pub fn new(coaching: Coaching) -> Self {
        Signals {
            coaching,
            speaking: [None; 2],
            talk_ms: [0; 2],
            claim: [None; 2],
            floor: None,
            turn_since: [None; 2],
            last_end_ms: [0; 2],
            longest_turn_ms: [0; 2],
            turns: [0; 2],
            interruptions: [0; 2],
            overlap_ms: 0,
            quiet_since: Some(0),
            silences: 0,
            longest_silence_ms: 0,
            words: [0; 2],
            agent_questions: 0,
            customer_last_spoke_ms: 0,
            ratio_high_since: None,
            monologue_raised: None,
            ratio_raised: false,
            silence_raised: false,
            interruptions_raised: false,
            next_report_ms: REPORT_EVERY_MS,
        }
    }

    /// `track` started (`speaking`) or stopped speaking at `at_ms`; the coaching alerts it
    /// raises.
    pub fn activity(&mut self, track: Track, speaking: bool, at_ms: u64) -> Vec<Coached> {
        let side = track.index();
        let other = 1 - side;
        if speaking {
            if self.speaking[side].is_some() {
                return Vec::new();
            }
            if let Some(quiet) = self.quiet_since.take() {
                let silence = at_ms.saturating_sub(quiet);
                if silence >= SILENCE_MS && quiet > 0 {
                    self.silences += 1;
                    self.longest_silence_ms = self.longest_silence_ms.max(silence);
                }
            }
            self.speaking[side] = Some(at_ms);
            if self.floor != Some(side) {
                self.claim[side] = Some(Claim {
                    since: at_ms,
                    over_the_other: self.speaking[other].is_some(),
                });
            }
        } else {
            let Some(since) = self.speaking[side].take() else {
                return Vec::new();
            };
            self.talk_ms[side] += at_ms.saturating_sub(since);
            if let Some(other_since) = self.speaking[other] {
                self.overlap_ms += at_ms.saturating_sub(since.max(other_since));
            }
            if side == CUSTOMER {
                self.customer_last_spoke_ms = at_ms;
                self.silence_raised = false;
            }
            // Speech that ends under a second was a backchannel.
            self.claim[side] = None;
            self.last_end_ms[side] = at_ms;
            if let Some(turn) = self.turn_since[side] {
                self.longest_turn_ms[side] = self.longest_turn_ms[side].max(at_ms - turn);
                if self.floor != Some(side) {
                    self.turn_since[side] = None;
                }
            }
            if self.speaking[other].is_none() {
                self.quiet_since = Some(at_ms);
            }
        }
        self.tick(at_ms)
    }

    /// A final of `track` with `text` (its words and, for the agent, its questions).
    pub fn said(&mut self, track: Track, text: &str) {
        self.words[track.index()] += text.split_whitespace().count() as u32;
        if track.index() == AGENT {
            self.agent_questions += text.matches('?').count() as u32;
        }
    }

    /// The call's clock is at `now_ms`: claims that lasted a second take the floor, and the
    /// coaching alerts now due are returned.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Coached> {
        for side in [CUSTOMER, AGENT] {
            let Some(claim) = self.claim[side] else {
                continue;
            };
            if now_ms.saturating_sub(claim.since) < BACKCHANNEL_MS {
                continue;
            }
            self.claim[side] = None;
            if claim.over_the_other {
                self.interruptions[side] += 1;
            }
            // The side that held the floor ends its turn when it stops speaking (now, if it is
            // silent already); if it started speaking only after this side did, it is the one
            // talking over, and its speech claims the floor back in turn.
            if let Some(held) = self.floor.filter(|&held| held != side) {
                match self.speaking[held] {
                    Some(start) if start > claim.since => {
                        // Its turn ended when it last stopped (counted then).
                        self.turn_since[held] = None;
                        self.claim[held] = Some(Claim {
                            since: start,
                            over_the_other: true,
                        });
                    }
                    Some(_) => {}
                    None => self.turn_since[held] = None,
                }
            }
            self.floor = Some(side);
            self.turn_since[side] = Some(claim.since);
            self.turns[side] += 1;
        }
        let mut alerts = Vec::new();
        let coaching = self.coaching;
        let agent_turn = self.turn_since[AGENT].filter(|_| self.floor == Some(AGENT));
        if let (Some(limit), Some(since)) = (coaching.monologue_ms, agent_turn) {
            let held = if self.speaking[AGENT].is_some() {
                now_ms.saturating_sub(since)
            } else {
                self.last_end_ms[AGENT].saturating_sub(since)
            };
            if held > limit && self.monologue_raised != Some(since) {
                self.monologue_raised = Some(since);
                alerts.push(Coached {
                    track: Track::Outbound,
                    kind: AlertKind::Monologue { ms: held },
                    text: format!(
                        "the agent has held the floor for {} s without the customer taking it",
                        held / 1000
                    ),
                });
            }
        }
        if let (Some((threshold, over)), Some(ratio)) = (coaching.talk_ratio, self.ratio(now_ms)) {
            if ratio > threshold {
                let since = *self.ratio_high_since.get_or_insert(now_ms);
                if now_ms - since >= over && !self.ratio_raised {
                    self.ratio_raised = true;
                    alerts.push(Coached {
                        track: Track::Outbound,
                        kind: AlertKind::TalkRatio { ratio },
                        text: format!(
                            "the agent has done {:.0}% of the talking for {} s",
                            ratio * 100.0,
                            (now_ms - since) / 1000
                        ),
                    });
                }
            } else {
                self.ratio_high_since = None;
                self.ratio_raised = false;
            }
        }
        if let Some(limit) = coaching.customer_silent_ms {
            let silent = now_ms.saturating_sub(self.customer_last_spoke_ms);
            if self.speaking[CUSTOMER].is_none() && silent >= limit && !self.silence_raised {
                self.silence_raised = true;
                alerts.push(Coached {
                    track: Track::Inbound,
                    kind: AlertKind::CustomerSilent { ms: silent },
                    text: format!("the customer has not spoken for {} s", silent / 1000),
                });
            }
        }
        if let Some(limit) = coaching.interruptions {
            let count = self.interruptions[AGENT];
            if count >= limit && !self.interruptions_raised {
                self.interruptions_raised = true;
                alerts.push(Coached {
                    track: Track::Outbound,
                    kind: AlertKind::Interruptions { count },
                    text: format!("the agent has spoken over the customer {count} times"),
                });
            }
        }
        alerts
    }

    /// Whether a periodic report is due at `now_ms` (then the next is 10 s on).
    pub fn report_due(&mut self, now_ms: u64) -> bool {
        if now_ms < self.next_report_ms {
            return false;
        }
        self.next_report_ms = (now_ms / REPORT_EVERY_MS + 1) * REPORT_EVERY_MS;
        true
    }

    /// Each side's talk at `now_ms`, speech in progress included.
    fn talk_at(&self, now_ms: u64) -> [u64; 2] {
        [CUSTOMER, AGENT].map(|side| {
            self.talk_ms[side] + self.speaking[side].map_or(0, |since| now_ms.saturating_sub(since))
        })
    }

    fn ratio(&self, now_ms: u64) -> Option<f32> {
        let talk = self.talk_at(now_ms);
        let total = talk[AGENT] + talk[CUSTOMER];
        (total > 0).then(|| talk[AGENT] as f32 / total as f32)
    }

    /// The signals at `now_ms`; `last` for the report before the call's end.
    pub fn report(&self, now_ms: u64, last: bool) -> CallSignals {
        let talk = self.talk_at(now_ms);
        let rate = |side: usize| {
            (talk[side] >= RATE_MIN_TALK_MS)
                .then(|| self.words[side] as f32 * 60_000.0 / talk[side] as f32)
        };
        let turn = |side: usize| match (self.turn_since[side], self.speaking[side]) {
            (Some(since), Some(_)) => self.longest_turn_ms[side].max(now_ms.saturating_sub(since)),
            _ => self.longest_turn_ms[side],
        };
        CallSignals {
            at_ms: now_ms,
            last,
            agent_talk_ms: talk[AGENT],
            customer_talk_ms: talk[CUSTOMER],
            agent_talk_ratio: self.ratio(now_ms),
            longest_agent_turn_ms: turn(AGENT),
            longest_customer_turn_ms: turn(CUSTOMER),
            agent_interruptions: self.interruptions[AGENT],
            customer_interruptions: self.interruptions[CUSTOMER],
            overlap_ms: self.overlap_ms,
            silences: self.silences,
            longest_silence_ms: self.longest_silence_ms,
            agent_words_per_minute: rate(AGENT),
            customer_words_per_minute: rate(CUSTOMER),
            agent_questions: self.agent_questions,
            agent_turns: self.turns[AGENT],
            customer_turns: self.turns[CUSTOMER],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Track = Track::Outbound;
    const C: Track = Track::Inbound;

    /// Plays `(track, start_ms, end_ms)` speech in time order, ticking every 20 ms to `until`;
    /// returns the signals and the alerts raised.
    fn play(
        coaching: Coaching,
        speech: &[(Track, u64, u64)],
        until: u64,
    ) -> (Signals, Vec<Coached>) {
        let mut edges: Vec<(u64, Track, bool)> = speech
            .iter()
            .flat_map(|&(track, start, end)| [(start, track, true), (end, track, false)])
            .collect();
        edges.sort_by_key(|&(at, _, speaking)| (at, speaking));
        let mut signals = Signals::new(coaching);
        let mut alerts = Vec::new();
        let mut edges = edges.into_iter().peekable();
        for now in (0..=until).step_by(20) {
            while let Some(&(at, track, speaking)) = edges.peek() {
                if at > now {
                    break;
                }
                alerts.extend(signals.activity(track, speaking, at));
                edges.next();
            }
            alerts.extend(signals.tick(now));
        }
        (signals, alerts)
    }

    fn quiet() -> Coaching {
        Coaching::parse("off").unwrap()
    }

    #[test]
    fn talk_turns_overlaps_and_silences_are_measured_exactly() {
        // Agent 0–10 s; customer backchannel 4.0–4.5 s (no interruption, no turn); customer
        // 14–20 s after a 4 s silence; agent interrupts at 18 s and talks to 30 s; customer
        // 30.5–32 s.
        let (signals, _) = play(
            quiet(),
            &[
                (A, 0, 10_000),
                (C, 4_000, 4_500),
                (C, 14_000, 20_000),
                (A, 18_000, 30_000),
                (C, 30_500, 32_000),
            ],
            40_000,
        );
        let report = signals.report(40_000, true);
        assert_eq!(report.agent_talk_ms, 22_000);
        assert_eq!(report.customer_talk_ms, 8_000);
        assert_eq!(report.agent_talk_ratio, Some(22_000.0 / 30_000.0));
        assert_eq!(report.longest_agent_turn_ms, 12_000, "18–30 s");
        assert_eq!(report.longest_customer_turn_ms, 6_000, "14–20 s");
        assert_eq!(
            (report.agent_interruptions, report.customer_interruptions),
            (1, 0)
        );
        assert_eq!(report.overlap_ms, 500 + 2_000);
        assert_eq!((report.silences, report.longest_silence_ms), (1, 4_000));
        assert_eq!((report.agent_turns, report.customer_turns), (2, 2));
        assert!(report.last);
    }

    #[test]
    fn a_backchannel_over_the_other_side_is_no_turn_and_no_interruption() {
        // The agent talks 0–10 s, the customer 11–20 s; the agent's "right" at 15.0–15.4 s is
        // a backchannel: the customer's turn goes on, and the agent's longest turn stays 10 s.
        let (signals, _) = play(
            quiet(),
            &[(A, 0, 10_000), (C, 11_000, 20_000), (A, 15_000, 15_400)],
            25_000,
        );
        let report = signals.report(25_000, true);
        assert_eq!(report.longest_agent_turn_ms, 10_000);
        assert_eq!(report.longest_customer_turn_ms, 9_000);
        assert_eq!(
            (report.agent_interruptions, report.customer_interruptions),
            (0, 0)
        );
        assert_eq!(report.agent_talk_ms, 10_400);
        assert_eq!(report.overlap_ms, 400);
    }

    #[test]
    fn words_per_minute_and_questions_come_from_finals() {
        let (mut signals, _) = play(quiet(), &[(A, 0, 12_000), (C, 13_000, 15_000)], 16_000);
        signals.said(
            A,
            "Hi, is this Dana? Are you still looking in Austin? Great.",
        );
        signals.said(C, "yes we are");
        let report = signals.report(16_000, false);
        assert_eq!(report.agent_questions, 2);
        assert_eq!(
            report.agent_words_per_minute,
            Some(55.0),
            "11 words in 12 s"
        );
        assert_eq!(
            report.customer_words_per_minute, None,
            "two seconds of talk"
        );
    }

    #[test]
    fn coaching_alerts_fire_once_each_at_their_thresholds() {
        let coaching =
            Coaching::parse("monologue:20,talk_ratio:0.7/30,silence:15,interruptions:2").unwrap();
        // The agent talks 0–25 s, the customer 26–27 s, the agent speaks over the customer
        // twice (27.5 s into the customer's 26–29 s, and 40 s into their 39–42 s), and talks on.
        let (_, alerts) = play(
            coaching,
            &[
                (A, 0, 25_000),
                (C, 26_000, 29_000),
                (A, 27_500, 38_000),
                (C, 39_000, 42_000),
                (A, 40_000, 70_000),
            ],
            80_000,
        );
        let kinds: Vec<&AlertKind> = alerts.iter().map(|a| &a.kind).collect();
        let first_monologue = kinds
            .iter()
            .find(|k| matches!(k, AlertKind::Monologue { .. }));
        assert!(
            matches!(first_monologue, Some(AlertKind::Monologue { ms }) if *ms > 20_000 && *ms <= 20_040),
            "{kinds:?}"
        );
        assert_eq!(
            kinds
                .iter()
                .filter(|k| matches!(k, AlertKind::Monologue { .. }))
                .count(),
            2,
            "0–25 s, then 40 s on: {kinds:?}"
        );
        assert_eq!(
            kinds
                .iter()
                .filter(|k| matches!(k, AlertKind::Interruptions { count: 2 }))
                .count(),
            1,
            "{kinds:?}"
        );
        assert_eq!(
            kinds
                .iter()
                .filter(|k| matches!(k, AlertKind::TalkRatio { .. }))
                .count(),
            1,
            "{kinds:?}"
        );
        // Silent from 0 to 26 s (one alert at 15 s), then from 42 s (one at 57 s).
        let silent: Vec<u64> = kinds
            .iter()
            .filter_map(|k| match k {
                AlertKind::CustomerSilent { ms } => Some(*ms),
                _ => None,
            })
            .collect();
        assert_eq!(silent, vec![15_000, 15_000], "{kinds:?}");
        assert!(alerts.iter().all(|a| !a.text.is_empty()));
    }

    #[test]
    fn coaching_rules_read_as_written() {
        let coaching = Coaching::parse("monologue:45, silence:off,talk_ratio:0.8/90").unwrap();
        assert_eq!(coaching.monologue_ms, Some(45_000));
        assert_eq!(coaching.customer_silent_ms, None);
        assert_eq!(coaching.talk_ratio, Some((0.8, 90_000)));
        assert_eq!(coaching.interruptions, Some(3), "not named: the default");
        for bad in [
            "monologue",
            "monologue:-1",
            "talk_ratio:2/10",
            "talk_ratio:0.5",
            "loud:1",
            "interruptions:0",
        ] {
            assert!(Coaching::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reports_come_every_ten_seconds_of_call() {
        let mut signals = Signals::new(quiet());
        let due: Vec<u64> = (0..=35_000)
            .step_by(20)
            .filter(|&now| signals.report_due(now))
            .collect();
        assert_eq!(due, vec![10_000, 20_000, 30_000]);
    }
}
