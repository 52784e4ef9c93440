//! The training loop: causal-LM loss on response tokens, gradient accumulation, clipping, AdamW,
//! warmup + decay schedule, periodic validation (the best adapter by validation loss, or by
//! validation MRR when the caller ranks validation users, is the result), early stopping, and
//! exact checkpoints to resume from.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;
use reccocktail_host as host;

use super::batches::{Encoded, TrainBatch, epoch_batches};
use super::checkpoint::{self, Checkpoint};
pub use super::log::LogRow;
use super::lora_state::{unflatten_into, LoraState};
use super::optim::{AdamWConfig, DeviceAdamW, Moments, lr_at};
use crate::rng::Rng;
use crate::model::CausalLm;
use crate::recipe::resolve::{LoraConfig, TrainingConfig};
use crate::recipe::types::Batching;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the loss became {value} at optimizer step {step} (batch of samples {samples:?}); lower the learning rate or check the data")]
    NonFinite { step: u64, samples: Vec<usize>, value: f32 },
    #[error("the adapter did not change from its initialization after {steps} steps (learning rate {lr}): nothing was learned")]
    Unchanged { steps: u64, lr: f64 },
    #[error("no training sample fits: every sample is empty after truncation to {0} tokens")]
    NoSamples(u32),
    #[error("`batching = \"pack\"` is not supported by this trainer; use `length` (bucketed by length)")]
    PackUnsupported,
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("validation: {0}")]
    Validation(String),
}

/// Ranks validation users with the model as it stands (the adapter under training attached,
/// without dropout) and returns their mean reciprocal rank.
pub type RankValidation<'a> = &'a mut dyn FnMut(&dyn CausalLm) -> Result<f64, String>;

/// What the caller sees while training runs.
pub struct Progress<'a> {
    pub step: u64,
    pub total_steps: u64,
    pub row: &'a LogRow,
}

pub struct TrainOptions<'a> {
    /// Where checkpoints go (resumed from when present); `None`: no checkpoints.
    pub checkpoint_dir: Option<PathBuf>,
    /// Stop (as if interrupted) after this many optimizer steps in this call. For tests.
    pub interrupt_after: Option<u64>,
    pub progress: &'a mut dyn FnMut(&Progress<'_>),
    pub log: &'a dyn Fn(&str),
    /// With `Some`, every validation also ranks validation users and the checkpoint kept is the
    /// one of the highest MRR (ties: the earliest); `None`: the lowest validation loss.
    pub select_by_mrr: Option<RankValidation<'a>>,
}

#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The adapter to use: best by the selection criterion (the last one without validation).
    pub adapter: LoraState,
    pub best_step: u64,
    /// Validation loss and MRR (with MRR selection) of the kept adapter.
    pub best_valid_loss: Option<f64>,
    pub best_valid_mrr: Option<f64>,
    pub steps: u64,
    pub total_steps: u64,
    pub log: Vec<LogRow>,
    pub stopped_early: bool,
    /// False when `interrupt_after` stopped the run.
    pub finished: bool,
    pub resumed_from: Option<u64>,
}

/// Sum of negative log-likelihoods of the batch's response tokens (logits only where needed).
pub fn nll_sum(model: &dyn CausalLm, batch: &TrainBatch) -> Tensor<1> {
    let hidden = model.hidden(&batch.input, None);
    let [b, t, h] = hidden.dims();
    let picked = hidden.reshape([b * t, h]).select(0, batch.positions.clone());
    let logp = log_softmax(model.head(picked), 1);
    logp.gather(1, batch.targets.clone()).sum().neg()
}

/// Mean validation loss per answer token (no dropout, no gradients kept): the end-of-turn tokens
/// every response ends with are nearly free to predict and would only dilute the comparison of
/// checkpoints, so they are not counted (`Encoded::answer_end`).
pub fn validation_loss(model: &mut dyn CausalLm, state: &LoraState, valid: &[Encoded], batch_size: usize, pad_id: u32) -> f64 {
    // Nothing tracked: validation on the training device records no autodiff graph.
    state.attach(model, 0.0, false);
    let device = model.device();
    let (mut total, mut n) = (0.0f64, 0usize);
    let answers: Vec<Encoded> = valid.iter().map(Encoded::answer_only).collect();
    let refs: Vec<&Encoded> = answers.iter().collect();
    for chunk in refs.chunks(batch_size.max(1)) {
        let batch = TrainBatch::new(chunk, pad_id, &device);
        let loss: f32 = nll_sum(model, &batch).without_autodiff().into_scalar();
        total += loss as f64;
        n += batch.n_targets;
    }
    if n == 0 { f64::NAN } else { total / n as f64 }
}

pub fn total_steps(n_batches: usize, cfg: &TrainingConfig) -> u64 {
    let per_epoch = n_batches.div_ceil(cfg.grad_accum.max(1) as usize) as u64;
    let total = per_epoch * cfg.epochs as u64;
    cfg.max_steps.map_or(total, |m| m.min(total))
}

/// Train a LoRA adapter on `train` (validated on `valid`). `model` lives on an autodiff device.
#[allow(clippy::too_many_arguments)]
pub fn train(model: &mut dyn CausalLm, train: &[Encoded], valid: &[Encoded], lora: &LoraConfig, cfg: &TrainingConfig, seed: u64, pad_id: u32, mut opts: TrainOptions<'_>) -> Result<TrainOutcome, TrainError> {
    if cfg.batching == Batching::Pack {
        return Err(TrainError::PackUnsupported);
    }
    if train.is_empty() {
        return Err(TrainError::NoSamples(cfg.max_seq_len));
    }
    let device = model.device();
    let bs = cfg.batch_size.max(1) as usize;
    let accum = cfg.grad_accum.max(1) as usize;
    let n_batches = train.len().div_ceil(bs);
    let total = total_steps(n_batches, cfg);
    let warmup = (cfg.warmup_ratio * total as f64).ceil() as u64;
    let adam = AdamWConfig { beta1: cfg.betas[0], beta2: cfg.betas[1], eps: 1e-8, weight_decay: cfg.weight_decay };

    let initial = LoraState::init(model, lora, seed);
    let resumed = match &opts.checkpoint_dir {
        Some(dir) => checkpoint::load(dir, &initial).map_err(TrainError::Checkpoint)?,
        None => None,
    };
    let resumed_from = resumed.as_ref().map(|c| c.step);
    let mut ck = resumed.unwrap_or_else(|| Checkpoint::fresh(initial.clone()));
    if let Some(step) = resumed_from {
        (opts.log)(&format!("resuming from the checkpoint at step {step} of {total}"));
    }

    // The optimizer's state lives on the training device between steps; `ck` gets it back (exact
    // f32 copies) where it is read: validation, checkpoints, the end.
    let inner = device.clone().inner();
    let first: Vec<f32> = ck.moments.iter().flat_map(|x| x.m.iter().copied()).collect();
    let second: Vec<f32> = ck.moments.iter().flat_map(|x| x.v.iter().copied()).collect();
    let mut opt = DeviceAdamW::upload(ck.state.flatten(), first, second, &inner);
    // Download the device state at most once per step (a step may validate, checkpoint and end).
    let mut synced_step = Some(ck.step);
    let mut sync = |ck: &mut Checkpoint, opt: &DeviceAdamW| {
        if synced_step != Some(ck.step) {
            ck.sync(opt);
            synced_step = Some(ck.step);
        }
    };
    let mut steps_this_call = 0u64;
    let mut stopped_early = false;
    'epochs: while ck.step < total {
        let batches = epoch_batches(train, bs, cfg.batching, seed, ck.epoch);
        let groups: Vec<&[Vec<usize>]> = batches.chunks(accum).collect();
        while (ck.group as usize) < groups.len() {
            if ck.step >= total {
                break 'epochs;
            }
            let group = groups[ck.group as usize];
            let started = Instant::now();
            // Same dropout masks for this step whether or not the run was resumed.
            crate::dropout::seed(Rng::derive(seed, &["dropout", &ck.step.to_string()]).next_u64());
            let group_targets: usize = group.iter().flatten().map(|&i| train[i].targets()).sum();
            let mut acc: Option<Tensor<1>> = None;
            let (mut loss_sum, mut tokens) = (0.0f64, 0usize);
            // One attachment per step: the micro-batches reuse the same leaves.
            ck.state.attach_flat(model, opt.params.clone(), lora.dropout, true);
            let (mut forward_s, mut backward_s) = (0.0f64, 0.0f64);
            for batch_idx in group {
                let samples: Vec<&Encoded> = batch_idx.iter().map(|&i| &train[i]).collect();
                let batch = TrainBatch::new(&samples, pad_id, &device);
                tokens += batch.tokens;
                let t = Instant::now();
                let loss = nll_sum(model, &batch).div_scalar(group_targets as f64);
                let value: f32 = loss.clone().without_autodiff().into_scalar();
                forward_s += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let grads = loss.backward();
                backward_s += t.elapsed().as_secs_f64();
                if !value.is_finite() {
                    return Err(TrainError::NonFinite { step: ck.step + 1, samples: batch_idx.clone(), value });
                }
                loss_sum += value as f64;
                let g = ck.state.grads_flat(model, &grads);
                acc = Some(match acc {
                    Some(a) => a.add(g),
                    None => g,
                });
            }
            let acc = acc.expect("an accumulation group has a batch");
            // The norm on the host, one running sum in order (the same bits on every device).
            let host_grads = crate::backend::host_f32(acc.clone());
            let grad_norm = host::sum_squares(0.0, &host_grads).sqrt();
            let acc = if cfg.max_grad_norm > 0.0 && grad_norm > cfg.max_grad_norm {
                acc.mul_scalar((cfg.max_grad_norm / (grad_norm + 1e-6)) as f32)
            } else {
                acc
            };
            let lr = lr_at(cfg.lr, cfg.schedule, warmup, total, ck.step);
            ck.step += 1;
            opt = opt.step(&adam.at(ck.step, lr), acc);
            ck.group += 1;
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let mut row = LogRow {
                step: ck.step,
                epoch: ck.epoch,
                loss: loss_sum,
                lr,
                grad_norm,
                tokens: tokens as u64,
                samples: group.iter().map(Vec::len).sum::<usize>() as u64,
                tokens_per_s: tokens as f64 / secs,
                forward_s,
                backward_s,
                update_s: (secs - forward_s - backward_s).max(0.0),
                valid_loss: None,
                valid_mrr: None,
            };
            let validate = !valid.is_empty() && (ck.step % cfg.eval_every.max(1) == 0 || ck.step == total);
            if validate {
                sync(&mut ck, &opt);
                let v = validation_loss(model, &ck.state, valid, bs, pad_id);
                row.valid_loss = Some(v);
                // The checkpoint keeps one criterion, lower is better: the loss, or minus the MRR.
                let criterion = match opts.select_by_mrr.as_mut() {
                    Some(rank) => {
                        let mrr = rank(&*model).map_err(TrainError::Validation)?;
                        row.valid_mrr = Some(mrr);
                        -mrr
                    }
                    None => v,
                };
                if ck.best_valid.is_none_or(|b| criterion < b) {
                    ck.best_valid = Some(criterion);
                    ck.best = ck.state.clone();
                    ck.best_step = ck.step;
                    ck.since_best = 0;
                } else {
                    ck.since_best += 1;
                }
            }
            (opts.progress)(&Progress { step: ck.step, total_steps: total, row: &row });
            ck.log.push(row);
            steps_this_call += 1;
            if validate && cfg.early_stopping_patience.is_some_and(|p| ck.since_best >= p) {
                (opts.log)(&format!("early stop at step {}: no validation improvement in {} validations", ck.step, ck.since_best));
                stopped_early = true;
                break 'epochs;
            }
            let interrupted = opts.interrupt_after.is_some_and(|n| steps_this_call >= n);
            if let Some(dir) = &opts.checkpoint_dir
                && (ck.step % cfg.checkpoint_every.max(1) == 0 || interrupted) {
                sync(&mut ck, &opt);
                checkpoint::save(dir, &ck).map_err(TrainError::Checkpoint)?;
            }
            if interrupted && ck.step < total {
                sync(&mut ck, &opt);
                return Ok(outcome(ck, total, false, false, resumed_from));
            }
        }
        ck.epoch += 1;
        ck.group = 0;
    }
    sync(&mut ck, &opt);
    if ck.state == initial {
        return Err(TrainError::Unchanged { steps: ck.step, lr: cfg.lr });
    }
    Ok(outcome(ck, total, stopped_early, true, resumed_from))
}

fn outcome(ck: Checkpoint, total: u64, stopped_early: bool, finished: bool, resumed_from: Option<u64>) -> TrainOutcome {
    let (adapter, best_step) = if ck.best_valid.is_some() { (ck.best, ck.best_step) } else { (ck.state, ck.step) };
    let best_row = ck.log.iter().find(|r| r.step == best_step && r.valid_loss.is_some());
    let (best_valid_loss, best_valid_mrr) = (best_row.and_then(|r| r.valid_loss), best_row.and_then(|r| r.valid_mrr));
    TrainOutcome { adapter, best_step, best_valid_loss, best_valid_mrr, steps: ck.step, total_steps: total, log: ck.log, stopped_early, finished, resumed_from }
}

impl Checkpoint {
    /// The adapter and moments as the optimizer holds them on the device.
    fn sync(&mut self, opt: &DeviceAdamW) {
        let (params, m, v) = opt.download();
        self.state.fill_from_flat(&params);
        unflatten_into(&m, self.moments.iter_mut().map(|x| &mut x.m));
        unflatten_into(&v, self.moments.iter_mut().map(|x| &mut x.v));
    }

    pub fn fresh(state: LoraState) -> Self {
        let moments = state.modules.iter().map(|m| Moments::zeros(m.a.len() + m.b.len())).collect();
        Checkpoint { best: state.clone(), state, moments, step: 0, epoch: 0, group: 0, best_valid: None, best_step: 0, since_best: 0, log: Vec::new() }
    }
}
