//! Training checkpoints: the adapter, AdamW moments, the best adapter so far, the data position
//! (epoch, accumulation group) and the log, written atomically. Data order and dropout are
//! derived from (seed, epoch) and (seed, step), so these counters are the whole random state:
//! a resumed run ends with the same adapter as an uninterrupted one.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use super::lora_state::LoraState;
use crate::exec::atomic_dir;
use super::optim::Moments;
use super::log::LogRow;

#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub state: LoraState,
    pub moments: Vec<Moments>,
    /// Optimizer steps done.
    pub step: u64,
    pub epoch: u32,
    /// Accumulation groups of `epoch` done.
    pub group: u32,
    pub best: LoraState,
    /// The selection criterion of `best`, lower is better: the validation loss, or minus the
    /// validation MRR with MRR selection.
    pub best_valid: Option<f64>,
    pub best_step: u64,
    /// Validations since the best one.
    pub since_best: u32,
    pub log: Vec<LogRow>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    step: u64,
    epoch: u32,
    group: u32,
    best_valid: Option<f64>,
    best_step: u64,
    since_best: u32,
    /// `layer.proj` of every module, to refuse a checkpoint of other settings.
    modules: Vec<String>,
    rank: usize,
    log: Vec<LogRow>,
}

fn module_names(s: &LoraState) -> Vec<String> {
    s.modules.iter().map(|m| format!("{}.{}", m.layer, m.proj.hf_name())).collect()
}

const TENSORS: &str = "state.safetensors";
const META: &str = "meta.json";

/// Write `ck` to `dir` atomically (a complete new directory replaces the old one).
pub fn save(dir: &Path, ck: &Checkpoint) -> Result<(), String> {
    atomic_dir::write(dir, |tmp| {
        let mut named: Vec<(String, &[f32])> = Vec::new();
        for (k, (m, mom)) in ck.state.modules.iter().zip(&ck.moments).enumerate() {
            named.push((format!("state.{k}.a"), &m.a));
            named.push((format!("state.{k}.b"), &m.b));
            named.push((format!("adam.{k}.m"), &mom.m));
            named.push((format!("adam.{k}.v"), &mom.v));
        }
        for (k, m) in ck.best.modules.iter().enumerate() {
            named.push((format!("best.{k}.a"), &m.a));
            named.push((format!("best.{k}.b"), &m.b));
        }
        let bytes: Vec<(String, Vec<u8>, usize)> = named.iter().map(|(n, v)| (n.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect(), v.len())).collect();
        let views: Vec<(String, TensorView<'_>)> = bytes.iter().map(|(n, b, len)| (n.clone(), TensorView::new(safetensors::Dtype::F32, vec![*len], b).expect("consistent sizes"))).collect();
        safetensors::serialize_to_file(views, None::<HashMap<String, String>>, &tmp.join(TENSORS)).map_err(|e| format!("cannot write {}: {e}", tmp.join(TENSORS).display()))?;
        let meta = Meta {
            step: ck.step,
            epoch: ck.epoch,
            group: ck.group,
            best_valid: ck.best_valid,
            best_step: ck.best_step,
            since_best: ck.since_best,
            modules: module_names(&ck.state),
            rank: ck.state.rank,
            log: ck.log.clone(),
        };
        std::fs::write(tmp.join(META), serde_json::to_vec(&meta).expect("plain data")).map_err(|e| format!("cannot write {}: {e}", tmp.join(META).display()))
    })
}

/// Read the checkpoint in `dir` (or the previous one, if a save was cut between its two
/// renames). `like` is a freshly initialized state of the same settings, for shapes.
pub fn load(dir: &Path, like: &LoraState) -> Result<Option<Checkpoint>, String> {
    let Some(dir) = atomic_dir::latest(dir, META) else {
        return Ok(None);
    };
    let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join(META)).map_err(|e| format!("{}: {e}", dir.display()))?).map_err(|e| format!("{}: {e}", dir.join(META).display()))?;
    if meta.modules != module_names(like) || meta.rank != like.rank {
        return Err(format!("{} was written for other LoRA settings; remove it to start over", dir.display()));
    }
    let bytes = std::fs::read(dir.join(TENSORS)).map_err(|e| format!("{}: {e}", dir.join(TENSORS).display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: {e}", dir.join(TENSORS).display()))?;
    let get = |name: &str, len: usize| -> Result<Vec<f32>, String> {
        let t = st.tensor(name).map_err(|e| format!("checkpoint tensor `{name}`: {e}"))?;
        let v: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if v.len() != len {
            return Err(format!("checkpoint tensor `{name}` has {} values, expected {len}", v.len()));
        }
        Ok(v)
    };
    let (mut state, mut best) = (like.clone(), like.clone());
    let mut moments = Vec::new();
    for (k, m) in state.modules.iter_mut().enumerate() {
        m.a = get(&format!("state.{k}.a"), m.a.len())?;
        m.b = get(&format!("state.{k}.b"), m.b.len())?;
        let n = m.a.len() + m.b.len();
        moments.push(Moments { m: get(&format!("adam.{k}.m"), n)?, v: get(&format!("adam.{k}.v"), n)? });
    }
    for (k, m) in best.modules.iter_mut().enumerate() {
        m.a = get(&format!("best.{k}.a"), m.a.len())?;
        m.b = get(&format!("best.{k}.b"), m.b.len())?;
    }
    Ok(Some(Checkpoint {
        state,
        moments,
        step: meta.step,
        epoch: meta.epoch,
        group: meta.group,
        best,
        best_valid: meta.best_valid,
        best_step: meta.best_step,
        since_best: meta.since_best,
        log: meta.log,
    }))
}
