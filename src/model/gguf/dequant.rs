//! ggml tensor types and their dequantization to f32: which types load, their block layouts, the
//! size checks; the block formats themselves are decoded in [`reccocktail_host::gguf`] (built
//! optimized: loading a model is mostly these loops).

use std::fmt;

use reccocktail_host::gguf as blocks;

/// A ggml tensor type (the ids of llama.cpp's `ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    /// Any other id (the IQ and ternary quantizations, MXFP4, future types).
    Other(u32),
}

impl GgmlType {
    pub fn from_id(id: u32) -> Self {
        use GgmlType::*;
        match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2K,
            11 => Q3K,
            12 => Q4K,
            13 => Q5K,
            14 => Q6K,
            15 => Q8K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            other => Other(other),
        }
    }

    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2K => 10,
            Q3K => 11,
            Q4K => 12,
            Q5K => 13,
            Q6K => 14,
            Q8K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
            Other(id) => id,
        }
    }

    /// (elements per block, bytes per block), when known.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        use GgmlType::*;
        Some(match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2K => (256, 84),
            Q3K => (256, 110),
            Q4K => (256, 144),
            Q5K => (256, 176),
            Q6K => (256, 210),
            Q8K => (256, 292),
            Other(_) => return None,
        })
    }

    /// Whether [`dequantize`] handles this type.
    pub fn is_dequantizable(self) -> bool {
        use GgmlType::*;
        matches!(self, F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q2K | Q3K | Q4K | Q5K | Q6K | Q8K)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use GgmlType::*;
        let name = match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            BF16 => "BF16",
            Other(id) => {
                let known = match id {
                    16 => "IQ2_XXS",
                    17 => "IQ2_XS",
                    18 => "IQ3_XXS",
                    19 => "IQ1_S",
                    20 => "IQ4_NL",
                    21 => "IQ3_S",
                    22 => "IQ2_S",
                    23 => "IQ4_XS",
                    29 => "IQ1_M",
                    34 => "TQ1_0",
                    35 => "TQ2_0",
                    39 => "MXFP4",
                    _ => return write!(f, "ggml type {id}"),
                };
                return write!(f, "{known} (ggml type {id})");
            }
        };
        f.write_str(name)
    }
}

/// Why bytes could not be dequantized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    #[error("type {0} is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K)")]
    Unsupported(GgmlType),
    #[error("{ty}: {n} elements need {expected} bytes, got {got}")]
    Size { ty: GgmlType, n: usize, expected: usize, got: usize },
}

/// Dequantize `n` elements of type `ty` from `bytes` (exactly their size).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, DequantError> {
    if !ty.is_dequantizable() {
        return Err(DequantError::Unsupported(ty));
    }
    let (block, block_bytes) = ty.block_layout().expect("supported types have a layout");
    if !n.is_multiple_of(block) || bytes.len() != n / block * block_bytes {
        return Err(DequantError::Size { ty, n, expected: n.div_ceil(block) * block_bytes, got: bytes.len() });
    }
    let mut out = vec![0f32; n];
    match ty {
        GgmlType::F32 => blocks::f32_le(&mut out, bytes),
        GgmlType::F16 => blocks::f16_le(&mut out, bytes),
        GgmlType::BF16 => blocks::bf16_le(&mut out, bytes),
        _ => {
            let decode: fn(&mut [f32], &[u8]) = match ty {
                GgmlType::Q8_0 => blocks::q8_0,
                GgmlType::Q4_0 => blocks::q4_0,
                GgmlType::Q4_1 => blocks::q4_1,
                GgmlType::Q5_0 => blocks::q5_0,
                GgmlType::Q5_1 => blocks::q5_1,
                GgmlType::Q2K => blocks::q2_k,
                GgmlType::Q3K => blocks::q3_k,
                GgmlType::Q4K => blocks::q4_k,
                GgmlType::Q5K => blocks::q5_k,
                GgmlType::Q6K => blocks::q6_k,
                GgmlType::Q8K => blocks::q8_k,
                _ => unreachable!("checked above"),
            };
            blocks::blocks(&mut out, bytes, block, block_bytes, decode);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_bits().to_le_bytes()
    }

    #[test]
    fn float_types() {
        let vals = [1.5f32, -2.25, 0.0, 65504.0];
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(dequantize(GgmlType::F32, &f32b, 4).unwrap(), vals);
        let f16b: Vec<u8> = vals.iter().flat_map(|&v| h(v)).collect();
        assert_eq!(dequantize(GgmlType::F16, &f16b, 4).unwrap(), vals);
        let bf: Vec<u8> = [1.5f32, -2.25, 0.0, 3.0e38].iter().flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes()).collect();
        let got = dequantize(GgmlType::BF16, &bf, 4).unwrap();
        assert_eq!(&got[..3], &[1.5, -2.25, 0.0]);
        assert!((got[3] - 3.0e38).abs() / 3.0e38 < 1e-2);
    }

    #[test]
    fn q8_0_block() {
        let mut b = h(0.5).to_vec();
        let qs: Vec<i8> = (0..32).map(|i| (i as i8) * 4 - 64).collect();
        b.extend(qs.iter().map(|&q| q as u8));
        let got = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        for (i, &q) in qs.iter().enumerate() {
            assert_eq!(got[i], f32::from(q) * 0.5, "element {i}");
        }
        assert_eq!(got[0], -32.0);
        assert_eq!(got[31], 30.0);
    }

    #[test]
    fn q4_0_nibble_order() {
        // byte j = (hi << 4) | lo with lo = j, hi = 15 - j.
        let mut b = h(2.0).to_vec();
        b.extend((0u8..16).map(|j| ((15 - j) << 4) | j));
        let got = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        for j in 0..16 {
            assert_eq!(got[j], (j as f32 - 8.0) * 2.0, "low nibble {j}");
            assert_eq!(got[j + 16], ((15 - j) as f32 - 8.0) * 2.0, "high nibble {j}");
        }
        // two blocks: the second is independent
        let mut two = b.clone();
        two.extend(h(-1.0));
        two.extend([0x80u8; 16]);
        let got = dequantize(GgmlType::Q4_0, &two, 64).unwrap();
        assert!(got[32..48].iter().all(|&x| x == 8.0));
        assert!(got[48..64].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn q4_1_scale_and_min() {
        let mut b = h(0.25).to_vec();
        b.extend(h(-1.0));
        b.extend((0u8..16).map(|j| ((15 - j) << 4) | j));
        let got = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        for j in 0..16 {
            assert_eq!(got[j], j as f32 * 0.25 - 1.0, "low nibble {j}");
            assert_eq!(got[j + 16], (15 - j) as f32 * 0.25 - 1.0, "high nibble {j}");
        }
    }

    #[test]
    fn errors_name_the_type() {
        let e = dequantize(GgmlType::from_id(23), &[0; 136], 256).unwrap_err();
        assert!(e.to_string().contains("IQ4_XS (ggml type 23) is not supported"), "{e}");
        assert!(GgmlType::from_id(23).to_string().contains("IQ4_XS"));
        let e = dequantize(GgmlType::Q8_0, &[0; 33], 32).unwrap_err();
        assert!(matches!(e, DequantError::Size { expected: 34, got: 33, .. }), "{e}");
        for id in [0, 1, 2, 3, 8, 12, 30, 99] {
            assert_eq!(GgmlType::from_id(id).id(), id);
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn every_block_format_matches_gguf_py() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gguf/blocks.json")).unwrap();
        let fixture: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(fixture.len(), 10);
        for (name, case) in &fixture {
            let ty = GgmlType::from_id(case["id"].as_u64().unwrap() as u32);
            assert_eq!(ty.to_string(), *name);
            let bytes = unhex(case["bytes"].as_str().unwrap());
            let want: Vec<f64> = case["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let got = dequantize(ty, &bytes, want.len()).unwrap_or_else(|e| panic!("{name}: {e}"));
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                // The same f32 operations in the same order: equal, up to a last-bit difference
                // where numpy fuses or reorders.
                assert!((*g as f64 - w).abs() <= 1e-6 * w.abs().max(1e-3), "{name}[{k}] (block {}, element {}): {g} vs {w}", k / ty.block_layout().unwrap().0, k % ty.block_layout().unwrap().0);
            }
        }
    }

    #[test]
    fn q8_k_is_scale_times_quant() {
        let mut b = vec![0u8; 292];
        b[0..4].copy_from_slice(&0.5f32.to_le_bytes());
        b[4] = 4;
        b[5] = (-6i8) as u8;
        b[259] = 127;
        let x = dequantize(GgmlType::Q8K, &b, 256).unwrap();
        assert_eq!((x[0], x[1], x[2], x[255]), (2.0, -3.0, 0.0, 63.5));
    }
}
