//! Keyterms through decoding (issue 21), on the committed keyterm test set through the phone
//! path: an organization's words given to Whisper come out spelled as the organization spells
//! them where stock decoding misspells them, and words expected on a call do not appear in
//! silence or noise.

use winnerr::evaluate;
use winnerr_models::{DecodeOptions, ModelDir, Prompt, Whisper};
use winnerr_voice::asr::KEYTERM_PROMPT_TOKENS;
use winnerr_voice::keyterms;

fn whisper() -> Whisper {
    Whisper::open(&ModelDir::from_env(), "tiny.en").expect("Whisper tiny.en (`make models`)")
}

/// The organization's words as the engine orders them, after the call's own.
fn organization_terms() -> Vec<String> {
    let (_, sources) = evaluate::read_keyterm_set(&evaluate::keyterms_manifest()).unwrap();
    keyterms::merged([&sources.org[..], &keyterms::trade_terms()[..]])
}

#[test]
fn the_organizations_words_are_spelled_as_it_spells_them() {
    let whisper = whisper();
    let (clips, _) = evaluate::read_keyterm_set(&evaluate::keyterms_manifest()).unwrap();
    // The words of a call of an organization that listed these, as the engine orders them.
    let listed: Vec<String> = ["Winnerr Realty", "Priya Raghunathan", "Tuckahoe Lane"]
        .map(String::from)
        .into();
    let terms = keyterms::merged([&listed[..], &keyterms::trade_terms()[..]]);
    let words = whisper
        .keyterm_prompt(&terms, KEYTERM_PROMPT_TOKENS)
        .unwrap();
    assert!(!words.is_empty() && words.tokens().len() <= KEYTERM_PROMPT_TOKENS);
    assert_eq!(
        words.terms().len(),
        terms.len(),
        "every term gets the bonus"
    );
    // The prompt is the first terms that fit, as a comma-separated list.
    let said = whisper.detokenize(words.tokens()).unwrap();
    let fitted = (1..=terms.len())
        .rev()
        .find(|&n| said.trim() == terms[..n].join(", "));
    assert!(fitted.is_some_and(|n| n >= 3), "{said:?}");
    // "Thanks for calling Winnerr Realty, I can put you through to Priya Raghunathan."
    let clip = clips.iter().find(|c| c.clip.id == "keyterms_022").unwrap();
    let audio = evaluate::load_phone(&clip.clip.path).unwrap();
    let options = DecodeOptions::default();
    let stock = whisper.transcribe(&audio, &options).unwrap();
    assert!(
        keyterms::heard(&stock.text, &clip.keyterms).is_empty(),
        "the case this guards: {:?}",
        stock.text
    );
    let expecting = whisper.transcribe_with(&audio, &options, &words).unwrap();
    assert_eq!(
        keyterms::heard(&expecting.text, &clip.keyterms),
        vec!["Winnerr Realty", "Priya Raghunathan"],
        "{:?}",
        expecting.text
    );
}

#[test]
fn expected_words_do_not_appear_in_silence_or_noise() {
    let whisper = whisper();
    let words = whisper
        .keyterm_prompt(&organization_terms(), Prompt::MAX_TOKENS)
        .unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |amplitude: f32| -> Vec<f32> {
        (0..3 * 16_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amplitude
            })
            .collect()
    };
    for (name, audio) in [
        ("silence", vec![0.0f32; 3 * 16_000]),
        ("quiet noise", noise(0.01)),
        ("loud noise", noise(0.3)),
    ] {
        let t = whisper
            .transcribe_with(&audio, &DecodeOptions::default(), &words)
            .unwrap();
        assert_eq!(t.text, "", "{name} gave text: {t:?}");
    }
}

/// `make run`'s demo: its organization's words, which it is given at start, come out as it spells
/// them in the agent's first sentence ("Hi, this is Sam from Winnerr Realty. Thanks for calling
/// about the house on Maple Street.").
#[test]
fn the_demo_call_names_its_brokerage_and_street() {
    let whisper = whisper();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/audio/demo_agent.wav");
    let audio = evaluate::load_phone(&path).unwrap();
    // The first sentence: from its first voiced 100 ms to the next second of silence.
    let silent: Vec<bool> = audio
        .chunks(1600)
        .map(|c| c.iter().all(|s| s.abs() < 0.01))
        .collect();
    let start = silent.iter().position(|s| !s).unwrap();
    let end = (start..silent.len())
        .find(|&i| silent[i..].iter().take(10).all(|s| *s))
        .unwrap_or(silent.len());
    let first = &audio[start.saturating_sub(2) * 1600..(end * 1600).min(audio.len())];
    let terms: Vec<String> = winnerr::demo::DEMO_KEYTERMS
        .iter()
        .map(|t| t.to_string())
        .collect();
    let terms = keyterms::merged([&terms[..], &keyterms::trade_terms()[..]]);
    let words = whisper
        .keyterm_prompt(&terms, KEYTERM_PROMPT_TOKENS)
        .unwrap();
    let options = DecodeOptions::default();
    let stock = whisper.transcribe(first, &options).unwrap();
    let expecting = whisper.transcribe_with(first, &options, &words).unwrap();
    assert_eq!(
        keyterms::heard(&expecting.text, &terms),
        vec!["Winnerr Realty", "Maple Street", "Sam"],
        "{:?} (without them: {:?})",
        expecting.text,
        stock.text
    );
}
