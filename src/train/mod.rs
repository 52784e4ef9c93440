//! LoRA fine-tuning as plan stages: `train:<adapter>` (the base spirit on its mixture, each
//! ingredient on its domain) and `import:<adapter>` (a pretrained PEFT adapter, checked against
//! the backbone). Both leave a PEFT adapter in `<stage dir>/adapter/`.

pub mod batches;
pub mod checkpoint;
pub mod log;
pub mod lora_state;
pub mod optim;
pub mod params;
pub mod trainer;

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::table;
use crate::exec::backbone;
use crate::exec::context::{StageContext, StageError};
use crate::plan::Role;
use crate::prompt::Prompter;
use params::{ImportParams, MrrSelection, TrainParams};
use crate::data::domain::DomainSplit;
use crate::eval::validation::{mean_reciprocal_rank, validation_users};
use crate::recipe::types::SelectBy;
use crate::model::peft::PeftAdapter;
use crate::model::tokenizer::TextTokenizer;
use batches::Encoded;
use trainer::{Progress, TrainOptions};

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
    /// What chose the kept checkpoint: `loss` or `mrr`.
    #[serde(default)]
    pub select_by: SelectBy,
    /// Validation users ranked at each validation (`mrr` selection).
    #[serde(default)]
    pub select_users: Option<usize>,
    pub best_valid_loss: Option<f64>,
    #[serde(default)]
    pub best_valid_mrr: Option<f64>,
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
        // The answer's own tokens (a title, or a list of them), without the end-of-turn marker.
        let answer = prompter.title_ids(tok, response)?.len();
        match Encoded::new(&p, &r, max_len, side).map(|e| e.with_answer_len(answer)) {
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

pub fn train_stage(ctx: &StageContext<'_>, p: &TrainParams) -> Result<(), StageError> {
    let name = p.adapter.clone();
    let started = Instant::now();
    let device = ctx.runtime.device.clone().autodiff();
    let mut sm = backbone::load(ctx, &p.backbone, &p.format, &device)?;
    let prompts = ctx.input(Role::Prompts)?;
    let t = &p.training;
    let max_len = t.max_seq_len as usize;
    let tok = &sm.text.tokenizer;
    let (train, dropped, cut) = encode_rows(&sm.prompter, tok, &read_pairs(&prompts.join("train.parquet"))?, max_len, t.truncation)?;
    let (valid, _, _) = encode_rows(&sm.prompter, tok, &read_pairs(&prompts.join("valid.parquet"))?, max_len, t.truncation)?;
    if cut > 0 || dropped > 0 {
        (ctx.log)(&format!("adapter `{name}`: {cut} samples cut to {max_len} tokens, {dropped} dropped"));
    }
    let pad = pad_id(tok);
    let seed = p.seed;
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
    let ranked = match &p.selection {
        Some(sel) => Some(selection_users(ctx, p, sel)?),
        None => None,
    };
    let prompter = &sm.prompter;
    let mut rank = ranked.as_ref().zip(p.selection.as_ref()).map(|(users, sel)| move |m: &dyn crate::model::CausalLm| mean_reciprocal_rank(m, tok, prompter, users, &sel.evaluation).map_err(|e| e.to_string()));
    let select_by_mrr = rank.as_mut().map(|f| f as trainer::RankValidation<'_>);
    let opts = TrainOptions { checkpoint_dir: Some(ctx.scratch.join("checkpoint")), interrupt_after: None, progress: &mut progress, log: ctx.log, select_by_mrr };
    let result = trainer::train(&mut sm.text.backbone.model, &train, &valid, &p.lora, t, seed, pad, opts);
    pb.finish_and_clear();
    let outcome = result.map_err(|e| StageError::Failed(format!("training `{name}`: {e}")))?;

    let base = Some(ctx.source_file(&p.backbone.source, Role::Backbone)?.display().to_string());
    outcome.adapter.to_peft(base).save(&ctx.out.join(ADAPTER_DIR))?;
    log::write_log(&outcome.log, &ctx.out.join("train_log.parquet"))?;
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
        select_by: t.select_by,
        select_users: ranked.as_ref().map(Vec::len),
        best_valid_loss: outcome.best_valid_loss,
        best_valid_mrr: outcome.best_valid_mrr,
        first_loss: outcome.log.first().map_or(f64::NAN, |r| r.loss),
        last_loss: outcome.log.last().map_or(f64::NAN, |r| r.loss),
        stopped_early: outcome.stopped_early,
        resumed_from: outcome.resumed_from,
        seconds,
        tokens_per_s: tokens as f64 / train_secs,
        samples_per_s: samples as f64 / train_secs,
    };
    table::write_json(&ctx.out.join("train.json"), &summary)?;
    let mrr = summary.best_valid_mrr.map(|m| format!(" (MRR {m:.4} on {} users)", summary.select_users.unwrap_or(0))).unwrap_or_default();
    (ctx.log)(&format!(
        "adapter `{name}`: {} steps on {} samples, loss {:.4} -> {:.4}, best validation {}{mrr} at step {}, {:.0} tokens/s",
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

/// The validation users `select_by = "mrr"` ranks: up to `sel.users` in all, drawn evenly from
/// the adapter's domains (their splits are the stage's `split` inputs), seeded per adapter and
/// domain.
fn selection_users(ctx: &StageContext<'_>, p: &TrainParams, sel: &MrrSelection) -> Result<Vec<crate::eval::TestUser>, StageError> {
    let splits = ctx.inputs_of(Role::Split);
    if splits.is_empty() {
        return Err(StageError::Failed(format!("stage `{}` selects by validation MRR but has no split input", ctx.stage.id)));
    }
    let per_domain = (sel.users as usize).div_ceil(splits.len());
    let mut users = Vec::new();
    for (id, dir) in splits {
        let (split, _) = DomainSplit::read(dir)?;
        users.extend(validation_users(ctx, &sel.render, &split, per_domain, &["select", &p.adapter, id])?);
    }
    users.truncate(sel.users as usize);
    (ctx.log)(&format!("adapter `{}`: checkpoints chosen by the validation MRR of {} users", p.adapter, users.len()));
    Ok(users)
}

/// `import:<adapter>`: a pretrained PEFT adapter, checked against the backbone, copied in.
pub fn import_stage(ctx: &StageContext<'_>, p: &ImportParams) -> Result<(), StageError> {
    let src = &p.path;
    let sm = backbone::load(ctx, &p.backbone, &crate::prompt::PromptFormat::default(), &ctx.runtime.device)?;
    let adapter = PeftAdapter::load(src, &sm.text.backbone.model)?;
    adapter.save(&ctx.out.join(ADAPTER_DIR))?;
    (ctx.log)(&format!("imported adapter `{}` from {}: rank {}, {} modules", p.adapter, src.display(), adapter.config.r, adapter.modules.len()));
    Ok(())
}
