//! CTranslate2 Whisper files (binary version 6) read and converted into the safetensors layout
//! that `candle_transformers::models::whisper` and our own [`crate::whisper`] load.
//!
//! The format: u32 version, string spec name, u32 revision, u32 variable count, then per variable a
//! string name, u8 rank, u32 per dimension, u8 dtype, u32 byte count and the raw little-endian
//! bytes; then u32 alias count and (alias, target) string pairs. Strings are a u16 length that
//! counts a trailing NUL, then the bytes. CTranslate2 fuses projections that Candle keeps apart:
//! self-attention `linear_0` is q,k,v along dim 0 (k has no bias, its slice of the bias is zero)
//! and cross-attention `linear_1` is k,v.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::whisper::WhisperConfig;

const FORMAT_VERSION: u32 = 6;

/// One variable of a CTranslate2 model file.
pub enum Variable {
    Tensor(Tensor),
    /// Integer or boolean scalars such as `encoder/num_heads`.
    Scalar(i64),
}

/// Reads every variable of a CTranslate2 `model.bin`, resolving aliases.
pub fn read(path: &Path) -> Result<BTreeMap<String, Variable>> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    parse(&bytes).map_err(|reason| ModelError::corrupt(path, "CTranslate2 model", reason))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn string(&mut self) -> Result<String, String> {
        let len = self.u16()? as usize;
        let raw = self.take(len)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec())
            .map_err(|_| format!("a name at byte {} is not UTF-8", self.at))
    }
}

fn parse(bytes: &[u8]) -> Result<BTreeMap<String, Variable>, String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "binary version {version}, expected {FORMAT_VERSION}"
        ));
    }
    let spec = r.string()?;
    if spec != "WhisperSpec" {
        return Err(format!("spec {spec:?}, expected \"WhisperSpec\""));
    }
    let _revision = r.u32()?;
    let count = r.u32()?;
    let mut variables = BTreeMap::new();
    for _ in 0..count {
        let name = r.string()?;
        let rank = r.u8()? as usize;
        let dims = (0..rank)
            .map(|_| r.u32().map(|d| d as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let dtype = r.u8()?;
        let len = r.u32()? as usize;
        let raw = r.take(len)?;
        let variable = match dtype {
            0 | 4 | 5 => {
                let dtype = match dtype {
                    0 => DType::F32,
                    4 => DType::F16,
                    _ => DType::BF16,
                };
                let expected = dims.iter().product::<usize>() * dtype.size_in_bytes();
                if expected != len {
                    return Err(format!(
                        "{name}: {len} bytes for shape {dims:?} of {dtype:?}"
                    ));
                }
                let tensor = Tensor::from_raw_buffer(raw, dtype, &dims, &Device::Cpu)
                    .map_err(|e| format!("{name}: {e}"))?;
                Variable::Tensor(tensor)
            }
            1 => Variable::Scalar(i64::from(raw.first().copied().unwrap_or(0) as i8)),
            2 if len == 2 => Variable::Scalar(i64::from(i16::from_le_bytes([raw[0], raw[1]]))),
            3 if len == 4 => {
                Variable::Scalar(i64::from(i32::from_le_bytes(raw.try_into().expect("4"))))
            }
            other => return Err(format!("{name}: unsupported dtype {other} ({len} bytes)")),
        };
        variables.insert(name, variable);
    }
    if r.at < bytes.len() {
        let aliases = r.u32()?;
        for _ in 0..aliases {
            let alias = r.string()?;
            let target = r.string()?;
            let Some(Variable::Tensor(t)) = variables.get(&target) else {
                return Err(format!("alias {alias} points at missing {target}"));
            };
            let t = t.clone();
            variables.insert(alias, Variable::Tensor(t));
        }
    }
    Ok(variables)
}

/// Converts a CTranslate2 Whisper model into Candle's names; returns the tensors (in the file's
/// own dtype, so the conversion is exact) and the architecture read from the file.
pub fn convert(path: &Path) -> Result<(HashMap<String, Tensor>, WhisperConfig)> {
    let variables = read(path)?;
    let mut c = Converter {
        path,
        variables: &variables,
        used: HashSet::new(),
        out: HashMap::new(),
    };

    let conv1 = c.tensor("encoder/conv1/weight")?;
    let (d_model, n_mels, _) = conv1.dims3()?;
    let encoder_positions = c.tensor("encoder/position_encodings/encodings")?;
    let decoder_positions = c.tensor("decoder/position_encodings/encodings")?;
    let embeddings = c.tensor("decoder/embeddings/weight")?;
    let config = WhisperConfig {
        num_mel_bins: n_mels,
        max_source_positions: encoder_positions.dim(0)?,
        d_model,
        encoder_attention_heads: c.scalar("encoder/num_heads")?,
        encoder_layers: c.count_layers("encoder"),
        vocab_size: embeddings.dim(0)?,
        max_target_positions: decoder_positions.dim(0)?,
        decoder_attention_heads: c.scalar("decoder/num_heads")?,
        decoder_layers: c.count_layers("decoder"),
    };
    c.out.insert("model.encoder.conv1.weight".into(), conv1);
    c.copy("encoder/conv1/bias", "model.encoder.conv1.bias")?;
    c.copy("encoder/conv2/weight", "model.encoder.conv2.weight")?;
    c.copy("encoder/conv2/bias", "model.encoder.conv2.bias")?;
    c.out.insert(
        "model.encoder.embed_positions.weight".into(),
        encoder_positions,
    );
    c.out.insert(
        "model.decoder.embed_positions.weight".into(),
        decoder_positions,
    );
    c.out
        .insert("model.decoder.embed_tokens.weight".into(), embeddings);
    // The output projection is tied to the embeddings (an alias in the file).
    c.used.insert("decoder/projection/weight".into());
    for (side, layers) in [
        ("encoder", config.encoder_layers),
        ("decoder", config.decoder_layers),
    ] {
        c.norm(
            &format!("{side}/layer_norm"),
            &format!("model.{side}.layer_norm"),
        )?;
        for i in 0..layers {
            let from = format!("{side}/layer_{i}");
            let to = format!("model.{side}.layers.{i}");
            c.norm(
                &format!("{from}/self_attention/layer_norm"),
                &format!("{to}.self_attn_layer_norm"),
            )?;
            c.norm(
                &format!("{from}/ffn/layer_norm"),
                &format!("{to}.final_layer_norm"),
            )?;
            c.linear(&format!("{from}/ffn/linear_0"), &format!("{to}.fc1"))?;
            c.linear(&format!("{from}/ffn/linear_1"), &format!("{to}.fc2"))?;
            c.linear(
                &format!("{from}/self_attention/linear_1"),
                &format!("{to}.self_attn.out_proj"),
            )?;
            let parts = ["q_proj", "k_proj", "v_proj"].map(|p| format!("{to}.self_attn.{p}"));
            c.split(&format!("{from}/self_attention/linear_0"), &parts, d_model)?;
            if side == "decoder" {
                c.norm(
                    &format!("{from}/attention/layer_norm"),
                    &format!("{to}.encoder_attn_layer_norm"),
                )?;
                c.linear(
                    &format!("{from}/attention/linear_0"),
                    &format!("{to}.encoder_attn.q_proj"),
                )?;
                c.linear(
                    &format!("{from}/attention/linear_2"),
                    &format!("{to}.encoder_attn.out_proj"),
                )?;
                let parts = ["k_proj", "v_proj"].map(|p| format!("{to}.encoder_attn.{p}"));
                c.split(&format!("{from}/attention/linear_1"), &parts, d_model)?;
            }
        }
    }
    let unmapped: Vec<_> = variables
        .iter()
        .filter(|(name, v)| matches!(v, Variable::Tensor(_)) && !c.used.contains(*name))
        .map(|(name, _)| name.as_str())
        .collect();
    if !unmapped.is_empty() {
        return Err(c.corrupt(format!("tensors this converter does not map: {unmapped:?}")));
    }
    Ok((c.out, config))
}

/// Maps variables to Candle names, remembering which ones it used.
struct Converter<'a> {
    path: &'a Path,
    variables: &'a BTreeMap<String, Variable>,
    used: HashSet<String>,
    out: HashMap<String, Tensor>,
}

impl Converter<'_> {
    fn corrupt(&self, reason: String) -> ModelError {
        ModelError::corrupt(self.path, "CTranslate2 Whisper model", reason)
    }

    fn tensor(&mut self, name: &str) -> Result<Tensor> {
        self.used.insert(name.to_string());
        match self.variables.get(name) {
            Some(Variable::Tensor(t)) => Ok(t.clone()),
            _ => Err(self.corrupt(format!("missing tensor {name}"))),
        }
    }

    fn scalar(&self, name: &str) -> Result<usize> {
        match self.variables.get(name) {
            Some(Variable::Scalar(v)) if *v > 0 => Ok(*v as usize),
            _ => Err(self.corrupt(format!("missing scalar {name}"))),
        }
    }

    fn count_layers(&self, side: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.variables
                    .contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    }

    fn copy(&mut self, from: &str, to: &str) -> Result<()> {
        let t = self.tensor(from)?;
        self.out.insert(to.to_string(), t);
        Ok(())
    }

    fn norm(&mut self, from: &str, to: &str) -> Result<()> {
        self.copy(&format!("{from}/gamma"), &format!("{to}.weight"))?;
        self.copy(&format!("{from}/beta"), &format!("{to}.bias"))
    }

    fn linear(&mut self, from: &str, to: &str) -> Result<()> {
        self.copy(&format!("{from}/weight"), &format!("{to}.weight"))?;
        self.copy(&format!("{from}/bias"), &format!("{to}.bias"))
    }

    /// Splits a fused projection along dim 0 into `parts` of `size` rows. Keys have no bias in
    /// Whisper: their slice of the fused bias must be zero and is dropped.
    fn split(&mut self, from: &str, parts: &[String], size: usize) -> Result<()> {
        let weight = self.tensor(&format!("{from}/weight"))?;
        let bias = self.tensor(&format!("{from}/bias"))?;
        for (i, to) in parts.iter().enumerate() {
            let w = weight.narrow(0, i * size, size)?.contiguous()?;
            let b = bias.narrow(0, i * size, size)?.contiguous()?;
            self.out.insert(format!("{to}.weight"), w);
            if to.ends_with("k_proj") {
                check_zero(&b).map_err(|e| self.corrupt(format!("{from}: key bias {e}")))?;
            } else {
                self.out.insert(format!("{to}.bias"), b);
            }
        }
        Ok(())
    }
}

fn check_zero(t: &Tensor) -> Result<(), String> {
    let max = t
        .to_dtype(DType::F32)
        .and_then(|t| t.abs()?.max_all()?.to_scalar::<f32>());
    match max {
        Ok(0.0) => Ok(()),
        Ok(m) => Err(format!("is not zero (max |b| = {m})")),
        Err(e) => Err(e.to_string()),
    }
}
