//! The loops reccocktail runs on the host over every trainable number at every optimizer step:
//! adding a micro-batch's gradients, their squared norm, clipping, and the AdamW update; and the
//! dropout masks, drawn on the host for every adapted module's input at every training step.
//!
//! They live in their own crate so that the build profiles can optimize them (opt-level 3, where
//! the loops vectorize) while the main crate stays at opt-level 1 in test and `quick` builds: at
//! opt-level 1 these loops took ~0.1 s of a ~3 s training step of SmolLM2-135M (4.9 million LoRA
//! numbers). Vectorizing them changes no bit: every operation is an IEEE-rounded `+`, `*`, `/`
//! or `sqrt` in the same order per element (Rust neither reassociates nor contracts floating-point
//! arithmetic), and the one reduction, [`sum_squares`], stays a sequential sum.
//!
//! The functions take plain slices and are not generic or `#[inline]`: their code is compiled
//! here, in this crate's profile, not in the caller's.
//!
//! The masks ([`splitmix_mask`]) are integer arithmetic, the same bits whatever the instruction
//! set: they are drawn with 64-bit vector multiplies where the processor has AVX-512 DQ (about 8x
//! faster than one element at a time), with AVX2 otherwise (about 2.5x), and element by element
//! on any other processor.

/// SplitMix64's increment (the golden ratio in 64 bits).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective mix of a 64-bit state.
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fill `out` with the mask of the counter after `counter`: elements `2j` and `2j + 1` are
/// whether the low and the high 32 bits of `mix64(counter + (j + 1) * GOLDEN)` are below
/// `threshold` (so the drop probability is `threshold / 2^32`).
pub fn splitmix_mask(out: &mut [bool], counter: u64, threshold: u64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") && std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vl") {
            // SAFETY: the processor has the features the function is compiled for.
            return unsafe { mask_avx512(out, counter, threshold) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { mask_avx2(out, counter, threshold) };
        }
    }
    mask_pairs(out, counter, threshold)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
fn mask_avx512(out: &mut [bool], counter: u64, threshold: u64) {
    mask_pairs(out, counter, threshold)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mask_avx2(out: &mut [bool], counter: u64, threshold: u64) {
    mask_pairs(out, counter, threshold)
}

/// [`splitmix_mask`] written so that the pairs are independent (each from its own index), which
/// the compiler vectorizes where the instruction set allows.
#[inline(always)]
fn mask_pairs(out: &mut [bool], counter: u64, threshold: u64) {
    let (pairs, rest) = out.as_chunks_mut::<2>();
    let n_pairs = pairs.len() as u64;
    for (j, pair) in pairs.iter_mut().enumerate() {
        let h = mix64(counter.wrapping_add((j as u64 + 1).wrapping_mul(GOLDEN)));
        pair[0] = (h & 0xFFFF_FFFF) < threshold;
        pair[1] = (h >> 32) < threshold;
    }
    if let [last] = rest {
        *last = (mix64(counter.wrapping_add((n_pairs + 1).wrapping_mul(GOLDEN))) & 0xFFFF_FFFF) < threshold;
    }
}

/// `acc[i] += x[i]`.
pub fn add_into(acc: &mut [f32], x: &[f32]) {
    assert_eq!(acc.len(), x.len(), "add_into: lengths differ");
    for (a, b) in acc.iter_mut().zip(x) {
        *a += *b;
    }
}

/// `acc + sum of x[i]^2` in f64, summed in order (a running total over several slices gives the
/// same bits as one sum over their concatenation).
pub fn sum_squares(acc: f64, x: &[f32]) -> f64 {
    x.iter().fold(acc, |s, &g| s + (g as f64) * (g as f64))
}

/// `x[i] *= c`.
pub fn scale(x: &mut [f32], c: f32) {
    for v in x.iter_mut() {
        *v *= c;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The mask as first written: one counter stepped by `GOLDEN` per pair.
    fn mask_reference(out: &mut [bool], mut counter: u64, threshold: u64) {
        let n = out.len();
        let mut i = 0;
        while i + 1 < n {
            counter = counter.wrapping_add(GOLDEN);
            let h = mix64(counter);
            out[i] = (h & 0xFFFF_FFFF) < threshold;
            out[i + 1] = (h >> 32) < threshold;
            i += 2;
        }
        if i < n {
            out[i] = (mix64(counter.wrapping_add(GOLDEN)) & 0xFFFF_FFFF) < threshold;
        }
    }

    #[test]
    fn masks_are_the_same_on_every_instruction_set() {
        for (n, counter, threshold) in [(0, 1, 1 << 31), (1, 7, 1 << 31), (1001, u64::MAX - 3, 214_748_365), (4096, 42, 3_000_000_000)] {
            let mut want = vec![false; n];
            mask_reference(&mut want, counter, threshold);
            let mut got = vec![true; n];
            splitmix_mask(&mut got, counter, threshold);
            assert_eq!(got, want, "dispatched, n = {n}");
            let mut plain = vec![true; n];
            mask_pairs(&mut plain, counter, threshold);
            assert_eq!(plain, want, "element by element, n = {n}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut v = vec![true; n];
                // SAFETY: detected above.
                unsafe { mask_avx2(&mut v, counter, threshold) };
                assert_eq!(v, want, "avx2, n = {n}");
            }
        }
    }

    #[test]
    fn add_and_scale() {
        let mut acc = vec![1.0f32, 2.0, 3.0];
        add_into(&mut acc, &[0.5, -2.0, 1.0]);
        assert_eq!(acc, [1.5, 0.0, 4.0]);
        scale(&mut acc, 2.0);
        assert_eq!(acc, [3.0, 0.0, 8.0]);
    }
}
