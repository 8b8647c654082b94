//! Redaction of what a caller must not have written anywhere: payment card numbers (13–19
//! digits passing the Luhn check), US social security numbers, phone numbers, email addresses
//! and bank account or routing numbers, in the voice stage, before a transcript leaves it (feed,
//! bus, store, alerts, lead scoring all see the redacted text). A number is found written
//! ("4111, 1111", "123-45-6789", "(555) 010-0199") or read out as the decoder sometimes writes it
//! ("four one one one", "oh" for zero, "double five", "fifty six"), its groups joined by spaces,
//! commas, dots or dashes; what it is comes from its length, its grouping, the Luhn check and the
//! words before it. Each organization has a policy per kind: `redact` (a typed mask such as
//! `[CARD]`), `mask_last4` (`[CARD ••••1111]`) or `off`; by default cards and social security
//! numbers are redacted. An event lists what was redacted (kind and span in the redacted text),
//! never the value. `assets/redaction/cases.txt` is the labelled test set its figures come from.

use std::collections::HashMap;

use winnerr_events::{OrgId, PerOrg};
use winnerr_models::text::{ONES, TENS};

/// What a number or address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    Card,
    Ssn,
    Phone,
    Email,
    /// Bank account and routing numbers.
    Bank,
}

impl PiiKind {
    pub const ALL: [PiiKind; 5] = [
        PiiKind::Card,
        PiiKind::Ssn,
        PiiKind::Phone,
        PiiKind::Email,
        PiiKind::Bank,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Card => "card",
            PiiKind::Ssn => "ssn",
            PiiKind::Phone => "phone",
            PiiKind::Email => "email",
            PiiKind::Bank => "bank",
        }
    }

    fn mask(self) -> &'static str {
        match self {
            PiiKind::Card => "CARD",
            PiiKind::Ssn => "SSN",
            PiiKind::Phone => "PHONE",
            PiiKind::Email => "EMAIL",
            PiiKind::Bank => "BANK",
        }
    }

    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "card" => Ok(PiiKind::Card),
            "ssn" => Ok(PiiKind::Ssn),
            "phone" => Ok(PiiKind::Phone),
            "email" => Ok(PiiKind::Email),
            "bank" => Ok(PiiKind::Bank),
            other => Err(format!(
                "unknown kind {other:?} (card, ssn, phone, email, bank)"
            )),
        }
    }
}

/// What to do with one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Redact,
    MaskLast4,
    Off,
}

/// One organization's actions by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy(HashMap<PiiKind, Action>);

impl Default for Policy {
    /// Cards and social security numbers redacted; phones and emails kept (a CRM needs them).
    fn default() -> Self {
        Policy(HashMap::from([
            (PiiKind::Card, Action::Redact),
            (PiiKind::Ssn, Action::Redact),
        ]))
    }
}

impl Policy {
    /// `card:redact,ssn:mask_last4,phone` (a kind alone is redacted).
    fn parse(rules: &str) -> Result<Self, String> {
        let mut policy = HashMap::new();
        for rule in rules.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (kind, action) = rule.split_once(':').unwrap_or((rule, "redact"));
            let action = match action {
                "redact" => Action::Redact,
                "mask_last4" => Action::MaskLast4,
                "off" => Action::Off,
                other => {
                    return Err(format!(
                        "{rule:?}: unknown action {other:?} (redact, mask_last4, off)"
                    ));
                }
            };
            policy.insert(PiiKind::parse(kind)?, action);
        }
        Ok(Policy(policy))
    }

    fn action(&self, kind: PiiKind) -> Action {
        self.0.get(&kind).copied().unwrap_or(Action::Off)
    }
}

/// Every organization's policy: `org=card:redact,ssn:mask_last4;*=card:redact` (`*` for the
/// others; without it, cards and social security numbers are redacted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionConfig(PerOrg<Policy>);

impl RedactionConfig {
    pub fn parse(spec: &str) -> Result<Self, String> {
        PerOrg::parse(spec, Policy::default(), Policy::parse).map(RedactionConfig)
    }

    pub fn policy_for(&self, org: &OrgId) -> Policy {
        self.0.of(org).clone()
    }
}

/// One redaction in a text: its kind and where its mask is (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

/// Whether a redacted `text` ends on a card's mask (nothing but punctuation after it): the
/// number may go on in the track's next utterance.
pub fn ends_on_a_card(text: &str, redactions: &[Redaction]) -> bool {
    redactions.last().is_some_and(|r| {
        r.kind == PiiKind::Card && text[r.end..].chars().all(|c| !c.is_alphanumeric())
    })
}

/// Where the masks are in `text` (a text redacted here, perhaps cut to its stable prefix since).
pub fn mask_spans(text: &str) -> Vec<Redaction> {
    let mut spans = Vec::new();
    for kind in PiiKind::ALL {
        let open = format!("[{}", kind.mask());
        for (start, _) in text.match_indices(&open) {
            let rest = &text[start + open.len()..];
            let close = match rest.chars().next() {
                Some(']') => Some(0),
                Some(' ') => rest.find(']'),
                _ => None,
            };
            if let Some(close) = close {
                spans.push(Redaction {
                    kind,
                    start,
                    end: start + open.len() + close + 1,
                });
            }
        }
    }
    spans.sort_by_key(|r| r.start);
    spans
}

/// A number or address found in a text, before any policy: its kind and where it is (byte
/// offsets in the text searched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
    /// Its digits (a number) or its text (an address): what `mask_last4` keeps the end of.
    value: String,
}

/// `text` with what `policy` redacts masked, and what was.
pub fn redact(text: &str, policy: &Policy) -> (String, Vec<Redaction>) {
    redact_continuing(text, policy, false)
}

/// [`redact`], for the next utterance of a track whose last one ended on a card's digits
/// (`card_open`, see [`ends_on_a_card`]): digits it starts with are the rest of that number, as
/// when a caller pauses long enough mid-number to end the utterance.
pub fn redact_continuing(text: &str, policy: &Policy, card_open: bool) -> (String, Vec<Redaction>) {
    let mut out = String::with_capacity(text.len());
    let mut redactions = Vec::new();
    let mut at = 0;
    for found in find(text, card_open) {
        let kind = found.kind;
        let mask = match policy.action(kind) {
            Action::Off => continue,
            Action::Redact => format!("[{}]", kind.mask()),
            Action::MaskLast4 => {
                let last4: Vec<char> = found
                    .value
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect();
                let last4: String = last4[last4.len().saturating_sub(4)..].iter().collect();
                format!("[{} ••••{last4}]", kind.mask())
            }
        };
        out.push_str(&text[at..found.start]);
        let masked_at = out.len();
        out.push_str(&mask);
        redactions.push(Redaction {
            kind,
            start: masked_at,
            end: out.len(),
        });
        at = found.end;
    }
    out.push_str(&text[at..]);
    (out, redactions)
}

/// Every number and address in `text` that is one of the kinds, in order, not overlapping;
/// `card_open` as for [`redact_continuing`].
pub fn find(text: &str, card_open: bool) -> Vec<Found> {
    let mut found = Vec::new();
    for run in number_runs(text) {
        let before = &text[..run.start];
        let continues =
            card_open && run.digits.len() >= 4 && before.chars().all(|c| !c.is_alphanumeric());
        let kind = if continues {
            Some(PiiKind::Card)
        } else {
            classify(&run, before)
        };
        if let Some(kind) = kind {
            found.push(Found {
                kind,
                start: run.start,
                end: run.end,
                value: run.digits,
            });
        }
    }
    for (start, end) in emails(text).into_iter().chain(spoken_emails(text)) {
        if !found.iter().any(|f| f.start < end && start < f.end) {
            found.push(Found {
                kind: PiiKind::Email,
                start,
                end,
                value: text[start..end].to_owned(),
            });
        }
    }
    found.sort_by_key(|f| f.start);
    found
}

/// A number as read out or written: where it is in the text, its digits, and how they were
/// grouped ("123-45-6789" is groups of 3, 2 and 4).
struct NumberRun {
    start: usize,
    end: usize,
    digits: String,
    groups: Vec<usize>,
    /// Written with thousands separators ("5,000", "1,250,000"): an amount, not an identifier.
    amount: bool,
}

/// A word or a run of digits in a text, with where it is.
struct Atom<'a> {
    start: usize,
    end: usize,
    text: &'a str,
}

impl Atom<'_> {
    /// Whether it is written in digits ("4111"), not a word.
    fn written(&self) -> bool {
        self.text.as_bytes()[0].is_ascii_digit()
    }
}

/// The words and digit runs of `text`, and what lies between them.
fn atoms(text: &str) -> Vec<Atom<'_>> {
    let mut atoms = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let digit = c.is_ascii_digit();
        if !digit && !c.is_alphabetic() {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, next)) = chars.peek() {
            let same = if digit {
                next.is_ascii_digit()
            } else {
                next.is_alphabetic() || next == '\''
            };
            if !same {
                break;
            }
            end = i + next.len_utf8();
            chars.next();
        }
        atoms.push(Atom {
            start,
            end,
            text: &text[start..end],
        });
    }
    atoms
}

/// The digit a word says: "five", or "oh" inside a number.
fn digit_word(word: &str, inside: bool) -> Option<char> {
    let word = word.to_ascii_lowercase();
    if inside && (word == "oh" || word == "o") {
        return Some('0');
    }
    let d = ONES[..10].iter().position(|w| *w == word)?;
    char::from_digit(d as u32, 10)
}

/// How many atoms from `atoms[i]` on say digits, and which: "4111", "four", "oh" (not first),
/// "double five", "triple oh", "fifty six", "twelve". None where `atoms[i]` says no digit.
fn number_atom(text: &str, atoms: &[Atom<'_>], i: usize, inside: bool) -> Option<(usize, String)> {
    let atom = &atoms[i];
    if atom.written() {
        return Some((1, atom.text.to_owned()));
    }
    let word = atom.text.to_ascii_lowercase();
    // The next atom, where only a space lies between.
    let next = atoms
        .get(i + 1)
        .filter(|next| text[atom.end..next.start] == *" ");
    if let Some(d) = digit_word(&word, inside) {
        return Some((1, d.to_string()));
    }
    if let Some(t) = ONES[10..].iter().position(|w| *w == word) {
        return Some((1, format!("1{t}")));
    }
    if let Some(t) = TENS.iter().skip(2).position(|w| *w == word) {
        let tens = char::from_digit(t as u32 + 2, 10)?;
        let unit = next
            .and_then(|n| digit_word(n.text, false))
            .filter(|&u| u != '0');
        return Some(match unit {
            Some(unit) => (2, format!("{tens}{unit}")),
            None => (1, format!("{tens}0")),
        });
    }
    let times = match word.as_str() {
        "double" => 2,
        "triple" => 3,
        _ => return None,
    };
    let next = next?;
    let repeated = if next.text.len() == 1 && next.written() {
        next.text.chars().next()
    } else {
        digit_word(next.text, true)
    }?;
    Some((2, repeated.to_string().repeat(times)))
}

/// Numbers in `text`, written ("4111, 1111", "(555) 010-0199") or read out ("four one one one",
/// "oh" for zero, "double five", "fifty six"), their groups joined by at most three separators
/// (space, comma, dot, dash, slash, parentheses).
fn number_runs(text: &str) -> Vec<NumberRun> {
    let atoms = atoms(text);
    let mut runs: Vec<NumberRun> = Vec::new();
    let mut open: Option<(NumberRun, usize)> = None; // the run and the index of its last atom
    let mut i = 0;
    while i < atoms.len() {
        let joined = open.as_ref().and_then(|(_, last)| {
            let gap = &text[atoms[*last].end..atoms[i].start];
            (gap.len() <= 3 && gap.bytes().all(|b| b" ,.-/()".contains(&b))).then_some(gap)
        });
        let Some((taken, digits)) = number_atom(text, &atoms, i, joined.is_some()) else {
            runs.extend(open.take().map(|(run, _)| run));
            i += 1;
            continue;
        };
        let last = i + taken - 1;
        let end = atoms[last].end;
        match (&mut open, joined) {
            (Some((run, previous)), Some(gap)) => {
                // A new group where the separator says so, or between two written groups.
                let new_group = gap != " " || (atoms[*previous].written() && atoms[i].written());
                run.amount &= gap == "," && digits.len() == 3 && atoms[i].written();
                if new_group {
                    run.groups.push(digits.len());
                } else if let Some(group) = run.groups.last_mut() {
                    *group += digits.len();
                }
                run.digits.push_str(&digits);
                run.end = end;
                *previous = last;
            }
            _ => {
                runs.extend(open.take().map(|(run, _)| run));
                let start = atoms[i].start;
                // A "(" just before the first group belongs to it: "(555) 010-0199".
                let start = if text[..start].ends_with('(') {
                    start - 1
                } else {
                    start
                };
                let groups = vec![digits.len()];
                let amount = digits.len() <= 3 && atoms[i].written();
                open = Some((
                    NumberRun {
                        start,
                        end,
                        digits,
                        groups,
                        amount,
                    },
                    last,
                ));
            }
        }
        i = last + 1;
    }
    runs.extend(open.map(|(run, _)| run));
    for run in &mut runs {
        run.amount &= run.groups.len() > 1;
    }
    runs
}

/// What the words just before a number say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Card,
    /// The code on a card's back.
    CardCode,
    Ssn,
    Bank,
    Phone,
}

/// The last 60 characters before a number, in lower case.
fn recent(before: &str) -> String {
    let at = before.char_indices().rev().nth(59).map_or(0, |(i, _)| i);
    before[at..].to_lowercase()
}

/// The nearest words for a kind within `recent`.
fn context(recent: &str) -> Option<Context> {
    const WORDS: [(Context, &[&str]); 5] = [
        (
            Context::Card,
            &[
                "card",
                "visa",
                "mastercard",
                "amex",
                "american express",
                "discover",
            ],
        ),
        (Context::Ssn, &["social", "ssn", "s.s.n"]),
        (Context::CardCode, &["cvv", "cvc", "security code"]),
        (
            Context::Bank,
            &["account", "routing", "acct", "checking", "savings", "iban"],
        ),
        (
            Context::Phone,
            &[
                "phone", "cell", "call", "reach", "text", "mobile", "line", "fax",
            ],
        ),
    ];
    WORDS
        .iter()
        .flat_map(|(kind, words)| {
            words
                .iter()
                .filter_map(|w| recent.rfind(w))
                .map(move |at| (at, *kind))
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, kind)| kind)
}

/// What a number is, given the words before it.
fn classify(run: &NumberRun, before: &str) -> Option<PiiKind> {
    let digits = run.digits.as_str();
    let n = digits.len();
    if run.amount {
        return None;
    }
    let recent = recent(before);
    let context = context(&recent);
    // A word for an account: its number (6 to 17 digits; wired to, not charged).
    if context == Some(Context::Bank) && (6..=17).contains(&n) {
        return Some(PiiKind::Bank);
    }
    if context == Some(Context::CardCode) && (3..=4).contains(&n) {
        return Some(PiiKind::Card);
    }
    if (13..=19).contains(&n) && luhn(digits) {
        return Some(PiiKind::Card);
    }
    // Digits soon after a word for a card are (part of) one, even when the recognizer got some
    // wrong (a digit lost or repeated fails the Luhn check) or the caller paused mid-number:
    // masked all the same, rather than kept.
    // Not an expiry date ("09/27").
    let date = matches!(
        run.groups.as_slice(),
        [1 | 2, 2] | [1 | 2, 4] | [1 | 2, 1 | 2, 2 | 4]
    );
    if context == Some(Context::Card) && n >= 4 && !date {
        return Some(PiiKind::Card);
    }
    // Nine digits after "social" (four: "the last four of my social"), or grouped 3-2-4.
    let last_four = recent.contains("last four") || recent.contains("last 4");
    if (context == Some(Context::Ssn) && (n == 9 || (n == 4 && last_four)))
        || run.groups == [3, 2, 4]
    {
        return Some(PiiKind::Ssn);
    }
    if n == 10 || (n == 11 && digits.starts_with('1')) {
        return Some(PiiKind::Phone);
    }
    // A local number, only where the words say it is a phone's ("my number is", with no word
    // for another kind).
    let phone = context == Some(Context::Phone) || (context.is_none() && recent.contains("number"));
    if n == 7 && phone && run.groups == [3, 4] {
        return Some(PiiKind::Phone);
    }
    None
}

/// Whether `digits` pass the Luhn check (every card number does).
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// Written email addresses: `local@domain.tld`.
fn emails(text: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let is_local = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let is_domain = |c: char| c.is_ascii_alphanumeric() || ".-".contains(c);
    for (at, _) in text.match_indices('@') {
        let start = text[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_local(*c))
            .last()
            .map(|(i, _)| i);
        let domain_len = text[at + 1..]
            .chars()
            .take_while(|c| is_domain(*c))
            .map(char::len_utf8)
            .sum::<usize>();
        let domain = text[at + 1..at + 1 + domain_len].trim_end_matches('.');
        if let (Some(start), true) = (start, domain.contains('.')) {
            found.push((start, at + 1 + domain.len()));
        }
    }
    found
}

/// Email addresses read out: "dana dot reyes at gmail dot com", "d a n a at yahoo dot com",
/// "dana underscore reyes at outlook dot com".
fn spoken_emails(text: &str) -> Vec<(usize, usize)> {
    const TOP_LEVEL: [&str; 12] = [
        "com", "net", "org", "edu", "gov", "io", "co", "us", "me", "biz", "info", "ai",
    ];
    const JOINS: [&str; 5] = ["dot", "underscore", "dash", "hyphen", "period"];
    // Words that say where someone is or looks, not who: "look me up at facebook dot com" and
    // "I'll be at zillow dot com" are no addresses.
    const NOT_LOCAL: [&str; 20] = [
        "me", "you", "us", "him", "her", "them", "it", "up", "be", "look", "looking", "is", "are",
        "was", "am", "online", "out", "back", "in", "on",
    ];
    let words: Vec<Atom<'_>> = atoms(text);
    let lower: Vec<String> = words.iter().map(|w| w.text.to_ascii_lowercase()).collect();
    let is =
        |i: usize, options: &[&str]| lower.get(i).is_some_and(|w| options.contains(&w.as_str()));
    // Words joined by a written dot ("gmail.com") or underscore, with nothing else between.
    let joined = |i: usize| {
        i + 1 < words.len() && matches!(&text[words[i].end..words[i + 1].start], "." | "_")
    };
    let mut found = Vec::new();
    for at in (1..words.len()).filter(|&i| lower[i] == "at") {
        // The domain: a word, then "dot" and a word, ending on a top-level domain.
        let mut end = at + 1;
        loop {
            if is(end + 1, &["dot"]) && end + 2 < words.len() {
                end += 2;
            } else if joined(end) {
                end += 1;
            } else {
                break;
            }
        }
        if end == at + 1 || !is(end, &TOP_LEVEL) || is(at + 1, &JOINS) {
            continue;
        }
        // The local part: the word before "at", words joined to it by "dot" or "underscore",
        // and letters spelled out before it.
        let mut start = at - 1;
        if is(start, &NOT_LOCAL) || is(start, &JOINS) {
            continue;
        }
        loop {
            if start >= 2 && is(start - 1, &JOINS) {
                start -= 2;
            } else if start >= 1
                && (joined(start - 1) || (lower[start].len() == 1 && lower[start - 1].len() == 1))
            {
                // "dana.reyes", or letters spelled out: "d a n a".
                start -= 1;
            } else {
                break;
            }
        }
        found.push((words[start].start, words[end].end));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_redacted() -> Policy {
        RedactionConfig::parse("*=card,ssn,phone,email,bank")
            .unwrap()
            .policy_for(&OrgId::parse("acme").unwrap())
    }

    #[test]
    fn a_card_read_in_groups_is_redacted_and_listed_without_its_value() {
        let (text, found) = redact(
            "my card number is 4111, 1111, 1111, 1111. Expires in May.",
            &Policy::default(),
        );
        assert_eq!(text, "my card number is [CARD]. Expires in May.");
        assert_eq!(
            found,
            vec![Redaction {
                kind: PiiKind::Card,
                start: 18,
                end: 24
            }]
        );
        // Misheard after "card" (27 ones, no Luhn): masked all the same.
        let (text, _) = redact(
            "My card number is for 111 111 111 111 111 111 111 111 111",
            &Policy::default(),
        );
        assert_eq!(text, "My card number is for [CARD]");
        // Not a card: 16 digits that fail the Luhn check, and a price.
        let (text, found) = redact(
            "order 1234 5678 9012 3456 at 912000 dollars",
            &Policy::default(),
        );
        assert_eq!(text, "order 1234 5678 9012 3456 at 912000 dollars");
        assert!(found.is_empty());
    }

    #[test]
    fn ssns_phones_and_emails_by_policy() {
        let text = "My social is 123-45-6789, call (555) 010-0199 or mail dana.reyes@example.com.";
        let (redacted, found) = redact(text, &all_redacted());
        assert_eq!(
            redacted,
            "My social is [SSN], call [PHONE] or mail [EMAIL]."
        );
        let kinds: Vec<PiiKind> = found.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [PiiKind::Ssn, PiiKind::Phone, PiiKind::Email]);
        for r in &found {
            assert!(redacted[r.start..r.end].starts_with('['));
        }
        // By default only the social security number goes.
        let (redacted, _) = redact(text, &Policy::default());
        assert_eq!(
            redacted,
            "My social is [SSN], call (555) 010-0199 or mail dana.reyes@example.com."
        );
    }

    #[test]
    fn masks_are_found_again_in_a_redacted_text() {
        let (text, found) = redact(
            "4111 1111 1111 1111 and 4242 4242 4242 4242, social 123456789",
            &RedactionConfig::parse("*=card:mask_last4,ssn")
                .unwrap()
                .policy_for(&OrgId::parse("a").unwrap()),
        );
        assert_eq!(text, "[CARD ••••1111] and [CARD ••••4242], social [SSN]");
        assert_eq!(mask_spans(&text), found);
    }

    /// A caller who pauses mid-number ends the utterance: the first half goes by the card word
    /// before it, the second by the first ending on a card.
    #[test]
    fn a_card_split_over_two_utterances_is_masked_in_both() {
        let policy = Policy::default();
        let (first, found) = redact("My card number is 4111, 1111.", &policy);
        assert_eq!(first, "My card number is [CARD].");
        assert!(ends_on_a_card(&first, &found));
        let (second, found) = redact_continuing("1111, 1111. Expires in May.", &policy, true);
        assert_eq!(second, "[CARD]. Expires in May.");
        assert!(!ends_on_a_card(&second, &found));
        // Without the open card, four digits alone are nobody's secret.
        assert_eq!(redact("1111, 1111.", &policy).0, "1111, 1111.");
        assert_eq!(
            redact_continuing("We saw 12 houses and 1,200 offers", &policy, true).0,
            "We saw 12 houses and 1,200 offers"
        );
    }

    #[test]
    fn mask_last4_keeps_the_last_four_digits() {
        let policy = RedactionConfig::parse("acme=card:mask_last4")
            .unwrap()
            .policy_for(&OrgId::parse("acme").unwrap());
        let (text, _) = redact("it's 4242 4242 4242 4242", &policy);
        assert_eq!(text, "it's [CARD ••••4242]");
    }

    #[test]
    fn policies_are_per_organization() {
        let config = RedactionConfig::parse("acme=card:off; *=card,phone").unwrap();
        let acme = config.policy_for(&OrgId::parse("acme").unwrap());
        let other = config.policy_for(&OrgId::parse("globex").unwrap());
        assert_eq!(redact("4111111111111111", &acme).0, "4111111111111111");
        assert_eq!(redact("4111111111111111", &other).0, "[CARD]");
        assert_eq!(redact("call 5550100199", &other).0, "call [PHONE]");
        assert!(RedactionConfig::parse("acme=card:shred").is_err());
        assert!(RedactionConfig::parse("acme=cvv").is_err());
        assert_eq!(
            RedactionConfig::default().policy_for(&OrgId::parse("x").unwrap()),
            Policy::default()
        );
    }

    #[test]
    fn numbers_read_out_are_found_as_the_digits_they_say() {
        let policy = all_redacted();
        let (text, found) = redact(
            "it's four one one one, one one one one, one one one one, one one one one, thanks",
            &policy,
        );
        assert_eq!(text, "it's [CARD], thanks");
        assert_eq!(found.len(), 1);
        // "oh" inside a number, "double", tens: a phone.
        assert_eq!(
            redact(
                "reach me at four one five, double five oh, fifty six seventy eight",
                &policy
            )
            .0,
            "reach me at [PHONE]"
        );
        // Grouped 3-2-4 is a social security number, with or without the word.
        assert_eq!(
            redact(
                "write down five two three, one one, six seven eight nine",
                &policy
            )
            .0,
            "write down [SSN]"
        );
        // "oh" alone, "double" before no digit, "one or two": words, not numbers.
        let kept = "oh, he wants double the deposit for one or two bedrooms";
        assert_eq!(redact(kept, &policy).0, kept);
    }

    #[test]
    fn amounts_dates_and_codes_by_what_they_are() {
        let policy = all_redacted();
        for kept in [
            "my card has a 5,000 limit",
            "my checking account has about 40,000 in it",
            "the account has been open since 2019",
            "the social hall holds 120 people at 1420 Maple",
        ] {
            assert_eq!(redact(kept, &policy).0, kept);
        }
        assert_eq!(
            redact("card 4111 1111 1111 1111, exp 09/27, cvv 123", &policy).0,
            "card [CARD], exp 09/27, cvv [CARD]"
        );
        assert_eq!(
            redact(
                "routing 021000021, the last four of my social are 6789",
                &policy
            )
            .0,
            "routing [BANK], the last four of my social are [SSN]"
        );
    }

    #[test]
    fn email_addresses_read_out() {
        let policy = all_redacted();
        assert_eq!(
            redact("send it to dana dot reyes at gmail dot com please", &policy).0,
            "send it to [EMAIL] please"
        );
        assert_eq!(
            redact(
                "it's d a n a at yahoo dot com or dana.reyes at gmail.com",
                &policy
            )
            .0,
            "it's [EMAIL] or [EMAIL]"
        );
        let kept = "look me up at facebook dot com, I'll be at zillow dot com";
        assert_eq!(redact(kept, &policy).0, kept);
    }
}
