//! `reccocktail bench merge`: time and peak memory of merging two synthetic rank-R adapters
//! shaped for a Llama model (default: 7B, 32 layers, hidden 4096, intermediate 11008, all seven
//! projections), exactly (stacked) and SVD-truncated. A measurement, never a test.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::memory;
use crate::merge::{Coefficients, combine};
use crate::rng::Rng;
use crate::model::lora::Proj;
use crate::model::peft::{LoraPair, PeftAdapter, PeftConfig};
use crate::model::weights::HostTensor;

#[derive(Debug, Clone, Serialize)]
pub struct MergeBench {
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub rank: usize,
    /// LoRA parameters of one input adapter.
    pub params_per_adapter: usize,
    /// Building the two synthetic adapters (not part of the merge).
    pub generate_s: f64,
    /// `combine`: the weighted factors stacked (exact, rank 2R).
    pub stacked: Phase,
    /// `combine` then `truncate` (thin bases of both factors, SVD of the 2R x 2R core).
    pub truncated: Phase,
    /// How peak memory was measured.
    pub memory: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub seconds: f64,
    /// Resident memory when the phase started (inputs already in memory), MiB.
    pub rss_before_mib: f64,
    /// Peak resident memory during the phase, MiB.
    pub peak_rss_mib: f64,
    pub output_rank: usize,
    pub dropped_energy: Option<f64>,
}

/// A seeded random rank-`r` adapter on all seven projections of `layers` layers, each shaped
/// `shape(layer, proj) = (out, in)`; entries uniform in [-0.01, 0.01).
pub fn synthetic(layers: usize, shape: impl Fn(usize, Proj) -> (usize, usize), r: usize, seed: u64) -> PeftAdapter {
    let mut modules = BTreeMap::new();
    for layer in 0..layers {
        for proj in Proj::ALL {
            let (out, inp) = shape(layer, proj);
            let mut rng = Rng::derive(seed, &["bench-merge", &layer.to_string(), proj.hf_name()]);
            let mut t = |rows: usize, cols: usize| HostTensor { shape: vec![rows, cols], data: (0..rows * cols).map(|_| (rng.unit() as f32 - 0.5) * 0.02).collect() };
            let a = t(r, inp);
            let b = t(out, r);
            modules.insert((layer, proj), LoraPair { a, b });
        }
    }
    let config = PeftConfig { r, alpha: 2.0 * r as f64, use_rslora: false, targets: Proj::ALL.to_vec(), rank_pattern: BTreeMap::new(), alpha_pattern: BTreeMap::new(), base_model: None };
    PeftAdapter { config, modules }
}

/// Merge two synthetic adapters at weights (0.5, 0.5): stacked (exact, rank 2r), then truncated
/// to `truncate_to`.
pub fn run(layers: usize, hidden: usize, intermediate: usize, rank: usize, truncate_to: usize) -> Result<MergeBench, crate::merge::MergeError> {
    let start = Instant::now();
    let shape = |_: usize, proj: Proj| match proj {
        Proj::Gate | Proj::Up => (intermediate, hidden),
        Proj::Down => (hidden, intermediate),
        _ => (hidden, hidden),
    };
    let ads = [synthetic(layers, shape, rank, 1), synthetic(layers, shape, rank, 2)];
    let generate_s = start.elapsed().as_secs_f64();
    let names = vec!["base_spirit".to_string(), "ingredient".to_string()];
    let coef = Coefficients::uniform(&names, &ads, &[0.5, 0.5]);
    let params_per_adapter = ads[0].modules.values().map(|p| p.a.data.len() + p.b.data.len()).sum();
    let max_rank = |a: &PeftAdapter| a.modules.values().map(|p| p.a.shape[0]).max().unwrap_or(0);

    let resettable = memory::reset_peak();
    let before = memory::mib(memory::resident_bytes());
    let t = Instant::now();
    let stacked_adapter = combine(&ads, &coef)?;
    let stacked = Phase { seconds: t.elapsed().as_secs_f64(), rss_before_mib: before, peak_rss_mib: memory::mib(memory::peak_bytes()), output_rank: max_rank(&stacked_adapter), dropped_energy: None };
    drop(stacked_adapter);

    memory::reset_peak();
    let before = memory::mib(memory::resident_bytes());
    let t = Instant::now();
    let stacked_again = combine(&ads, &coef)?;
    let (truncated_adapter, energy) = combine::truncate(&stacked_again, truncate_to)?;
    let truncated = Phase {
        seconds: t.elapsed().as_secs_f64(),
        rss_before_mib: before,
        peak_rss_mib: memory::mib(memory::peak_bytes()),
        output_rank: max_rank(&truncated_adapter),
        dropped_energy: Some(energy.dropped_fraction()),
    };
    Ok(MergeBench {
        layers,
        hidden,
        intermediate,
        rank,
        params_per_adapter,
        generate_s,
        stacked,
        truncated,
        memory: if resettable { "VmHWM of the process, reset before each phase (clear_refs)" } else { "VmHWM of the process since it started (could not reset)" },
    })
}
