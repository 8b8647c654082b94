//! Keyterms: the words an organization's calls are expected to hold — the brokerage's name, its
//! agents', the call's lead, the streets of the homes the lead viewed, the trade's words — which a
//! general recognizer spells wrong ("Wither Realty" for "Winnerr Realty"). Each call gets its list
//! when it starts ([`KeytermSource`]); the speech worker gives it to Whisper as the words to expect,
//! and the call's summary says which of them were heard.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use winnerr_events::CallContext;
use winnerr_models::text::bare_words;

/// The trade's words every organization's list ends with: terms the recognizer gets wrong or
/// splits without a hint ("pre-approved", "HOA", "escrow"). An organization's own terms go first.
pub const REAL_ESTATE_TERMS: &[&str] = &[
    "pre-approved",
    "pre-approval",
    "escrow",
    "HOA",
    "earnest money",
    "contingency",
    "appraisal",
    "closing costs",
    "MLS",
    "FHA loan",
    "VA loan",
    "jumbo loan",
    "title insurance",
    "home inspection",
    "comps",
    "duplex",
    "condo",
    "townhouse",
    "open house",
    "down payment",
    "refinance",
];

/// Where a call's keyterms come from: the store in a full engine (names, viewed properties, the
/// organization's list), nothing without one.
pub trait KeytermSource: Send + Sync + 'static {
    /// The call's terms, most important first (the recognizer keeps as many as fit); `Err`
    /// says why they could not be read (the call then gets the trade's words).
    fn keyterms<'a>(&'a self, call: &'a CallContext) -> BoxFuture<'a, Result<Vec<String>, String>>;
}

/// The trade's words, as terms.
pub fn trade_terms() -> Vec<String> {
    REAL_ESTATE_TERMS.iter().map(|t| t.to_string()).collect()
}

/// Only the trade's words: for an engine without a store.
pub struct TradeTerms;

impl KeytermSource for TradeTerms {
    fn keyterms<'a>(
        &'a self,
        _call: &'a CallContext,
    ) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async { Ok(trade_terms()) })
    }
}

/// The shared source a voice stage asks.
pub type Keyterms = Arc<dyn KeytermSource>;

/// `lists` merged in order, each term once (case-insensitively), blanks left out.
pub fn merged<'a>(lists: impl IntoIterator<Item = &'a [String]>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    lists
        .into_iter()
        .flatten()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty() && seen.insert(t.to_lowercase()))
        .map(str::to_string)
        .collect()
}

/// The terms `text` holds, as whole words compared bare (case and marks aside: "H.O.A." holds
/// "HOA"), in the order of `terms`.
pub fn heard<'a>(text: &str, terms: &'a [String]) -> Vec<&'a str> {
    let said = bare_words(text);
    terms
        .iter()
        .filter(|term| {
            let term = bare_words(term);
            !term.is_empty()
                && said
                    .windows(term.len())
                    .any(|w| w.iter().zip(&term).all(|(a, b)| a == b))
        })
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(terms: &[&str]) -> Vec<String> {
        terms.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn terms_are_heard_as_whole_words_whatever_their_marks() {
        let terms = list(&["Winnerr Realty", "HOA", "pre-approved", "comps", "O'Malley"]);
        assert_eq!(
            heard("Hi, this is Sam with Winnerr Realty.", &terms),
            vec!["Winnerr Realty"]
        );
        assert_eq!(
            heard("The H.O.A. fees, and we're preapproved.", &terms),
            vec!["HOA", "pre-approved"]
        );
        // Spelling counts: "Winner Realty" is the recognizer's mistake, not the term.
        assert!(heard("Winner Realty", &terms).is_empty());
        // Whole words only: "compost" holds no "comps".
        assert!(heard("we compost a lot", &terms).is_empty());
        assert_eq!(heard("Mrs. OMalley called", &terms), vec!["O'Malley"]);
    }

    #[test]
    fn merged_lists_keep_the_first_spelling_and_order() {
        let call = list(&["Dana Whitfield", "12 Maple Street"]);
        let org = list(&["Winnerr Realty", "dana whitfield", " "]);
        let trade = list(&["escrow"]);
        assert_eq!(
            merged([&call[..], &org[..], &trade[..]]),
            list(&[
                "Dana Whitfield",
                "12 Maple Street",
                "Winnerr Realty",
                "escrow"
            ])
        );
    }
}
