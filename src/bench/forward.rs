//! Forward-pass throughput, for `reccocktail bench forward` (compared against a PyTorch peer by
//! scripts/bench/forward.sh; never a timed assertion in tests).

use std::time::Instant;

use serde::Serialize;

use crate::model::generate::{Padding, pad_batch};
use crate::model::CausalLm;

#[derive(Debug, Serialize)]
pub struct ForwardBench {
    pub batch: usize,
    pub seq_len: usize,
    pub iters: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

/// Time `iters` forward passes over a fixed pseudo-random batch (one untimed warm-up first).
pub fn forward(model: &dyn CausalLm, vocab: usize, batch: usize, seq_len: usize, iters: usize) -> ForwardBench {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let seqs: Vec<Vec<u32>> = (0..batch)
        .map(|_| {
            (0..seq_len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % vocab as u64) as u32
                })
                .collect()
        })
        .collect();
    let input = pad_batch(model, &seqs, 0, Padding::Right).input;
    let sync = |t: burn::tensor::Tensor<3>| t.narrow(2, 0, 1).into_data();
    sync(model.forward(&input, None));
    let start = Instant::now();
    for _ in 0..iters {
        sync(model.forward(&input, None));
    }
    let seconds = start.elapsed().as_secs_f64();
    ForwardBench { batch, seq_len, iters, seconds, tokens_per_s: (batch * seq_len * iters) as f64 / seconds }
}
