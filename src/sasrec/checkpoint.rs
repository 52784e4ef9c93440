//! SASRec training checkpoints, written after every epoch into the stage's scratch space and read
//! back when an interrupted stage runs again: the network, Adam's state, the best validation's
//! network and the progress (epochs done, validations, early-stopping counters). An epoch's user
//! order, negatives and dropout masks derive from (seed, epoch), so the epoch counter is the whole
//! random state: a resumed training ends with the bits of an uninterrupted one.
//!
//! The networks are burnpack files (`BurnpackStore`), which keep each parameter's id: Adam's
//! state is keyed by those ids, and a network loaded from them takes them back.

use std::path::Path;

use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::model::{SasRec, Shape};
use crate::exec::atomic_dir;

const PROGRESS: &str = "progress.json";
const MODEL: &str = "model.bpk";
const BEST: &str = "best.bpk";
const OPTIMIZER: &str = "adam.bpk";

/// One validation of the training log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validation {
    pub epoch: u32,
    /// Mean training loss of the epoch.
    pub loss: f64,
    pub ndcg_at_10: f64,
    pub hr_at_10: f64,
}

/// Where training stands after `epoch` epochs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    /// The network's shape, to refuse a checkpoint of other settings.
    pub shape: Shape,
    pub seed: u64,
    /// Epochs done.
    pub epoch: u32,
    pub validations: Vec<Validation>,
    /// NDCG@10 and epoch of the best validation so far (its network is `best.bpk`).
    pub best: Option<(f64, u32)>,
    /// Validations since the best one.
    pub since_best: u32,
    pub stopped_early: bool,
    /// Seconds spent in training steps, and in training as a whole, before this point.
    pub step_secs: f64,
    pub train_secs: f64,
}

impl Progress {
    pub fn fresh(shape: Shape, seed: u64) -> Progress {
        Progress { shape, seed, epoch: 0, validations: Vec::new(), best: None, since_best: 0, stopped_early: false, step_secs: 0.0, train_secs: 0.0 }
    }
}

/// A training's state: the network on the autodiff device, Adam, the best network (plain device).
pub struct State {
    pub model: SasRec,
    pub optim: ModuleOptimizer,
    pub best: Option<SasRec>,
    pub progress: Progress,
}

/// Write a training's state to `dir`, replacing the previous checkpoint as a whole: the network
/// (autodiff device), Adam, the best network so far, the progress.
pub fn save(dir: &Path, model: &SasRec, optim: &ModuleOptimizer, best: Option<&SasRec>, progress: &Progress) -> Result<(), String> {
    atomic_dir::write(dir, |tmp| {
        let store = |name: &str, model: &SasRec| -> Result<(), String> {
            let path = tmp.join(name);
            model.save_into(&mut BurnpackStore::from_file(&path)).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        store(MODEL, model)?;
        if let Some(best) = best {
            store(BEST, best)?;
        }
        let path = tmp.join(OPTIMIZER);
        optim.save(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let path = tmp.join(PROGRESS);
        std::fs::write(&path, serde_json::to_vec_pretty(progress).expect("plain data")).map_err(|e| format!("cannot write {}: {e}", path.display()))
    })
}

/// The state of the checkpoint in `dir`, or `fresh` (the initial state of this training) when
/// there is none. A checkpoint must be of `fresh`'s shape and seed; `fresh`'s network and
/// optimizer are the ones the checkpoint is loaded into.
pub fn load(dir: &Path, fresh: State, device: &Device) -> Result<State, String> {
    let Some(dir) = atomic_dir::latest(dir, PROGRESS) else {
        return Ok(fresh);
    };
    let path = dir.join(PROGRESS);
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let progress: Progress = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if progress.shape != fresh.progress.shape || progress.seed != fresh.progress.seed {
        return Err(format!("{} was written for another network or seed; remove it to start over", dir.display()));
    }
    let restore = |name: &str, mut model: SasRec| -> Result<SasRec, String> {
        let path = dir.join(name);
        let applied = model.load_from(&mut BurnpackStore::from_file(&path)).map_err(|e| format!("{}: {e}", path.display()))?;
        if !applied.missing.is_empty() || !applied.errors.is_empty() {
            return Err(format!("{}: missing {:?}, errors {:?}", path.display(), applied.missing, applied.errors));
        }
        Ok(model)
    };
    let best = match progress.best {
        Some(_) => Some(restore(BEST, SasRec::init(&progress.shape, progress.seed, device))?),
        None => None,
    };
    let model = restore(MODEL, fresh.model)?;
    let path = dir.join(OPTIMIZER);
    let optim = fresh.optim.load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(State { model, optim, best, progress })
}
