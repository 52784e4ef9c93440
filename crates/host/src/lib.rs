//! The loops reccocktail runs on the host over every number of a model: at loading, decoding a
//! GGUF file's blocks ([`gguf`]) and transposing weights into burn's layout ([`transpose`]); at
//! every training step, the squared norm of the gradients and the AdamW update (the reference the
//! training device's update is tested against, bit for bit, and the entropy merge's update of its
//! coefficients).
//!
//! They live in their own crate so that the build profiles can optimize them (opt-level 3, where
//! the loops vectorize) while the main crate stays at opt-level 1 in test and `quick` builds: at
//! opt-level 1 the training loops took ~0.1 s of a ~3 s training step of SmolLM2-135M (4.9 million
//! LoRA numbers), and the loading loops about half of loading its GGUF. Optimizing them changes no
//! bit: every operation is an IEEE-rounded `+`, `*`, `/` or `sqrt` (or an exact conversion) in
//! the same order per element (Rust neither reassociates nor contracts floating-point arithmetic),
//! and the one reduction, [`sum_squares`], stays a sequential sum.
//!
//! The public functions take plain slices and are not generic or `#[inline]`: their code is
//! compiled here, in this crate's profile, not in the caller's.

pub mod gguf;

/// Row-major `[rows, cols]` -> row-major `[cols, rows]` (an HF weight `[out, in]` into burn's
/// `[in, out]`, and back). Walks the output in tiles so that both sides stay in cache.
pub fn transpose(rows: usize, cols: usize, data: &[f32]) -> Vec<f32> {
    assert_eq!(data.len(), rows * cols, "matrix size");
    const TILE: usize = 32;
    let mut out = vec![0.0f32; data.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
}

/// `acc + sum of x[i]^2` in f64, summed in order (a running total over several slices gives the
/// same bits as one sum over their concatenation).
pub fn sum_squares(acc: f64, x: &[f32]) -> f64 {
    x.iter().fold(acc, |s, &g| s + (g as f64) * (g as f64))
}

/// The per-step constants of one AdamW update (PyTorch's `torch.optim.AdamW`: bias-corrected
/// moments, decoupled weight decay), in f32 as the update applies them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub beta1: f32,
    pub beta2: f32,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bc2_sqrt: f32,
    /// `1 - lr * weight_decay`.
    pub decay: f32,
    pub eps: f32,
}

/// One AdamW update of `param` by `grad`, moments `m` and `v` updated in place.
pub fn adamw(s: &AdamWStep, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
    let n = param.len();
    assert!(grad.len() == n && m.len() == n && v.len() == n, "adamw: lengths differ");
    let (b1, b2) = (s.beta1, s.beta2);
    let (c1, c2) = (1.0 - b1, 1.0 - b2);
    for i in 0..n {
        let g = grad[i];
        let p = param[i] * s.decay;
        let mi = b1 * m[i] + c1 * g;
        let vi = b2 * v[i] + c2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = p - s.step_size * mi / (vi.sqrt() / s.bc2_sqrt + s.eps);
    }
}

/// The `f32`s whose native-endian bytes are `bytes` (a tensor's data read back to the host). The
/// copy is a plain loop here at opt-level 3; burn's checked conversion, instantiated in the main
/// crate at opt-level 1, visited each of the 4.9 million gradients of a training step one call at a
/// time (3% of a small step). `bytes.len()` must be a multiple of 4.
pub fn f32s_from_ne_bytes(bytes: &[u8]) -> Vec<f32> {
    assert!(bytes.len().is_multiple_of(4), "{} bytes are not whole f32s", bytes.len());
    bytes.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_every_element_across_tile_edges() {
        for (rows, cols) in [(1, 1), (3, 4), (33, 65), (64, 32)] {
            let data: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let t = transpose(rows, cols, &data);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], data[r * cols + c]);
                }
            }
            assert_eq!(transpose(cols, rows, &t), data);
        }
    }

    /// The element-at-a-time reference the vectorized loop must equal bit for bit.
    fn adamw_scalar(s: &AdamWStep, p: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        *p *= s.decay;
        *m = s.beta1 * *m + (1.0 - s.beta1) * g;
        *v = s.beta2 * *v + (1.0 - s.beta2) * g * g;
        *p -= s.step_size * *m / (v.sqrt() / s.bc2_sqrt + s.eps);
    }

    fn numbers(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32 - 0.5) * 0.02
            })
            .collect()
    }

    #[test]
    fn adamw_equals_the_scalar_update_bit_for_bit() {
        let s = AdamWStep { beta1: 0.9, beta2: 0.999, step_size: 3.3e-4, bc2_sqrt: 0.0447, decay: 0.99999, eps: 1e-8 };
        let n = 1003;
        let (mut p, g) = (numbers(n, 1), numbers(n, 2));
        let (mut m, mut v) = (numbers(n, 3), numbers(n, 4).iter().map(|x| x * x).collect::<Vec<_>>());
        let (mut p2, mut m2, mut v2) = (p.clone(), m.clone(), v.clone());
        adamw(&s, &mut p, &g, &mut m, &mut v);
        for i in 0..n {
            adamw_scalar(&s, &mut p2[i], g[i], &mut m2[i], &mut v2[i]);
        }
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&p), bits(&p2));
        assert_eq!(bits(&m), bits(&m2));
        assert_eq!(bits(&v), bits(&v2));
    }

    #[test]
    fn running_sum_of_squares_equals_one_sum() {
        let (a, b) = (numbers(777, 5), numbers(1001, 6));
        let joined: Vec<f32> = a.iter().chain(&b).copied().collect();
        let one = joined.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>();
        assert_eq!(sum_squares(sum_squares(0.0, &a), &b).to_bits(), one.to_bits());
    }

    #[test]
    fn f32s_from_bytes_round_trip() {
        let x = [1.5f32, -0.0, f32::MIN_POSITIVE, f32::NAN, 3.0e38];
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let back = f32s_from_ne_bytes(&bytes);
        assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), x.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
}
