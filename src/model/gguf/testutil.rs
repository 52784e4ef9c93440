//! Test helpers: a minimal GGUF writer, reference quantizers, and a tiny byte-level vocabulary.

use half::{bf16, f16};

use super::{GgmlType, GgufValue};

pub use crate::model::tiny::bytes_to_unicode;

pub fn value_type(v: &GgufValue) -> u32 {
    match v {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.extend(x.to_le_bytes()),
        GgufValue::U16(x) => out.extend(x.to_le_bytes()),
        GgufValue::I16(x) => out.extend(x.to_le_bytes()),
        GgufValue::U32(x) => out.extend(x.to_le_bytes()),
        GgufValue::I32(x) => out.extend(x.to_le_bytes()),
        GgufValue::F32(x) => out.extend(x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(u8::from(*x)),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::Array(a) => {
            out.extend(a.first().map_or(8, value_type).to_le_bytes());
            out.extend((a.len() as u64).to_le_bytes());
            for x in a {
                put_value(out, x);
            }
        }
        GgufValue::U64(x) => out.extend(x.to_le_bytes()),
        GgufValue::I64(x) => out.extend(x.to_le_bytes()),
        GgufValue::F64(x) => out.extend(x.to_le_bytes()),
    }
}

/// Builds GGUF bytes.
pub struct GgufBuilder {
    pub version: u32,
    pub alignment: u64,
    pub kv: Vec<(String, GgufValue)>,
    /// name, GGUF dims (innermost first), type, raw bytes
    pub tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl GgufBuilder {
    pub fn new() -> Self {
        GgufBuilder { version: 3, alignment: 32, kv: Vec::new(), tensors: Vec::new() }
    }

    pub fn kv(&mut self, key: &str, v: GgufValue) -> &mut Self {
        self.kv.push((key.to_string(), v));
        self
    }

    /// Add a tensor given in HF (row-major) shape, encoded as `ty`.
    pub fn tensor(&mut self, name: &str, hf_shape: &[usize], ty: GgmlType, data: &[f32]) -> &mut Self {
        let dims = hf_shape.iter().rev().map(|&d| d as u64).collect();
        self.tensors.push((name.to_string(), dims, ty, quantize(ty, data)));
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut out, k);
            out.extend(value_type(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let align = |n: u64| n.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, bytes) in &self.tensors {
            put_str(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.id().to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = align(offset + bytes.len() as u64);
        }
        let data_start = align(out.len() as u64);
        out.resize(data_start as usize, 0);
        for ((_, _, _, bytes), off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend(bytes);
        }
        out
    }

    pub fn write(&self, path: &std::path::Path) {
        std::fs::write(path, self.build()).unwrap();
    }
}

fn h(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_bits().to_le_bytes()
}

/// Reference quantizers (llama.cpp's `quantize_row_*_ref` rounding).
pub fn quantize(ty: GgmlType, data: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    match ty {
        GgmlType::F32 => data.iter().for_each(|x| out.extend(x.to_le_bytes())),
        GgmlType::F16 => data.iter().for_each(|&x| out.extend(h(x))),
        GgmlType::BF16 => data.iter().for_each(|&x| out.extend(bf16::from_f32(x).to_bits().to_le_bytes())),
        GgmlType::Q8_0 => {
            for b in data.chunks(32) {
                let amax = b.iter().fold(0f32, |m, x| m.max(x.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(h(d));
                out.extend(b.iter().map(|&x| (x * id).round() as i8 as u8));
            }
        }
        GgmlType::Q4_0 => {
            for b in data.chunks(32) {
                let max = b.iter().copied().fold(0f32, |m, x| if x.abs() > m.abs() { x } else { m });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(h(d));
                let q = |x: f32| ((x * id + 8.5) as i32).clamp(0, 15) as u8;
                out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
            }
        }
        GgmlType::Q4_1 => {
            for b in data.chunks(32) {
                let min = b.iter().copied().fold(f32::MAX, f32::min);
                let max = b.iter().copied().fold(f32::MIN, f32::max);
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(h(d));
                out.extend(h(min));
                let q = |x: f32| (((x - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
            }
        }
        // Zero blocks of an unsupported type (Q8_1 is llama.cpp's activation format).
        GgmlType::Q8_1 => out.resize(data.len() / 32 * 36, 0),
        other => panic!("test quantizer for {other} not written"),
    }
    out
}

/// A tiny byte-level BPE vocabulary: 3 control tokens, the 256 byte tokens, a few merges.
pub fn tiny_vocab_kv(b: &mut GgufBuilder, pre: &str) {
    let table = bytes_to_unicode();
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
    tokens.extend(table.iter().map(|c| c.to_string()));
    let merges = ["h e", "l l", "he ll", "Ġ w", "o r"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    let mut types = vec![3i32; 3];
    types.resize(tokens.len(), 1);
    let strs = |v: &[String]| GgufValue::Array(v.iter().map(|s| GgufValue::String(s.clone())).collect());
    b.kv("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", GgufValue::String(pre.into()))
        .kv("tokenizer.ggml.tokens", strs(&tokens))
        .kv("tokenizer.ggml.token_type", GgufValue::Array(types.into_iter().map(GgufValue::I32).collect()))
        .kv("tokenizer.ggml.merges", strs(&merges.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
        .kv("tokenizer.ggml.bos_token_id", GgufValue::U32(1))
        .kv("tokenizer.ggml.eos_token_id", GgufValue::U32(2))
        .kv("tokenizer.ggml.unknown_token_id", GgufValue::U32(0))
        .kv("tokenizer.ggml.padding_token_id", GgufValue::U32(2))
        .kv("tokenizer.ggml.add_bos_token", GgufValue::Bool(false));
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
