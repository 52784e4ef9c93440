//! The 5-bit and k-quant block formats of llama.cpp (what `Q4_K_M`, `Q5_K_M`, `Q6_K` files hold),
//! dequantized to f32. Checked block by block against `gguf.quants.dequantize` (llama.cpp's
//! Python package) on random and edge-case blocks: `tests/fixtures/gguf/blocks.json`, made by
//! `scripts/fixtures/make_kquant_fixture.py`.
//!
//! - `Q5_0` (32 per block, 22 bytes): f16 `d`, 32 high bits `qh` (u32 LE), 16 bytes of nibbles;
//!   element j < 16 is `(low nibble of byte j | bit j of qh << 4) − 16`, element j + 16 the high
//!   nibble with bit j + 16; times `d`.
//! - `Q5_1` (32, 24): f16 `d`, f16 `m`, `qh`, nibbles as Q5_0 without the offset; `q · d + m`.
//! - k-quants: super-blocks of 256 in sub-blocks of 16 or 32, each with its own scale (and min),
//!   themselves quantized against the super-block's f16 `d` (and `dmin`):
//!   - `Q2_K` (84): 16 bytes of 4-bit scale | 4-bit min, 64 bytes of 2-bit quants, `d`, `dmin`;
//!     `x = d·sc·q − dmin·m`, 16 sub-blocks of 16.
//!   - `Q3_K` (110): 32 bytes of high bits, 64 bytes of 2-bit quants, 12 bytes packing 16 6-bit
//!     scales, `d`; `x = d·(sc − 32)·(q − (high bit clear ? 4 : 0))`.
//!   - `Q4_K` (144): `d`, `dmin`, 12 bytes packing 8 6-bit scales and 8 6-bit mins, 128 bytes of
//!     nibbles; 8 sub-blocks of 32, `x = d·sc·q − dmin·m`.
//!   - `Q5_K` (176): as Q4_K plus 32 bytes of fifth bits.
//!   - `Q6_K` (210): 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 i8 scales, `d`;
//!     `x = d·sc·(q − 32)`, 16 sub-blocks of 16.
//!   - `Q8_K` (292): f32 `d`, 256 i8 quants, 16 i16 block sums (unused here); `x = d·q`.

use half::f16;

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

pub fn q5_0(o: &mut [f32], b: &[u8]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, &q) in b[6..22].iter().enumerate() {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        o[j] = (i32::from((q & 0x0F) | h0) - 16) as f32 * d;
        o[j + 16] = (i32::from((q >> 4) | h1) - 16) as f32 * d;
    }
}

pub fn q5_1(o: &mut [f32], b: &[u8]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, &q) in b[8..24].iter().enumerate() {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        o[j] = f32::from((q & 0x0F) | h0) * d + m;
        o[j + 16] = f32::from((q >> 4) | h1) * d + m;
    }
}

pub fn q2_k(o: &mut [f32], b: &[u8]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    let mut k = 0;
    for (half, q) in qs.chunks_exact(32).enumerate() {
        for j in 0..4 {
            let shift = 2 * j;
            for part in 0..2 {
                let sc = scales[half * 8 + j * 2 + part];
                let (dl, ml) = (d * f32::from(sc & 0x0F), dmin * f32::from(sc >> 4));
                for &x in &q[part * 16..part * 16 + 16] {
                    o[k] = dl * f32::from((x >> shift) & 3) - ml;
                    k += 1;
                }
            }
        }
    }
}

/// The 16 signed 6-bit scales of a `Q3_K` block from their 12-byte packing: scale i's low four
/// bits are nibble (i mod 8) of bytes 0..8 (low nibbles first), its high two bits come from byte
/// 8 + (i mod 4), at bit 2·(i / 4).
fn q3_k_scales(p: &[u8]) -> [i32; 16] {
    let mut out = [0i32; 16];
    for (i, s) in out.iter_mut().enumerate() {
        let low = if i < 8 { p[i] & 0x0F } else { p[i - 8] >> 4 };
        let high = (p[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = i32::from(low | (high << 4)) - 32;
    }
    out
}

pub fn q3_k(o: &mut [f32], b: &[u8]) {
    let (hmask, qs) = (&b[0..32], &b[32..96]);
    let scales = q3_k_scales(&b[96..108]);
    let d = f16_at(b, 108);
    let (mut k, mut is, mut m) = (0, 0, 1u8);
    for q in qs.chunks_exact(32) {
        for j in 0..4 {
            let shift = 2 * j;
            for part in 0..2 {
                let dl = d * scales[is] as f32;
                is += 1;
                for l in part * 16..part * 16 + 16 {
                    let v = i32::from((q[l] >> shift) & 3) - if hmask[l] & m != 0 { 0 } else { 4 };
                    o[k] = dl * v as f32;
                    k += 1;
                }
            }
            m <<= 1;
        }
    }
}

/// Scale and min of sub-block `j` (0..8) from the 12-byte packing of `Q4_K` / `Q5_K`.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

pub fn q4_k(o: &mut [f32], b: &[u8]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (c, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min_k4(2 * c, scales);
        let (s2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1, d2, m2) = (d * f32::from(s1), dmin * f32::from(m1), d * f32::from(s2), dmin * f32::from(m2));
        let y = &mut o[c * 64..c * 64 + 64];
        for (l, &x) in q.iter().enumerate() {
            y[l] = d1 * f32::from(x & 0x0F) - m1;
            y[l + 32] = d2 * f32::from(x >> 4) - m2;
        }
    }
}

pub fn q5_k(o: &mut [f32], b: &[u8]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (c, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min_k4(2 * c, scales);
        let (s2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1, d2, m2) = (d * f32::from(s1), dmin * f32::from(m1), d * f32::from(s2), dmin * f32::from(m2));
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let y = &mut o[c * 64..c * 64 + 64];
        for (l, &x) in q.iter().enumerate() {
            y[l] = d1 * f32::from((x & 0x0F) + if qh[l] & u1 != 0 { 16 } else { 0 }) - m1;
            y[l + 32] = d2 * f32::from((x >> 4) + if qh[l] & u2 != 0 { 16 } else { 0 }) - m2;
        }
    }
}

pub fn q6_k(o: &mut [f32], b: &[u8]) {
    let d = f16_at(b, 208);
    for half in 0..2 {
        let (ql, qh) = (&b[half * 64..half * 64 + 64], &b[128 + half * 32..128 + half * 32 + 32]);
        let sc = |i: usize| f32::from(b[192 + half * 8 + i] as i8);
        let y = &mut o[half * 128..half * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = i32::from((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
            let q2 = i32::from((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc(is) * q1 as f32;
            y[l + 32] = d * sc(is + 2) * q2 as f32;
            y[l + 64] = d * sc(is + 4) * q3 as f32;
            y[l + 96] = d * sc(is + 6) * q4 as f32;
        }
    }
}

pub fn q8_k(o: &mut [f32], b: &[u8]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (x, &q) in o.iter_mut().zip(&b[4..260]) {
        *x = d * f32::from(q as i8);
    }
}

#[cfg(test)]
mod tests {
    use super::super::dequant::{dequantize, GgmlType};

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
