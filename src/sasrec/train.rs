//! Training SASRec on a domain's training sequences, early-stopped on the validation items.
//!
//! A user's training part is every item before the validation one (never a validation or test
//! item). Each epoch visits every user with at least two training items once, in a seeded order,
//! in batches of `batch_size`: the input is the training part without its last item, the targets
//! the same part shifted by one, both keeping the last `max_len` positions, left-padded; each
//! target gets one negative drawn uniformly from the items outside the user's training part.
//! Every `eval_every` epochs the validation item of a seeded sample of users is ranked among the
//! split's candidate list for it (the same sampler as the test lists); the weights of the best
//! validation NDCG@10 are kept, and training stops after `patience` validations without a better
//! one.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Device;
use serde::Serialize;

use super::checkpoint::{self, Progress, State};
pub use super::checkpoint::Validation;
use super::model::{SasRec, Shape};
use super::SasrecError;
use crate::data::candidates::CandidateSampler;
use crate::data::domain::DomainSplit;
use crate::eval::metrics::{hr_at, ndcg_at, rank_of};
use crate::recipe::sasrec::ResolvedSasrec;
use crate::rng::Rng;

/// The last `len` items of `items`, left-padded with 0, as 1-based item numbers.
pub fn left_padded(items: &[u32], len: usize) -> Vec<i64> {
    let tail = &items[items.len().saturating_sub(len)..];
    let mut out = vec![0i64; len - tail.len()];
    out.extend(tail.iter().map(|&i| i as i64 + 1));
    out
}

/// What training did: `sasrec.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainLog {
    pub shape: Shape,
    pub config: ResolvedSasrec,
    pub seed: u64,
    pub train_users: usize,
    pub valid_users: usize,
    pub epochs_run: u32,
    pub best_epoch: u32,
    pub best_ndcg_at_10: f64,
    pub stopped_early: bool,
    pub validations: Vec<Validation>,
    /// Wall time of the whole stage's training (validations included).
    pub train_seconds: f64,
    /// Training sequences (users) per second of the training steps alone (batching, forward,
    /// backward, update; no validation).
    pub sequences_per_s: f64,
    /// The epochs a checkpoint had done when an interrupted training was resumed.
    pub resumed_after_epoch: Option<u32>,
}

/// Where training keeps its checkpoints (one after every epoch) and resumes from.
pub struct Checkpoints<'a> {
    pub dir: &'a Path,
    /// Stop after this many epochs in this call, as if interrupted. For tests.
    pub stop_after: Option<u32>,
}

/// How a training call ended.
#[allow(clippy::large_enum_variant, reason = "one value per training call, moved once")]
pub enum Outcome {
    /// The best validation's network (without autodiff) and the log.
    Done(SasRec, TrainLog),
    /// Stopped by [`Checkpoints::stop_after`] after this many epochs in all.
    Stopped { epochs: u32 },
}

/// A user's training part: every item before the validation one.
fn train_part(seq: &[u32]) -> &[u32] {
    &seq[..seq.len().saturating_sub(2)]
}

/// The validation lists of a seeded sample of users: (history, candidates) each, and the target's
/// slot in each.
fn validation_lists(split: &DomainSplit, cfg: &ResolvedSasrec, seed: u64) -> (Vec<(Vec<i64>, Vec<i64>)>, Vec<usize>) {
    let sampler = CandidateSampler::new(split, seed);
    let mut users: Vec<usize> = (0..split.users.len()).collect();
    let mut rng = Rng::derive(seed, &["sasrec", "valid-users"]);
    if users.len() > cfg.valid_users as usize {
        users = rng.sample_indices(users.len(), cfg.valid_users as usize);
        users.sort_unstable();
    }
    users
        .into_iter()
        .filter_map(|u| {
            let p = split.positions(u);
            let list = sampler.candidates(u, p.valid)?;
            let target = split.sequences[u][p.valid];
            let slot = list.iter().position(|&i| i == target)?;
            Some(((left_padded(&split.sequences[u][..p.valid], cfg.max_len as usize), list.iter().map(|&i| i as i64 + 1).collect()), slot))
        })
        .unzip()
}

/// Scores of `lists` (history, candidates) in batches; `model` without autodiff.
pub fn score_lists(model: &SasRec, lists: &[(Vec<i64>, Vec<i64>)], len: usize, batch: usize) -> Vec<Vec<f64>> {
    let mut out = Vec::with_capacity(lists.len());
    for chunk in lists.chunks(batch.max(1)) {
        // Candidate lists of one batch share a length (pad by repeating the first candidate).
        let per = chunk.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        let seqs: Vec<i64> = chunk.iter().flat_map(|(h, _)| h.iter().copied()).collect();
        let cands: Vec<i64> = chunk.iter().flat_map(|(_, c)| c.iter().copied().chain(std::iter::repeat_n(c[0], per - c.len()))).collect();
        let scores = crate::backend::host_f32(model.score_last(&seqs, chunk.len(), len, &cands, per));
        for (k, (_, c)) in chunk.iter().enumerate() {
            out.push(scores[k * per..k * per + c.len()].iter().map(|&s| s as f64).collect());
        }
    }
    out
}

/// Mean (NDCG@10, HR@10) of the validation lists, the target at `targets[i]` of list `i`.
fn validate(model: &SasRec, lists: &[(Vec<i64>, Vec<i64>)], targets: &[usize], len: usize, batch: usize) -> (f64, f64) {
    let scores = score_lists(model, lists, len, batch);
    let n = lists.len().max(1) as f64;
    let ranks: Vec<usize> = scores.iter().zip(targets).map(|(s, &t)| rank_of(s, t)).collect();
    (ranks.iter().map(|&r| ndcg_at(r, 10)).sum::<f64>() / n, ranks.iter().map(|&r| hr_at(r, 10)).sum::<f64>() / n)
}

/// Train on `split`, resuming from and keeping checkpoints in `checkpoints` when given.
pub fn train(split: &DomainSplit, cfg: &ResolvedSasrec, seed: u64, device: &Device, log: &dyn Fn(&str), checkpoints: Option<Checkpoints<'_>>) -> Result<Outcome, SasrecError> {
    let shape = Shape {
        items: split.items.len(),
        hidden: cfg.hidden as usize,
        blocks: cfg.blocks as usize,
        heads: cfg.heads as usize,
        max_len: cfg.max_len as usize,
        dropout: cfg.dropout,
    };
    let len = shape.max_len;
    let fresh = State {
        model: SasRec::init(&shape, seed, &device.clone().autodiff()),
        optim: AdamConfig::new().with_beta_2(0.98).with_epsilon(1e-8).init(),
        best: None,
        progress: Progress::fresh(shape, seed),
    };
    let State { mut model, mut optim, mut best, mut progress } = match &checkpoints {
        Some(c) => checkpoint::load(c.dir, fresh, device).map_err(SasrecError::Checkpoint)?,
        None => fresh,
    };
    let resumed_after_epoch = (progress.epoch > 0).then_some(progress.epoch);
    if let Some(epoch) = resumed_after_epoch {
        log(&format!("resuming SASRec from the checkpoint after epoch {epoch} of {}", cfg.epochs));
    }
    // Users with at least one (input, target) pair, and their training items (sorted, to draw
    // negatives outside them).
    let users: Vec<usize> = (0..split.sequences.len()).filter(|&u| train_part(&split.sequences[u]).len() >= 2).collect();
    let seen: Vec<Vec<u32>> = split.sequences.iter().map(|s| {
        let mut t = train_part(s).to_vec();
        t.sort_unstable();
        t.dedup();
        t
    }).collect();
    let (valid, valid_targets) = validation_lists(split, cfg, seed);
    let n_items = split.items.len() as u64;
    let bs = cfg.batch_size as usize;

    let (started, prior_secs) = (Instant::now(), progress.train_secs);
    let first = if progress.stopped_early { cfg.epochs + 1 } else { progress.epoch + 1 };
    let mut epochs_this_call = 0u32;
    for epoch in first..=cfg.epochs {
        let epoch_started = Instant::now();
        let mut order = users.clone();
        Rng::derive(seed, &["sasrec", "order", &epoch.to_string()]).shuffle(&mut order);
        let mut neg_rng = Rng::derive(seed, &["sasrec", "negatives", &epoch.to_string()]);
        let (mut loss_sum, mut batches) = (0.0f64, 0usize);
        for (b, chunk) in order.chunks(bs).enumerate() {
            let (mut seqs, mut pos, mut neg) = (Vec::new(), Vec::new(), Vec::new());
            for &u in chunk {
                let t = train_part(&split.sequences[u]);
                seqs.extend(left_padded(&t[..t.len() - 1], len));
                let p = left_padded(&t[1..], len);
                for &x in &p {
                    neg.push(if x == 0 {
                        0
                    } else {
                        loop {
                            let c = neg_rng.below(n_items) as u32;
                            if seen[u].binary_search(&c).is_err() {
                                break c as i64 + 1;
                            }
                        }
                    });
                }
                pos.extend(p);
            }
            crate::dropout::seed(Rng::derive(seed, &["sasrec", "dropout", &epoch.to_string(), &b.to_string()]).next_u64());
            let loss = model.loss(&seqs, &pos, &neg, chunk.len(), len);
            loss_sum += loss.clone().inner().into_scalar::<f32>() as f64;
            batches += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.lr, model, grads);
        }
        progress.epoch = epoch;
        progress.step_secs += epoch_started.elapsed().as_secs_f64();
        let loss = loss_sum / batches.max(1) as f64;
        if epoch % cfg.eval_every == 0 || epoch == cfg.epochs {
            let plain = model.valid();
            let (ndcg, hr) = validate(&plain, &valid, &valid_targets, len, 256);
            log(&format!("sasrec epoch {epoch}: loss {loss:.4}, validation NDCG@10 {ndcg:.4}, HR@10 {hr:.4} ({:.0} s)", prior_secs + started.elapsed().as_secs_f64()));
            progress.validations.push(Validation { epoch, loss, ndcg_at_10: ndcg, hr_at_10: hr });
            if progress.best.is_none_or(|(b, _)| ndcg > b) {
                progress.best = Some((ndcg, epoch));
                best = Some(plain);
                progress.since_best = 0;
            } else {
                progress.since_best += 1;
                progress.stopped_early = progress.since_best >= cfg.patience;
            }
        }
        epochs_this_call += 1;
        let stop = checkpoints.as_ref().is_some_and(|c| c.stop_after == Some(epochs_this_call)) && epoch < cfg.epochs && !progress.stopped_early;
        progress.train_secs = prior_secs + started.elapsed().as_secs_f64();
        if let Some(c) = &checkpoints {
            checkpoint::save(c.dir, &model, &optim, best.as_ref(), &progress).map_err(SasrecError::Checkpoint)?;
        }
        if stop {
            return Ok(Outcome::Stopped { epochs: epoch });
        }
        if progress.stopped_early {
            break;
        }
    }
    let (best_ndcg, best_epoch) = progress.best.expect("the last epoch always validates");
    let log = TrainLog {
        shape,
        config: cfg.clone(),
        seed,
        train_users: users.len(),
        valid_users: valid.len(),
        epochs_run: progress.epoch,
        best_epoch,
        best_ndcg_at_10: best_ndcg,
        stopped_early: progress.stopped_early,
        validations: progress.validations,
        train_seconds: prior_secs + started.elapsed().as_secs_f64(),
        sequences_per_s: (users.len() as f64 * progress.epoch as f64) / progress.step_secs.max(1e-9),
        resumed_after_epoch,
    };
    Ok(Outcome::Done(best.expect("kept with the best validation"), log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_padding_keeps_the_most_recent_items() {
        assert_eq!(left_padded(&[4, 5, 6], 5), vec![0, 0, 5, 6, 7]);
        assert_eq!(left_padded(&[1, 2, 3, 4], 2), vec![4, 5]);
    }
}
