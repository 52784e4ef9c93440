//! Training throughput, for `reccocktail bench train` (compared side by side with a PyTorch +
//! peft peer by scripts/bench/train.sh; never a timed assertion in tests). Runs the real training
//! loop ([`crate::train::trainer::train`]) on either fixed-shape work (loss on every token) or rendered
//! samples (loss on the response only, length-bucketed batches).

use serde::Serialize;

use crate::train::batches::Encoded;
use crate::train::trainer::{self, Progress, TrainOptions};
use crate::model::CausalLm;
use crate::recipe::resolve::{LoraConfig, TrainingConfig};
use crate::recipe::types::{Batching, LoraTarget, Schedule, SelectBy, Side};

#[derive(Debug, Serialize)]
pub struct TrainBench {
    pub workload: String,
    pub samples: usize,
    pub batch: usize,
    pub steps: u64,
    /// Timed steps (the first, warm-up step excluded).
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub samples_per_s: f64,
    /// Where the timed seconds went: forward passes (loss included), backward passes, the rest.
    pub forward_s: f64,
    pub backward_s: f64,
    pub update_s: f64,
    pub peak_rss_mb: Option<f64>,
}

/// LoRA r16 on every linear layer, as the benchmark in issue #5 specifies, with `dropout` on the
/// adapters' inputs.
pub fn bench_lora(rank: u32, dropout: f64) -> LoraConfig {
    LoraConfig { rank, alpha: 2.0 * rank as f64, dropout, targets: vec![LoraTarget::QProj, LoraTarget::KProj, LoraTarget::VProj, LoraTarget::OProj, LoraTarget::GateProj, LoraTarget::UpProj, LoraTarget::DownProj], rslora: false }
}

pub fn bench_training(batch: usize, steps: u64, max_seq_len: u32) -> TrainingConfig {
    TrainingConfig {
        lr: 1e-4,
        epochs: 1000,
        max_steps: Some(steps),
        batch_size: batch as u32,
        grad_accum: 1,
        warmup_ratio: 0.0,
        schedule: Schedule::Constant,
        weight_decay: 0.0,
        betas: [0.9, 0.999],
        max_seq_len,
        truncation: Side::Left,
        batching: Batching::Length,
        eval_every: u64::MAX,
        checkpoint_every: u64::MAX,
        early_stopping_patience: None,
        max_grad_norm: 1.0,
        select_by: SelectBy::Loss,
        select_users: None,
    }
}

/// Pseudo-random fixed-length sequences with every token after the first a loss target.
pub fn fixed_samples(vocab: usize, n: usize, seq_len: usize) -> Vec<Encoded> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            let ids = (0..seq_len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % vocab as u64) as u32
                })
                .collect::<Vec<u32>>();
            let answer_end = ids.len();
            Encoded { ids, response_start: 1, answer_end }
        })
        .collect()
}

/// Run `steps` optimizer steps (plus one warm-up) of the real loop on `samples`; `model` must
/// live on an autodiff device.
pub fn run(model: &mut dyn CausalLm, workload: &str, samples: &[Encoded], lora: &LoraConfig, cfg: &TrainingConfig, pad_id: u32) -> Result<TrainBench, trainer::TrainError> {
    let mut progress = |_: &Progress<'_>| {};
    let opts = TrainOptions { checkpoint_dir: None, interrupt_after: None, progress: &mut progress, log: &|_| {}, select_by_mrr: None };
    let mut cfg = cfg.clone();
    cfg.max_steps = cfg.max_steps.map(|s| s + 1);
    let out = trainer::train(model, samples, &[], lora, &cfg, 0, pad_id, opts)?;
    let timed = &out.log[1.min(out.log.len())..];
    let seconds: f64 = timed.iter().map(|r| r.tokens as f64 / r.tokens_per_s).sum();
    let tokens: u64 = timed.iter().map(|r| r.tokens).sum();
    let n: u64 = timed.iter().map(|r| r.samples).sum();
    Ok(TrainBench {
        workload: workload.into(),
        samples: samples.len(),
        batch: cfg.batch_size as usize,
        steps: timed.len() as u64,
        seconds,
        tokens_per_s: tokens as f64 / seconds,
        samples_per_s: n as f64 / seconds,
        forward_s: timed.iter().map(|r| r.forward_s).sum(),
        backward_s: timed.iter().map(|r| r.backward_s).sum(),
        update_s: timed.iter().map(|r| r.update_s).sum(),
        peak_rss_mb: peak_rss_mb(),
    })
}

/// Peak resident memory of this process (Linux), in MB.
pub fn peak_rss_mb() -> Option<f64> {
    Some(crate::memory::mib(crate::memory::peak_bytes())).filter(|v| v.is_finite())
}

/// `reccocktail bench --workload train`: fixed-shape work, or the responses of rendered samples.
pub fn command(model_path: &std::path::Path, runtime: &crate::backend::Runtime, precision: crate::model::precision::Precision, batch: usize, seq_len: usize, steps: u64, prompts: Option<&std::path::Path>, dropout: f64) -> Result<TrainBench, String> {
    let device = runtime.device.clone().autodiff();
    let mut m = crate::model::load::load_text_model_as(model_path, &device, precision).map_err(|e| e.to_string())?;
    let lora = bench_lora(16, dropout);
    let pad = crate::train::pad_id(&m.tokenizer);
    match prompts {
        None => {
            let samples = fixed_samples(m.backbone.config.vocab_size, batch * (steps as usize + 1), seq_len);
            run(&mut m.backbone.model, "fixed", &samples, &lora, &bench_training(batch, steps, seq_len as u32), pad).map_err(|e| e.to_string())
        }
        Some(path) => {
            let df = crate::table::read_parquet(path).map_err(|e| e.to_string())?;
            let rows: Vec<(String, String)> = crate::table::strs(&df, "instruction").map_err(|e| e.to_string())?.into_iter().zip(crate::table::strs(&df, "response").map_err(|e| e.to_string())?).collect();
            let prompter = crate::prompt::Prompter::with_defaults(m.chat.take());
            let (samples, _, _) = crate::train::encode_rows(&prompter, &m.tokenizer, &rows, seq_len, Side::Left).map_err(|e| e.to_string())?;
            run(&mut m.backbone.model, "prompts", &samples, &lora, &bench_training(batch, steps, seq_len as u32), pad).map_err(|e| e.to_string())
        }
    }
}
