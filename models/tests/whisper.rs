//! Whisper against the real converted weights (`make models` first; these tests fail with a
//! clear message when the model folder is missing).

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_transformers::models::whisper as reference;
use winnerr_models::whisper::mel::MelSpectrogram;
use winnerr_models::whisper::model::WhisperModel;
use winnerr_models::whisper::{WhisperConfig, WhisperFiles};
use winnerr_models::{DecodeOptions, ModelDir, Whisper};

mod common;
use common::{fetched, max_difference, samples};

fn tiny() -> std::path::PathBuf {
    fetched(
        ModelDir::from_env().whisper("tiny.en"),
        WhisperFiles::WEIGHTS,
    )
}

fn vb(dir: &std::path::Path) -> candle_nn::VarBuilder<'static> {
    let weights = dir.join(WhisperFiles::WEIGHTS);
    unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)
            .unwrap()
    }
}

#[test]
fn our_decoder_matches_candle_transformers_on_the_converted_weights() {
    let dir = tiny();
    let config: WhisperConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let ref_config: reference::Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    // Every tensor candle-transformers expects is present with its shape, or this load fails.
    let mut stock = reference::model::Whisper::load(&vb(&dir), ref_config).unwrap();
    let ours = WhisperModel::load(vb(&dir), config).unwrap();

    let mel_filters = ModelDir::from_env().mel_filters();
    let mel = MelSpectrogram::load(&mel_filters, 80).unwrap();
    let audio = samples("assets/audio/ps_goforward.wav");
    let frames = 3000;
    let mel = Tensor::from_vec(
        mel.compute(&audio, frames, true),
        (1, 80, frames),
        &Device::Cpu,
    )
    .unwrap();

    let ours_audio = ours.encode(&mel).unwrap();
    let stock_audio = stock.encoder.forward(&mel, true).unwrap();
    let diff = max_difference(&ours_audio, &stock_audio);
    // Stock candle uses sinusoids computed in f32 where we use the file's f16 table, and the
    // tanh GELU where we use the exact one: small differences only.
    assert!(diff < 0.1, "encoder outputs differ by {diff}");

    let tokens = [50257u32, 50362, 1514, 2651, 838];
    let ids = Tensor::new(&tokens[..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let stock_hidden = stock.decoder.forward(&ids, &stock_audio, true).unwrap();
    let stock_logits = stock
        .decoder
        .final_linear(&stock_hidden)
        .unwrap()
        .i((0, tokens.len() - 1))
        .unwrap();
    // Ours, one token at a time through the key/value cache.
    let mut state = ours.start(&stock_audio).unwrap();
    let mut logits = None;
    for &t in &tokens {
        logits = Some(ours.decode(&mut state, &[t], None).unwrap().i(0).unwrap());
    }
    let logits = logits.unwrap();
    let argmax = |t: &Tensor| t.argmax(0).unwrap().to_scalar::<u32>().unwrap();
    assert_eq!(argmax(&logits), argmax(&stock_logits));
    let diff = max_difference(&logits, &stock_logits);
    assert!(diff < 0.5, "logits differ by {diff}");
}

#[test]
fn a_known_clip_decodes_to_its_transcript() {
    let whisper =
        Whisper::load(&tiny(), &ModelDir::from_env().mel_filters(), &Device::Cpu).unwrap();
    let t = whisper
        .transcribe(
            &samples("assets/audio/ps_goforward.wav"),
            &DecodeOptions::default(),
        )
        .unwrap();
    assert_eq!(
        winnerr_models::text::word_errors("go forward ten meters", &t.text),
        (0, 4),
        "{t:?}"
    );
    assert!(!t.loop_cut, "{t:?}");
}

#[test]
fn silence_and_white_noise_give_no_text() {
    let whisper =
        Whisper::load(&tiny(), &ModelDir::from_env().mel_filters(), &Device::Cpu).unwrap();
    let silence = vec![0.0f32; 3 * 16_000];
    // Deterministic white noise at a line-noise level and a loud one.
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
        ("silence", silence),
        ("quiet noise", noise(0.01)),
        ("loud noise", noise(0.3)),
    ] {
        let t = whisper
            .transcribe(&audio, &DecodeOptions::default())
            .unwrap();
        assert_eq!(t.text, "", "{name} gave text: {t:?}");
        assert!(t.segments.is_empty(), "{name}: {t:?}");
    }
}

#[test]
fn bad_audio_is_an_error_not_a_panic() {
    let whisper =
        Whisper::load(&tiny(), &ModelDir::from_env().mel_filters(), &Device::Cpu).unwrap();
    let mut audio = vec![0.1f32; 16_000];
    audio[100] = f32::NAN;
    let err = whisper
        .transcribe(&audio, &DecodeOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("sample 100"), "{err}");
    let empty = whisper.transcribe(&[], &DecodeOptions::default()).unwrap();
    assert_eq!(empty.text, "");
}

#[test]
fn missing_or_corrupt_weights_are_clear_errors() {
    let mel = ModelDir::from_env().mel_filters();
    let missing = std::env::temp_dir().join(format!("winnerr-missing-{}", std::process::id()));
    let err = Whisper::load(&missing, &mel, &Device::Cpu)
        .err()
        .expect("no folder, no model");
    assert!(err.to_string().contains("make models"), "{err}");

    // A copy of the real folder with a damaged weight file.
    let corrupt =
        std::env::temp_dir().join(format!("winnerr-corrupt-whisper-{}", std::process::id()));
    std::fs::create_dir_all(&corrupt).unwrap();
    for f in [
        WhisperFiles::CONFIG,
        WhisperFiles::TOKENS,
        WhisperFiles::TOKENIZER,
    ] {
        std::fs::copy(tiny().join(f), corrupt.join(f)).unwrap();
    }
    let weights = std::fs::read(tiny().join(WhisperFiles::WEIGHTS)).unwrap();
    std::fs::write(
        corrupt.join(WhisperFiles::WEIGHTS),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let err = Whisper::load(&corrupt, &mel, &Device::Cpu)
        .err()
        .expect("a truncated file fails");
    assert!(
        matches!(err, winnerr_models::ModelError::Corrupt { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    std::fs::remove_dir_all(&corrupt).ok();
}
