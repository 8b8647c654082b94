//! Redaction of what a caller must not have written anywhere: payment card numbers (13–19
//! digits passing the Luhn check), US social security numbers, phone numbers and email
//! addresses, in the voice stage, before a transcript leaves it (feed, bus, store, alerts, lead
//! scoring all see the redacted text). Spoken numbers reach here as digits (the decoder writes
//! "four one one one, one one one one" as "4111, 1111"), so a number is a run of digit groups
//! joined by spaces, commas, dots or dashes. Each organization has a policy per kind: `redact`
//! (a typed mask such as `[CARD]`), `mask_last4` (`[CARD ••••1111]`) or `off`; by default cards
//! and social security numbers are redacted. An event lists what was redacted (kind and span in
//! the redacted text), never the value.

use std::collections::HashMap;

use winnerr_events::OrgId;

/// What a number or address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    Card,
    Ssn,
    Phone,
    Email,
}

impl PiiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Card => "card",
            PiiKind::Ssn => "ssn",
            PiiKind::Phone => "phone",
            PiiKind::Email => "email",
        }
    }

    fn mask(self) -> &'static str {
        match self {
            PiiKind::Card => "CARD",
            PiiKind::Ssn => "SSN",
            PiiKind::Phone => "PHONE",
            PiiKind::Email => "EMAIL",
        }
    }

    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "card" => Ok(PiiKind::Card),
            "ssn" => Ok(PiiKind::Ssn),
            "phone" => Ok(PiiKind::Phone),
            "email" => Ok(PiiKind::Email),
            other => Err(format!("unknown kind {other:?} (card, ssn, phone, email)")),
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
    fn action(&self, kind: PiiKind) -> Action {
        self.0.get(&kind).copied().unwrap_or(Action::Off)
    }
}

/// Every organization's policy: `org=card:redact,ssn:mask_last4;*=card:redact` (`*` for the
/// others; an organization not named gets the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionConfig {
    by_org: HashMap<OrgId, Policy>,
    others: Option<Policy>,
}

impl RedactionConfig {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut config = RedactionConfig::default();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (org, rules) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?}: expected org=kind:action,…"))?;
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
            match org.trim() {
                "*" => config.others = Some(Policy(policy)),
                org => {
                    let org = OrgId::parse(org).map_err(|e| e.to_string())?;
                    config.by_org.insert(org, Policy(policy));
                }
            }
        }
        Ok(config)
    }

    pub fn policy_for(&self, org: &OrgId) -> Policy {
        self.by_org
            .get(org)
            .or(self.others.as_ref())
            .cloned()
            .unwrap_or_default()
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
    for kind in [PiiKind::Card, PiiKind::Ssn, PiiKind::Phone, PiiKind::Email] {
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

/// `text` with what `policy` redacts masked, and what was.
pub fn redact(text: &str, policy: &Policy) -> (String, Vec<Redaction>) {
    redact_continuing(text, policy, false)
}

/// [`redact`], for the next utterance of a track whose last one ended on a card's digits
/// (`card_open`, see [`ends_on_a_card`]): digits it starts with are the rest of that number, as
/// when a caller pauses long enough mid-number to end the utterance.
pub fn redact_continuing(text: &str, policy: &Policy, card_open: bool) -> (String, Vec<Redaction>) {
    let mut found: Vec<(usize, usize, PiiKind, String)> = Vec::new();
    for run in digit_runs(text) {
        let before = &text[..run.start];
        let continues =
            card_open && run.digits.len() >= 4 && before.chars().all(|c| !c.is_alphanumeric());
        let kind = if continues {
            Some(PiiKind::Card)
        } else {
            classify(&run.digits, before)
        };
        if let Some(kind) = kind {
            found.push((run.start, run.end, kind, run.digits));
        }
    }
    for (start, end) in emails(text) {
        if !found.iter().any(|f| f.0 < end && start < f.1) {
            found.push((start, end, PiiKind::Email, text[start..end].to_owned()));
        }
    }
    found.sort_by_key(|f| f.0);
    let mut out = String::with_capacity(text.len());
    let mut redactions = Vec::new();
    let mut at = 0;
    for (start, end, kind, value) in found {
        let mask = match policy.action(kind) {
            Action::Off => continue,
            Action::Redact => format!("[{}]", kind.mask()),
            Action::MaskLast4 => {
                let last4: String = value
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .rev()
                    .take(4)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("[{} ••••{last4}]", kind.mask())
            }
        };
        out.push_str(&text[at..start]);
        let masked_at = out.len();
        out.push_str(&mask);
        redactions.push(Redaction {
            kind,
            start: masked_at,
            end: out.len(),
        });
        at = end;
    }
    out.push_str(&text[at..]);
    (out, redactions)
}

/// A run of digit groups: where it is in the text and its digits.
struct DigitRun {
    start: usize,
    end: usize,
    digits: String,
}

/// Runs of digit groups joined by at most two separators (space, comma, dot, dash, slash,
/// parentheses): "4111, 1111, 1111, 1111", "123-45-6789", "(555) 010-0199".
fn digit_runs(text: &str) -> Vec<DigitRun> {
    let bytes = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // A "(" just before the first group belongs to it: "(555) 010-0199".
        let start = if i > 0 && bytes[i - 1] == b'(' {
            i - 1
        } else {
            i
        };
        let mut digits = String::new();
        let mut end;
        let mut j = i;
        loop {
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                digits.push(bytes[j] as char);
                j += 1;
            }
            end = j;
            let mut k = j;
            while k < bytes.len() && k - j < 3 && b" ,.-/()".contains(&bytes[k]) {
                k += 1;
            }
            if k > j && k < bytes.len() && bytes[k].is_ascii_digit() {
                j = k;
            } else {
                break;
            }
        }
        runs.push(DigitRun { start, end, digits });
        i = end.max(i + 1);
    }
    runs
}

/// What a run of `digits` is, given the words before it.
fn classify(digits: &str, before: &str) -> Option<PiiKind> {
    let n = digits.len();
    if (13..=19).contains(&n) && luhn(digits) {
        return Some(PiiKind::Card);
    }
    let context = before.to_ascii_lowercase();
    let recent = context
        .char_indices()
        .rev()
        .nth(59)
        .map_or(context.as_str(), |(i, _)| &context[i..]);
    // Digits soon after a word for a card are (part of) one, even when the recognizer got some
    // wrong (a digit lost or repeated fails the Luhn check) or the caller paused mid-number:
    // masked all the same, rather than kept.
    let card_words = ["card", "visa", "mastercard", "amex", "credit", "debit"];
    if n >= 4 && card_words.iter().any(|w| recent.contains(w)) {
        return Some(PiiKind::Card);
    }
    if n == 9 && (recent.contains("social") || recent.contains("ssn") || recent.contains("s.s.n")) {
        return Some(PiiKind::Ssn);
    }
    if n == 10 || (n == 11 && digits.starts_with('1')) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn all_redacted() -> Policy {
        RedactionConfig::parse("*=card,ssn,phone,email")
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
}
