//! Dense per-module deltas (the result of entry-wise methods: `ties`, `dare`) factorized back
//! into a LoRA adapter by truncated SVD.
//!
//! A module whose requested rank reaches `min(out, in)` or whose smaller side is small is
//! factorized by a full SVD (exact at full rank). Otherwise a randomized range finder (Halko,
//! Martinsson & Tropp 2011: `rank + 10` seeded Gaussian probes, two power iterations) finds the
//! dominant subspace first. Either way the output is `P ΔW` for an orthogonal projector `P`, so
//! the reported dropped energy `||ΔW||² - ||P ΔW||²` is exactly what the output loses.

use std::collections::BTreeMap;

use nalgebra::{DMatrix, DVector};

use super::MergeError;
use super::combine::{Energy, output_config, sorted_svd, to_host};
use crate::data::rng::Rng;
use crate::model::lora::Proj;
use crate::model::peft::{LoraPair, PeftAdapter, module_name};

/// A merged dense delta `[out, in]` per module (already including every scale and weight).
#[derive(Debug, Clone, Default)]
pub struct DenseDeltas {
    pub modules: BTreeMap<(usize, Proj), DMatrix<f64>>,
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
const FULL_SVD_MAX: usize = 256;

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
pub fn factor(delta: &DMatrix<f64>, k: usize, label: &str) -> (LoraPair, Energy, bool) {
    let (m, n) = delta.shape();
    let p = m.min(n);
    let k = k.min(p).max(1);
    let total = delta.norm_squared();
    let (u, s, vt) = if k + OVERSAMPLE >= p || p <= FULL_SVD_MAX { sorted_svd(delta.clone()) } else { randomized(delta, k, label) };
    let k = k.min(s.len());
    let kept: f64 = s[..k].iter().map(|x| x * x).sum();
    let roots = DMatrix::from_diagonal(&DVector::from_iterator(k, s[..k].iter().map(|x| x.sqrt())));
    let b = u.columns(0, k) * &roots;
    let a = &roots * vt.rows(0, k);
    (LoraPair { a: to_host(&a), b: to_host(&b) }, Energy { total, dropped: (total - kept).max(0.0) }, k == p)
}

/// Randomized SVD: an orthonormal basis Q of the range of `ΔW Ω` refined by power iterations,
/// then the SVD of the small `Q^T ΔW`.
fn randomized(delta: &DMatrix<f64>, k: usize, label: &str) -> (DMatrix<f64>, Vec<f64>, DMatrix<f64>) {
    let (_, n) = delta.shape();
    let l = k + OVERSAMPLE;
    let mut rng = Rng::derive(0, &["svd-probes", label]);
    let omega = DMatrix::from_fn(n, l, |_, _| {
        let (u1, u2) = (rng.unit().max(1e-300), rng.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    });
    let mut q = (delta * omega).qr().q();
    for _ in 0..POWER_ITERATIONS {
        let z = (delta.transpose() * &q).qr().q();
        q = (delta * z).qr().q();
    }
    let small = q.transpose() * delta;
    let (us, s, vt) = sorted_svd(small);
    (q * us, s, vt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::combine::dense;

    fn lowrank(m: usize, n: usize, sigmas: &[f64], seed: u64) -> DMatrix<f64> {
        // Orthonormal U, V from QR of seeded random matrices, then U diag(s) V^T.
        let mut rng = Rng::new(seed);
        let mut rand = |r, c| DMatrix::from_fn(r, c, |_, _| rng.unit() - 0.5);
        let u = rand(m, sigmas.len()).qr().q();
        let v = rand(n, sigmas.len()).qr().q();
        u * DMatrix::from_diagonal(&DVector::from_column_slice(sigmas)) * v.transpose()
    }

    #[test]
    fn exact_at_full_rank_and_dropped_energy_is_the_tail() {
        let d = lowrank(12, 9, &[4.0, 2.0, 1.0], 3);
        let (pair, e, full) = factor(&d, 9, "x");
        assert!(full);
        assert!((dense(&pair, 1.0) - &d).abs().max() < 1e-5);
        assert!(e.dropped_fraction() < 1e-12);
        let (pair, e, full) = factor(&d, 2, "x");
        assert!(!full);
        assert_eq!(pair.a.shape, vec![2, 9]);
        assert!((e.dropped_fraction() - 1.0 / 21.0).abs() < 1e-9, "{}", e.dropped_fraction());
        let err = (dense(&pair, 1.0) - &d).norm_squared();
        assert!((err - 1.0).abs() < 1e-5, "Eckart-Young: the error is the dropped singular value, {err}");
    }

    #[test]
    fn randomized_path_finds_a_low_rank_delta() {
        let d = lowrank(300, 280, &[5.0, 3.0, 2.0, 0.5], 4);
        let (pair, e, full) = factor(&d, 4, "big");
        assert!(!full);
        assert!(e.dropped_fraction() < 1e-12, "{}", e.dropped_fraction());
        assert!((dense(&pair, 1.0) - &d).abs().max() < 1e-5);
        let (_, e, _) = factor(&d, 3, "big");
        assert!((e.dropped_fraction() - 0.25 / 38.25).abs() < 1e-9, "{}", e.dropped_fraction());
    }
}
