//! The training log: one row per optimizer step, kept in checkpoints and written as a table.

use std::path::Path;

use polars::prelude::Column;
use serde::{Deserialize, Serialize};

use crate::table;

/// One optimizer step of the training log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    pub step: u64,
    pub epoch: u32,
    /// Mean loss per response token over the step's samples.
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: u64,
    pub samples: u64,
    pub tokens_per_s: f64,
    /// Seconds of the step in the forward passes (loss included), the backward passes, and the
    /// rest (attaching the factors, collecting the gradients, their norm on the host, clipping,
    /// AdamW on the training device).
    #[serde(default)]
    pub forward_s: f64,
    #[serde(default)]
    pub backward_s: f64,
    #[serde(default)]
    pub update_s: f64,
    /// Validation loss, when validated after this step.
    pub valid_loss: Option<f64>,
    /// Validation MRR, when validated after this step with `select_by = "mrr"`.
    #[serde(default)]
    pub valid_mrr: Option<f64>,
}

/// The training log as a table: step, epoch, loss, lr, grad_norm, tokens, samples, tokens_per_s,
/// forward_s, backward_s, update_s, valid_loss, valid_mrr.
pub fn write_log(log: &[LogRow], path: &Path) -> Result<(), table::TableError> {
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
        Column::new("valid_mrr".into(), log.iter().map(|r| r.valid_mrr).collect::<Vec<_>>()),
    ])?;
    table::write_parquet(&mut df, path)
}
