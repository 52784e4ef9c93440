//! AdamW (PyTorch's `torch.optim.AdamW` update, bias-corrected, decoupled weight decay) and the
//! learning-rate schedule (linear warmup, then cosine / linear decay or constant).
//!
//! The update exists twice over the same constants ([`AdamWStep`]): on host vectors
//! (`reccocktail_host::adamw`, for the entropy merge's few coefficients and as the reference), and
//! on the device where a model trains ([`DeviceAdamW`]: every LoRA factor in one flat tensor, so a
//! step is a dozen tensor operations instead of a round trip of a few million numbers through
//! the host). Both apply the same IEEE-rounded operations in the same order per element, so they
//! give the same bits (tested); checkpoints download the state and stay exact.

use burn::tensor::{Device, FloatDType, Tensor, TensorData};
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

/// AdamW over one flat vector of parameters, its moments on the same device.
pub struct DeviceAdamW {
    pub params: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
}

impl DeviceAdamW {
    /// The state `params`, `m`, `v` (equal lengths) uploaded to `device` (without autodiff).
    pub fn upload(params: Vec<f32>, m: Vec<f32>, v: Vec<f32>, device: &Device) -> Self {
        let n = params.len();
        assert!(m.len() == n && v.len() == n, "adamw: lengths differ");
        let up = |x: Vec<f32>| Tensor::<1>::from_data(TensorData::new(x, [n]), device);
        DeviceAdamW { params: up(params), m: up(m), v: up(v) }
    }

    /// Parameters, first and second moments, read back.
    pub fn download(&self) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let down = |t: &Tensor<1>| crate::backend::host_f32(t.clone());
        (down(&self.params), down(&self.m), down(&self.v))
    }

    /// One update by `grad` (flat, on the same device), element for element
    /// `reccocktail_host::adamw`: `p * decay - step_size * m' / (sqrt(v') / bc2_sqrt + eps)` with
    /// `m' = b1 m + (1 - b1) g` and `v' = b2 v + ((1 - b2) g) g`. The divisor `bc2_sqrt` is a
    /// one-element tensor, not a scalar: CUDA divides by a host scalar as a multiplication by its
    /// reciprocal, which can differ in the last bit. The square root is taken in f64 (below).
    /// Takes the state by value so that the backend may update tensors no one else holds in place.
    pub fn step(self, s: &AdamWStep, grad: Tensor<1>) -> Self {
        let device = grad.device();
        let (c1, c2) = (1.0 - s.beta1, 1.0 - s.beta2);
        let bc2 = Tensor::<1>::from_data(TensorData::new(vec![s.bc2_sqrt], [1]), &device);
        let m = self.m.mul_scalar(s.beta1).add(grad.clone().mul_scalar(c1));
        let v = self.v.mul_scalar(s.beta2).add(grad.clone().mul_scalar(c2).mul(grad));
        // libtorch's CPU `sqrt` (MKL's vector math) is not correctly rounded in f32 (it differed
        // from Rust's `f32::sqrt` on 17% of 4 million numbers); in f64, rounded to f32, it is, and
        // it gave the same bits on all of them (a correctly rounded double sqrt rounded to float
        // is the correctly rounded float sqrt).
        let root = v.clone().cast(FloatDType::F64).sqrt().cast(FloatDType::F32);
        let denom = root.div(bc2).add_scalar(s.eps);
        let params = self.params.mul_scalar(s.decay).sub(m.clone().mul_scalar(s.step_size).div(denom));
        DeviceAdamW { params, m, v }
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

    /// The device update gives the host loop's bits, on every compiled backend (numbers of many
    /// magnitudes, signed zeros, three steps with decay).
    #[test]
    fn the_device_update_is_the_host_update_bit_for_bit() {
        use crate::backend::{compiled_backends, select, BackendKind, DeviceSpec};
        use crate::recipe::types::BackendChoice;
        let n = 4099;
        let mut x = 0x2545_F491_u32;
        let mut draw = |scale: f32| -> f32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let u = x as f32 / u32::MAX as f32 - 0.5;
            scale * u * 10f32.powi((x % 9) as i32 - 6)
        };
        let mut params: Vec<f32> = (0..n).map(|_| draw(2.0)).collect();
        params[0] = -0.0;
        let grads: Vec<Vec<f32>> = (0..3).map(|_| (0..n).map(|i| if i % 97 == 0 { -0.0 } else { draw(1.0) }).collect()).collect();
        let cfg = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        for kind in compiled_backends() {
            let choice = match kind {
                BackendKind::Flex => BackendChoice::Flex,
                BackendKind::Tch => BackendChoice::Tch,
            };
            let device = select(choice, DeviceSpec::Cpu, Some(1)).unwrap().device;
            let (mut p, mut m, mut v) = (params.clone(), vec![0.0f32; n], vec![0.0f32; n]);
            let mut opt = DeviceAdamW::upload(params.clone(), m.clone(), v.clone(), &device);
            for (step, g) in grads.iter().enumerate() {
                let s = cfg.at(step as u64 + 1, 3e-4 * (step + 1) as f64);
                reccocktail_host::adamw(&s, &mut p, g, &mut m, &mut v);
                opt = opt.step(&s, Tensor::<1>::from_data(TensorData::new(g.clone(), [n]), &device));
            }
            let (dp, dm, dv) = opt.download();
            let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
            assert_eq!(bits(&dm), bits(&m), "{kind}: first moments");
            assert_eq!(bits(&dv), bits(&v), "{kind}: second moments");
            assert_eq!(bits(&dp), bits(&p), "{kind}: parameters");
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
