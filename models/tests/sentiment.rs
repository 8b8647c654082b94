//! Sentiment against the real MiniLM weights and the committed fine-tuned file (`make models`).

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};
use winnerr_models::sentiment::{BertLayer, SentenceEncoder};
use winnerr_models::{ModelDir, ModelError, SentimentLabel, SentimentModel};

mod common;
use common::{fetched, max_difference};

fn minilm() -> std::path::PathBuf {
    fetched(ModelDir::from_env().minilm(), "model.safetensors")
}

#[test]
fn our_differentiable_layers_reproduce_candles_bert() {
    let dir = minilm();
    let texts = ["The house has a lovely garden.", "No."];
    let ours = SentenceEncoder::load(&dir, &Device::Cpu, None, 6)
        .unwrap()
        .embed(&texts)
        .unwrap();

    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    let bert = BertModel::load(vb, &config).unwrap();
    let encoding = |t: &str| {
        let mut tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        tok.with_padding(None); // the file pads to 128; one unpadded sentence needs no mask
        tok.encode(t, true).unwrap().get_ids().to_vec()
    };
    for (i, text) in texts.iter().enumerate() {
        let ids = Tensor::new(encoding(text), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let hidden = bert
            .forward(&ids, &ids.zeros_like().unwrap(), None)
            .unwrap();
        let pooled = hidden.mean(1).unwrap();
        let norm = pooled
            .sqr()
            .unwrap()
            .sum_keepdim(1)
            .unwrap()
            .sqrt()
            .unwrap();
        let expected = pooled.broadcast_div(&norm).unwrap().squeeze(0).unwrap();
        let got = ours.get(i).unwrap();
        let diff = max_difference(&got, &expected);
        assert!(diff < 1e-4, "{text}: embeddings differ by {diff}");
    }
}

#[test]
fn the_trainable_layer_computes_what_the_inference_layer_does() {
    // Training runs the differentiable forms (tensor-op layer norm and softmax), inference the
    // fused kernels: the same weights must give the same outputs, padding mask included.
    let weights = minilm().join("model.safetensors");
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)
    }
    .unwrap()
    .pp("encoder.layer.5");
    let training = BertLayer::load(vb.clone(), true).unwrap();
    let inference = BertLayer::load(vb, false).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 7, 384), &Device::Cpu).unwrap();
    let mask = Tensor::new(
        &[
            [0f32, 0., 0., 0., 0., 0., 0.],
            [0., 0., 0., 0., -10_000., -10_000., -10_000.],
        ],
        &Device::Cpu,
    )
    .unwrap()
    .unsqueeze(1)
    .unwrap()
    .unsqueeze(1)
    .unwrap();
    let diff = max_difference(
        &training.forward(&x, &mask).unwrap(),
        &inference.forward(&x, &mask).unwrap(),
    );
    assert!(diff < 1e-4, "the two forms differ by {diff}");
}

#[test]
fn clear_sentences_get_their_sentiment() {
    let model =
        SentimentModel::load(&minilm(), &SentimentModel::head_file(), &Device::Cpu).unwrap();
    let cases = [
        (
            "I love this house, it is absolutely perfect for our family!",
            SentimentLabel::Positive,
        ),
        (
            "Thank you so much, that is wonderful news.",
            SentimentLabel::Positive,
        ),
        (
            "This is a terrible experience and I am furious about it.",
            SentimentLabel::Negative,
        ),
        (
            "The price is outrageous and your service has been awful.",
            SentimentLabel::Negative,
        ),
        (
            "The property is located on Main Street.",
            SentimentLabel::Neutral,
        ),
        (
            "The meeting is scheduled for Tuesday at ten.",
            SentimentLabel::Neutral,
        ),
    ];
    let texts: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let got = model.classify(&texts).unwrap();
    for ((text, want), s) in cases.iter().zip(&got) {
        assert_eq!(s.label, *want, "{text}: {s:?}");
        let sum: f32 = s.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }
    assert!(got[0].score() > 0.5 && got[2].score() < -0.5);
}

#[test]
fn a_missing_or_corrupt_file_is_a_clear_error() {
    let dir = minilm();
    let missing = SentimentModel::load(
        &dir,
        std::path::Path::new("/nonexistent/head.safetensors"),
        &Device::Cpu,
    );
    assert!(
        matches!(missing, Err(ModelError::Missing { .. })),
        "{:?}",
        missing.err()
    );
    let corrupt = std::env::temp_dir().join(format!(
        "winnerr-corrupt-{}.safetensors",
        std::process::id()
    ));
    std::fs::write(&corrupt, b"not a safetensors file").unwrap();
    let err = SentimentModel::load(&dir, &corrupt, &Device::Cpu)
        .err()
        .expect("a corrupt file fails");
    assert!(matches!(err, ModelError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&corrupt.display().to_string()),
        "{err}"
    );
    std::fs::remove_file(&corrupt).ok();
}
