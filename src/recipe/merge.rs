//! Merge-method parameters as written in a recipe (`merge = { method = "...", ... }`).
//!
//! Each variant declares its parameters; the JSON schema (and so editor completion and the
//! validator) comes from these declarations. [`merge_config`] applies the defaults: a
//! [`MergeSpec`] becomes a [`MergeConfig`], every parameter set.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};


/// A merge method and its parameters. Every method combines the exact LoRA products
/// `s_i * B_i A_i` of the arm's adapters: `W = W0 + sum_i w_i s_i B_i A_i`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum MergeSpec {
    /// Fixed weights, one per adapter (`[1, 0]` = base spirit only).
    Fixed {
        #[schemars(length(min = 1))]
        weights: Vec<f64>,
    },
    /// Task arithmetic: `w_i = lambda` (one scalar) or `lambda_i` (one per adapter).
    TaskArithmetic { lambda: Lambda },
    /// TIES: trim each delta to its top `density` by magnitude, elect signs, disjoint mean.
    Ties {
        /// Fraction of entries kept per delta. Default 0.5.
        #[schemars(range(min = 0.0, max = 1.0))]
        density: Option<f64>,
        /// Scale of the merged delta. Default 1.
        lambda: Option<f64>,
        /// Per-adapter weights before trimming. Default all 1.
        weights: Option<Vec<f64>>,
    },
    /// DARE: drop delta entries at random with probability `drop_rate`, rescale the rest.
    Dare {
        /// Default 0.5.
        #[schemars(range(min = 0.0, max = 0.999))]
        drop_rate: Option<f64>,
        /// Scale of the merged delta. Default 1.
        lambda: Option<f64>,
        /// Per-adapter weights. Default all 1.
        weights: Option<Vec<f64>>,
        /// Seed of the drop masks. Default: the experiment seed.
        seed: Option<u64>,
    },
    /// Entropy-guided adaptive merging: coefficients learned without labels by minimizing the
    /// merged model's prediction entropy on unlabeled prompts of the evaluated setting.
    Entropy {
        /// One coefficient per adapter (`model`), per layer and adapter (`layer`) or per module
        /// and adapter (`module`, the authors' choice). Default `module`.
        granularity: Option<Granularity>,
        /// Default `softmax`.
        parameterization: Option<Parameterization>,
        /// Softmax temperature. Default 1.
        #[schemars(range(min = 0.0))]
        temperature: Option<f64>,
        /// Initial coefficients, one per adapter. Default: equal (softmax) or 0.3 (clamp).
        init: Option<Vec<f64>>,
        /// Adam learning rate on the coefficients. Default 0.05.
        #[schemars(range(min = 0.0, max = 100.0))]
        lr: Option<f64>,
        /// Learning rates to choose from on validation labels (never test). Default: only `lr`.
        lr_grid: Option<Vec<f64>>,
        /// Passes over the adaptation set. Default 1.
        #[schemars(range(min = 1, max = 1000))]
        epochs: Option<u32>,
        /// Default `token_entropy`.
        objective: Option<EntropyObjective>,
        /// Tokens of each generated title entering the token entropy. Default 3.
        #[schemars(range(min = 1, max = 64))]
        first_k_tokens: Option<u32>,
        /// Tokens generated for each `token_entropy` answer. Default: the evaluation's
        /// `max_new_tokens` under `generate`, else 48.
        #[schemars(range(min = 1, max = 4096))]
        answer_tokens: Option<u32>,
        /// Titles of each `token_entropy` answer that enter the objective: the first N, and
        /// generation stops once the last of them has its first k tokens. Default: every title
        /// within `answer_tokens`.
        #[schemars(range(min = 1, max = 100))]
        answer_titles: Option<u32>,
        /// The unlabeled prompts the coefficients are learned on.
        adaptation: Option<Adaptation>,
    },
}

impl MergeSpec {
    /// The method's name as written in recipes.
    pub fn method_name(&self) -> &'static str {
        match self {
            MergeSpec::Fixed { .. } => "fixed",
            MergeSpec::TaskArithmetic { .. } => "task_arithmetic",
            MergeSpec::Ties { .. } => "ties",
            MergeSpec::Dare { .. } => "dare",
            MergeSpec::Entropy { .. } => "entropy",
        }
    }

    /// Per-adapter weight lists the method declares (their length must match the adapters).
    pub fn weight_lists(&self) -> Vec<(&'static str, usize)> {
        let mut out = Vec::new();
        match self {
            MergeSpec::Fixed { weights } => out.push(("weights", weights.len())),
            MergeSpec::TaskArithmetic { lambda: Lambda::PerAdapter(l) } => out.push(("lambda", l.len())),
            MergeSpec::TaskArithmetic { lambda: Lambda::Global(_) } => {}
            MergeSpec::Ties { weights, .. } | MergeSpec::Dare { weights, .. } => {
                if let Some(w) = weights {
                    out.push(("weights", w.len()));
                }
            }
            MergeSpec::Entropy { init, .. } => {
                if let Some(w) = init {
                    out.push(("init", w.len()));
                }
            }
        }
        out
    }
}

/// One lambda for every adapter, or one per adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Lambda {
    Global(f64),
    PerAdapter(Vec<f64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Model,
    Layer,
    Module,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Parameterization {
    /// Softmax over per-adapter logits (w >= 0, sums to 1).
    Softmax,
    /// Free coefficients clamped to [0, 1] (AdaMerging).
    Clamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntropyObjective {
    /// Mean next-token entropy over the first k tokens of each greedily generated title.
    TokenEntropy,
    /// Entropy of the softmax over the candidates' likelihood scores.
    CandidateEntropy,
}

/// The unlabeled adaptation set of an entropy arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Adaptation {
    /// Default `setting`: each evaluated setting's own unlabeled prompts.
    pub source: Option<AdaptationSource>,
    /// Number of unlabeled prompts. Default 50. With `source = "setting"`, the setting's evaluation
    /// set prepares the largest size any arm asks for; an arm uses the first `size` of them.
    #[schemars(range(min = 1, max = 1000000))]
    pub size: Option<u32>,
    /// Draw them from the setting's eligible users who are not evaluated, never from another
    /// population; the merge refuses when fewer than `size` are left. `false`: the evaluated
    /// users' own prompts (unlabeled, never their targets): transductive test-time adaptation, as
    /// the paper does, and so labelled in the report. Default true.
    pub disjoint_from_test: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdaptationSource {
    /// Prompts of the setting being evaluated (one merge per setting).
    Setting,
    /// Prompts of the whole target domain (one merge shared by all settings).
    Domain,
}

/// Merge parameters with every default filled in and per-adapter lists expanded (the `merge`
/// parameter of merge stages; read back by the stage with `Deserialize`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum MergeConfig {
    Fixed { weights: Vec<f64> },
    TaskArithmetic { lambdas: Vec<f64> },
    Ties { density: f64, lambda: f64, weights: Vec<f64> },
    Dare { drop_rate: f64, lambda: f64, weights: Vec<f64>, seed: u64 },
    Entropy {
        granularity: Granularity,
        parameterization: Parameterization,
        temperature: f64,
        init: Vec<f64>,
        lr: f64,
        lr_grid: Vec<f64>,
        epochs: u32,
        objective: EntropyObjective,
        first_k_tokens: u32,
        /// As the recipe gives it; `None`: [`super::resolve::ResolvedEvaluation::entropy_answer_tokens`] decides.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer_tokens: Option<u32>,
        /// Titles of an answer entering the token entropy; `None`: all within the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer_titles: Option<u32>,
        adaptation: ResolvedAdaptation,
    },
}

impl MergeConfig {
    /// How many of the arm's adapters the merge actually uses (a fixed weight or lambda of 0
    /// drops its adapter; the other methods use them all).
    pub fn adapters_used(&self, adapters: usize) -> usize {
        match self {
            MergeConfig::Fixed { weights } => weights.iter().filter(|w| **w != 0.0).count(),
            MergeConfig::TaskArithmetic { lambdas } => lambdas.iter().filter(|w| **w != 0.0).count(),
            _ => adapters,
        }
    }

    pub fn is_adaptive(&self) -> bool {
        matches!(self, MergeConfig::Entropy { adaptation: ResolvedAdaptation { source: AdaptationSource::Setting, .. }, .. })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ResolvedAdaptation {
    pub source: AdaptationSource,
    pub size: u32,
    pub disjoint_from_test: bool,
}

/// A merge as the recipe gives it -> every parameter set (`n` adapters, `seed` for the methods
/// that draw). The standalone `merge` command resolves its flags through here too.
pub fn merge_config(m: &MergeSpec, n: usize, seed: u64) -> MergeConfig {
    let ones = || vec![1.0; n];
    match m {
        MergeSpec::Fixed { weights } => MergeConfig::Fixed { weights: weights.clone() },
        MergeSpec::TaskArithmetic { lambda } => MergeConfig::TaskArithmetic {
            lambdas: match lambda {
                Lambda::Global(l) => vec![*l; n],
                Lambda::PerAdapter(l) => l.clone(),
            },
        },
        MergeSpec::Ties { density, lambda, weights } => MergeConfig::Ties {
            density: density.unwrap_or(0.5),
            lambda: lambda.unwrap_or(1.0),
            weights: weights.clone().unwrap_or_else(ones),
        },
        MergeSpec::Dare { drop_rate, lambda, weights, seed: s } => MergeConfig::Dare {
            drop_rate: drop_rate.unwrap_or(0.5),
            lambda: lambda.unwrap_or(1.0),
            weights: weights.clone().unwrap_or_else(ones),
            seed: s.unwrap_or(seed),
        },
        MergeSpec::Entropy { granularity, parameterization, temperature, init, lr, lr_grid, epochs, objective, first_k_tokens, answer_tokens, answer_titles, adaptation } => {
            let parameterization = parameterization.unwrap_or(Parameterization::Softmax);
            let default_init = match parameterization {
                Parameterization::Softmax => vec![1.0 / n as f64; n],
                Parameterization::Clamp => vec![0.3; n],
            };
            let lr = lr.unwrap_or(0.05);
            let a = adaptation.clone().unwrap_or(Adaptation { source: None, size: None, disjoint_from_test: None });
            MergeConfig::Entropy {
                granularity: granularity.unwrap_or(Granularity::Module),
                parameterization,
                temperature: temperature.unwrap_or(1.0),
                init: init.clone().unwrap_or(default_init),
                lr,
                lr_grid: lr_grid.clone().unwrap_or_else(|| vec![lr]),
                epochs: epochs.unwrap_or(1),
                objective: objective.unwrap_or(EntropyObjective::TokenEntropy),
                first_k_tokens: first_k_tokens.unwrap_or(3),
                answer_tokens: *answer_tokens,
                answer_titles: *answer_titles,
                adaptation: ResolvedAdaptation {
                    source: a.source.unwrap_or(AdaptationSource::Setting),
                    size: a.size.unwrap_or(50),
                    disjoint_from_test: a.disjoint_from_test.unwrap_or(true),
                },
            }
        }
    }
}
