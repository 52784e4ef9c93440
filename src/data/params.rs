//! The typed parameters of the data stages (`data`, `split`, `prompts`, `eval-set`, `baselines`),
//! built by the plan from the resolved recipe and hashed into each stage's key. The stage bodies
//! (`stages.rs`, `baselines.rs`) read these and their inputs, nothing else.

use serde::Serialize;

use crate::assets::SourceRef;
use crate::prompt::TemplateRef;
use crate::recipe::resolve::{AdapterRole, DatasetSpec, ResolvedData, ResolvedDomain, ResolvedSetting};
use crate::recipe::types::{Baseline, Metric};

/// `data:<dataset>`: load one dataset and clean it.
#[derive(Debug, Clone, Serialize)]
pub struct DataParams {
    /// Where the files are: a local path (with its content hash) or the stage's `asset` input.
    pub source: SourceRef,
    #[serde(flatten)]
    pub spec: DatasetSpec,
}

/// `split:<domain>`: slice a domain out of its dataset and split it (leave-one-out).
#[derive(Debug, Clone, Serialize)]
pub struct SplitParams {
    /// The domain's name (it labels the split's tables).
    pub domain: String,
    pub spec: ResolvedDomain,
    pub data: ResolvedData,
}

/// How samples become prompts: one home for what the prompts, eval-set and (domain-level)
/// entropy stages render with, so that adaptation prompts are rendered like evaluated ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderParams {
    pub template: TemplateRef,
    /// The K the prompt asks for (the largest evaluation cut-off).
    pub k: u32,
    /// Seeds the candidate lists and every draw of users and samples of the stage.
    pub seed: u64,
    /// `data.history_token_budget`, counted with the backbone's tokenizer.
    pub history_budget: Option<HistoryBudgetParams>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryBudgetParams {
    pub tokens: u32,
    /// The backbone whose tokenizer counts (its `backbone` input when it is an asset).
    pub tokenizer: SourceRef,
}

/// `prompts:<adapter>`: select and render an adapter's training and validation samples.
#[derive(Debug, Clone, Serialize)]
pub struct PromptsParams {
    /// The adapter's name: it seeds the choice of users and samples.
    pub adapter: String,
    pub role: AdapterRole,
    /// The adapter's domains, in the order of the stage's `split` inputs.
    pub domains: Vec<String>,
    pub render: RenderParams,
    pub samples_per_user: Option<u32>,
    pub max_samples: Option<u32>,
    pub max_users: Option<u32>,
    pub mixture: Option<Vec<f64>>,
    pub max_valid_samples: u32,
}

/// `eval-set:<setting>`: one evaluation setting's users, candidate lists and prompts.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSetParams {
    pub setting: ResolvedSetting,
    pub render: RenderParams,
    /// Unlabeled adaptation prompts the adaptive entropy arms take from this setting.
    pub adaptation: AdaptationRequest,
    pub leakage: LeakageParams,
}

/// The leak check of an evaluation set: its test targets against the training and validation
/// samples of every trained adapter (the `training` inputs, in the order of `adapters`).
#[derive(Debug, Clone, Serialize)]
pub struct LeakageParams {
    pub policy: crate::recipe::types::Leakage,
    pub adapters: Vec<String>,
    /// The dataset of every domain (user and item ids compare within one dataset only).
    pub datasets: std::collections::BTreeMap<String, String>,
}

/// The largest adaptation sizes asked for: of users disjoint from the test users, and of the test
/// users themselves. `None`: no arm asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct AdaptationRequest {
    pub disjoint: Option<usize>,
    pub from_test: Option<usize>,
}

/// `baselines:<setting>`: non-LLM reference rankings on the setting's candidate lists.
#[derive(Debug, Clone, Serialize)]
pub struct BaselinesParams {
    pub baselines: Vec<Baseline>,
    pub ks: Vec<u32>,
    pub metrics: Vec<Metric>,
}
