//! `reccocktail bench sasrec`: SASRec training throughput on fixed-shape seeded random batches
//! (full-length sequences, one negative per position, dropout on): training sequences per second
//! of forward + backward + Adam update. `scripts/bench/sasrec.sh` sets it beside the same
//! network in PyTorch (`scripts/bench/peer_sasrec.py`). A measurement, never a test.

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Device;
use serde::Serialize;

use crate::rng::Rng;
use crate::sasrec::model::{SasRec, Shape};

#[derive(Debug, Clone, Serialize)]
pub struct SasrecBench {
    pub shape: Shape,
    pub batch: usize,
    /// Timed steps (after one untimed warm-up step).
    pub steps: usize,
    pub step_s: f64,
    pub sequences_per_s: f64,
    pub final_loss: f64,
}

pub fn run(shape: Shape, batch: usize, steps: usize, device: &Device) -> SasrecBench {
    let ad = device.clone().autodiff();
    let mut model = SasRec::init(&shape, 1, &ad);
    let mut optim = AdamConfig::new().with_beta_2(0.98).with_epsilon(1e-8).init();
    let mut rng = Rng::new(7);
    let len = shape.max_len;
    let mut draw = |n: usize| -> Vec<i64> { (0..n).map(|_| 1 + rng.below(shape.items as u64) as i64).collect() };
    let mut elapsed = 0.0;
    let mut loss_value = 0.0;
    for step in 0..=steps {
        let (seqs, pos, neg) = (draw(batch * len), draw(batch * len), draw(batch * len));
        let t = Instant::now();
        let loss = model.loss(&seqs, &pos, &neg, batch, len);
        loss_value = loss.clone().inner().into_scalar::<f32>() as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        if step > 0 {
            elapsed += t.elapsed().as_secs_f64();
        }
    }
    let step_s = elapsed / steps.max(1) as f64;
    SasrecBench { shape, batch, steps, step_s, sequences_per_s: batch as f64 / step_s.max(1e-12), final_loss: loss_value }
}
