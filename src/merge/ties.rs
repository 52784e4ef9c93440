//! `ties` (TIES-merging, Yadav et al., NeurIPS 2023) on the dense per-module task vectors
//! `τ_i = s_i B_i A_i`: trim each τ_i to its `density` fraction of largest-magnitude entries,
//! elect each entry's sign as the sign of the sum of the weighted trimmed values, and take the
//! disjoint mean over the adapters agreeing with it (weighted: `sum_agree w_i τ̂_i / sum_agree w_i`,
//! the plain mean when every weight is 1), times `lambda`.

use super::combine::dense;
use super::linalg::Mat;
use super::lowrank::DenseDeltas;
use super::{Coefficients, Combination, Flags, MergeError, MergeMethod, Method, Param, adapted_modules, check_list, other_config};
use crate::model::peft::PeftAdapter;
use crate::recipe::merge::MergeSpec;
use crate::recipe::merge::MergeConfig;

pub struct Ties;

impl MergeMethod for Ties {
    fn declaration(&self) -> &'static Method {
        &METHOD
    }

    fn from_flags(&self, f: &Flags) -> Option<MergeSpec> {
        Some(MergeSpec::Ties { density: f.density, lambda: f.lambda, weights: Some(f.weights.clone()) })
    }

    fn combine(&self, config: &MergeConfig, names: &[String], adapters: &[PeftAdapter]) -> Result<Combination, MergeError> {
        let MergeConfig::Ties { density, lambda, weights } = config else { return Err(other_config(&METHOD, config)) };
        let deltas = merge(adapters, *density, *lambda, weights)?;
        let nominal: Vec<f64> = weights.iter().map(|w| w * lambda).collect();
        Ok(Combination::EntryWise { deltas, nominal: Coefficients::uniform(names, adapters, &nominal) })
    }
}

pub const METHOD: Method = Method {
    name: "ties",
    description: "TIES: trim each delta to its top `density` by magnitude, elect signs, disjoint mean; refactorized by SVD",
    params: &[
        Param { name: "density", ty: "float in [0, 1]", default: "0.5", help: "fraction of entries kept per delta", example: "0.3" },
        Param { name: "lambda", ty: "float", default: "1", help: "scale of the merged delta", example: "1.2" },
        Param { name: "weights", ty: "[float]", default: "all 1 (standalone: the :WEIGHT of each --adapter)", help: "per-adapter weights", example: "[1.0, 0.5]" },
    ],
    standalone: true,
};

/// The TIES-merged dense delta of every module.
pub fn merge(adapters: &[PeftAdapter], density: f64, lambda: f64, weights: &[f64]) -> Result<DenseDeltas, MergeError> {
    if !(0.0..=1.0).contains(&density) {
        return Err(MergeError::Invalid(format!("ties `density` must be in [0, 1], got {density}")));
    }
    if !lambda.is_finite() {
        return Err(MergeError::Invalid(format!("ties `lambda` must be finite, got {lambda}")));
    }
    check_list("`weights`", weights, adapters.len())?;
    let mut out = DenseDeltas::default();
    for ((layer, proj), present) in adapted_modules(adapters) {
        let mut taus: Vec<(f64, Mat)> = present
            .iter()
            .map(|&i| (weights[i], dense(&adapters[i].modules[&(layer, proj)], adapters[i].config.scale(layer, proj))))
            .collect();
        for (_, t) in &mut taus {
            trim(t.as_mut_slice(), density);
        }
        let (rows, cols) = taus[0].1.shape();
        let mut merged = Mat::zeros(rows, cols);
        for (e, slot) in merged.as_mut_slice().iter_mut().enumerate() {
            let elected: f64 = taus.iter().map(|(w, t)| w * t.as_slice()[e]).sum::<f64>().signum();
            let (mut num, mut den) = (0.0, 0.0);
            for (w, t) in &taus {
                let v = w * t.as_slice()[e];
                if v != 0.0 && v.signum() == elected {
                    num += v;
                    den += w;
                }
            }
            *slot = if den != 0.0 { lambda * num / den } else { 0.0 };
        }
        out.modules.insert((layer, proj), merged);
    }
    Ok(out)
}

/// Keep the `round(density * n)` largest-magnitude entries (ties at the threshold: the earliest
/// entries), zero the rest.
pub fn trim(values: &mut [f64], density: f64) {
    let n = values.len();
    let k = ((density * n as f64).round() as usize).min(n);
    if k == n {
        return;
    }
    if k == 0 {
        values.fill(0.0);
        return;
    }
    let mut mags: Vec<f64> = values.iter().map(|x| x.abs()).collect();
    let (_, t, _) = mags.select_nth_unstable_by(n - k, f64::total_cmp);
    let t = *t;
    let mut at_threshold = k - values.iter().filter(|x| x.abs() > t).count();
    for x in values.iter_mut() {
        let m = x.abs();
        if m > t {
            continue;
        }
        if m == t && at_threshold > 0 {
            at_threshold -= 1;
        } else {
            *x = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::tests::rank1;
    use crate::model::lora::Proj;

    #[test]
    fn trim_keeps_the_largest_magnitudes() {
        let mut v = [0.1, -3.0, 2.0, -0.5, 0.0, 1.0];
        trim(&mut v, 0.5);
        assert_eq!(v, [0.0, -3.0, 2.0, 0.0, 0.0, 1.0]);
        let mut v = [1.0, -1.0, 1.0, 0.5];
        trim(&mut v, 0.5);
        assert_eq!(v, [1.0, -1.0, 0.0, 0.0], "ties at the threshold: earliest first");
        let mut v = [1.0, 2.0];
        trim(&mut v, 0.0);
        assert_eq!(v, [0.0, 0.0]);
    }

    #[test]
    fn hand_computed_case() {
        // Rank-1 deltas on a [1, 4] module (B = [1], scale 1): τ1 = [3, -2, 1, 0.5], τ2 = [1, 4, -2, -0.25].
        // density 0.5: τ1 -> [3, -2, 0, 0], τ2 -> [0, 4, -2, 0]. Elected signs: +, +, -, 0.
        // Disjoint mean: [3, 4, -2, 0]; lambda 0.5 -> [1.5, 2, -1, 0].
        let a = rank1(&[3.0, -2.0, 1.0, 0.5]);
        let b = rank1(&[1.0, 4.0, -2.0, -0.25]);
        let d = merge(&[a.clone(), b.clone()], 0.5, 0.5, &[1.0, 1.0]).unwrap();
        assert_eq!(d.modules[&(0, Proj::Q)].as_slice(), &[1.5, 2.0, -1.0, 0.0]);
        // Weighted: w = [1, 3]: weighted τ = [3, -2, 0, 0], [0, 12, -6, 0]; signs +, +, -, 0;
        // weighted disjoint mean: [3/1, 12/3, -6/3, 0] = [3, 4, -2, 0].
        let d = merge(&[a.clone(), b.clone()], 0.5, 1.0, &[1.0, 3.0]).unwrap();
        assert_eq!(d.modules[&(0, Proj::Q)].as_slice(), &[3.0, 4.0, -2.0, 0.0]);
        // density 1, agreeing entries averaged: [2, 1 (4 wins, disjoint from -2), -2 (-2 wins over 1), 0.5].
        let d = merge(&[a.clone(), b.clone()], 1.0, 1.0, &[1.0, 1.0]).unwrap();
        assert_eq!(d.modules[&(0, Proj::Q)].as_slice(), &[2.0, 4.0, -2.0, 0.5]);
        assert!(merge(&[a, b], 1.5, 1.0, &[1.0, 1.0]).unwrap_err().to_string().contains("density"));
    }
}
