//! One number format in transcripts: digits. Whisper's English output writes most numbers in
//! digits but not all: a number read digit by digit sometimes comes out in words ("five five five,
//! two one two"), with "double" or "oh" left in ("Double 5.5", "Oh 6"), as single digits joined by
//! hyphens ("4-1-1-1"), or as a cardinal in words ("nine hundred twelve thousand"). Downstream
//! readers (redaction, keyterms, urgency cues, the CRM) should see one form: "555, 212", "55.5",
//! "06", "4111", "912000".
//!
//! Only what is unambiguously a number changes: one digit word stays a word ("one bedroom"), "oh"
//! is a zero only before digits, "double" only before a digit, and a cardinal in words only when
//! it has two words or more and parses as one number ("twenty twenty seven" stays).

use crate::text::{ONES, TENS};

/// A token split from the punctuation around it: ("(", "Five", ",").
fn split_punctuation(token: &str) -> (&str, &str, &str) {
    let start = token
        .find(|c: char| c.is_alphanumeric())
        .unwrap_or(token.len());
    let end = token
        .rfind(|c: char| c.is_alphanumeric())
        .map_or(start, |i| i + 1);
    (&token[..start], &token[start..end], &token[end..])
}

/// The digit a spoken digit word stands for ("oh" included).
fn digit_word(word: &str) -> Option<char> {
    let lower = word.to_ascii_lowercase();
    if lower == "oh" {
        return Some('0');
    }
    let i = ONES[..10].iter().position(|d| *d == lower)?;
    Some(char::from(b'0' + i as u8))
}

fn repeat_count(word: &str) -> Option<usize> {
    match word.to_ascii_lowercase().as_str() {
        "double" => Some(2),
        "triple" => Some(3),
        _ => None,
    }
}

/// A token of the text, with what it says as digits when it is part of a number.
struct Token {
    lead: String,
    word: String,
    trail: String,
    /// Digits this token stands for in a digit-by-digit reading.
    digits: Option<String>,
    /// Whether it is written in digits already.
    written: bool,
}

impl Token {
    fn new(raw: &str) -> Self {
        let (lead, word, trail) = split_punctuation(raw);
        let written = word.starts_with(|c: char| c.is_ascii_digit());
        Self {
            lead: lead.into(),
            word: word.into(),
            trail: trail.into(),
            digits: digit_word(word).map(String::from),
            written,
        }
    }
    fn render(&self) -> String {
        format!("{}{}{}", self.lead, self.word, self.trail)
    }
}

/// Whisper's text with numbers in digits (see the module's doc).
pub fn format_numbers(text: &str) -> String {
    let mut tokens: Vec<Token> = text.split_whitespace().map(Token::new).collect();
    merge_repeats(&mut tokens);
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if let Some((written, next)) = digit_run(&tokens, i) {
            out.push(written);
            i = next;
        } else if let Some((written, next)) = cardinal(&tokens, i) {
            out.push(written);
            i = next;
        } else {
            out.push(join_single_digits(&tokens[i].render()));
            i += 1;
        }
    }
    out.join(" ")
}

/// "double five" → "55", "Double 5.5" → "55.5", "triple seven" → "777"; "oh" before digits
/// ("Oh 6") → "0" joined to them.
fn merge_repeats(tokens: &mut Vec<Token>) {
    let mut i = 0;
    while i + 1 < tokens.len() {
        let (this, next) = (&tokens[i], &tokens[i + 1]);
        let joined = this.trail.is_empty() && next.lead.is_empty();
        if let (Some(times), true) = (repeat_count(&this.word), joined) {
            if let Some(d) = &next.digits {
                let merged = d.repeat(times);
                tokens[i + 1].digits = Some(merged.clone());
                tokens[i + 1].word = merged;
                tokens[i + 1].lead = std::mem::take(&mut tokens[i].lead);
                tokens.remove(i);
                continue;
            }
            if next.written {
                let first = &next.word[..1];
                let word = format!("{}{}", first.repeat(times - 1), next.word);
                tokens[i + 1].word = word;
                tokens[i + 1].lead = std::mem::take(&mut tokens[i].lead);
                tokens.remove(i);
                continue;
            }
        }
        if this.word.eq_ignore_ascii_case("oh") && joined && next.written {
            tokens[i + 1].word = format!("0{}", next.word);
            tokens[i + 1].lead = std::mem::take(&mut tokens[i].lead);
            tokens.remove(i);
            continue;
        }
        i += 1;
    }
}

/// A run of spoken digits from `start` (two digits at least), groups kept apart where the speaker
/// paused (a comma): the run written in digits, and where it ends.
fn digit_run(tokens: &[Token], start: usize) -> Option<(String, usize)> {
    let mut groups: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut j = start;
    while let Some(token) = tokens.get(j) {
        let Some(digits) = &token.digits else { break };
        if j > start && !token.lead.is_empty() {
            break;
        }
        current.push_str(digits);
        j += 1;
        if !token.trail.is_empty() {
            groups.push(std::mem::take(&mut current) + &token.trail);
            if token.trail != "," {
                break;
            }
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    let digits: usize = groups
        .iter()
        .map(|g| g.chars().filter(char::is_ascii_digit).count())
        .sum();
    if digits < 2 {
        return None;
    }
    // A trailing comma group's comma stays with the text after it.
    Some((format!("{}{}", tokens[start].lead, groups.join(" ")), j))
}

/// A number word below a hundred: its value, and whether it is a tens word ("twenty").
fn small_number(word: &str) -> Option<(u64, bool)> {
    let lower = word.to_ascii_lowercase();
    if let Some(i) = ONES.iter().position(|w| *w == lower) {
        return Some((i as u64, false));
    }
    TENS.iter()
        .position(|w| !w.is_empty() && *w == lower)
        .map(|i| (10 * i as u64, true))
}

/// What the last word of a cardinal in words was: which word may follow.
#[derive(Clone, Copy, PartialEq)]
enum Last {
    Ones,
    Teen,
    Tens,
    Hundred,
    Scale(u64),
    And,
}

/// A cardinal in words from `start` ("nine hundred twelve thousand"): at least two words, one of
/// them a scale (hundred, thousand, million) or tens then ones ("twenty five"), parsed as one
/// number; written in digits, with where it ends. Not when a number word comes just before (in
/// "twenty twenty seven" no part is one number).
fn cardinal(tokens: &[Token], start: usize) -> Option<(String, usize)> {
    if start > 0 && small_number(&tokens[start - 1].word).is_some() {
        return None;
    }
    let (mut total, mut current) = (0u64, 0u64);
    let mut last: Option<Last> = None;
    let mut smallest_scale = u64::MAX;
    let mut value_end = (start, 0u64);
    for (j, token) in tokens.iter().enumerate().skip(start) {
        if j > start && (!token.lead.is_empty() || !tokens[j - 1].trail.is_empty()) {
            break;
        }
        let lower = token.word.to_ascii_lowercase();
        let after_scale = matches!(
            last,
            None | Some(Last::Hundred | Last::Scale(_) | Last::And)
        );
        let next = match (lower.as_str(), small_number(&lower)) {
            ("hundred", _) if matches!(last, Some(Last::Ones | Last::Teen)) && current < 20 => {
                current *= 100;
                Last::Hundred
            }
            ("thousand", _) | ("million", _) => {
                let scale = if lower == "thousand" {
                    1_000
                } else {
                    1_000_000
                };
                let counted = matches!(
                    last,
                    Some(Last::Ones | Last::Teen | Last::Tens | Last::Hundred)
                );
                if !counted || scale >= smallest_scale {
                    break;
                }
                total += current * scale;
                current = 0;
                smallest_scale = scale;
                Last::Scale(scale)
            }
            ("and", _) if matches!(last, Some(Last::Hundred | Last::Scale(_))) => Last::And,
            (_, Some((value, true))) if after_scale => {
                current += value;
                Last::Tens
            }
            (_, Some((value, false)))
                if value < 10 && (after_scale || last == Some(Last::Tens)) =>
            {
                current += value;
                Last::Ones
            }
            (_, Some((value, false))) if value >= 10 && after_scale => {
                current += value;
                Last::Teen
            }
            _ => break,
        };
        last = Some(next);
        if next != Last::And {
            value_end = (j + 1, total + current);
        }
    }
    let (end, value) = value_end;
    let words = &tokens[start..end];
    let scaled = words.iter().any(|t| {
        matches!(
            t.word.to_ascii_lowercase().as_str(),
            "hundred" | "thousand" | "million"
        )
    });
    if words.len() < 2 || !(scaled || value >= 21) {
        return None;
    }
    Some((
        format!("{}{value}{}", tokens[start].lead, tokens[end - 1].trail),
        end,
    ))
}

/// "4-1-1-1" → "4111": single digits joined by hyphens are one number read digit by digit.
fn join_single_digits(token: &str) -> String {
    let (lead, word, trailing) = split_punctuation(token);
    let parts: Vec<&str> = word.split('-').collect();
    if parts.len() >= 2
        && parts
            .iter()
            .all(|p| p.len() == 1 && p.as_bytes()[0].is_ascii_digit())
    {
        format!("{lead}{}{trailing}", parts.concat())
    } else {
        token.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::format_numbers;

    #[test]
    fn spoken_digit_runs_become_digits() {
        assert_eq!(
            format_numbers("my card number is four one one one, one one one one."),
            "my card number is 4111, 1111."
        );
        assert_eq!(
            format_numbers("Call me at five five five, two one two, three four five six."),
            "Call me at 555, 212, 3456."
        );
        assert_eq!(format_numbers("It's double five oh one."), "It's 5501.");
        assert_eq!(format_numbers("triple seven"), "777");
        assert_eq!(format_numbers("4-1-1-1 and 2-2"), "4111 and 22");
    }

    #[test]
    fn double_and_oh_next_to_digits_join_them() {
        assert_eq!(
            format_numbers("My number is 334. Double 5.5. 3752."),
            "My number is 334. 55.5. 3752."
        );
        assert_eq!(format_numbers("977 503. Oh 6. 66."), "977 503. 06. 66.");
        assert_eq!(
            format_numbers("3 4 8 1 Double 7 double 6 6"),
            "3 4 8 1 77 66 6"
        );
    }

    #[test]
    fn cardinals_in_words_become_digits() {
        assert_eq!(
            format_numbers("the asking price is nine hundred twelve thousand dollars."),
            "the asking price is 912000 dollars."
        );
        assert_eq!(format_numbers("four hundred and fifty thousand"), "450000");
        assert_eq!(format_numbers("twenty five"), "25");
        assert_eq!(
            format_numbers("two thousand four hundred a month"),
            "2400 a month"
        );
    }

    #[test]
    fn single_numbers_and_words_stay() {
        for text in [
            "one bedroom and two baths",
            "Oh, I see.",
            "two or three bedrooms",
            "the double garage",
            "555-212-3456",
            "$450,000",
            "no one knows",
            "twenty twenty seven",
            "one of them",
            "a hundred percent",
            "ten",
        ] {
            assert_eq!(format_numbers(text), text);
        }
    }
}
