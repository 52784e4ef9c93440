//! llama.cpp's block formats (what a GGUF file's tensors hold), decoded to f32: the loops that
//! turn every weight of a quantized model into numbers when it is loaded. `f32_le`, `f16_le` and
//! `bf16_le` decode a whole tensor; the others one block each, applied to a tensor's blocks by
//! [`blocks`] (the caller checks the sizes and gives the layout, as
//! `reccocktail::model::gguf::dequant::dequantize` does). Built here, at opt-level 3, for the
//! crate's reason: at the main crate's opt-level 1 these loops (and [`crate::transpose`]) were
//! about half of loading SmolLM2-135M-Instruct's GGUF (~1.5 s of a 3 s `bench forward`). Same
//! operations in the same order at any opt-level (Rust neither reassociates nor contracts
//! floating-point arithmetic), so the same bits.
//!
//! - `F32`, `F16`, `BF16`: little-endian floats, one per element.
//! - `Q8_0` (32 per block, 34 bytes): f16 scale `d`, 32 × i8 `q`; `x = q · d`.
//! - `Q4_0` (32, 18): f16 `d`, 16 bytes; `x = (q − 8) · d`, element j < 16 from the low nibble of
//!   byte j, element j + 16 from its high nibble.
//! - `Q4_1` (32, 20): f16 `d`, f16 `m`, 16 bytes; `x = q · d + m`, same nibble order.
//! - `Q5_0` (32, 22): f16 `d`, 32 high bits `qh` (u32 LE), 16 bytes of nibbles;
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
//!
//! Checked block by block against `gguf.quants.dequantize` (llama.cpp's Python package) on random
//! and edge-case blocks: the main crate's `tests/fixtures/gguf/blocks.json`, made by
//! `scripts/fixtures/make_kquant_fixture.py`.

use half::{bf16, f16};

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

pub fn q8_0(o: &mut [f32], b: &[u8]) {
    let d = f16_at(b, 0);
    for (x, &q) in o.iter_mut().zip(&b[2..34]) {
        *x = f32::from(q as i8) * d;
    }
}

pub fn q4_0(o: &mut [f32], b: &[u8]) {
    let d = f16_at(b, 0);
    let (lo, hi) = o.split_at_mut(16);
    for (j, &q) in b[2..18].iter().enumerate() {
        lo[j] = (f32::from(q & 0x0F) - 8.0) * d;
        hi[j] = (f32::from(q >> 4) - 8.0) * d;
    }
}

pub fn q4_1(o: &mut [f32], b: &[u8]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let (lo, hi) = o.split_at_mut(16);
    for (j, &q) in b[4..20].iter().enumerate() {
        lo[j] = f32::from(q & 0x0F) * d + m;
        hi[j] = f32::from(q >> 4) * d + m;
    }
}

/// `decode` (one of the block decoders here) applied to every (output block, input block) pair:
/// blocks of `block` elements from `block_bytes` bytes each (the type's layout, which the caller
/// declares: `reccocktail::model::gguf::GgmlType::block_layout`).
pub fn blocks(out: &mut [f32], bytes: &[u8], block: usize, block_bytes: usize, decode: fn(&mut [f32], &[u8])) {
    for (o, b) in out.chunks_exact_mut(block).zip(bytes.chunks_exact(block_bytes)) {
        decode(o, b);
    }
}

pub fn f32_le(out: &mut [f32], bytes: &[u8]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

pub fn f16_le(out: &mut [f32], bytes: &[u8]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
    }
}

pub fn bf16_le(out: &mut [f32], bytes: &[u8]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
    }
}
