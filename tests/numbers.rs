//! Numbers survive decoding (the committed number test set, through the phone path): a caller who
//! pauses before reading a card number gets the number in the transcript, not only the words
//! before the pause; and audio that throws Whisper into a loop still ends without runaway text.

use winnerr::evaluate;
use winnerr_models::whisper::Window;
use winnerr_models::{DecodeOptions, ModelDir, Whisper};

fn whisper() -> Whisper {
    Whisper::open(&ModelDir::from_env(), "tiny.en").expect("Whisper tiny.en (`make models`)")
}

fn number_clip(id: &str) -> Vec<f32> {
    let clips = evaluate::read_number_manifest(&evaluate::numbers_manifest()).unwrap();
    let clip = clips.iter().find(|c| c.clip.id == id).unwrap();
    evaluate::load_phone(&clip.clip.path).unwrap()
}

#[test]
fn a_pause_before_the_number_does_not_end_the_transcript() {
    let whisper = whisper();
    // "let me read it to you, ..." then sixteen digits: greedy decoding ended at the pause.
    for id in ["cards_003", "cards_007", "cards_012"] {
        let audio = number_clip(id);
        let before = whisper
            .transcribe(&audio, &DecodeOptions::before_fallback())
            .unwrap();
        let now = whisper
            .transcribe(&audio, &DecodeOptions::default())
            .unwrap();
        let digits = |text: &str| text.chars().filter(char::is_ascii_digit).count();
        assert!(
            digits(&before.text) < 4,
            "{id}: the case this guards: {:?}",
            before.text
        );
        assert!(
            digits(&now.text) >= 12,
            "{id}: the number is lost: {:?}",
            now.text
        );
    }
}

#[test]
fn a_decoder_loop_ends_without_runaway_text() {
    let whisper = whisper();
    // Encoding exactly the utterance's length (no padding) throws Whisper into loops.
    let exact = DecodeOptions {
        window: Window::Padded {
            min_s: 0.0,
            margin_s: 0.0,
        },
        ..DecodeOptions::default()
    };
    let clips = evaluate::read_manifest(&evaluate::speech_manifest()).unwrap();
    let mut guarded = 0;
    for clip in &clips {
        let audio = evaluate::load_phone(&clip.path).unwrap();
        let t = whisper.transcribe(&audio, &exact).unwrap();
        guarded += usize::from(t.loop_cut || t.attempts > 1);
        let words: Vec<&str> = t.text.split_whitespace().collect();
        assert!(words.len() <= 24, "{}: runaway text {:?}", clip.id, t.text);
        let tripled = words
            .windows(3)
            .any(|w| w[0] == w[1] && w[1] == w[2] && w[0].len() > 3);
        assert!(!tripled, "{}: a loop in the text {:?}", clip.id, t.text);
    }
    assert!(guarded > 0, "no clip looped: this test shows nothing");
}
