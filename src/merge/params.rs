//! The typed parameters of the merge stage, built by the plan.

use serde::Serialize;

use crate::data::params::RenderParams;
use crate::model::load::BackboneRef;
use crate::prompt::PromptFormat;
use crate::recipe::merge::MergeConfig;
use crate::recipe::types::Scoring;

/// `merge:<arm>` (or `merge:<arm>:<setting>` for an entropy arm adapting per setting).
#[derive(Debug, Clone, Serialize)]
pub struct MergeParams {
    /// The adapters merged, in the order of the stage's `adapter` inputs.
    pub adapters: Vec<String>,
    pub merge: MergeConfig,
    /// Truncation rank of the entry-wise methods' refactorization.
    pub rank: Option<u32>,
    /// What an `entropy` merge reads besides its adapters; `None` for the other methods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entropy: Option<EntropyParams>,
}

/// Everything an entropy merge reads to learn its coefficients.
#[derive(Debug, Clone, Serialize)]
pub struct EntropyParams {
    pub backbone: BackboneRef,
    pub format: PromptFormat,
    /// How prompts of the domain's split are rendered (adaptation with `source = "domain"`, and
    /// the labelled validation prompts that choose the learning rate): as the evaluation renders.
    pub render: RenderParams,
    /// The evaluation's scoring rule (`mean` scores candidates by their mean log-probability).
    pub scoring: Scoring,
    /// Tokens generated for a `token_entropy` answer.
    pub answer_tokens: u32,
    /// The evaluation template's item separator (splits a generated answer into titles).
    pub separator: String,
    /// Names the seeded draws of adaptation and validation users (the stage's first name).
    pub draw: String,
}
