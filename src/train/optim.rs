//! AdamW on host vectors (PyTorch's `torch.optim.AdamW` update, bias-corrected, decoupled weight
//! decay) and the learning-rate schedule (linear warmup, then cosine / linear decay or constant).
//!
//! The trainable LoRA factors are a few million numbers: keeping their optimizer state on the
//! host costs little, and makes checkpoints exact (plain f32 vectors written and read back). The
//! loop itself is `reccocktail_host::adamw`, built optimized in every profile.

use reccocktail_host::AdamWStep;
use serde::{Deserialize, Serialize};

use crate::recipe::types::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// First and second moments of one parameter vector.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

impl Moments {
    pub fn zeros(n: usize) -> Self {
        Self { m: vec![0.0; n], v: vec![0.0; n] }
    }
}

impl AdamWConfig {
    /// The constants of the update at optimizer step `step` (1-based) with learning rate `lr`.
    pub fn at(&self, step: u64, lr: f64) -> AdamWStep {
        let bc1 = 1.0 - self.beta1.powi(step as i32);
        let bc2 = 1.0 - self.beta2.powi(step as i32);
        AdamWStep {
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            step_size: (lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            decay: (1.0 - lr * self.weight_decay) as f32,
            eps: self.eps as f32,
        }
    }

    /// One update of `param` by `grad` (moments `m`, `v`) at optimizer step `step` (1-based) with
    /// learning rate `lr`.
    pub fn update(&self, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], step: u64, lr: f64) {
        reccocktail_host::adamw(&self.at(step, lr), param, grad, m, v);
    }
}

/// Learning rate at optimizer step `step` (0-based) of `total`.
pub fn lr_at(peak: f64, schedule: Schedule, warmup: u64, total: u64, step: u64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / decay_steps).min(1.0);
    match schedule {
        Schedule::Constant => peak,
        Schedule::Linear => peak * (1.0 - progress),
        Schedule::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_matches_the_reference_update() {
        // torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), two steps on
        // p = [1, -2] with grads [0.5, 0.25] then [-1, 2], computed by hand from its definition.
        let cfg = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        let mut p = vec![1.0f32, -2.0];
        let mut s = Moments::zeros(2);
        let mut want = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for (step, g) in [[0.5f64, 0.25], [-1.0, 2.0]].iter().enumerate() {
            let t = step as i32 + 1;
            cfg.update(&mut p, &g.map(|x| x as f32), &mut s.m, &mut s.v, t as u64, 0.1);
            for i in 0..2 {
                want[i] *= 1.0 - 0.1 * 0.01;
                m[i] = 0.9 * m[i] + 0.1 * g[i];
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
                let (mh, vh) = (m[i] / (1.0 - 0.9f64.powi(t)), v[i] / (1.0 - 0.999f64.powi(t)));
                want[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
            }
        }
        for i in 0..2 {
            assert!((p[i] as f64 - want[i]).abs() < 1e-5, "{} vs {}", p[i], want[i]);
        }
    }

    #[test]
    fn schedules() {
        assert!((lr_at(1.0, Schedule::Cosine, 2, 10, 0) - 0.5).abs() < 1e-12);
        assert!((lr_at(1.0, Schedule::Cosine, 2, 10, 1) - 1.0).abs() < 1e-12);
        assert!((lr_at(1.0, Schedule::Cosine, 2, 10, 2) - 1.0).abs() < 1e-12);
        assert!((lr_at(1.0, Schedule::Cosine, 2, 10, 6) - 0.5).abs() < 1e-12);
        assert!(lr_at(1.0, Schedule::Cosine, 2, 10, 9) < 0.05);
        assert!((lr_at(1.0, Schedule::Linear, 0, 10, 5) - 0.5).abs() < 1e-12);
        assert_eq!(lr_at(0.3, Schedule::Constant, 0, 10, 7), 0.3);
    }
}
