//! The typed parameters of the `evaluate` stage, built by the plan.

use serde::Serialize;

use crate::model::load::BackboneRef;
use crate::prompt::PromptFormat;
use crate::recipe::types::{Metric, Protocol, Scoring};

/// `evaluate:<arm>:<setting>`: the backbone (with the `merge` input folded in, if any) ranks the
/// candidate lists of its `eval-set` input.
#[derive(Debug, Clone, Serialize)]
pub struct EvalParams {
    pub backbone: BackboneRef,
    pub format: PromptFormat,
    #[serde(flatten)]
    pub settings: EvalSettings,
}

/// How users are evaluated and what is measured (the protocol and its settings, all resolved).
#[derive(Debug, Clone, Serialize)]
pub struct EvalSettings {
    pub protocol: Protocol,
    pub scoring: Scoring,
    pub ks: Vec<u32>,
    pub metrics: Vec<Metric>,
    pub max_new_tokens: usize,
    pub fuzzy_match: bool,
    pub seed: u64,
    /// The evaluation template's item separator.
    pub separator: String,
}
