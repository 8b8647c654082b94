//! The US state a caller's number belongs to, from its area code, for the states whose laws
//! want every party's consent to record a call (California, Connecticut, Delaware, Florida,
//! Illinois, Maryland, Massachusetts, Michigan, Montana, Nevada, New Hampshire, Oregon,
//! Pennsylvania, Washington). Other states are not listed: a consent policy can name only these.
//! An area code says where a number was issued, not where its holder is now (a moved mobile
//! keeps its code), so this is a floor the organization's own policy adds to, never a proof.

/// Each all-party-consent state with its area codes.
const AREA_CODES: &[(&str, &[u16])] = &[
    (
        "CA",
        &[
            209, 213, 279, 310, 323, 341, 350, 408, 415, 424, 442, 510, 530, 559, 562, 619, 626,
            628, 650, 657, 661, 669, 707, 714, 747, 760, 805, 818, 820, 831, 840, 858, 909, 916,
            925, 949, 951,
        ],
    ),
    ("CT", &[203, 475, 860, 959]),
    ("DE", &[302]),
    (
        "FL",
        &[
            239, 305, 321, 324, 352, 386, 407, 448, 561, 645, 656, 689, 727, 728, 754, 772, 786,
            813, 850, 863, 904, 941, 954,
        ],
    ),
    (
        "IL",
        &[
            217, 224, 309, 312, 331, 447, 464, 618, 630, 708, 730, 773, 779, 815, 847, 861, 872,
        ],
    ),
    ("MD", &[227, 240, 301, 410, 443, 667]),
    ("MA", &[339, 351, 413, 508, 617, 774, 781, 857, 978]),
    (
        "MI",
        &[
            231, 248, 269, 313, 517, 586, 616, 679, 734, 810, 906, 947, 989,
        ],
    ),
    ("MT", &[406]),
    ("NV", &[702, 725, 775]),
    ("NH", &[603]),
    ("OR", &[458, 503, 541, 971]),
    (
        "PA",
        &[
            215, 223, 267, 272, 412, 445, 484, 570, 582, 610, 717, 724, 814, 835, 878,
        ],
    ),
    ("WA", &[206, 253, 360, 425, 509, 564]),
];

/// The states [`state_of`] can name.
pub fn all_party_states() -> impl Iterator<Item = &'static str> {
    AREA_CODES.iter().map(|(state, _)| *state)
}

/// The all-party-consent state of a North American number in E.164 (`+1` and ten digits), if
/// its area code is one of theirs.
pub fn state_of(number: &str) -> Option<&'static str> {
    let national = number.strip_prefix("+1")?;
    if national.len() != 10 || !national.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = national[..3].parse().ok()?;
    AREA_CODES
        .iter()
        .find(|(_, codes)| codes.contains(&code))
        .map(|(state, _)| *state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_placed_by_its_area_code() {
        assert_eq!(state_of("+14155550100"), Some("CA"));
        assert_eq!(state_of("+12065550100"), Some("WA"));
        assert_eq!(state_of("+16175550100"), Some("MA"));
        // Texas and New York are one-party states: not listed.
        assert_eq!(state_of("+15125550100"), None);
        assert_eq!(state_of("+12125550100"), None);
        // Not North American, or not a number.
        for other in [
            "+442079460958",
            "+1415555010",
            "+1415555010x",
            "4155550100",
            "",
        ] {
            assert_eq!(state_of(other), None, "{other}");
        }
    }

    #[test]
    fn no_area_code_is_in_two_states() {
        let mut seen = std::collections::HashSet::new();
        for (state, codes) in AREA_CODES {
            for code in *codes {
                assert!(seen.insert(code), "{code} listed twice (again in {state})");
            }
        }
    }
}
