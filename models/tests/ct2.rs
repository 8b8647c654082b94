//! The CTranslate2 converter on a small synthetic model whose every value is known: each tensor
//! lands under its Candle name with its shape, fused projections split exactly, nothing left out.

use std::io::Write;

use candle_core::{DType, Tensor};
use winnerr_models::ct2;

struct Ct2Writer {
    bytes: Vec<u8>,
    count: u32,
    next: f32,
}

impl Ct2Writer {
    fn string(&mut self, s: &str) {
        self.bytes.extend(((s.len() + 1) as u16).to_le_bytes());
        self.bytes.extend(s.as_bytes());
        self.bytes.push(0);
    }
    /// A tensor of f32 values counting up from where the last one stopped.
    fn tensor(&mut self, name: &str, dims: &[u32]) {
        self.string(name);
        self.bytes.push(dims.len() as u8);
        dims.iter().for_each(|d| self.bytes.extend(d.to_le_bytes()));
        self.bytes.push(0);
        let n: u32 = dims.iter().product();
        self.bytes.extend((n * 4).to_le_bytes());
        for _ in 0..n {
            self.bytes.extend(self.next.to_le_bytes());
            self.next += 1.0;
        }
        self.count += 1;
    }
    fn zeros(&mut self, name: &str, n: u32) {
        self.string(name);
        self.bytes.push(1);
        self.bytes.extend(n.to_le_bytes());
        self.bytes.push(0);
        self.bytes.extend((n * 4).to_le_bytes());
        self.bytes.extend(std::iter::repeat_n(0u8, n as usize * 4));
        self.count += 1;
    }
    fn scalar(&mut self, name: &str, v: i32) {
        self.string(name);
        self.bytes.push(0);
        self.bytes.push(3);
        self.bytes.extend(4u32.to_le_bytes());
        self.bytes.extend(v.to_le_bytes());
        self.count += 1;
    }
}

fn synthetic(d: u32, key_bias: bool) -> Vec<u8> {
    let mut w = Ct2Writer {
        bytes: Vec::new(),
        count: 0,
        next: 1.0,
    };
    w.tensor("encoder/conv1/weight", &[d, 4, 3]);
    w.tensor("encoder/conv1/bias", &[d]);
    w.tensor("encoder/conv2/weight", &[d, d, 3]);
    w.tensor("encoder/conv2/bias", &[d]);
    w.tensor("encoder/position_encodings/encodings", &[6, d]);
    w.scalar("encoder/num_heads", 2);
    w.scalar("decoder/num_heads", 2);
    w.tensor("decoder/embeddings/weight", &[10, d]);
    w.tensor("decoder/position_encodings/encodings", &[5, d]);
    for side in ["encoder", "decoder"] {
        w.tensor(&format!("{side}/layer_norm/gamma"), &[d]);
        w.tensor(&format!("{side}/layer_norm/beta"), &[d]);
        let l = format!("{side}/layer_0");
        for norm in ["self_attention", "ffn"] {
            w.tensor(&format!("{l}/{norm}/layer_norm/gamma"), &[d]);
            w.tensor(&format!("{l}/{norm}/layer_norm/beta"), &[d]);
        }
        w.tensor(&format!("{l}/self_attention/linear_0/weight"), &[3 * d, d]);
        if key_bias {
            w.tensor(&format!("{l}/self_attention/linear_0/bias"), &[3 * d]);
        } else {
            // q bias, zero k bias, v bias, as CTranslate2 writes them: built by hand below.
            w.zeros(&format!("{l}/self_attention/linear_0/bias"), 3 * d);
        }
        w.tensor(&format!("{l}/self_attention/linear_1/weight"), &[d, d]);
        w.tensor(&format!("{l}/self_attention/linear_1/bias"), &[d]);
        w.tensor(&format!("{l}/ffn/linear_0/weight"), &[4 * d, d]);
        w.tensor(&format!("{l}/ffn/linear_0/bias"), &[4 * d]);
        w.tensor(&format!("{l}/ffn/linear_1/weight"), &[d, 4 * d]);
        w.tensor(&format!("{l}/ffn/linear_1/bias"), &[d]);
        if side == "decoder" {
            w.tensor(&format!("{l}/attention/layer_norm/gamma"), &[d]);
            w.tensor(&format!("{l}/attention/layer_norm/beta"), &[d]);
            w.tensor(&format!("{l}/attention/linear_0/weight"), &[d, d]);
            w.tensor(&format!("{l}/attention/linear_0/bias"), &[d]);
            w.tensor(&format!("{l}/attention/linear_1/weight"), &[2 * d, d]);
            w.zeros(&format!("{l}/attention/linear_1/bias"), 2 * d);
            w.tensor(&format!("{l}/attention/linear_2/weight"), &[d, d]);
            w.tensor(&format!("{l}/attention/linear_2/bias"), &[d]);
        }
    }
    let mut file = Vec::new();
    file.extend(6u32.to_le_bytes());
    let mut header = Ct2Writer {
        bytes: Vec::new(),
        count: 0,
        next: 0.0,
    };
    header.string("WhisperSpec");
    file.extend(header.bytes);
    file.extend(1u32.to_le_bytes());
    file.extend(w.count.to_le_bytes());
    file.extend(w.bytes);
    file.extend(1u32.to_le_bytes());
    let mut aliases = Ct2Writer {
        bytes: Vec::new(),
        count: 0,
        next: 0.0,
    };
    aliases.string("decoder/projection/weight");
    aliases.string("decoder/embeddings/weight");
    file.extend(aliases.bytes);
    file
}

fn write(bytes: &[u8], name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("winnerr-ct2-{name}-{}.bin", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn every_tensor_maps_exactly_and_fused_projections_split() {
    let d = 4;
    let path = write(&synthetic(d, false), "ok");
    let variables = ct2::read(&path).unwrap();
    let (tensors, config) = ct2::convert(&path).unwrap();
    assert_eq!(
        (
            config.d_model,
            config.num_mel_bins,
            config.encoder_layers,
            config.decoder_layers
        ),
        (4, 4, 1, 1)
    );
    assert_eq!(
        (
            config.encoder_attention_heads,
            config.vocab_size,
            config.max_target_positions
        ),
        (2, 10, 5)
    );
    let source = |name: &str| match &variables[name] {
        ct2::Variable::Tensor(t) => values(t),
        ct2::Variable::Scalar(_) => panic!("{name} is a scalar"),
    };
    let d = d as usize;
    let fused = source("encoder/layer_0/self_attention/linear_0/weight");
    for (i, part) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
        let got = values(&tensors[&format!("model.encoder.layers.0.self_attn.{part}.weight")]);
        assert_eq!(got, fused[i * d * d..(i + 1) * d * d], "{part}");
    }
    assert!(
        !tensors.contains_key("model.encoder.layers.0.self_attn.k_proj.bias"),
        "keys have no bias"
    );
    let kv = source("decoder/layer_0/attention/linear_1/weight");
    assert_eq!(
        values(&tensors["model.decoder.layers.0.encoder_attn.k_proj.weight"]),
        kv[..d * d]
    );
    assert_eq!(
        values(&tensors["model.decoder.layers.0.encoder_attn.v_proj.weight"]),
        kv[d * d..]
    );
    assert_eq!(
        values(&tensors["model.decoder.layers.0.fc2.weight"]),
        source("decoder/layer_0/ffn/linear_1/weight")
    );
    assert_eq!(
        values(&tensors["model.decoder.layers.0.encoder_attn_layer_norm.weight"]),
        source("decoder/layer_0/attention/layer_norm/gamma")
    );
    // Every source value is somewhere in the output: count them (zero key biases dropped:
    // encoder self-attention, decoder self- and cross-attention).
    let source_values: usize = variables
        .iter()
        .filter(|(n, _)| *n != "decoder/projection/weight")
        .filter_map(|(_, v)| match v {
            ct2::Variable::Tensor(t) => Some(t.elem_count()),
            ct2::Variable::Scalar(_) => None,
        })
        .sum();
    let out_values: usize = tensors.values().map(|t| t.elem_count()).sum();
    assert_eq!(
        out_values,
        source_values - 3 * d,
        "only the three zero key biases are dropped"
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn a_nonzero_key_bias_or_a_truncated_file_is_refused() {
    let path = write(&synthetic(4, true), "keybias");
    let err = ct2::convert(&path).expect_err("a key bias cannot be represented");
    assert!(err.to_string().contains("key bias"), "{err}");
    let bytes = synthetic(4, false);
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = ct2::convert(&path).expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    std::fs::write(&path, b"\x05\x00\x00\x00").unwrap();
    let err = ct2::convert(&path).expect_err("wrong version");
    assert!(err.to_string().contains("binary version 5"), "{err}");
    std::fs::remove_file(path).ok();
}
