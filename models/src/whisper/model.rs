//! Whisper's encoder and decoder on candle-nn, written for streaming inference: the encoder runs
//! over any window up to 30 s, the decoder keeps its self-attention keys and values between steps,
//! cross-attention keys and values are computed once per utterance, and the vocabulary projection
//! runs only for the position whose next token is wanted.
//!
//! Weights use the names of `candle_transformers::models::whisper`, so one converted file serves
//! both. The weights are shared (`&self`); what one transcription changes lives in [`DecoderState`].

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::kv_cache::KvCache;
use candle_nn::{Conv1d, Conv1dConfig, Embedding, LayerNorm, Linear, VarBuilder};

use super::WhisperConfig;
use crate::ops::gelu;

/// A projection with f32 weights and, in the decoder, an 8-bit copy: one decoding step multiplies
/// a single vector by each matrix, where Candle's f32 GEMM spends ~80 µs on a 384×384 product and
/// the 8-bit vector kernel ~15 µs.
struct Proj {
    linear: Linear,
    q8: Option<QMatMul>,
}

impl Proj {
    fn forward(&self, x: &Tensor, quantized: bool) -> candle_core::Result<Tensor> {
        match (&self.q8, quantized) {
            (Some(q8), true) => {
                let y = q8.forward(x)?;
                match self.linear.bias() {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
            _ => self.linear.forward(x),
        }
    }
}

fn linear(inp: usize, out: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Proj> {
    let weight = vb.get((out, inp), "weight")?;
    let bias = if bias {
        Some(vb.get(out, "bias")?)
    } else {
        None
    };
    Ok(Proj {
        linear: Linear::new(weight, bias),
        q8: None,
    })
}

/// The 8-bit copy of a weight, where the device and shape allow it.
fn quantize(weight: &Tensor) -> candle_core::Result<Option<QMatMul>> {
    let fits = weight.dim(1)? % GgmlDType::Q8_0.block_size() == 0 && weight.device().is_cpu();
    if !fits {
        return Ok(None);
    }
    Ok(Some(QMatMul::from_qtensor(QTensor::quantize(
        weight,
        GgmlDType::Q8_0,
    )?)?))
}

fn layer_norm(size: usize, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(size, "weight")?,
        vb.get(size, "bias")?,
        1e-5,
    ))
}

struct Attention {
    query: Proj,
    key: Proj,
    value: Proj,
    out: Proj,
    n_head: usize,
    /// d_head^-0.25, applied to both queries and keys as Whisper does.
    scale: f64,
}

impl Attention {
    fn load(n_state: usize, n_head: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            query: linear(n_state, n_state, true, vb.pp("q_proj"))?,
            key: linear(n_state, n_state, false, vb.pp("k_proj"))?,
            value: linear(n_state, n_state, true, vb.pp("v_proj"))?,
            out: linear(n_state, n_state, true, vb.pp("out_proj"))?,
            n_head,
            scale: ((n_state / n_head) as f64).powf(-0.25),
        })
    }

    /// [batch, time, state] → [batch, head, time, d_head].
    fn heads(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, s) = x.dims3()?;
        x.reshape((b, t, self.n_head, s / self.n_head))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn quantize(&mut self) -> candle_core::Result<()> {
        for p in [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.out,
        ] {
            p.q8 = quantize(p.linear.weight())?;
        }
        Ok(())
    }

    /// Keys (scaled) and values of `x`, split into heads.
    fn keys_values(&self, x: &Tensor, q: bool) -> candle_core::Result<(Tensor, Tensor)> {
        let k = (self.heads(&self.key.forward(x, q)?)? * self.scale)?;
        let v = self.heads(&self.value.forward(x, q)?)?;
        Ok((k, v))
    }

    /// Attention of `x` over keys given transposed ([batch, head, d_head, time]) and values.
    fn attend(
        &self,
        x: &Tensor,
        k_t: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        q: bool,
    ) -> candle_core::Result<Tensor> {
        let query = (self.heads(&self.query.forward(x, q)?)? * self.scale)?;
        let mut w = query.matmul(k_t)?;
        if let Some(mask) = mask {
            w = w.broadcast_add(mask)?;
        }
        let w = candle_nn::ops::softmax_last_dim(&w)?;
        let out = w.matmul(v)?.transpose(1, 2)?.flatten_from(2)?;
        self.out.forward(&out, q)
    }
}

struct Block {
    attn: Attention,
    attn_ln: LayerNorm,
    cross: Option<(Attention, LayerNorm)>,
    fc1: Proj,
    fc2: Proj,
    mlp_ln: LayerNorm,
}

impl Block {
    fn load(
        n_state: usize,
        n_head: usize,
        cross: bool,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let cross = if cross {
            Some((
                Attention::load(n_state, n_head, vb.pp("encoder_attn"))?,
                layer_norm(n_state, vb.pp("encoder_attn_layer_norm"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            attn: Attention::load(n_state, n_head, vb.pp("self_attn"))?,
            attn_ln: layer_norm(n_state, vb.pp("self_attn_layer_norm"))?,
            cross,
            fc1: linear(n_state, 4 * n_state, true, vb.pp("fc1"))?,
            fc2: linear(4 * n_state, n_state, true, vb.pp("fc2"))?,
            mlp_ln: layer_norm(n_state, vb.pp("final_layer_norm"))?,
        })
    }

    fn quantize(&mut self) -> candle_core::Result<()> {
        self.attn.quantize()?;
        if let Some((cross, _)) = &mut self.cross {
            cross.quantize()?;
        }
        self.fc1.q8 = quantize(self.fc1.linear.weight())?;
        self.fc2.q8 = quantize(self.fc2.linear.weight())?;
        Ok(())
    }

    fn mlp(&self, x: &Tensor, q: bool) -> candle_core::Result<Tensor> {
        let h = gelu(&self.fc1.forward(&self.mlp_ln.forward(x)?, q)?)?;
        x + self.fc2.forward(&h, q)?
    }
}

/// The audio encoder: two convolutions, sinusoidal positions, transformer blocks. Smart Turn's
/// classifier runs the same encoder (Whisper tiny's shape, 400 positions) under its own head.
pub(crate) struct Encoder {
    conv1: Conv1d,
    conv2: Conv1d,
    positions: Tensor,
    blocks: Vec<Block>,
    ln_post: LayerNorm,
}

impl Encoder {
    /// An encoder of `c`'s shape from `vb`, the folder of `conv1`, `layers.N`, `layer_norm`.
    pub(crate) fn load(vb: VarBuilder, c: &WhisperConfig) -> candle_core::Result<Self> {
        let conv = |inp, stride, vb: VarBuilder| -> candle_core::Result<Conv1d> {
            let cfg = Conv1dConfig {
                padding: 1,
                stride,
                ..Default::default()
            };
            Ok(Conv1d::new(
                vb.get((c.d_model, inp, 3), "weight")?,
                Some(vb.get(c.d_model, "bias")?),
                cfg,
            ))
        };
        Ok(Self {
            conv1: conv(c.num_mel_bins, 1, vb.pp("conv1"))?,
            conv2: conv(c.d_model, 2, vb.pp("conv2"))?,
            positions: vb.get(
                (c.max_source_positions, c.d_model),
                "embed_positions.weight",
            )?,
            blocks: (0..c.encoder_layers)
                .map(|i| {
                    Block::load(
                        c.d_model,
                        c.encoder_attention_heads,
                        false,
                        vb.pp(format!("layers.{i}")),
                    )
                })
                .collect::<candle_core::Result<_>>()?,
            ln_post: layer_norm(c.d_model, vb.pp("layer_norm"))?,
        })
    }

    /// Encodes a log-mel spectrogram [batch, n_mels, frames] (frames even, at most twice the
    /// positions): [batch, frames / 2, d_model].
    pub(crate) fn forward(&self, mel: &Tensor) -> candle_core::Result<Tensor> {
        let x = gelu(&self.conv1.forward(mel)?)?;
        let x = gelu(&self.conv2.forward(&x)?)?.transpose(1, 2)?;
        let positions = self.positions.narrow(0, 0, x.dim(1)?)?;
        let mut x = x.broadcast_add(&positions)?;
        for block in &self.blocks {
            let h = block.attn_ln.forward(&x)?;
            let (k, v) = block.attn.keys_values(&h, false)?;
            x = (&x + block.attn.attend(&h, &k.t()?, &v, None, false)?)?;
            x = block.mlp(&x, false)?;
        }
        self.ln_post.forward(&x)
    }
}

/// The text decoder, tied output projection included.
struct Decoder {
    embedding: Embedding,
    /// The output projection (the embeddings, tied) in 8-bit blocks: per decoding step it is a
    /// 51.9k × d matrix-vector product that dominates the step in f32 (13 ms vs 1.7 ms here).
    vocab_q8: QMatMul,
    positions: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
}

/// Whisper's weights, loaded once and shared by every transcription.
pub struct WhisperModel {
    encoder: Encoder,
    decoder: Decoder,
    pub config: WhisperConfig,
    device: Device,
}

/// What one utterance's decoding keeps between steps.
pub struct DecoderState {
    self_kv: Vec<KvCache>,
    cross_kv: Vec<(Tensor, Tensor)>,
    /// Run the decoder's projections with the f32 weights instead of the 8-bit ones.
    pub exact: bool,
}

impl DecoderState {
    /// Tokens decoded so far (the length of the self-attention cache).
    pub fn len(&self) -> usize {
        self.self_kv.first().map_or(0, KvCache::current_seq_len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the decoded tokens but keeps the audio (the cross-attention keys and values).
    pub fn reset_tokens(&mut self) {
        self.self_kv.iter_mut().for_each(KvCache::reset);
    }
}

impl WhisperModel {
    pub fn load(vb: VarBuilder, config: WhisperConfig) -> candle_core::Result<Self> {
        let device = vb.device().clone();
        let c = &config;
        let encoder = Encoder::load(vb.pp("model.encoder"), c)?;
        let vbd = vb.pp("model.decoder");
        let embedding = candle_nn::embedding(c.vocab_size, c.d_model, vbd.pp("embed_tokens"))?;
        let vocab_q8 = if c.d_model % GgmlDType::Q8_0.block_size() == 0 && device.is_cpu() {
            QMatMul::from_qtensor(QTensor::quantize(embedding.embeddings(), GgmlDType::Q8_0)?)?
        } else {
            QMatMul::Tensor(embedding.embeddings().clone())
        };
        let mut decoder = Decoder {
            embedding,
            vocab_q8,
            positions: vbd.get(
                (c.max_target_positions, c.d_model),
                "embed_positions.weight",
            )?,
            blocks: (0..c.decoder_layers)
                .map(|i| {
                    Block::load(
                        c.d_model,
                        c.decoder_attention_heads,
                        true,
                        vbd.pp(format!("layers.{i}")),
                    )
                })
                .collect::<candle_core::Result<_>>()?,
            ln: layer_norm(c.d_model, vbd.pp("layer_norm"))?,
        };
        for block in &mut decoder.blocks {
            block.quantize()?;
        }
        Ok(Self {
            encoder,
            decoder,
            config,
            device,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Encodes a log-mel spectrogram [batch, n_mels, frames] (frames even, at most 3000).
    pub fn encode(&self, mel: &Tensor) -> candle_core::Result<Tensor> {
        self.encoder.forward(mel)
    }

    /// A fresh decoding state over encoded audio: cross-attention keys and values, computed once.
    pub fn start(&self, audio: &Tensor) -> candle_core::Result<DecoderState> {
        let cross_kv = self
            .decoder
            .blocks
            .iter()
            .map(|b| {
                let (k, v) = b
                    .cross
                    .as_ref()
                    .expect("decoder blocks cross-attend")
                    .0
                    .keys_values(audio, false)?;
                // Stored transposed and contiguous: every step multiplies by it (2x faster).
                Ok((k.t()?.contiguous()?, v))
            })
            .collect::<candle_core::Result<_>>()?;
        let max = self.config.max_target_positions;
        Ok(DecoderState {
            self_kv: self
                .decoder
                .blocks
                .iter()
                .map(|_| KvCache::new(2, max))
                .collect(),
            cross_kv,
            exact: false,
        })
    }

    /// Feeds `tokens` after those already in `state` and returns the logits [batch, vocab] that
    /// predict the token after the last one. `positions_from: Some(i)` returns instead the logits
    /// of every fed position from the `i`-th on ([batch, tokens - i, vocab]): the no-speech
    /// probability is read at the start of the transcript, after any previous-text prompt.
    pub fn decode(
        &self,
        state: &mut DecoderState,
        tokens: &[u32],
        positions_from: Option<usize>,
    ) -> candle_core::Result<Tensor> {
        let d = &self.decoder;
        let q = !state.exact;
        let offset = state.len();
        let n = tokens.len();
        if offset + n > self.config.max_target_positions {
            candle_core::bail!(
                "decoder context full ({} tokens)",
                self.config.max_target_positions
            );
        }
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mut x = d
            .embedding
            .forward(&ids)?
            .broadcast_add(&d.positions.narrow(0, offset, n)?)?;
        let mask = if n > 1 {
            Some(causal_mask(n, offset, &self.device)?)
        } else {
            None
        };
        for ((block, kv), (ck, cv)) in d.blocks.iter().zip(&mut state.self_kv).zip(&state.cross_kv)
        {
            let h = block.attn_ln.forward(&x)?;
            let (k, v) = block.attn.keys_values(&h, q)?;
            let (k, v) = kv.append(&k, &v)?;
            x = (&x + block.attn.attend(&h, &k.t()?, &v, mask.as_ref(), q)?)?;
            let (cross, cross_ln) = block.cross.as_ref().expect("decoder blocks cross-attend");
            x = (&x + cross.attend(&cross_ln.forward(&x)?, ck, cv, None, q)?)?;
            x = block.mlp(&x, q)?;
        }
        let x = match positions_from {
            Some(from) => x.narrow(1, from.min(n - 1), n - from.min(n - 1))?,
            None => x.narrow(1, n - 1, 1)?,
        };
        let x = d.ln.forward(&x)?;
        let logits = if state.exact {
            x.broadcast_matmul(&d.embedding.embeddings().t()?)?
        } else {
            d.vocab_q8.forward(&x)?
        };
        if positions_from.is_some() {
            Ok(logits)
        } else {
            logits.squeeze(1)
        }
    }
}

/// Additive mask for `n` new positions after `offset` cached ones: each sees the past and itself.
fn causal_mask(n: usize, offset: usize, device: &Device) -> candle_core::Result<Tensor> {
    let total = offset + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (n, total), device)?.to_dtype(DType::F32)
}

/// Numerically stable log-softmax over the last dimension, on the host.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|&l| l - log_sum).collect()
}

// One model serves every call's transcriptions from several threads.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<WhisperModel>();
};
