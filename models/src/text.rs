//! Word error rate after one stated normalization, the same for every system compared:
//! lower case; `'s`-style apostrophes kept inside words, all other punctuation removed; hyphens
//! split words; numbers written in digits spelled out as words (up to two digits as a number,
//! "10" → "ten", "45" → "forty five"; longer digit strings, and any with a leading zero, digit by
//! digit, "2934" → "two nine three four", as phone numbers and codes are read).

/// Number words below twenty, by value.
pub const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
/// Tens words by their digit (none for 0 and 1).
pub const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// Words of `text` after the normalization above.
pub fn normalize(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let cleaned: String = lower
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let mut words = Vec::new();
    for raw in cleaned.split_whitespace() {
        let word = raw.trim_matches('\'');
        if word.is_empty() {
            continue;
        }
        // Split runs of digits from letters ("10th" stays one number word plus "th").
        let mut run = String::new();
        let mut digits = false;
        for c in word.chars() {
            let d = c.is_ascii_digit();
            if !run.is_empty() && d != digits {
                push_token(&mut words, &run, digits);
                run.clear();
            }
            digits = d;
            run.push(c);
        }
        push_token(&mut words, &run, digits);
    }
    words
}

fn push_token(words: &mut Vec<String>, token: &str, digits: bool) {
    if token.is_empty() {
        return;
    }
    if !digits {
        words.push(token.to_string());
        return;
    }
    let value: usize = token.parse().unwrap_or(usize::MAX);
    if token.len() <= 2 && !(token.len() == 2 && token.starts_with('0')) {
        if value < 20 {
            words.push(ONES[value].to_string());
        } else {
            words.push(TENS[value / 10].to_string());
            if value % 10 != 0 {
                words.push(ONES[value % 10].to_string());
            }
        }
    } else {
        words.extend(
            token
                .bytes()
                .map(|b| ONES[usize::from(b - b'0')].to_string()),
        );
    }
}

/// Word-level edit distance between a reference and a hypothesis (both normalized) and the
/// reference's length: WER is their ratio.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = normalize(reference);
    let h = normalize(hypothesis);
    let mut previous: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut current = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let substitute = previous[j] + usize::from(rw != hw);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    (previous[h.len()], r.len())
}

/// The words of `text` split at white space, lower case, letters and digits only: a word's marks
/// dropped ("H.O.A." is "hoa", "pre-approved," is "preapproved", "O'Malley" is "omalley").
pub fn bare_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_case_and_punctuation_normalize_alike() {
        assert_eq!(normalize("Ten of Clubs."), normalize("10 of clubs"));
        assert_eq!(
            normalize("2-9-3-4-0"),
            normalize("two nine three four zero")
        );
        assert_eq!(normalize("29340"), normalize("two nine three four zero"));
        assert_eq!(normalize("Forty-five"), vec!["forty", "five"]);
        assert_eq!(normalize("45"), vec!["forty", "five"]);
        assert_eq!(
            normalize("It's fine, isn't it?"),
            vec!["it's", "fine", "isn't", "it"]
        );
    }

    #[test]
    fn word_errors_count_substitutions_insertions_and_deletions() {
        assert_eq!(
            word_errors("go forward ten meters", "Go forward, 10 meters."),
            (0, 4)
        );
        assert_eq!(
            word_errors("go forward ten meters", "go forward to meters please"),
            (2, 4)
        );
        assert_eq!(word_errors("seven of clubs", ""), (3, 3));
    }
}
