//! Per track: the rolling sentiment and the alerts a manager should see — a sentiment drop beyond
//! a threshold, and phrases from the organization's watch list.

use winnerr_events::{AlertKind, OrgId, PerOrg, SentimentArc};

/// Alert settings.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// Weight of the newest utterance in the rolling sentiment (exponential mean).
    pub rolling_weight: f32,
    /// Alert when the rolling sentiment falls this far below its best in the call.
    pub drop_threshold: f32,
    /// Watch lists per organization (lower case); `*`'s for the others.
    pub keywords: PerOrg<Vec<String>>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            rolling_weight: 0.5,
            drop_threshold: 0.6,
            keywords: PerOrg::all(
                [
                    "cancel",
                    "lawyer",
                    "attorney",
                    "too expensive",
                    "complaint",
                    "refund",
                ]
                .map(String::from)
                .to_vec(),
            ),
        }
    }
}

impl AlertConfig {
    /// The watch list of `org`, lower case.
    pub fn keywords_for(&self, org: &OrgId) -> &[String] {
        self.keywords.of(org)
    }

    /// Parses `org=phrase|phrase;org2=phrase` (phrases are matched case-insensitively on word
    /// boundaries; `*=` sets the list of every organization not named, else the built-in one).
    pub fn parse_keywords(&mut self, spec: &str) -> Result<(), String> {
        let default = self.keywords.default_value().clone();
        self.keywords = PerOrg::parse(spec, default, |phrases| {
            Ok(phrases
                .split('|')
                .map(|p| p.trim().to_lowercase())
                .filter(|p| !p.is_empty())
                .collect())
        })?;
        Ok(())
    }
}

/// The rolling sentiment of one track.
#[derive(Debug, Default)]
pub struct Rolling {
    /// After the first utterance, and now.
    first: Option<f32>,
    value: Option<f32>,
    best: f32,
    alerted: bool,
}

impl Rolling {
    /// Adds an utterance's score; returns the new rolling value and a drop alert if one is due
    /// (once per drop: it re-arms when the rolling value recovers above half the threshold).
    pub fn add(&mut self, score: f32, config: &AlertConfig) -> (f32, Option<AlertKind>) {
        let (value, best) = match self.value {
            None => (score, score),
            Some(v) => {
                let value = v + config.rolling_weight * (score - v);
                (value, self.best.max(value))
            }
        };
        self.first.get_or_insert(value);
        self.value = Some(value);
        self.best = best;
        let fall = self.best - value;
        let alert = if fall >= config.drop_threshold && !self.alerted {
            self.alerted = true;
            Some(AlertKind::SentimentDrop {
                from: self.best,
                to: value,
            })
        } else {
            if fall < config.drop_threshold / 2.0 {
                self.alerted = false;
            }
            None
        };
        (value, alert)
    }

    /// The rolling value after the track's first utterance and now; `None` before any.
    pub fn arc(&self) -> Option<SentimentArc> {
        Some(SentimentArc {
            start: self.first?,
            end: self.value?,
        })
    }
}

/// The watch-list phrases `text` contains, on word boundaries, case-insensitively.
pub fn keywords_in(text: &str, keywords: &[String]) -> Vec<String> {
    let words: Vec<String> = text
        .to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    keywords
        .iter()
        .filter(|phrase| {
            let phrase: Vec<&str> = phrase.split_whitespace().collect();
            !phrase.is_empty()
                && words
                    .windows(phrase.len())
                    .any(|w| w.iter().zip(&phrase).all(|(a, b)| a == b))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_whole_words_and_phrases() {
        let list = AlertConfig::default().keywords.default_value().clone();
        assert_eq!(
            keywords_in("I want to CANCEL this, it's too expensive!", &list),
            vec!["cancel", "too expensive"]
        );
        assert!(keywords_in("The cancellation policy is fine", &list).is_empty());
        assert!(keywords_in("it's expensive, too", &list).is_empty());
    }

    #[test]
    fn the_arc_runs_from_the_first_rolling_value_to_the_latest() {
        let config = AlertConfig::default();
        let mut r = Rolling::default();
        assert_eq!(r.arc(), None);
        r.add(0.8, &config);
        let (latest, _) = r.add(-0.4, &config);
        assert_eq!(
            r.arc(),
            Some(SentimentArc {
                start: 0.8,
                end: latest
            })
        );
    }

    #[test]
    fn a_drop_alerts_once_until_it_recovers() {
        let config = AlertConfig::default();
        let mut r = Rolling::default();
        assert_eq!(r.add(0.8, &config).1, None);
        assert_eq!(r.add(0.6, &config).1, None);
        let (value, alert) = r.add(-0.9, &config);
        assert!(
            matches!(alert, Some(AlertKind::SentimentDrop { .. })),
            "{value} {alert:?}"
        );
        assert_eq!(
            r.add(-0.9, &config).1,
            None,
            "no second alert for the same drop"
        );
    }

    #[test]
    fn watch_lists_parse_per_organization() {
        let mut config = AlertConfig::default();
        config
            .parse_keywords("acme=Walk Away|lawsuit; *=cancel")
            .unwrap();
        let acme = OrgId::parse("acme").unwrap();
        assert_eq!(config.keywords_for(&acme), ["walk away", "lawsuit"]);
        assert_eq!(
            config.keywords_for(&OrgId::parse("other").unwrap()),
            ["cancel"]
        );
        assert!(config.parse_keywords("no-equals-sign").is_err());
    }
}
