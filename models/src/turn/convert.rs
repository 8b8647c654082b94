//! Smart Turn's QDQ int8 ONNX file → float safetensors under the PyTorch module names.
//!
//! In the file every weight is an int8 initializer with a scale and zero point (per output
//! channel) feeding a `DequantizeLinear`. Convolutions, the classifier's `Gemm`s and the biases
//! kept their module names (`inner.encoder.conv1.weight_quantized`, …); the encoder's and the
//! pooling's projections were exported as `MatMul`s on anonymous, transposed weights (`val_25`).
//! Those are named by what their product is added to: the `Add` after a `MatMul` takes the bias
//! `….q_proj.bias`, so the weight is `….q_proj.weight`. Whisper's key projection has no bias: it
//! is the `MatMul` that reads the same input as the layer's query projection and is not named.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::onnx::{self, FloatTensor, GraphProto, NodeProto};

/// The prefix of every module name in the file (the exported wrapper's field).
const PREFIX: &str = "inner.";

/// Reads the weights out of Smart Turn's ONNX file, dequantized, and writes them as safetensors.
pub fn convert_onnx(onnx_path: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(onnx_path).map_err(|e| ModelError::io(onnx_path, e))?;
    let corrupt = |reason: String| ModelError::corrupt(onnx_path, "Smart Turn ONNX file", reason);
    let model = onnx::parse(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let graph = model.graph.ok_or_else(|| corrupt("no graph".into()))?;
    let weights = named_weights(&graph).map_err(corrupt)?;
    let tensors = weights
        .into_iter()
        .map(|(name, value)| {
            let tensor = Tensor::from_vec(value.values, value.shape, &Device::Cpu)?;
            Ok((name, tensor))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    candle_core::safetensors::save(&tensors, out)?;
    Ok(())
}

/// Every weight of the graph, dequantized, by module name (without the wrapper's prefix), in
/// PyTorch's layout (linear weights [out, in]).
fn named_weights(graph: &GraphProto) -> std::result::Result<HashMap<String, FloatTensor>, String> {
    let initializers: HashMap<&str, FloatTensor> = graph
        .initializer
        .iter()
        .filter_map(|t| Some((t.name.as_str(), t.numbers()?)))
        .collect();
    let mut consumers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
    for node in &graph.node {
        for input in &node.input {
            consumers.entry(input.as_str()).or_default().push(node);
        }
    }
    // Dequantized weights, by the name of the `DequantizeLinear` output that carries them.
    let mut dequantized: HashMap<&str, (&str, FloatTensor)> = HashMap::new();
    for node in graph
        .node
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear")
    {
        let [x, scale, zero_point, ..] = node.input.as_slice() else {
            continue;
        };
        let (Some(q), Some(scale), Some(zero)) = (
            initializers.get(x.as_str()),
            initializers.get(scale.as_str()),
            initializers.get(zero_point.as_str()),
        ) else {
            continue; // an activation's quantization, not a weight
        };
        let axis = node.int_attribute("axis").unwrap_or(1);
        let value = dequantize(q, scale, zero, axis).map_err(|e| format!("{x}: {e}"))?;
        if let Some(output) = node.output.first() {
            dequantized.insert(output.as_str(), (x.as_str(), value));
        }
    }

    let mut named = HashMap::new();
    // Float initializers under module names: LayerNorms, the biases of MatMuls, positions.
    for tensor in &graph.initializer {
        if let (Some(module), Some(value)) = (tensor.name.strip_prefix(PREFIX), tensor.floats()) {
            named.insert(module.to_owned(), value);
        }
    }
    // Quantized weights that kept their names: convolutions, Gemms (already [out, in]), biases.
    for (source, value) in dequantized.values() {
        if let Some(module) = source
            .strip_prefix(PREFIX)
            .and_then(|s| s.strip_suffix("_quantized"))
        {
            named.insert(module.to_owned(), value.clone());
        }
    }
    // MatMuls on anonymous weights, named after the bias added to their product.
    let matmuls: Vec<(&NodeProto, &FloatTensor)> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "MatMul")
        .filter_map(|n| {
            let (source, value) = dequantized.get(n.input.get(1)?.as_str())?;
            (!source.starts_with(PREFIX)).then_some((n, value))
        })
        .collect();
    let mut unnamed = Vec::new();
    let mut query_inputs: HashMap<&str, String> = HashMap::new();
    for (node, value) in &matmuls {
        let weight = transpose(value)?;
        match added_bias(node, &consumers) {
            Some(bias) => {
                let module = bias
                    .strip_prefix(PREFIX)
                    .and_then(|b| b.strip_suffix(".bias"))
                    .ok_or_else(|| format!("a MatMul's bias is named {bias}"))?;
                if module.ends_with(".q_proj") {
                    query_inputs.insert(node.input[0].as_str(), module.to_owned());
                }
                named.insert(format!("{module}.weight"), weight);
            }
            None => unnamed.push((*node, weight)),
        }
    }
    for (node, weight) in unnamed {
        let query = query_inputs
            .get(node.input[0].as_str())
            .ok_or_else(|| format!("MatMul {} has no bias and is no key projection", node.name))?;
        let key = query.replace(".q_proj", ".k_proj");
        named.insert(format!("{key}.weight"), weight);
    }
    Ok(named)
}

/// The float bias a node's product is added to, looking through the quantize / dequantize pair
/// that the int8 export puts between them.
fn added_bias<'a>(
    node: &NodeProto,
    consumers: &HashMap<&str, Vec<&'a NodeProto>>,
) -> Option<&'a str> {
    let mut frontier: Vec<&str> = node.output.iter().map(String::as_str).collect();
    while let Some(value) = frontier.pop() {
        for next in consumers.get(value).into_iter().flatten() {
            match next.op_type.as_str() {
                "QuantizeLinear" | "DequantizeLinear" => {
                    frontier.extend(next.output.iter().map(String::as_str))
                }
                "Add" => {
                    let bias = next.input.iter().find(|i| i.ends_with(".bias"));
                    if bias.is_some() {
                        return bias.map(String::as_str);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// `(q - zero_point) * scale`, per tensor or per slice along `axis`.
fn dequantize(
    q: &FloatTensor,
    scale: &FloatTensor,
    zero: &FloatTensor,
    axis: i64,
) -> std::result::Result<FloatTensor, String> {
    let rank = q.shape.len() as i64;
    let axis = if axis < 0 { axis + rank } else { axis };
    let per_tensor = scale.values.len() == 1;
    let (channels, inner) = if per_tensor || rank == 0 {
        (1, q.values.len())
    } else {
        let axis = usize::try_from(axis).map_err(|_| "axis out of range".to_owned())?;
        let channels = *q.shape.get(axis).ok_or("axis out of range")?;
        (channels, q.shape[axis + 1..].iter().product())
    };
    if scale.values.len() != channels || zero.values.len() != channels {
        return Err(format!(
            "{} scales and {} zero points for {channels} channels",
            scale.values.len(),
            zero.values.len()
        ));
    }
    let values = q
        .values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / inner.max(1)) % channels;
            (v - zero.values[c]) * scale.values[c]
        })
        .collect();
    Ok(FloatTensor {
        shape: q.shape.clone(),
        values,
    })
}

/// A [in, out] matrix as [out, in].
fn transpose(m: &FloatTensor) -> std::result::Result<FloatTensor, String> {
    let [rows, cols] = m.shape[..] else {
        return Err(format!("a MatMul weight of shape {:?}", m.shape));
    };
    let mut values = vec![0f32; m.values.len()];
    for r in 0..rows {
        for c in 0..cols {
            values[c * rows + r] = m.values[r * cols + c];
        }
    }
    Ok(FloatTensor {
        shape: vec![cols, rows],
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[usize], values: &[f32]) -> FloatTensor {
        FloatTensor {
            shape: shape.to_vec(),
            values: values.to_vec(),
        }
    }

    #[test]
    fn dequantizes_per_channel_along_the_axis() {
        // [in 2, out 3] with a scale per output column (axis 1), as the MatMul weights are.
        let q = tensor(&[2, 3], &[1., 2., 3., -1., -2., -3.]);
        let scale = tensor(&[3], &[0.5, 1.0, 2.0]);
        let zero = tensor(&[3], &[0., 1., 0.]);
        let d = dequantize(&q, &scale, &zero, 1).unwrap();
        assert_eq!(d.values, vec![0.5, 1.0, 6.0, -0.5, -3.0, -6.0]);
        // Per output channel of a conv weight [out 2, in 1, k 2] (axis 0).
        let q = tensor(&[2, 1, 2], &[1., 2., 3., 4.]);
        let d = dequantize(&q, &tensor(&[2], &[1., 10.]), &tensor(&[2], &[0., 0.]), 0).unwrap();
        assert_eq!(d.values, vec![1., 2., 30., 40.]);
        // Per tensor.
        let d = dequantize(&q, &tensor(&[], &[2.]), &tensor(&[], &[1.]), 1).unwrap();
        assert_eq!(d.values, vec![0., 2., 4., 6.]);
        assert!(dequantize(&q, &tensor(&[3], &[1., 1., 1.]), &tensor(&[3], &[0.; 3]), 0).is_err());
    }

    #[test]
    fn transposes_matmul_weights_to_out_by_in() {
        let t = transpose(&tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.])).unwrap();
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(t.values, vec![1., 4., 2., 5., 3., 6.]);
    }
}
