//! Learnable merge coefficients: raw parameters θ per group (one group for the whole model, per
//! layer, or per module) and adapter, mapped to weights w by a softmax over adapters (with
//! temperature) or a clamp to [0, 1]; gradients with respect to w are pulled back to θ here, and
//! θ is updated with Adam. Everything is host-side: there are at most a few thousand numbers.

use std::collections::BTreeMap;

use crate::model::lora::Proj;
use crate::recipe::types::{Granularity, Parameterization};
use crate::train::optim::AdamWConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct Learnable {
    pub granularity: Granularity,
    pub parameterization: Parameterization,
    pub temperature: f64,
    /// Modules, in model order; each belongs to one group.
    pub modules: Vec<(usize, Proj)>,
    group_of: Vec<usize>,
    /// θ[group][adapter].
    pub theta: Vec<Vec<f64>>,
    m: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
    step: u64,
}

impl Learnable {
    /// Coefficients over `modules` for `n` adapters, starting at weights `init` (per adapter).
    pub fn new(modules: Vec<(usize, Proj)>, n: usize, granularity: Granularity, parameterization: Parameterization, temperature: f64, init: &[f64]) -> Learnable {
        let mut keys: Vec<(usize, Option<Proj>)> = Vec::new();
        let group_of: Vec<usize> = modules
            .iter()
            .map(|&(layer, proj)| {
                let key = match granularity {
                    Granularity::Model => (0, None),
                    Granularity::Layer => (layer, None),
                    Granularity::Module => (layer, Some(proj)),
                };
                keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                    keys.push(key);
                    keys.len() - 1
                })
            })
            .collect();
        let t = temperature.max(1e-6);
        let theta0: Vec<f64> = (0..n)
            .map(|i| {
                let w = init.get(i).copied().unwrap_or(1.0 / n as f64);
                match parameterization {
                    // softmax(θ / T) = init when θ = T ln(init) (for init summing to 1).
                    Parameterization::Softmax => t * w.max(1e-12).ln(),
                    Parameterization::Clamp => w,
                }
            })
            .collect();
        let g = keys.len();
        Learnable { granularity, parameterization, temperature: t, modules, group_of, theta: vec![theta0; g], m: vec![vec![0.0; n]; g], v: vec![vec![0.0; n]; g], step: 0 }
    }

    pub fn groups(&self) -> usize {
        self.theta.len()
    }

    /// Weights of one group.
    pub fn group_weights(&self, g: usize) -> Vec<f64> {
        let th = &self.theta[g];
        match self.parameterization {
            Parameterization::Softmax => {
                let max = th.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = th.iter().map(|x| ((x - max) / self.temperature).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(|x| x / s).collect()
            }
            Parameterization::Clamp => th.iter().map(|x| x.clamp(0.0, 1.0)).collect(),
        }
    }

    /// w_{m,i} for every module.
    pub fn weights(&self) -> BTreeMap<(usize, Proj), Vec<f64>> {
        self.modules.iter().zip(&self.group_of).map(|(m, &g)| (*m, self.group_weights(g))).collect()
    }

    /// dL/dθ from dL/dw (per module, per adapter; modules in `self.modules` order).
    pub fn pull_back(&self, dw: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let mut per_group = vec![vec![0.0; self.theta[0].len()]; self.groups()];
        for (&g, d) in self.group_of.iter().zip(dw) {
            for (acc, x) in per_group[g].iter_mut().zip(d) {
                *acc += x;
            }
        }
        per_group
            .iter()
            .enumerate()
            .map(|(g, d)| match self.parameterization {
                Parameterization::Softmax => {
                    let w = self.group_weights(g);
                    let dot: f64 = w.iter().zip(d).map(|(w, d)| w * d).sum();
                    w.iter().zip(d).map(|(w, d)| w * (d - dot) / self.temperature).collect()
                }
                // torch.clamp passes the gradient inside [min, max], bounds included.
                Parameterization::Clamp => self.theta[g].iter().zip(d).map(|(t, d)| if (0.0..=1.0).contains(t) { *d } else { 0.0 }).collect(),
            })
            .collect()
    }

    /// One Adam step on θ with gradient `dtheta` (from [`Self::pull_back`]).
    pub fn adam_step(&mut self, dtheta: &[Vec<f64>], lr: f64) {
        self.step += 1;
        let adam = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
        for g in 0..self.groups() {
            let mut th: Vec<f32> = self.theta[g].iter().map(|x| *x as f32).collect();
            let gr: Vec<f32> = dtheta[g].iter().map(|x| *x as f32).collect();
            let mut m: Vec<f32> = self.m[g].iter().map(|x| *x as f32).collect();
            let mut v: Vec<f32> = self.v[g].iter().map(|x| *x as f32).collect();
            adam.update(&mut th, &gr, &mut m, &mut v, self.step, lr);
            self.theta[g] = th.into_iter().map(f64::from).collect();
            self.m[g] = m.into_iter().map(f64::from).collect();
            self.v[g] = v.into_iter().map(f64::from).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules() -> Vec<(usize, Proj)> {
        vec![(0, Proj::Q), (0, Proj::V), (1, Proj::Q), (1, Proj::V)]
    }

    #[test]
    fn groups_follow_the_granularity() {
        let n = |g| Learnable::new(modules(), 2, g, Parameterization::Softmax, 1.0, &[0.5, 0.5]).groups();
        assert_eq!((n(Granularity::Model), n(Granularity::Layer), n(Granularity::Module)), (1, 2, 4));
    }

    #[test]
    fn initial_weights_are_the_declared_ones() {
        let l = Learnable::new(modules(), 2, Granularity::Layer, Parameterization::Softmax, 2.0, &[0.25, 0.75]);
        for w in l.weights().values() {
            assert!((w[0] - 0.25).abs() < 1e-12 && (w[1] - 0.75).abs() < 1e-12);
        }
        let l = Learnable::new(modules(), 2, Granularity::Module, Parameterization::Clamp, 1.0, &[0.3, 0.3]);
        assert!(l.weights().values().all(|w| w == &vec![0.3, 0.3]));
    }

    #[test]
    fn softmax_pull_back_matches_finite_differences() {
        let mut l = Learnable::new(modules(), 3, Granularity::Layer, Parameterization::Softmax, 0.7, &[0.2, 0.3, 0.5]);
        l.theta[1] = vec![0.1, -0.4, 0.9];
        // L = sum over modules of <c_m, w_m> with fixed c.
        let c: Vec<Vec<f64>> = (0..4).map(|m| (0..3).map(|i| (m * 3 + i) as f64 * 0.37 - 1.0).collect()).collect();
        let loss = |l: &Learnable| -> f64 { l.modules.iter().zip(&c).map(|(m, c)| l.weights()[m].iter().zip(c).map(|(w, c)| w * c).sum::<f64>()).sum() };
        let analytic = l.pull_back(&c);
        for g in 0..2 {
            for i in 0..3 {
                let mut p = l.clone();
                p.theta[g][i] += 1e-6;
                let mut q = l.clone();
                q.theta[g][i] -= 1e-6;
                let fd = (loss(&p) - loss(&q)) / 2e-6;
                assert!((fd - analytic[g][i]).abs() < 1e-6, "group {g} adapter {i}: {fd} vs {}", analytic[g][i]);
            }
        }
    }

    #[test]
    fn clamp_stays_in_its_domain_and_blocks_gradients_outside() {
        let mut l = Learnable::new(modules(), 2, Granularity::Model, Parameterization::Clamp, 1.0, &[0.3, 0.3]);
        for _ in 0..200 {
            let d = l.pull_back(&vec![vec![-1.0, 1.0]; 4]);
            l.adam_step(&d, 0.05);
        }
        let w = l.group_weights(0);
        assert_eq!(w, vec![1.0, 0.0]);
        assert!(l.theta[0][0] > 1.0 && l.theta[0][1] < 0.0);
        assert_eq!(l.pull_back(&vec![vec![-1.0, 1.0]; 4])[0], vec![0.0, 0.0]);
    }
}
