//! LoRA fine-tuning as plan stages: `train:<adapter>` (the base spirit on its mixture, each
//! ingredient on its domain) and `import:<adapter>` (a pretrained PEFT adapter, checked against
//! the backbone). Both leave a PEFT adapter in `<stage dir>/adapter/`.

pub mod batches;
pub mod bench;
pub mod checkpoint;
pub mod lora_state;
pub mod optim;
pub mod trainer;

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use polars::prelude::Column;
use serde::{Deserialize, Serialize};

use crate::data::table;
use crate::exec::backbone::{self, Prompter, input_dir};
use crate::exec::{StageContext, StageError};
use crate::model::peft::PeftAdapter;
use crate::model::tokenizer::TextTokenizer;
use batches::Encoded;
use trainer::{LogRow, Progress, TrainOptions};

/// Where an adapter stage keeps its adapter.
pub const ADAPTER_DIR: &str = "adapter";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub adapter: String,
    pub train_samples: usize,
    pub valid_samples: usize,
    /// Samples with nothing left to learn after truncation.
    pub dropped_samples: usize,
    pub truncated_samples: usize,
    pub trainable_params: usize,
    pub steps: u64,
    pub best_step: u64,
    pub best_valid_loss: Option<f64>,
    pub first_loss: f64,
    pub last_loss: f64,
    pub stopped_early: bool,
    pub resumed_from: Option<u64>,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub samples_per_s: f64,
}

/// Encode (instruction, response) rows; returns the samples, how many were dropped and how many cut.
pub fn encode_rows(prompter: &Prompter, tok: &TextTokenizer, rows: &[(String, String)], max_len: usize, side: crate::recipe::types::Side) -> Result<(Vec<Encoded>, usize, usize), StageError> {
    let (mut out, mut dropped, mut cut) = (Vec::new(), 0, 0);
    for (instruction, response) in rows {
        let p = prompter.prompt_ids(tok, instruction)?;
        let r = prompter.response_ids(tok, instruction, response)?;
        match Encoded::new(&p, &r, max_len, side) {
            Some(e) => {
                if e.len() < p.len() + r.len() {
                    cut += 1;
                }
                out.push(e);
            }
            None => dropped += 1,
        }
    }
    Ok((out, dropped, cut))
}

fn read_pairs(path: &Path) -> Result<Vec<(String, String)>, StageError> {
    let df = table::read_parquet(path)?;
    Ok(table::strs(&df, "instruction")?.into_iter().zip(table::strs(&df, "response")?).collect())
}

/// Padding id: never a target and never attended to, so any valid id works.
pub fn pad_id(tok: &TextTokenizer) -> u32 {
    tok.eos_ids().first().copied().unwrap_or(0)
}

pub fn train_stage(ctx: &StageContext<'_>) -> Result<(), StageError> {
    let name = ctx.stage.id.strip_prefix("train:").unwrap_or(&ctx.stage.id).to_string();
    let adapter = ctx.resolved.adapter(&name).ok_or_else(|| StageError::Failed(format!("unknown adapter `{name}`")))?;
    let started = Instant::now();
    let device = ctx.runtime.device.clone().autodiff();
    let mut sm = backbone::load(ctx, &device)?;
    let prompts = input_dir(ctx, "prompts:")?;
    let t = &adapter.training;
    let max_len = t.max_seq_len as usize;
    let tok = &sm.text.tokenizer;
    let (train, dropped, cut) = encode_rows(&sm.prompter, tok, &read_pairs(&prompts.join("train.parquet"))?, max_len, t.truncation)?;
    let (valid, _, _) = encode_rows(&sm.prompter, tok, &read_pairs(&prompts.join("valid.parquet"))?, max_len, t.truncation)?;
    if cut > 0 || dropped > 0 {
        (ctx.log)(&format!("adapter `{name}`: {cut} samples cut to {max_len} tokens, {dropped} dropped"));
    }
    let pad = pad_id(tok);
    let seed = ctx.resolved.experiment.seed;
    let n_batches = train.len().div_ceil(t.batch_size.max(1) as usize);
    let total = trainer::total_steps(n_batches, t);
    let pb = ctx.progress.add(ProgressBar::new(total));
    pb.set_style(ProgressStyle::with_template("  {prefix} {bar:24} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}").expect("static template"));
    pb.set_prefix(format!("train:{name}"));
    let mut progress = |p: &Progress<'_>| {
        pb.set_position(p.step);
        let v = p.row.valid_loss.map(|v| format!(" valid {v:.4}")).unwrap_or_default();
        pb.set_message(format!("loss {:.4}{v} lr {:.2e} {:.0} tok/s", p.row.loss, p.row.lr, p.row.tokens_per_s));
        // Without a visible bar (not a terminal), every step goes to the log instead.
        if p.row.valid_loss.is_some() || pb.is_hidden() {
            (ctx.log)(&format!("train:{name} step {}/{}: loss {:.4}{v}, lr {:.2e}, {:.0} tokens/s", p.step, p.total_steps, p.row.loss, p.row.lr, p.row.tokens_per_s));
        }
    };
    let opts = TrainOptions { checkpoint_dir: Some(ctx.scratch.join("checkpoint")), interrupt_after: None, progress: &mut progress, log: ctx.log };
    let result = trainer::train(&mut sm.text.backbone.model, &train, &valid, &adapter.lora, t, seed, pad, opts);
    pb.finish_and_clear();
    let outcome = result.map_err(|e| StageError::Failed(format!("training `{name}`: {e}")))?;

    let base = Some(backbone::backbone_path(ctx)?.display().to_string());
    outcome.adapter.to_peft(base).save(&ctx.out.join(ADAPTER_DIR))?;
    write_log(&outcome.log, &ctx.out.join("train_log.parquet"))?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens: u64 = outcome.log.iter().map(|r| r.tokens).sum();
    let samples: u64 = outcome.log.iter().map(|r| r.samples).sum();
    let train_secs: f64 = outcome.log.iter().map(|r| r.tokens as f64 / r.tokens_per_s.max(1e-9)).sum::<f64>().max(1e-9);
    let summary = TrainSummary {
        adapter: name.clone(),
        train_samples: train.len(),
        valid_samples: valid.len(),
        dropped_samples: dropped,
        truncated_samples: cut,
        trainable_params: outcome.adapter.num_params(),
        steps: outcome.steps,
        best_step: outcome.best_step,
        best_valid_loss: outcome.best_valid_loss,
        first_loss: outcome.log.first().map_or(f64::NAN, |r| r.loss),
        last_loss: outcome.log.last().map_or(f64::NAN, |r| r.loss),
        stopped_early: outcome.stopped_early,
        resumed_from: outcome.resumed_from,
        seconds,
        tokens_per_s: tokens as f64 / train_secs,
        samples_per_s: samples as f64 / train_secs,
    };
    table::write_json(&ctx.out.join("train.json"), &summary)?;
    (ctx.log)(&format!(
        "adapter `{name}`: {} steps on {} samples, loss {:.4} -> {:.4}, best validation {} at step {}, {:.0} tokens/s",
        summary.steps,
        summary.train_samples,
        summary.first_loss,
        summary.last_loss,
        summary.best_valid_loss.map_or("n/a".into(), |v| format!("{v:.4}")),
        summary.best_step,
        summary.tokens_per_s
    ));
    Ok(())
}

/// The training log as a table: step, epoch, loss, lr, grad_norm, tokens, samples, tokens_per_s,
/// forward_s, backward_s, update_s, valid_loss.
pub fn write_log(log: &[LogRow], path: &Path) -> Result<(), StageError> {
    let col = |n: &str, v: Vec<f64>| Column::new(n.into(), v);
    let mut df = table::frame(vec![
        Column::new("step".into(), log.iter().map(|r| r.step).collect::<Vec<_>>()),
        Column::new("epoch".into(), log.iter().map(|r| r.epoch).collect::<Vec<_>>()),
        col("loss", log.iter().map(|r| r.loss).collect()),
        col("lr", log.iter().map(|r| r.lr).collect()),
        col("grad_norm", log.iter().map(|r| r.grad_norm).collect()),
        Column::new("tokens".into(), log.iter().map(|r| r.tokens).collect::<Vec<_>>()),
        Column::new("samples".into(), log.iter().map(|r| r.samples).collect::<Vec<_>>()),
        col("tokens_per_s", log.iter().map(|r| r.tokens_per_s).collect()),
        col("forward_s", log.iter().map(|r| r.forward_s).collect()),
        col("backward_s", log.iter().map(|r| r.backward_s).collect()),
        col("update_s", log.iter().map(|r| r.update_s).collect()),
        Column::new("valid_loss".into(), log.iter().map(|r| r.valid_loss).collect::<Vec<_>>()),
    ])?;
    Ok(table::write_parquet(&mut df, path)?)
}

/// `import:<adapter>`: a pretrained PEFT adapter, checked against the backbone, copied in.
pub fn import_stage(ctx: &StageContext<'_>) -> Result<(), StageError> {
    let src = ctx.stage.params["path"].as_str().ok_or_else(|| StageError::Failed(format!("stage `{}` has no `path`", ctx.stage.id)))?;
    let sm = backbone::load(ctx, &ctx.runtime.device)?;
    let adapter = PeftAdapter::load(Path::new(src), &sm.text.backbone.model)?;
    adapter.save(&ctx.out.join(ADAPTER_DIR))?;
    (ctx.log)(&format!("imported adapter {src}: rank {}, {} modules", adapter.config.r, adapter.modules.len()));
    Ok(())
}
