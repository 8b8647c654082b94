//! Silero VAD v5 in Candle: the probability that a short chunk of audio is speech, with the state
//! (an LSTM's, and the last samples as context) carried from chunk to chunk of one track.
//!
//! The network, per chunk (512 samples at 16 kHz or 256 at 8 kHz, after 64 / 32 samples of
//! context from the previous chunk): an STFT as a strided convolution with a fixed basis
//! (reflect-padded on the right), its magnitude, four 1-d convolutions with ReLU (strides 1, 2,
//! 2, 1), an LSTM cell of 128 units, ReLU, a 1×1 convolution and a sigmoid. The two rates have
//! their own weights; both come from the ONNX file (the two branches of its `If` on the rate) and
//! are converted once into one safetensors file.

pub mod onnx;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};

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

/// One rate's weights.
struct Branch {
    basis: Tensor,
    encoder: Vec<(Tensor, Tensor)>,
    /// LSTM weights, input and hidden side stacked: [512, 256]; biases summed: [512].
    lstm_w: Tensor,
    lstm_b: Tensor,
    decoder_w: Tensor,
    decoder_b: Tensor,
}

/// The loaded model: both rates, shared by every track.
pub struct SileroVad {
    branches: [Branch; 2],
    device: Device,
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
            let basis = take(rate, TENSORS[0])?;
            let mut encoder = Vec::new();
            for i in 0..4 {
                encoder.push((
                    take(rate, TENSORS[1 + 2 * i])?,
                    take(rate, TENSORS[2 + 2 * i])?,
                ));
            }
            let (w_ih, w_hh) = (take(rate, TENSORS[9])?, take(rate, TENSORS[10])?);
            let (b_ih, b_hh) = (take(rate, TENSORS[11])?, take(rate, TENSORS[12])?);
            Ok(Branch {
                basis,
                encoder,
                lstm_w: Tensor::cat(&[w_ih, w_hh], 1)?.t()?.contiguous()?,
                lstm_b: (b_ih + b_hh)?,
                decoder_w: take(rate, TENSORS[13])?
                    .reshape((1, HIDDEN))?
                    .t()?
                    .contiguous()?,
                decoder_b: take(rate, TENSORS[14])?,
            })
        };
        let branches = [branch(VadRate::Phone8k)?, branch(VadRate::Wide16k)?];
        Ok(Self {
            branches,
            device: device.clone(),
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
        let reflected: Vec<f32> = (1..=context).map(|i| chunk[chunk.len() - 1 - i]).collect();
        input.extend(reflected);
        state
            .context
            .copy_from_slice(&chunk[chunk.len() - context..]);

        let x = Tensor::from_vec(input, (1, 1, chunk.len() + 2 * context), &self.device)?;
        let stride = branch.basis.dim(2)? / 2;
        let spectrum = x.conv1d(&branch.basis, 0, stride, 1, 1)?;
        let bins = branch.basis.dim(0)? / 2;
        let real = spectrum.narrow(1, 0, bins)?;
        let imaginary = spectrum.narrow(1, bins, bins)?;
        let mut x = (real.sqr()? + imaginary.sqr()?)?.sqrt()?;
        for ((w, b), stride) in branch.encoder.iter().zip(ENCODER_STRIDES) {
            x = x
                .conv1d(w, 1, stride, 1, 1)?
                .broadcast_add(&b.reshape((1, (), 1))?)?
                .relu()?;
        }
        // One time step is left: the LSTM cell's input.
        let features = x.squeeze(0)?.t()?.narrow(0, x.dim(2)? - 1, 1)?;
        let h = Tensor::from_slice(&state.h, (1, HIDDEN), &self.device)?;
        let gates = Tensor::cat(&[features, h], 1)?
            .matmul(&branch.lstm_w)?
            .broadcast_add(&branch.lstm_b)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        // PyTorch's gate order: input, forget, cell, output.
        for j in 0..HIDDEN {
            let i = sigmoid(gates[j]);
            let f = sigmoid(gates[HIDDEN + j]);
            let g = gates[2 * HIDDEN + j].tanh();
            let o = sigmoid(gates[3 * HIDDEN + j]);
            state.c[j] = f * state.c[j] + i * g;
            state.h[j] = o * state.c[j].tanh();
        }
        let h = Tensor::from_slice(&state.h, (1, HIDDEN), &self.device)?.relu()?;
        let logit = h
            .matmul(&branch.decoder_w)?
            .broadcast_add(&branch.decoder_b)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(sigmoid(logit[0]))
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
