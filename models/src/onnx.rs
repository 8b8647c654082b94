//! The few ONNX protobuf messages needed to read a model's weights: a graph's nodes, their
//! attributes, tensors and nested graphs (the branches of `If`). Field numbers are those of
//! `onnx.proto`; fields this reader does not need are skipped by prost. Used by the converters of
//! Silero VAD and Smart Turn; nothing here runs a graph.

use std::collections::HashMap;

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

/// ONNX's codes for the element types read here.
const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;
const INT32: i32 = 6;

/// A float tensor: its shape and values.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl TensorProto {
    /// The values of a float tensor (raw little-endian bytes or `float_data`); `None` for others.
    pub fn floats(&self) -> Option<FloatTensor> {
        if self.data_type != FLOAT {
            return None;
        }
        let values = if self.raw_data.is_empty() {
            self.float_data.clone()
        } else {
            self.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        self.shaped(values)
    }

    /// The values of a float or integer (int8, uint8, int32) tensor as floats, as quantized
    /// weights, their zero points and their biases are stored; `None` for other types.
    pub fn numbers(&self) -> Option<FloatTensor> {
        let raw = &self.raw_data;
        let values: Vec<f32> = match self.data_type {
            FLOAT => return self.floats(),
            INT8 if !raw.is_empty() => raw.iter().map(|&b| f32::from(b as i8)).collect(),
            UINT8 if !raw.is_empty() => raw.iter().map(|&b| f32::from(b)).collect(),
            INT32 if !raw.is_empty() => raw
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
            // Without raw bytes, 8- and 32-bit integers are all kept in `int32_data`.
            INT8 | UINT8 | INT32 => self.int32_data.iter().map(|&v| v as f32).collect(),
            _ => return None,
        };
        self.shaped(values)
    }

    fn shaped(&self, values: Vec<f32>) -> Option<FloatTensor> {
        let shape: Vec<usize> = self.dims.iter().map(|&d| d.max(0) as usize).collect();
        (shape.iter().product::<usize>() == values.len()).then_some(FloatTensor { shape, values })
    }
}

impl GraphProto {
    /// Every float constant and initializer of this graph (not of nested ones), by output name.
    pub fn float_constants(&self) -> HashMap<String, FloatTensor> {
        let constants = self
            .node
            .iter()
            .filter(|n| n.op_type == "Constant")
            .filter_map(|n| {
                let value = n.attribute.iter().find(|a| a.name == "value")?.t.as_ref()?;
                Some((n.output.first()?.clone(), value.floats()?))
            });
        let initializers = self
            .initializer
            .iter()
            .filter_map(|t| Some((t.name.clone(), t.floats()?)));
        constants.chain(initializers).collect()
    }

    /// The graph attribute `name` (an `If` node's `then_branch` / `else_branch`) of `node`.
    pub fn branch<'a>(node: &'a NodeProto, name: &str) -> Option<&'a GraphProto> {
        node.attribute.iter().find(|a| a.name == name)?.g.as_ref()
    }
}

impl NodeProto {
    /// The integer attribute `name`, if the node has it.
    pub fn int_attribute(&self, name: &str) -> Option<i64> {
        self.attribute.iter().find(|a| a.name == name).map(|a| a.i)
    }
}

/// Parses an ONNX file's bytes.
pub fn parse(bytes: &[u8]) -> Result<ModelProto, prost::DecodeError> {
    ModelProto::decode(bytes)
}
