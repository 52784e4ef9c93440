//! The typed parameters of the `evaluate` stage, built by the plan.

use serde::Serialize;

use crate::model::load::BackboneRef;
use crate::prompt::PromptFormat;
use super::RankingProtocol;
use super::generate::Generate;
use super::likelihood::Likelihood;
use crate::recipe::resolve::ResolvedProtocol;
use crate::recipe::types::Metric;

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
    pub protocol: ResolvedProtocol,
    pub ks: Vec<u32>,
    pub metrics: Vec<Metric>,
    pub seed: u64,
    /// The evaluation template's item separator.
    pub separator: String,
}

impl EvalSettings {
    /// The protocol these settings name, ready to rank.
    pub fn protocol(&self) -> Box<dyn RankingProtocol> {
        match &self.protocol {
            ResolvedProtocol::Likelihood { scoring } => Box::new(Likelihood { scoring: *scoring }),
            ResolvedProtocol::Generate { max_new_tokens, fuzzy_match } => {
                Box::new(Generate { max_new_tokens: *max_new_tokens as usize, fuzzy_match: *fuzzy_match, separator: self.separator.clone(), seed: self.seed })
            }
        }
    }
}
