//! `dare` (DARE, Yu et al., ICML 2024) on the dense per-module task vectors `τ_i = s_i B_i A_i`:
//! drop each entry with probability `drop_rate`, rescale the survivors by `1 / (1 - drop_rate)`,
//! then `lambda * sum_i w_i τ̃_i`. The drop mask of adapter i on module m comes from its own seeded
//! stream `Rng::derive(seed, ["dare", adapter name, module name])`, drawn in row-major order, so it
//! is reproducible and independent of the order adapters or modules are visited in.

use super::combine::dense;
use super::linalg::Mat;
use super::lowrank::DenseDeltas;
use super::{Coefficients, Combination, Flags, MergeError, MergeMethod, Method, Param, adapted_modules, check_list, other_config};
use crate::recipe::merge::MergeSpec;
use crate::recipe::merge::MergeConfig;
use crate::rng::Rng;
use crate::model::peft::{PeftAdapter, module_name};

pub struct Dare;

impl MergeMethod for Dare {
    fn declaration(&self) -> &'static Method {
        &METHOD
    }

    fn from_flags(&self, f: &Flags) -> Option<MergeSpec> {
        Some(MergeSpec::Dare { drop_rate: f.drop_rate, lambda: f.lambda, weights: Some(f.weights.clone()), seed: f.seed })
    }

    fn combine(&self, config: &MergeConfig, names: &[String], adapters: &[PeftAdapter]) -> Result<Combination, MergeError> {
        let MergeConfig::Dare { drop_rate, lambda, weights, seed } = config else { return Err(other_config(&METHOD, config)) };
        let deltas = merge(names, adapters, *drop_rate, *lambda, weights, *seed)?;
        let nominal: Vec<f64> = weights.iter().map(|w| w * lambda).collect();
        Ok(Combination::EntryWise { deltas, nominal: Coefficients::uniform(names, adapters, &nominal) })
    }
}

pub const METHOD: Method = Method {
    name: "dare",
    description: "DARE: drop delta entries at random (seeded) and rescale the rest, weighted sum; refactorized by SVD",
    params: &[
        Param { name: "drop_rate", ty: "float in [0, 1)", default: "0.5", help: "probability of dropping each entry", example: "0.9" },
        Param { name: "lambda", ty: "float", default: "1", help: "scale of the merged delta", example: "0.8" },
        Param { name: "weights", ty: "[float]", default: "all 1 (standalone: the :WEIGHT of each --adapter)", help: "per-adapter weights", example: "[0.5, 0.5]" },
        Param { name: "seed", ty: "int", default: "the experiment seed (standalone: 42)", help: "seed of the drop masks", example: "7" },
    ],
    standalone: true,
};

/// The DARE-merged dense delta of every module.
pub fn merge(names: &[String], adapters: &[PeftAdapter], drop_rate: f64, lambda: f64, weights: &[f64], seed: u64) -> Result<DenseDeltas, MergeError> {
    if !(0.0..1.0).contains(&drop_rate) {
        return Err(MergeError::Invalid(format!("dare `drop_rate` must be in [0, 1), got {drop_rate}")));
    }
    if !lambda.is_finite() {
        return Err(MergeError::Invalid(format!("dare `lambda` must be finite, got {lambda}")));
    }
    check_list("`weights`", weights, adapters.len())?;
    let keep_scale = 1.0 / (1.0 - drop_rate);
    let mut out = DenseDeltas::default();
    for ((layer, proj), present) in adapted_modules(adapters) {
        let module = module_name(layer, proj);
        let mut merged: Option<Mat> = None;
        for i in present {
            let tau = dense(&adapters[i].modules[&(layer, proj)], adapters[i].config.scale(layer, proj));
            let acc = merged.get_or_insert_with(|| Mat::zeros(tau.nrows(), tau.ncols()));
            let mut rng = Rng::derive(seed, &["dare", &names[i], &module]);
            let c = lambda * weights[i] * keep_scale;
            for r in 0..tau.nrows() {
                for col in 0..tau.ncols() {
                    if rng.unit() >= drop_rate {
                        acc[(r, col)] += c * tau[(r, col)];
                    }
                }
            }
        }
        if let Some(m) = merged {
            out.modules.insert((layer, proj), m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::tests::rank1;
    use crate::model::lora::Proj;

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn hand_computed_case_follows_the_seeded_masks() {
        let a = rank1(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let b = rank1(&[-1.0; 8]);
        let (p, seed) = (0.5, 11);
        let d = merge(&names(), &[a.clone(), b.clone()], p, 0.5, &[1.0, 2.0], seed).unwrap();
        // Recompute by hand from the same streams.
        let module = module_name(0, Proj::Q);
        let mut ra = Rng::derive(seed, &["dare", "a", &module]);
        let mut rb = Rng::derive(seed, &["dare", "b", &module]);
        let mut dropped = 0;
        for (e, got) in d.modules[&(0, Proj::Q)].as_slice().iter().enumerate() {
            let ka = ra.unit() >= p;
            let kb = rb.unit() >= p;
            dropped += usize::from(!ka) + usize::from(!kb);
            // a: weight 1, rescale 2; b: weight 2, rescale 2, value -1.
            let want = 0.5 * (if ka { (e + 1) as f64 * 2.0 } else { 0.0 } + if kb { -4.0 } else { 0.0 });
            assert!((got - want).abs() < 1e-12, "entry {e}: {got} vs {want}");
        }
        assert!(dropped > 0 && dropped < 16, "some entries dropped, some kept: {dropped}");
        // drop_rate 0 is the weighted sum.
        let d = merge(&names(), &[a.clone(), b.clone()], 0.0, 1.0, &[1.0, 2.0], seed).unwrap();
        assert_eq!(d.modules[&(0, Proj::Q)].as_slice(), &[-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(merge(&names(), &[a, b], 1.0, 1.0, &[1.0, 1.0], 1).unwrap_err().to_string().contains("drop_rate"));
    }

    #[test]
    fn reproducible_by_seed_and_different_for_another_seed() {
        let a = rank1(&(0..64).map(|i| i as f64 + 1.0).collect::<Vec<_>>());
        let b = rank1(&(0..64).map(|i| 1.0 - i as f64).collect::<Vec<_>>());
        let run = |seed| merge(&names(), &[a.clone(), b.clone()], 0.7, 1.0, &[1.0, 1.0], seed).unwrap().modules[&(0, Proj::Q)].clone();
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        // Independent of adapter order: swapping the adapters (and names) gives the same sum.
        let swapped = merge(&["b".into(), "a".into()], &[b.clone(), a.clone()], 0.7, 1.0, &[1.0, 1.0], 5).unwrap().modules[&(0, Proj::Q)].clone();
        assert!(swapped.max_abs_diff(&run(5)) < 1e-12);
    }
}
