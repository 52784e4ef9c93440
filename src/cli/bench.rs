//! `reccocktail bench ...`: the benchmark subcommands' arguments and what each runs (each prints
//! JSON; `BENCHMARKS.md` has the measurements and the scripts that set them beside the peer).

use std::path::PathBuf;

use clap::Subcommand;

use super::common::{parse_attention, parse_backend, parse_dtype, print_json};
use crate::backend::{self, DeviceSpec};
use crate::error::Error;
use crate::model::precision::Precision;
use crate::recipe::types::{AttentionDtype, BackendChoice, Dtype};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Forward passes of a model (`--model`) on fixed-shape random tokens: tokens per second.
    Forward {
        #[command(flatten)]
        shape: BenchShape,
    },
    /// LoRA training steps (r16 on every linear layer): loss on every token, or on the responses
    /// of `--prompts`.
    Train {
        #[command(flatten)]
        shape: BenchShape,
        /// A prompts stage's `train.parquet` (rendered samples).
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// LoRA dropout on the adapters' inputs (the recipes train with 0.05).
        #[arg(long, default_value_t = 0.0)]
        dropout: f64,
    },
    /// Users ranked per second with `likelihood` (every candidate scored) vs `generate` (greedy
    /// top-K list) on the same prompts; prints JSON and a side-by-side line.
    Eval {
        #[arg(long, default_value_t = 5)]
        users: usize,
        #[arg(long, default_value_t = 20)]
        candidates: usize,
        /// History titles per prompt.
        #[arg(long, default_value_t = 10)]
        history: usize,
        /// Titles the generated list names (the prompt's K).
        #[arg(long, default_value_t = 5)]
        k: u32,
        #[arg(long, default_value_t = 60)]
        max_new_tokens: usize,
        /// Also write the token ids fed to both protocols as JSON, for
        /// `scripts/bench/peer_eval.py` to time PyTorch on the same work.
        #[arg(long)]
        dump: Option<PathBuf>,
        #[command(flatten)]
        on: BenchModel,
    },
    /// Seconds per unlabeled prompt of one entropy-adaptation step on a real model with two seeded
    /// random LoRA adapters: candidate_entropy, and token_entropy three ways (as computed here: the
    /// prompt encoded once; two passes; generating with gradients).
    Entropy {
        /// Prompts (the first one is an untimed warm-up).
        #[arg(long, default_value_t = 4)]
        prompts: usize,
        #[arg(long, default_value_t = 10)]
        candidates: usize,
        /// History titles per prompt.
        #[arg(long, default_value_t = 5)]
        history: usize,
        #[arg(long, default_value_t = 40)]
        max_new_tokens: usize,
        /// Rank of each random adapter.
        #[arg(long, default_value_t = 8)]
        rank: usize,
        /// The merge parameter `answer_titles`: only the first N titles of an answer enter the
        /// token entropy, and generation stops there.
        #[arg(long)]
        answer_titles: Option<usize>,
        /// Prompts (after the warm-up) on which measuring the objective without a graph is timed
        /// one by one and batched.
        #[arg(long, default_value_t = 8)]
        measure: usize,
        #[command(flatten)]
        on: BenchModel,
    },
    /// SASRec training steps on fixed-shape seeded random batches (the paper's MovieLens-1M
    /// shapes by default): training sequences per second.
    Sasrec {
        #[arg(long, default_value_t = 3416)]
        items: usize,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        #[arg(long, default_value_t = 200)]
        max_len: usize,
        #[arg(long, default_value_t = 50)]
        hidden: usize,
        #[arg(long, default_value_t = 2)]
        blocks: usize,
        #[arg(long, default_value_t = 1)]
        heads: usize,
        #[arg(long, default_value_t = 0.2)]
        dropout: f64,
        /// Timed steps (after one untimed warm-up).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[command(flatten)]
        on: BenchRuntime,
    },
    /// How two runs of one plan agree (another dtype, backend or machine): each training's loss
    /// step by step, and each evaluated user's ranking (whole list, target rank, top-1).
    Agreement {
        /// Run directories (`results/<experiment>/<run>`), compared stage by stage.
        a: PathBuf,
        b: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Time and peak memory (VmHWM) of merging two synthetic rank-R adapters shaped for a Llama
    /// model (default 7B): stacked (exact) and SVD-truncated.
    Merge {
        #[arg(long, default_value_t = 32)]
        layers: usize,
        #[arg(long, default_value_t = 4096)]
        hidden: usize,
        #[arg(long, default_value_t = 11008)]
        intermediate: usize,
        /// Rank of each input adapter.
        #[arg(long, default_value_t = 16)]
        rank: usize,
        /// Rank the merged adapter is SVD-truncated to.
        #[arg(long, default_value_t = 16)]
        truncate: usize,
    },
}

/// What `bench forward` and `bench train` share: the model, the work's shape, the backend.
#[derive(Debug, clap::Args)]
pub struct BenchShape {
    /// HF model directory or .gguf file.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[command(flatten)]
    on: BenchRuntime,
}

/// Where every benchmark runs: backend, threads, device.
#[derive(Debug, clap::Args)]
pub struct BenchRuntime {
    #[arg(long, value_parser = parse_backend, default_value = "auto")]
    backend: BackendChoice,
    #[arg(long)]
    threads: Option<u32>,
    /// Device: cpu, cuda, cuda:N or auto (CUDA needs the tch backend and a CUDA libtorch).
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Precision of the model's frozen weights: f32, bf16 (mixed, as `[backbone] dtype`), f16
    /// or auto (bf16 where this machine is fast at it). Ignored by `bench sasrec`.
    #[arg(long, value_parser = parse_dtype, default_value = "f32")]
    dtype: Dtype,
    /// Attention's products' dtype where the frozen weights are bf16: f32 or bf16 (as
    /// `[backbone] attention`).
    #[arg(long, value_parser = parse_attention, default_value = "f32")]
    attention: AttentionDtype,
}

impl BenchRuntime {
    fn select(&self) -> Result<backend::Runtime, Error> {
        Ok(backend::select(self.backend, self.device, self.threads)?)
    }

    /// The dtype the model's frozen weights take (`auto` resolved for this backend and device,
    /// refused where the runtime cannot compute in it) and attention's products'.
    fn precision(&self, runtime: &backend::Runtime) -> Result<Precision, Error> {
        let d = crate::model::precision::resolve(self.dtype, self.backend, &self.device.to_string());
        crate::exec::backbone::check_dtype(d, runtime).map_err(|e| Error::Usage(e.to_string()))?;
        Ok(Precision::new(d, self.attention))
    }
}

/// What `bench eval` and `bench entropy` share: the model, where their prompts come from, and the
/// backend.
#[derive(Debug, clap::Args)]
pub struct BenchModel {
    /// HF model directory or .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// MovieLens `movies.csv` to draw titles from.
    #[arg(long, default_value = "datasets/ml-latest-small-subset/movies.csv")]
    titles: PathBuf,
    /// Prompt template (instruction and response blocks).
    #[arg(long, default_value = "templates/rank.jinja")]
    template: PathBuf,
    #[command(flatten)]
    on: BenchRuntime,
}

/// Run one benchmark subcommand.
pub fn run(what: BenchCommand) -> Result<(), Error> {
    match what {
    BenchCommand::Eval { users, candidates, history, k, max_new_tokens, dump, on: BenchModel { model, titles, template, on } } => {
        let runtime = on.select()?;
        let precision = on.precision(&runtime)?;
        let spec = crate::bench::eval::PromptSpec { users: users.max(1), candidates: candidates.max(1), history, k, separator: crate::recipe::resolve::DEFAULT_SEPARATOR.into(), seed: crate::recipe::resolve::DEFAULT_SEED };
        let r = crate::bench::eval::from_files(&model, &titles, &template, &spec, max_new_tokens, &runtime.device, precision, dump.as_deref())?;
        eprintln!("{}", r.line());
        print_json(&serde_json::json!({ "backend": runtime.backend, "device": runtime.device_spec.to_string(), "dtype": precision.dtype, "attention": precision.attention, "eval": r }))
    }
    BenchCommand::Entropy { prompts, candidates, history, max_new_tokens, rank, answer_titles, measure, on: BenchModel { model, titles, template, on } } => {
        let runtime = on.select()?;
        let precision = on.precision(&runtime)?;
        let spec = crate::bench::eval::PromptSpec { users: prompts.max(2), candidates: candidates.max(2), history, k: 5, separator: crate::recipe::resolve::DEFAULT_SEPARATOR.into(), seed: crate::recipe::resolve::DEFAULT_SEED };
        let bench = crate::bench::entropy::EntropyBenchSpec { max_new_tokens: max_new_tokens.max(1), answer_titles: answer_titles.map(|n| n.max(1)), rank: rank.max(1), measure };
        let r = crate::bench::entropy::from_files(&model, &titles, &template, &spec, &bench, &runtime.device, precision)?;
        eprintln!("{}", r.line());
        print_json(&serde_json::json!({ "backend": runtime.backend, "dtype": precision.dtype, "attention": precision.attention, "entropy": r }))
    }
    BenchCommand::Train { shape: BenchShape { model, batch, seq_len, iters, on }, prompts, dropout } => {
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::Usage(format!("bench train: --dropout {dropout} is outside [0, 1)")));
        }
        let threads = on.threads;
        let runtime = on.select()?;
        let precision = on.precision(&runtime)?;
        let r = crate::bench::train::command(&model, &runtime, precision, batch.max(1), seq_len.max(2), iters.max(1) as u64, prompts.as_deref(), dropout).map_err(Error::Usage)?;
        print_json(&serde_json::json!({ "backend": runtime.backend, "threads": threads, "dtype": precision.dtype, "attention": precision.attention, "dropout": dropout, "train": r }))
    }
    BenchCommand::Sasrec { items, batch, max_len, hidden, blocks, heads, dropout, steps, on } => {
        if [items, batch, max_len, hidden, blocks, heads, steps].contains(&0) || hidden % heads != 0 || !(0.0..1.0).contains(&dropout) {
            return Err(Error::Usage("bench sasrec: sizes must be at least 1, heads must divide hidden, dropout in [0, 1)".into()));
        }
        let threads = on.threads;
        let runtime = on.select()?;
        let shape = crate::sasrec::model::Shape { items, hidden, blocks, heads, max_len, dropout };
        print_json(&serde_json::json!({ "backend": runtime.backend, "threads": threads, "sasrec": crate::bench::sasrec::run(shape, batch, steps, &runtime.device) }))
    }
    BenchCommand::Agreement { a, b, json } => {
        let r = crate::bench::agreement::compare(&a, &b)?;
        if json {
            print_json(&r)
        } else {
            print!("{}", r.render());
            Ok(())
        }
    }
    BenchCommand::Merge { layers, hidden, intermediate, rank, truncate } => {
        if [layers, hidden, intermediate, rank, truncate].contains(&0) {
            return Err(Error::Usage("bench merge: every size must be at least 1".into()));
        }
        print_json(&crate::bench::merge::run(layers, hidden, intermediate, rank, truncate)?)
    }
    BenchCommand::Forward { shape: BenchShape { model, batch, seq_len, iters, on } } => {
        let threads = on.threads;
        let runtime = on.select()?;
        let precision = on.precision(&runtime)?;
        let m = crate::model::load::load_text_model_as(&model, &runtime.device, precision).map_err(Error::Model)?;
        let r = crate::bench::forward::forward(&m.backbone.model, m.backbone.config.vocab_size, batch.max(1), seq_len.max(1), iters.max(1));
        print_json(&serde_json::json!({ "backend": runtime.backend, "threads": threads, "dtype": precision.dtype, "attention": precision.attention, "forward": r }))
    }
    }
}
