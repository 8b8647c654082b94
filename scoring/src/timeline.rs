//! Timeline cues in what a customer says: urgency ("pre-approved", "our lease ends", "this
//! weekend"), a stated move date ("in two months", "next week") and its opposite ("just
//! looking", "no rush"). Phrases are matched on whole words of the normalized text, so Whisper's
//! spellings ("pre-approved", "preapproved", "2 weeks", "two weeks") all count.

use serde::{Deserialize, Serialize};

/// Urgency cues, by name: each is one bit of [`TimelineCues::urgency`].
pub const URGENCY_CUES: [(&str, &[&str]); 9] = [
    (
        "pre_approved",
        &[
            "pre approved",
            "preapproved",
            "pre qualified",
            "prequalified",
            "mortgage approved",
        ],
    ),
    (
        "lease_ends",
        &[
            "lease ends",
            "lease is up",
            "lease runs out",
            "lease expires",
            "end of our lease",
            "end of my lease",
        ],
    ),
    (
        "this_weekend",
        &["this weekend", "this saturday", "this sunday", "tomorrow"],
    ),
    (
        "asap",
        &[
            "asap",
            "as soon as possible",
            "right away",
            "urgent",
            "urgently",
        ],
    ),
    (
        "cash_buyer",
        &[
            "paying cash",
            "pay cash",
            "cash buyer",
            "cash offer",
            "all cash",
        ],
    ),
    (
        "ready_to_offer",
        &[
            "make an offer",
            "put in an offer",
            "ready to buy",
            "ready to offer",
            "sign today",
        ],
    ),
    (
        "sold_home",
        &[
            "sold our house",
            "sold our home",
            "sold my house",
            "sold my home",
            "closed on our sale",
        ],
    ),
    (
        "relocating",
        &["relocating", "relocation", "transferred", "new job starts"],
    ),
    (
        "must_move",
        &["need to move", "have to move", "must move", "need a place"],
    ),
];

/// Phrases of a customer in no hurry.
const NO_HURRY: &[&str] = &[
    "just looking",
    "just browsing",
    "no rush",
    "not in a hurry",
    "no hurry",
    "not ready",
    "maybe next year",
    "not interested",
    "stop calling",
    "waste of time",
];

/// A stated move date counts as soon within this many days.
pub const MOVE_SOON_DAYS: u32 = 90;

/// What a customer's words said about their timeline, merged over utterances and calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineCues {
    /// One bit per [`URGENCY_CUES`] entry that was heard.
    pub urgency: u32,
    /// The nearest move date stated, in days from when it was said.
    pub move_within_days: Option<u32>,
    pub no_hurry: bool,
}

impl TimelineCues {
    /// The cues in one utterance.
    pub fn scan(text: &str) -> TimelineCues {
        let words = normalize(text);
        let padded = format!(" {} ", words.join(" "));
        let has = |phrase: &str| padded.contains(&format!(" {phrase} "));
        let mut urgency = 0;
        for (bit, (_, phrases)) in URGENCY_CUES.iter().enumerate() {
            if phrases.iter().any(|p| has(p)) {
                urgency |= 1 << bit;
            }
        }
        TimelineCues {
            urgency,
            move_within_days: move_date(&words),
            no_hurry: NO_HURRY.iter().any(|p| has(p)),
        }
    }

    /// Both sets of cues together; the nearer move date wins.
    pub fn merge(&mut self, other: TimelineCues) {
        self.urgency |= other.urgency;
        self.move_within_days = match (self.move_within_days, other.move_within_days) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.no_hurry |= other.no_hurry;
    }

    /// How many distinct urgency cues were heard.
    pub fn urgency_count(&self) -> u32 {
        self.urgency.count_ones()
    }

    /// Names of the urgency cues heard.
    pub fn urgency_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        URGENCY_CUES
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.urgency & (1 << bit) != 0)
            .map(|(_, (name, _))| *name)
    }

    pub fn moves_soon(&self) -> bool {
        self.move_within_days.is_some_and(|d| d <= MOVE_SOON_DAYS)
    }
}

/// Lowercase words, punctuation dropped and hyphens split ("Pre-approved!" → "pre approved").
fn normalize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-' || c == '/')
        .map(|word| {
            word.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
        })
        .filter(|word| !word.is_empty())
        .collect()
}

fn number(word: &str) -> Option<u32> {
    const WORDS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    match word {
        "a" | "an" => Some(1),
        "couple" => Some(2),
        "few" => Some(3),
        _ => word
            .parse()
            .ok()
            .or_else(|| WORDS.iter().position(|w| *w == word).map(|n| n as u32)),
    }
}

fn unit_days(word: &str) -> Option<u32> {
    match word.trim_end_matches('s') {
        "day" => Some(1),
        "week" => Some(7),
        "month" => Some(30),
        "year" => Some(365),
        _ => None,
    }
}

/// The nearest time frame stated: "in two weeks", "within 3 months", "in a couple of months",
/// "next week", "this month", "next year".
fn move_date(words: &[String]) -> Option<u32> {
    let mut nearest: Option<u32> = None;
    let mut note = |days: u32| nearest = Some(nearest.map_or(days, |n| n.min(days)));
    for (i, word) in words.iter().enumerate() {
        let next = |k: usize| words.get(i + k).map(String::as_str);
        match word.as_str() {
            "in" | "within" => {
                // "in two weeks", "in a couple of months", "within the next 3 months"
                let mut k = 1;
                if matches!(next(k), Some("the")) {
                    k += 1;
                }
                if matches!(next(k), Some("next")) {
                    k += 1;
                }
                let Some(count) = next(k).and_then(number) else {
                    continue;
                };
                k += 1;
                if matches!(next(k), Some("of")) {
                    k += 1;
                }
                if let Some(unit) = next(k).and_then(unit_days) {
                    note(count * unit);
                }
            }
            "next" | "this" => {
                let days = match next(1) {
                    Some("week") => Some(if word == "next" { 14 } else { 7 }),
                    Some("month") => Some(if word == "next" { 60 } else { 30 }),
                    Some("year") => Some(if word == "next" { 365 } else { 180 }),
                    _ => None,
                };
                if let Some(days) = days {
                    note(days);
                }
            }
            _ => {}
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgency_is_heard_in_whispers_spellings() {
        let cues = TimelineCues::scan(
            "We're pre-approved, and our lease ends in June. Can we see it this weekend?",
        );
        let names: Vec<_> = cues.urgency_names().collect();
        assert_eq!(names, ["pre_approved", "lease_ends", "this_weekend"]);
        assert!(!cues.no_hurry);
        assert_eq!(TimelineCues::scan("We are preapproved.").urgency_count(), 1);
        // Whole words only: "cashew" is not cash, "unapproved" is not approved.
        assert_eq!(
            TimelineCues::scan("I like cashews; the plan was unapproved").urgency,
            0
        );
    }

    #[test]
    fn stated_move_dates_are_read_in_days() {
        let days = |text: &str| TimelineCues::scan(text).move_within_days;
        assert_eq!(days("We want to move in two weeks."), Some(14));
        assert_eq!(days("within the next 3 months"), Some(90));
        assert_eq!(days("in a couple of months, or maybe next week"), Some(14));
        assert_eq!(days("Probably next year."), Some(365));
        assert_eq!(days("We live in Boston."), None);
        assert!(TimelineCues::scan("in 2 months").moves_soon());
        assert!(!TimelineCues::scan("in six months").moves_soon());
    }

    #[test]
    fn merging_keeps_every_cue_and_the_nearest_date() {
        let mut cues = TimelineCues::scan("We're just looking, maybe in six months.");
        assert!(cues.no_hurry);
        cues.merge(TimelineCues::scan(
            "Actually we're paying cash and need to move in 3 weeks",
        ));
        assert_eq!(cues.urgency_count(), 2);
        assert_eq!(cues.move_within_days, Some(21));
        assert!(cues.no_hurry);
    }
}
