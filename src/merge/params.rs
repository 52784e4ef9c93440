//! The typed parameters of the merge stage, built by the plan.

use serde::Serialize;

use crate::data::params::RenderParams;
use crate::model::load::BackboneRef;
use crate::prompt::PromptFormat;
use crate::recipe::merge::MergeConfig;
use crate::eval::params::EvalSettings;

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
    /// How the evaluate stage evaluates (protocol, scoring rule, separator, ...): the learning rate
    /// is chosen on validation users evaluated exactly so, and `mean` scoring makes the candidate
    /// entropy use mean log-probabilities.
    pub evaluation: EvalSettings,
    /// Tokens generated for a `token_entropy` answer.
    pub answer_tokens: u32,
    /// Names the seeded draws of adaptation and validation users (the stage's first name).
    pub draw: String,
}
