//! Silero VAD v5, its weights loaded with Candle and run as plain loops (see [`SileroVad`]): the probability that a short chunk of audio is speech, with the state
//! (an LSTM's, and the last samples as context) carried from chunk to chunk of one track.
//!
//! The network, per chunk (512 samples at 16 kHz or 256 at 8 kHz, after 64 / 32 samples of
//! context from the previous chunk): an STFT as a strided convolution with a fixed basis
//! (reflect-padded on the right), its magnitude, four 1-d convolutions with ReLU (strides 1, 2,
//! 2, 1), an LSTM cell of 128 units, ReLU, a 1×1 convolution and a sigmoid. The two rates have
//! their own weights; both come from the ONNX file (the two branches of its `If` on the rate) and
//! are converted once into one safetensors file.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::onnx;

/// The rates the model has weights for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VadRate {
    /// Phone audio (Twilio's 8 kHz): detection needs no resampling.
    Phone8k,
    /// Softphone and model-rate audio.
    Wide16k,
}

impl VadRate {
    /// The rate for `hz`, if the model has one.
    pub fn from_hz(hz: u32) -> Option<Self> {
        match hz {
            8_000 => Some(Self::Phone8k),
            16_000 => Some(Self::Wide16k),
            _ => None,
        }
    }
    pub fn hz(self) -> u32 {
        match self {
            Self::Phone8k => 8_000,
            Self::Wide16k => 16_000,
        }
    }
    /// Samples per chunk: 32 ms.
    pub fn chunk(self) -> usize {
        self.hz() as usize / 1000 * 32
    }
    /// Samples of the previous chunk put before each chunk.
    pub fn context(self) -> usize {
        self.chunk() / 8
    }
    fn prefix(self) -> &'static str {
        match self {
            Self::Phone8k => "8k",
            Self::Wide16k => "16k",
        }
    }
}

/// The converted file's name in the model folder.
pub const WEIGHTS_FILE: &str = "silero_vad.safetensors";
const HIDDEN: usize = 128;
/// Tensor names inside each rate's branch of the ONNX graph, as saved (under "8k." / "16k.").
const TENSORS: [&str; 15] = [
    "stft.forward_basis_buffer",
    "encoder.0.reparam_conv.weight",
    "encoder.0.reparam_conv.bias",
    "encoder.1.reparam_conv.weight",
    "encoder.1.reparam_conv.bias",
    "encoder.2.reparam_conv.weight",
    "encoder.2.reparam_conv.bias",
    "encoder.3.reparam_conv.weight",
    "encoder.3.reparam_conv.bias",
    "decoder.rnn.weight_ih",
    "decoder.rnn.weight_hh",
    "decoder.rnn.bias_ih",
    "decoder.rnn.bias_hh",
    "decoder.decoder.2.weight",
    "decoder.decoder.2.bias",
];
const ENCODER_STRIDES: [usize; 4] = [1, 2, 2, 1];

/// Reads the weights of both rates out of Silero's ONNX file and writes them as safetensors.
pub fn convert_onnx(onnx_path: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(onnx_path).map_err(|e| ModelError::io(onnx_path, e))?;
    let corrupt = |reason: String| ModelError::corrupt(onnx_path, "Silero VAD ONNX file", reason);
    let model = onnx::parse(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let graph = model.graph.ok_or_else(|| corrupt("no graph".into()))?;
    let branch_on_rate = graph
        .node
        .iter()
        .find(|n| n.op_type == "If")
        .ok_or_else(|| corrupt("no If node on the sample rate".into()))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    // The graph compares `sr` with 16000: the then-branch is 16 kHz, the else-branch 8 kHz.
    for (branch, rate) in [
        ("then_branch", VadRate::Wide16k),
        ("else_branch", VadRate::Phone8k),
    ] {
        let constants = onnx::GraphProto::branch(branch_on_rate, branch)
            .ok_or_else(|| corrupt(format!("no {branch}")))?
            .float_constants();
        for name in TENSORS {
            let (_, value) = constants
                .iter()
                .find(|(output, _)| output.ends_with(&format!("__{name}")))
                .ok_or_else(|| corrupt(format!("{branch} has no {name}")))?;
            let tensor = Tensor::from_vec(value.values.clone(), value.shape.clone(), &Device::Cpu)?;
            tensors.insert(format!("{}.{name}", rate.prefix()), tensor);
        }
    }
    candle_core::safetensors::save(&tensors, out)?;
    Ok(())
}

/// A 1-d convolution's weights: [out][in][kernel], and a bias per output channel.
struct Conv {
    weight: Vec<f32>,
    bias: Vec<f32>,
    outputs: usize,
    inputs: usize,
    kernel: usize,
}

impl Conv {
    fn from_tensors(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (outputs, inputs, kernel) = weight.dims3()?;
        Ok(Self {
            weight: weight.flatten_all()?.to_vec1::<f32>()?,
            bias: match bias {
                Some(b) => b.flatten_all()?.to_vec1::<f32>()?,
                None => vec![0.0; outputs],
            },
            outputs,
            inputs,
            kernel,
        })
    }

    /// `input` ([inputs][len]) through the convolution with zero `padding` and `stride`:
    /// [outputs][out_len] and out_len. Each output is one dot product of a filter with the
    /// window it sees (laid out as the filter is: input channel, then tap).
    fn forward(
        &self,
        input: &[f32],
        len: usize,
        padding: usize,
        stride: usize,
    ) -> (Vec<f32>, usize) {
        let out_len = (len + 2 * padding - self.kernel) / stride + 1;
        let width = self.inputs * self.kernel;
        let mut window = vec![0.0f32; width];
        let mut out = vec![0.0f32; self.outputs * out_len];
        for t in 0..out_len {
            for i in 0..self.inputs {
                for k in 0..self.kernel {
                    // Position in the unpadded signal; outside it is the zero padding.
                    let at = (t * stride + k).checked_sub(padding).filter(|&p| p < len);
                    window[i * self.kernel + k] = at.map_or(0.0, |p| input[i * len + p]);
                }
            }
            for o in 0..self.outputs {
                let filter = &self.weight[o * width..(o + 1) * width];
                out[o * out_len + t] = self.bias[o] + dot(filter, &window);
            }
        }
        (out, out_len)
    }
}

/// The dot product of two equal-length slices, in eight lanes so that it vectorizes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// One rate's weights.
struct Branch {
    /// The STFT basis as a convolution: [2 × bins][1][window], stride half the window.
    basis: Conv,
    encoder: Vec<Conv>,
    /// LSTM weights, input and hidden side side by side: [512][256]; biases summed: [512].
    lstm_w: Vec<f32>,
    lstm_b: Vec<f32>,
    decoder_w: Vec<f32>,
    decoder_b: f32,
}

/// The loaded model: both rates, shared by every track. It runs as plain loops over the weights
/// on the caller's thread: Candle's CPU convolutions spread each (tiny) operation over rayon's
/// global pool, which the speech worker's Whisper keeps busy, so every 32 ms chunk of every
/// track would wait for it; the whole network is 0.7 M multiply-adds a chunk.
pub struct SileroVad {
    branches: [Branch; 2],
}

/// One track's state between chunks.
#[derive(Debug, Clone)]
pub struct VadState {
    rate: VadRate,
    /// h and c of the LSTM.
    h: Vec<f32>,
    c: Vec<f32>,
    /// The last `context()` samples of the previous chunk.
    context: Vec<f32>,
}

impl VadState {
    pub fn new(rate: VadRate) -> Self {
        Self {
            rate,
            h: vec![0.0; HIDDEN],
            c: vec![0.0; HIDDEN],
            context: vec![0.0; rate.context()],
        }
    }
    pub fn rate(&self) -> VadRate {
        self.rate
    }
}

impl SileroVad {
    /// Loads the converted file (`winnerr models fetch` writes it).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        if !path.exists() {
            return Err(ModelError::Missing {
                path: path.to_path_buf(),
            });
        }
        let mut tensors = candle_core::safetensors::load(path, device)?;
        let mut take = |rate: VadRate, name: &str| {
            tensors
                .remove(&format!("{}.{name}", rate.prefix()))
                .ok_or_else(|| {
                    ModelError::corrupt(path, "Silero VAD weights", format!("no {name}"))
                })
        };
        let mut branch = |rate: VadRate| -> Result<Branch> {
            let basis = Conv::from_tensors(&take(rate, TENSORS[0])?, None)?;
            let mut encoder = Vec::new();
            for i in 0..4 {
                let (w, b) = (
                    take(rate, TENSORS[1 + 2 * i])?,
                    take(rate, TENSORS[2 + 2 * i])?,
                );
                encoder.push(Conv::from_tensors(&w, Some(&b))?);
            }
            let (w_ih, w_hh) = (take(rate, TENSORS[9])?, take(rate, TENSORS[10])?);
            let (b_ih, b_hh) = (take(rate, TENSORS[11])?, take(rate, TENSORS[12])?);
            let decoder_b = take(rate, TENSORS[14])?.flatten_all()?.to_vec1::<f32>()?;
            Ok(Branch {
                basis,
                encoder,
                lstm_w: Tensor::cat(&[w_ih, w_hh], 1)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
                lstm_b: (b_ih + b_hh)?.to_vec1::<f32>()?,
                decoder_w: take(rate, TENSORS[13])?.flatten_all()?.to_vec1::<f32>()?,
                decoder_b: decoder_b.first().copied().unwrap_or_default(),
            })
        };
        Ok(Self {
            branches: [branch(VadRate::Phone8k)?, branch(VadRate::Wide16k)?],
        })
    }

    /// The probability that `chunk` (exactly `state.rate().chunk()` samples in [-1, 1]) is
    /// speech; advances the track's state.
    pub fn probability(&self, state: &mut VadState, chunk: &[f32]) -> Result<f32> {
        let rate = state.rate;
        if chunk.len() != rate.chunk() {
            return Err(ModelError::Input(format!(
                "a VAD chunk at {} Hz has {} samples, not {}",
                rate.hz(),
                rate.chunk(),
                chunk.len()
            )));
        }
        let branch = &self.branches[usize::from(rate == VadRate::Wide16k)];
        let context = rate.context();
        // Context, the chunk, then `context` samples reflected at the right edge.
        let mut input = Vec::with_capacity(chunk.len() + 2 * context);
        input.extend_from_slice(&state.context);
        input.extend_from_slice(chunk);
        input.extend((1..=context).map(|i| chunk[chunk.len() - 1 - i]));
        state
            .context
            .copy_from_slice(&chunk[chunk.len() - context..]);

        let stride = branch.basis.kernel / 2;
        let (spectrum, frames) = branch.basis.forward(&input, input.len(), 0, stride);
        let bins = branch.basis.outputs / 2;
        let (real, imaginary) = spectrum.split_at(bins * frames);
        let mut x: Vec<f32> = real
            .iter()
            .zip(imaginary)
            .map(|(re, im)| (re * re + im * im).sqrt())
            .collect();
        let mut len = frames;
        for (conv, stride) in branch.encoder.iter().zip(ENCODER_STRIDES) {
            let (out, out_len) = conv.forward(&x, len, 1, stride);
            x = out.into_iter().map(|v| v.max(0.0)).collect();
            len = out_len;
        }
        // One time step is left (the last if more): the LSTM cell's input, then its state.
        let features = (0..HIDDEN).map(|c| x[c * len + len - 1]);
        let joined: Vec<f32> = features.chain(state.h.iter().copied()).collect();
        let gates: Vec<f32> = (0..4 * HIDDEN)
            .map(|g| {
                let row = &branch.lstm_w[g * 2 * HIDDEN..(g + 1) * 2 * HIDDEN];
                branch.lstm_b[g] + dot(row, &joined)
            })
            .collect();
        // PyTorch's gate order: input, forget, cell, output.
        for j in 0..HIDDEN {
            let i = sigmoid(gates[j]);
            let f = sigmoid(gates[HIDDEN + j]);
            let g = gates[2 * HIDDEN + j].tanh();
            let o = sigmoid(gates[3 * HIDDEN + j]);
            state.c[j] = f * state.c[j] + i * g;
            state.h[j] = o * state.c[j].tanh();
        }
        let logit = branch.decoder_b
            + branch
                .decoder_w
                .iter()
                .zip(&state.h)
                .map(|(w, h)| w * h.max(0.0))
                .sum::<f32>();
        Ok(sigmoid(logit))
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
