//! The execution plan: a DAG of stages compiled from a resolved recipe.
//!
//! Each stage has a content key: the hash of its kind, its resolved parameters, the keys of its
//! inputs and a code-version salt. Two stages with the same key are the same work, so a base
//! spirit shared by several arms, sweep points or recipes is trained once and found in the cache.

mod compile;
mod render;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use compile::{compile, content_hash, fetch_key, stage_key, PlanError};
pub use render::CacheStatus;

use crate::assets::FetchParams;
use crate::data::params::{BaselinesParams, DataParams, EvalSetParams, PromptsParams, SplitParams};
use crate::eval::params::EvalParams;
use crate::merge::params::MergeParams;
pub use crate::results::params::{ResultRow, RowSource};
use crate::results::params::ReportParams;
use crate::sasrec::params::SasrecParams;
use crate::train::params::{ImportParams, TrainParams};

/// Bumped whenever a stage's output format or semantics change, invalidating cached artifacts.
/// v2: typed stage parameters (every value a stage reads is in its key).
pub const CODE_SALT: &str = concat!("reccocktail/", env!("CARGO_PKG_VERSION"), "/stages-v2");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
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
    /// Train the SASRec baseline on one domain's split.
    Sasrec,
    /// Non-LLM reference rankings (random, popularity, markov, itemknn, sasrec) on one setting.
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
            StageKind::Sasrec => "sasrec",
            StageKind::Baselines => "baselines",
            StageKind::Report => "report",
        }
    }
}

/// The typed parameters of a stage: one struct per kind, defined beside the stage body that reads
/// it, built by [`compile`] from the resolved recipe (the only place that reads the recipe). The
/// key hashes its serialization and the stage reads nothing else, so a key covers everything its
/// stage reads by construction.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "params", rename_all = "kebab-case")]
pub enum StageParams {
    Fetch(FetchParams),
    Data(DataParams),
    Split(SplitParams),
    Prompts(PromptsParams),
    Train(TrainParams),
    Import(ImportParams),
    EvalSet(EvalSetParams),
    Merge(MergeParams),
    Evaluate(EvalParams),
    Sasrec(SasrecParams),
    Baselines(BaselinesParams),
    Report(ReportParams),
}

impl StageParams {
    pub fn kind(&self) -> StageKind {
        match self {
            StageParams::Fetch(_) => StageKind::Fetch,
            StageParams::Data(_) => StageKind::Data,
            StageParams::Split(_) => StageKind::Split,
            StageParams::Prompts(_) => StageKind::Prompts,
            StageParams::Train(_) => StageKind::Train,
            StageParams::Import(_) => StageKind::Import,
            StageParams::EvalSet(_) => StageKind::EvalSet,
            StageParams::Merge(_) => StageKind::Merge,
            StageParams::Evaluate(_) => StageKind::Evaluate,
            StageParams::Sasrec(_) => StageKind::Sasrec,
            StageParams::Baselines(_) => StageKind::Baselines,
            StageParams::Report(_) => StageKind::Report,
        }
    }

    /// The parameters alone, as JSON (what the key hashes and the manifest records).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).map(|mut v| v["params"].take()).expect("plain data")
    }
}

/// What an input is to the stage that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The fetched asset of a dataset.
    Asset,
    /// The fetched backbone model (absent when the backbone is a local path).
    Backbone,
    /// A cleaned dataset.
    Data,
    /// A domain's split (several, in the order of the parameters' domains, for a prompts stage).
    Split,
    /// An adapter's selected samples (for an evaluation set: its ingredient's, to tell warm from cold).
    Prompts,
    /// Every trained adapter's samples, for an evaluation set's leak check.
    Training,
    /// A trained or imported adapter (several, in the order of the merge's adapters).
    Adapter,
    /// An evaluation setting's users, candidates and prompts.
    EvalSet,
    /// A merged adapter.
    Merge,
    /// An evaluation or a baselines stage, for the report.
    Evaluation,
    /// A merge with learned coefficients, for the report's coefficient table.
    LearnedMerge,
    /// A trained conventional recommender (SASRec), for a baselines stage.
    Recommender,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Asset => "asset",
            Role::Backbone => "backbone",
            Role::Data => "data",
            Role::Split => "split",
            Role::Prompts => "prompts",
            Role::Training => "training samples",
            Role::Adapter => "adapter",
            Role::EvalSet => "eval-set",
            Role::Merge => "merge",
            Role::Evaluation => "evaluation",
            Role::LearnedMerge => "learned merge",
            Role::Recommender => "recommender",
        }
    }
}

/// One input of a stage: the stage whose artifact it reads, and as what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Input {
    pub role: Role,
    pub stage: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// Readable, unique within the plan: `train:base_spirit`, `merge:fixed_05`, `evaluate:ta:cold`.
    /// For messages and logs only: a stage body never derives anything it writes from it.
    pub id: String,
    pub kind: StageKind,
    /// Content key (16 hex digits); names the artifact directory in the cache.
    pub key: String,
    /// The stages whose artifacts this one reads, each with its role.
    pub inputs: Vec<Input>,
    /// Other names this same work goes by (identical arms, sweep points).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Everything the stage's output depends on besides its inputs.
    #[serde(serialize_with = "params_only")]
    pub params: StageParams,
}

fn params_only<S: serde::Serializer>(p: &StageParams, s: S) -> Result<S::Ok, S::Error> {
    p.to_json().serialize(s)
}

impl Stage {
    /// The ids of the input stages.
    pub fn input_ids(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| i.stage.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub experiment: String,
    pub recipe_hash: String,
    /// In dependency order: every stage comes after its inputs.
    pub stages: Vec<Stage>,
    pub rows: Vec<ResultRow>,
    /// The backbone's precision as compiled into the stage keys (`auto` decided on this machine,
    /// `attention` resolved for the dtype); `dtype` and `attention` in the plan's JSON.
    #[serde(flatten)]
    pub precision: crate::model::precision::Precision,
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
                todo.extend(self.stage(&s).map(|st| st.input_ids().map(str::to_string).collect::<Vec<_>>()).unwrap_or_default());
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
    let read: BTreeSet<&str> = stages.iter().flat_map(|s| s.input_ids()).collect();
    let mut needed = BTreeSet::new();
    for stage in stages.iter().rev() {
        if !read.contains(stage.id.as_str()) {
            needed.insert(stage.id.clone());
        }
        if needed.contains(&stage.id) && !is_cached(stage) {
            needed.extend(stage.input_ids().map(str::to_string));
        }
    }
    needed
}
