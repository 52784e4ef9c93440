//! Dense per-module deltas (the result of entry-wise methods: `ties`, `dare`) factorized back
//! into a LoRA adapter by truncated SVD.
//!
//! A module whose requested rank comes close to `min(out, in)` or whose smaller side is small is
//! factorized through the eigendecomposition of its smaller Gram matrix (exact at full rank).
//! Otherwise a randomized range finder (Halko, Martinsson & Tropp 2011: `rank + 10` seeded
//! Gaussian probes, two power iterations) finds the dominant subspace first. Either way the output
//! is `P ΔW` (or `ΔW P`) for an orthogonal projector `P`, so the reported dropped energy
//! `||ΔW||² - ||P ΔW||²` is what the output loses.

use std::collections::BTreeMap;

use super::MergeError;
use super::combine::{Energy, output_config};
use super::linalg::{Mat, matmul, matmul_nt, matmul_tn, sym_eigen};
use crate::rng::Rng;
use crate::model::lora::Proj;
use crate::model::peft::{LoraPair, PeftAdapter, module_name};

/// A merged dense delta `[out, in]` per module (already including every scale and weight).
#[derive(Debug, Clone, Default)]
pub struct DenseDeltas {
    pub modules: BTreeMap<(usize, Proj), Mat>,
}

/// How a factorization went.
#[derive(Debug, Clone, Copy)]
pub struct Factorized {
    pub energy: Energy,
    /// Every module was factorized at its full rank `min(out, in)` (the output is exact).
    pub full_rank: bool,
}

const OVERSAMPLE: usize = 10;
const POWER_ITERATIONS: usize = 2;
/// Below this smaller side a full SVD is cheap enough.
const FULL_SVD_MAX: usize = 128;

/// Factorize every module's delta at `rank` (default: the sum of the ranks of the adapters that
/// adapt the module) into a scale-1 adapter. Zero deltas are left out.
pub fn factorize(deltas: &DenseDeltas, adapters: &[PeftAdapter], rank: Option<usize>) -> Result<(PeftAdapter, Factorized), MergeError> {
    if rank == Some(0) {
        return Err(MergeError::Invalid("the factorization rank must be at least 1".into()));
    }
    let mut energy = Energy::default();
    let mut full_rank = true;
    let mut modules = BTreeMap::new();
    for (&(layer, proj), delta) in &deltas.modules {
        let k = rank.unwrap_or_else(|| adapters.iter().filter_map(|a| a.modules.get(&(layer, proj))).map(|p| p.a.shape[0]).sum());
        let (pair, e, full) = factor(delta, k.max(1), &module_name(layer, proj));
        energy.add(e);
        if e.total == 0.0 {
            continue;
        }
        full_rank &= full;
        modules.insert((layer, proj), pair);
    }
    if modules.is_empty() {
        return Err(MergeError::Invalid("the merged delta is zero on every module: there is no adapter to write".into()));
    }
    let base_model = adapters.iter().find_map(|a| a.config.base_model.clone());
    Ok((PeftAdapter { config: output_config(&modules, base_model), modules }, Factorized { energy, full_rank }))
}

/// Best (or, for large modules, randomized near-best) rank-`k` factors of one delta; `label`
/// seeds the random probes. Returns the factors, the energy, and whether `k` was full rank.
pub fn factor(delta: &Mat, k: usize, label: &str) -> (LoraPair, Energy, bool) {
    let (m, n) = delta.shape();
    let p = m.min(n);
    let k = k.min(p).max(1);
    let total = delta.norm_squared();
    let (b, a, kept) = if k + OVERSAMPLE >= p || p <= FULL_SVD_MAX {
        if m <= n {
            project_rows(delta, None, k)
        } else {
            // ΔW^T = B^T-side: factor the transpose and swap.
            let (b, a, kept) = project_rows(&delta.transpose(), None, k);
            (a.transpose(), b.transpose(), kept)
        }
    } else {
        project_rows(delta, Some(range_basis(delta, k, label)), k)
    };
    (LoraPair { a: a.to_host(), b: b.to_host() }, Energy { total, dropped: (total - kept).max(0.0) }, k == p)
}

/// Factors `B = U_k S^{1/2}`, `A = S^{-1/2} U_k^T ΔW` (so `B A = U_k U_k^T ΔW`) where `U_k` spans the
/// top-`k` left singular directions of ΔW, searched within the orthonormal `basis` (m x l) when
/// given, else among all of ΔW's columns (via `ΔW ΔW^T`). Returns (B, A, kept energy).
fn project_rows(delta: &Mat, basis: Option<Mat>, k: usize) -> (Mat, Mat, f64) {
    let small = basis.as_ref().map(|q| matmul_tn(q, delta));
    let s = small.as_ref().unwrap_or(delta);
    let (l, v) = sym_eigen(&matmul_nt(s, s));
    let top = l.first().copied().unwrap_or(0.0);
    let live = |j: usize| j < k && j < l.len() && l[j] > top * 1e-22 && l[j] > 0.0;
    // Directions: columns of V (in the basis when given).
    let dirs = match &basis {
        Some(q) => matmul(q, &v),
        None => v,
    };
    let b = Mat::from_fn(delta.nrows(), k, |r, c| if live(c) { dirs[(r, c)] * l[c].powf(0.25) } else { 0.0 });
    let w = Mat::from_fn(delta.nrows(), k, |r, c| if live(c) { dirs[(r, c)] / l[c].powf(0.25) } else { 0.0 });
    let a = matmul_tn(&w, delta);
    let kept = (0..k).filter(|&j| live(j)).map(|j| l[j]).sum();
    (b, a, kept)
}

/// An orthonormal basis (m x (k + oversampling)) of ΔW's dominant column space: seeded Gaussian
/// probes, power iterations, re-orthonormalized after every product.
fn range_basis(delta: &Mat, k: usize, label: &str) -> Mat {
    let (_, n) = delta.shape();
    let l = k + OVERSAMPLE;
    let mut rng = Rng::derive(0, &["svd-probes", label]);
    let omega = Mat::from_fn(n, l, |_, _| {
        let (u1, u2) = (rng.unit().max(1e-300), rng.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    });
    let mut q = orthonormalize(&matmul(delta, &omega));
    for _ in 0..POWER_ITERATIONS {
        let z = orthonormalize(&matmul_tn(delta, &q));
        q = orthonormalize(&matmul(delta, &z));
    }
    q
}

/// Orthonormal columns spanning `y`'s columns (Gram eigendecomposition, twice for accuracy);
/// directions with no energy are dropped.
fn orthonormalize(y: &Mat) -> Mat {
    let mut q = y.clone();
    for _ in 0..2 {
        let (l, v) = sym_eigen(&matmul_tn(&q, &q));
        let top = l.first().copied().unwrap_or(0.0);
        let keep: Vec<usize> = (0..l.len()).filter(|&j| l[j] > top * 1e-24 && l[j] > 0.0).collect();
        let p = Mat::from_fn(v.nrows(), keep.len(), |r, c| v[(r, keep[c])] / l[keep[c]].sqrt());
        q = matmul(&q, &p);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::combine::dense;

    fn lowrank(m: usize, n: usize, sigmas: &[f64], seed: u64) -> Mat {
        // Orthonormal U, V from seeded random matrices, then U diag(s) V^T.
        let mut rng = Rng::new(seed);
        let mut rand = |r, c| Mat::from_fn(r, c, |_, _| rng.unit() - 0.5);
        let u = orthonormalize(&rand(m, sigmas.len()));
        let v = orthonormalize(&rand(n, sigmas.len()));
        matmul_nt(&u.scale_cols(sigmas), &v)
    }

    #[test]
    fn exact_at_full_rank_and_dropped_energy_is_the_tail() {
        let d = lowrank(12, 9, &[4.0, 2.0, 1.0], 3);
        let (pair, e, full) = factor(&d, 9, "x");
        assert!(full);
        assert!(dense(&pair, 1.0).max_abs_diff(&d) < 1e-5);
        assert!(e.dropped_fraction() < 1e-12);
        let (pair, e, full) = factor(&d, 2, "x");
        assert!(!full);
        assert_eq!(pair.a.shape, vec![2, 9]);
        assert!((e.dropped_fraction() - 1.0 / 21.0).abs() < 1e-9, "{}", e.dropped_fraction());
        let mut residual = dense(&pair, 1.0);
        residual.add_scaled(&d, -1.0);
        let err = residual.norm_squared();
        assert!((err - 1.0).abs() < 1e-5, "Eckart-Young: the error is the dropped singular value, {err}");
    }

    #[test]
    fn randomized_path_finds_a_low_rank_delta() {
        let d = lowrank(300, 280, &[5.0, 3.0, 2.0, 0.5], 4);
        let (pair, e, full) = factor(&d, 4, "big");
        assert!(!full);
        assert!(e.dropped_fraction() < 1e-12, "{}", e.dropped_fraction());
        assert!(dense(&pair, 1.0).max_abs_diff(&d) < 1e-5);
        let (_, e, _) = factor(&d, 3, "big");
        assert!((e.dropped_fraction() - 0.25 / 38.25).abs() < 1e-9, "{}", e.dropped_fraction());
    }
}
