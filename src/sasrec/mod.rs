//! SASRec (self-attentive sequential recommendation) as a conventional baseline, written in burn
//! and run on the experiment's backend and device.
//!
//! Stage `sasrec:<domain>` trains one network per domain split ([`train`]) and writes
//! `model.safetensors` and `sasrec.json` (shape, settings, validation log, throughput). It keeps
//! a checkpoint after every epoch in its scratch space ([`checkpoint`]): an interrupted stage
//! resumes from the last one and ends with the same network. The
//! `baselines:<setting>` stages load it and rank their test candidate lists with it
//! ([`Trained::scores`]): the history is every item before the test one (its last `max_len`).

pub mod checkpoint;
pub mod model;
pub mod params;
pub mod train;

use std::path::Path;

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;

use crate::data::domain::DomainSplit;
use crate::exec::context::{StageContext, StageError};
use crate::plan::Role;
use crate::table;
use model::{SasRec, Shape};
pub use params::SasrecParams;

#[derive(Debug, thiserror::Error)]
pub enum SasrecError {
    #[error("SASRec weights `{path}`: {message}")]
    Weights { path: String, message: String },
    #[error("SASRec record `{path}`: {message}")]
    Record { path: String, message: String },
    #[error("domain `{0}` has no user with two training items: SASRec has nothing to learn from")]
    NoTrainingUsers(String),
    #[error("SASRec checkpoint: {0}")]
    Checkpoint(String),
}

pub fn stage(ctx: &StageContext<'_>, p: &SasrecParams) -> Result<(), StageError> {
    let (split, _) = DomainSplit::read(ctx.input(Role::Split)?).map_err(|e| StageError::domain(e, true))?;
    if !split.sequences.iter().any(|s| s.len() >= 4) {
        return Err(StageError::domain(SasrecError::NoTrainingUsers(split.settings.label.clone()), true));
    }
    let checkpoints = train::Checkpoints { dir: &ctx.scratch.join("checkpoint"), stop_after: None };
    let (model, log) = match train::train(&split, &p.sasrec, p.seed, &ctx.runtime.device, ctx.log, Some(checkpoints)).map_err(|e| StageError::domain(e, false))? {
        train::Outcome::Done(model, log) => (model, log),
        train::Outcome::Stopped { .. } => unreachable!("no epoch limit was set"),
    };
    save_weights(&model, &ctx.out.join("model.safetensors")).map_err(|e| StageError::domain(e, false))?;
    table::write_json(&ctx.out.join("sasrec.json"), &log).map_err(|e| StageError::domain(e, false))?;
    Ok(())
}

/// Write `model`'s weights as safetensors, the same bytes for the same weights: without burn's
/// default header metadata, which it writes from a hash map in an order that changes from one
/// process to the next.
pub fn save_weights(model: &SasRec, path: &Path) -> Result<(), SasrecError> {
    model.save_into(&mut SafetensorsStore::from_file(path).clear_metadata()).map_err(|e| SasrecError::Weights { path: path.display().to_string(), message: e.to_string() })
}

/// A network of `shape` with the weights [`save_weights`] wrote to `path`.
pub fn load_weights(path: &Path, shape: &Shape, device: &Device) -> Result<SasRec, SasrecError> {
    let werr = |message: String| SasrecError::Weights { path: path.display().to_string(), message };
    let mut model = SasRec::init(shape, 0, device);
    let applied = model.load_from(&mut SafetensorsStore::from_file(path)).map_err(|e| werr(e.to_string()))?;
    if !applied.missing.is_empty() || !applied.errors.is_empty() {
        return Err(werr(format!("missing {:?}, errors {:?}", applied.missing, applied.errors)));
    }
    Ok(model)
}

/// A trained network, loaded from a `sasrec:<domain>` artifact.
pub struct Trained {
    pub model: SasRec,
    pub shape: Shape,
}

impl Trained {
    pub fn load(dir: &Path, device: &Device) -> Result<Trained, SasrecError> {
        let record = dir.join("sasrec.json");
        let err = |message: String| SasrecError::Record { path: record.display().to_string(), message };
        let text = std::fs::read_to_string(&record).map_err(|e| err(e.to_string()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let shape: Shape = serde_json::from_value(v["shape"].clone()).map_err(|e| err(e.to_string()))?;
        let model = load_weights(&dir.join("model.safetensors"), &shape, device)?;
        Ok(Trained { model, shape })
    }

    /// Scores of each (history, candidates) pair (item indices of the split), in order.
    pub fn scores(&self, lists: &[(&[u32], Vec<u32>)]) -> Vec<Vec<f64>> {
        let len = self.shape.max_len;
        let encoded: Vec<(Vec<i64>, Vec<i64>)> = lists.iter().map(|(h, c)| (train::left_padded(h, len), c.iter().map(|&i| i as i64 + 1).collect())).collect();
        train::score_lists(&self.model, &encoded, len, 256)
    }
}
