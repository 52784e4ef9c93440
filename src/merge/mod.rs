//! The cocktail: several LoRA adapters of one base model merged into one, in weight space.
//!
//! Every method acts on the exact products `s_i B_i A_i` of the adapters (never on A and B
//! separately, which would create cross terms `B_i A_j`):
//! - coefficient methods (`fixed`, `task_arithmetic`, `entropy`) give a weight `w_{m,i}` per
//!   adapted module m and adapter i; [`combine`] stacks the weighted factors along the rank axis,
//!   so the merged adapter's delta is exactly `sum_i w_{m,i} s_{m,i} B_{m,i} A_{m,i}` (rank
//!   `sum_i r_i`), optionally SVD-truncated to a lower rank ([`combine::truncate`]);
//! - entry-wise methods (`ties`, `dare`) transform the dense per-module deltas, so their result is
//!   a dense delta per module, factorized back into a LoRA by SVD ([`lowrank::factorize`]).
//!
//! The registry ([`METHODS`]) declares each method's parameters; the recipe schema
//! ([`crate::recipe::merge::MergeSpec`]) and `reccocktail merge --help` agree with it (tested).

pub mod adaptation;
pub mod bench;
pub mod combine;
pub mod command;
pub mod dare;
pub mod entropy;
pub mod entropy_bench;
pub mod fixed;
pub mod learnable;
pub mod linalg;
pub mod lowrank;
pub mod params;
pub mod stage;
pub mod task_arithmetic;
pub mod ties;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::lora::Proj;
use crate::model::peft::{PeftAdapter, module_name};
use crate::recipe::resolve::MergeConfig;

pub use combine::combine;

/// Merge coefficients w_{m,i}: for each adapted module m = (layer, proj), one weight per input adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct Coefficients {
    pub adapters: Vec<String>,
    pub values: BTreeMap<(usize, Proj), Vec<f64>>,
}

impl Coefficients {
    /// The same weight vector on every module any adapter adapts.
    pub fn uniform(names: &[String], adapters: &[PeftAdapter], weights: &[f64]) -> Coefficients {
        let values = adapted_modules(adapters).into_keys().map(|m| (m, weights.to_vec())).collect();
        Coefficients { adapters: names.to_vec(), values }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A problem with what was given: adapters that do not fit together, parameters out of range.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("writing the dense model: {0}")]
    Write(String),
}

impl MergeError {
    /// Problems with what the user gave, as opposed to runtime failures.
    pub fn is_input_problem(&self) -> bool {
        match self {
            MergeError::Invalid(_) => true,
            MergeError::Model(e) => e.is_input_problem(),
            MergeError::Table(e) => e.is_input_problem(),
            MergeError::Io { .. } | MergeError::Write(_) => false,
        }
    }
}

/// `[out, in]` of each module (layer, projection).
pub type Shapes = BTreeMap<(usize, Proj), (usize, usize)>;

/// Shape (out, in) of every module adapted by at least one adapter, after checking that adapters
/// adapting the same module agree on its shape (they must come from one base model). A module
/// adapted by only some adapters is fine: the others contribute nothing there.
pub fn check_compatible(names: &[String], adapters: &[PeftAdapter]) -> Result<Shapes, MergeError> {
    if adapters.is_empty() {
        return Err(MergeError::Invalid("no adapter to merge".into()));
    }
    let mut shapes: BTreeMap<(usize, Proj), ((usize, usize), usize)> = BTreeMap::new();
    for (i, ad) in adapters.iter().enumerate() {
        for (&m, pair) in &ad.modules {
            let shape = (pair.b.shape[0], pair.a.shape[1]);
            match shapes.get(&m) {
                Some(&(s, j)) if s != shape => {
                    return Err(MergeError::Invalid(format!(
                        "adapters `{}` and `{}` do not fit together at `{}`: [out, in] = [{}, {}] vs [{}, {}] (adapters of different base models?)",
                        names[j], names[i], module_name(m.0, m.1), s.0, s.1, shape.0, shape.1
                    )));
                }
                Some(_) => {}
                None => {
                    shapes.insert(m, (shape, i));
                }
            }
        }
    }
    Ok(shapes.into_iter().map(|(m, (s, _))| (m, s)).collect())
}

/// The union of adapted modules with, per module, which adapters adapt it and their total rank.
pub fn adapted_modules(adapters: &[PeftAdapter]) -> BTreeMap<(usize, Proj), Vec<usize>> {
    let mut out: BTreeMap<(usize, Proj), Vec<usize>> = BTreeMap::new();
    for (i, ad) in adapters.iter().enumerate() {
        for m in ad.modules.keys() {
            out.entry(*m).or_default().push(i);
        }
    }
    out
}

/// Check that a per-adapter list has one finite value per adapter.
pub fn check_list(what: &str, values: &[f64], n: usize) -> Result<(), MergeError> {
    if values.len() != n {
        return Err(MergeError::Invalid(format!("{what} has {} value{} but there {} {n} adapter{}", values.len(), if values.len() == 1 { "" } else { "s" }, if n == 1 { "is" } else { "are" }, if n == 1 { "" } else { "s" })));
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(MergeError::Invalid(format!("{what} has a non-finite value {v}")));
    }
    Ok(())
}

/// What a merge produced, for `merge.json` and the command's summary.
#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    pub method: String,
    pub adapters: Vec<AdapterInfo>,
    /// Smallest and largest rank of the output adapter's modules.
    pub output_rank: (usize, usize),
    pub modules: usize,
    /// Rank the result was truncated / factorized to (`rank` of the arm, `--rank`).
    pub rank: Option<usize>,
    /// Fraction of the merged delta's energy (sum of squared singular values) dropped by SVD
    /// truncation or factorization; absent when the output is the exact stacked merge.
    pub dropped_energy: Option<f64>,
    /// Whether the output adapter's delta equals the method's merged delta (up to float rounding).
    pub exact: bool,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterInfo {
    pub name: String,
    pub r: usize,
    pub alpha: f64,
    pub use_rslora: bool,
    pub modules: usize,
}

impl AdapterInfo {
    pub fn of(name: &str, a: &PeftAdapter) -> AdapterInfo {
        AdapterInfo { name: name.to_string(), r: a.config.r, alpha: a.config.alpha, use_rslora: a.config.use_rslora, modules: a.modules.len() }
    }
}

/// A merge result: the adapter to write, the coefficients table (for entry-wise methods, the
/// nominal per-adapter weights) and the report.
#[derive(Debug, Clone)]
pub struct MergeOutput {
    pub adapter: PeftAdapter,
    pub coefficients: Coefficients,
    pub report: MergeReport,
}

/// Merge with any method but `entropy` (whose coefficients are learned by [`entropy::learn`]
/// inside a plan; then [`from_coefficients`] finishes).
pub fn merge(names: &[String], adapters: &[PeftAdapter], config: &MergeConfig, rank: Option<usize>) -> Result<MergeOutput, MergeError> {
    check_compatible(names, adapters)?;
    let n = adapters.len();
    match config {
        MergeConfig::Fixed { weights } => from_coefficients(config, names, adapters, fixed::coefficients(names, adapters, weights)?, rank),
        MergeConfig::TaskArithmetic { lambdas } => from_coefficients(config, names, adapters, task_arithmetic::coefficients(names, adapters, lambdas)?, rank),
        MergeConfig::Ties { density, lambda, weights } => {
            let deltas = ties::merge(adapters, *density, *lambda, weights)?;
            let nominal: Vec<f64> = weights.iter().map(|w| w * lambda).collect();
            from_dense(config, names, adapters, deltas, Coefficients::uniform(names, adapters, &nominal), rank)
        }
        MergeConfig::Dare { drop_rate, lambda, weights, seed } => {
            let deltas = dare::merge(names, adapters, *drop_rate, *lambda, weights, *seed)?;
            let nominal: Vec<f64> = weights.iter().map(|w| w * lambda).collect();
            from_dense(config, names, adapters, deltas, Coefficients::uniform(names, adapters, &nominal), rank)
        }
        MergeConfig::Entropy { .. } => Err(MergeError::Invalid(format!(
            "entropy merging learns its coefficients from unlabeled prompts with the model: it runs only inside a recipe (`reccocktail run`); {n} adapters given"
        ))),
    }
}

fn infos(names: &[String], adapters: &[PeftAdapter]) -> Vec<AdapterInfo> {
    names.iter().zip(adapters).map(|(n, a)| AdapterInfo::of(n, a)).collect()
}

fn rank_range(a: &PeftAdapter) -> (usize, usize) {
    let ranks = a.modules.values().map(|p| p.a.shape[0]);
    (ranks.clone().min().unwrap_or(0), ranks.max().unwrap_or(0))
}

/// Stack the weighted factors ([`combine`]), then truncate to `rank` when asked.
pub fn from_coefficients(config: &MergeConfig, names: &[String], adapters: &[PeftAdapter], coef: Coefficients, rank: Option<usize>) -> Result<MergeOutput, MergeError> {
    check_compatible(names, adapters)?;
    let stacked = combine(adapters, &coef)?;
    let (adapter, dropped, note) = match rank {
        Some(k) => {
            let (t, energy) = combine::truncate(&stacked, k)?;
            (t, Some(energy.dropped_fraction()), format!("stacked factors (exact), then SVD-truncated to rank {k}"))
        }
        None => (stacked, None, "weighted factors stacked along the rank axis: the exact merge".to_string()),
    };
    let exact = dropped.is_none_or(|d| d <= 1e-12);
    let report = MergeReport { method: method_name(config).into(), adapters: infos(names, adapters), output_rank: rank_range(&adapter), modules: adapter.modules.len(), rank, dropped_energy: dropped, exact, note };
    Ok(MergeOutput { adapter, coefficients: coef, report })
}

fn from_dense(config: &MergeConfig, names: &[String], adapters: &[PeftAdapter], deltas: lowrank::DenseDeltas, coef: Coefficients, rank: Option<usize>) -> Result<MergeOutput, MergeError> {
    let (adapter, f) = lowrank::factorize(&deltas, adapters, rank)?;
    let note = format!(
        "entry-wise merge of the dense deltas, factorized by SVD at rank {} per module; exact only where that rank is the module's full rank ({}); coefficients.parquet holds the nominal weight x lambda",
        rank.map_or("sum r_i".to_string(), |k| k.to_string()),
        if f.full_rank { "here: every module" } else { "here: not every module" }
    );
    let exact = f.full_rank || f.energy.dropped_fraction() <= 1e-12;
    let report = MergeReport {
        method: method_name(config).into(),
        adapters: infos(names, adapters),
        output_rank: rank_range(&adapter),
        modules: adapter.modules.len(),
        rank,
        dropped_energy: Some(f.energy.dropped_fraction()),
        exact,
        note,
    };
    Ok(MergeOutput { adapter, coefficients: coef, report })
}

pub fn method_name(config: &MergeConfig) -> &'static str {
    match config {
        MergeConfig::Fixed { .. } => "fixed",
        MergeConfig::TaskArithmetic { .. } => "task_arithmetic",
        MergeConfig::Ties { .. } => "ties",
        MergeConfig::Dare { .. } => "dare",
        MergeConfig::Entropy { .. } => "entropy",
    }
}

/// One declared parameter of a merge method.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Param {
    pub name: &'static str,
    /// Type as written in a recipe (`float`, `[float]`, `float | [float]`, ...).
    pub ty: &'static str,
    /// Default (`required` when there is none).
    pub default: &'static str,
    pub help: &'static str,
    /// An example value as a TOML literal (used by the registry-vs-schema test and the docs).
    pub example: &'static str,
}

/// A merge method of the registry.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Method {
    pub name: &'static str,
    pub description: &'static str,
    pub params: &'static [Param],
    /// Available to `reccocktail merge` (entropy needs data and a model: recipes only).
    pub standalone: bool,
}

/// Entropy-guided adaptive merging (its learning loop lives in [`entropy`]).
pub const ENTROPY: Method = Method {
    name: "entropy",
    description: "coefficients learned without labels by minimizing the merged model's prediction entropy on unlabeled prompts (recipes only)",
    params: &[
        Param { name: "granularity", ty: "\"model\" | \"layer\" | \"module\"", default: "module", help: "one coefficient per adapter, per layer and adapter, or per module and adapter", example: "\"layer\"" },
        Param { name: "parameterization", ty: "\"softmax\" | \"clamp\"", default: "softmax", help: "softmax over logits (w >= 0, sums to 1) or free values clamped to [0, 1]", example: "\"clamp\"" },
        Param { name: "temperature", ty: "float", default: "1", help: "softmax temperature", example: "0.5" },
        Param { name: "init", ty: "[float]", default: "equal (softmax) or 0.3 (clamp)", help: "initial coefficients, one per adapter", example: "[0.5, 0.5]" },
        Param { name: "lr", ty: "float", default: "0.05", help: "Adam learning rate on the coefficients", example: "0.1" },
        Param { name: "lr_grid", ty: "[float]", default: "[lr]", help: "learning rates chosen among on validation labels (never test)", example: "[0.01, 0.1]" },
        Param { name: "epochs", ty: "int", default: "1", help: "passes over the adaptation set", example: "2" },
        Param { name: "objective", ty: "\"token_entropy\" | \"candidate_entropy\"", default: "token_entropy", help: "next-token entropy over the first k tokens of each generated title, or entropy over candidate scores", example: "\"candidate_entropy\"" },
        Param { name: "first_k_tokens", ty: "int", default: "3", help: "tokens of each generated title entering the token entropy", example: "4" },
        Param { name: "answer_tokens", ty: "int", default: "evaluation.max_new_tokens under `generate`, else 48", help: "tokens generated for each `token_entropy` answer", example: "32" },
        Param { name: "adaptation", ty: "{ source, size, disjoint_from_test }", default: "{ source = \"setting\", size = 50, disjoint_from_test = true }", help: "the unlabeled prompts the coefficients are learned on", example: "{ source = \"domain\", size = 20 }" },
    ],
    standalone: false,
};

/// Every merge method, in the order docs list them.
pub const METHODS: [Method; 5] = [fixed::METHOD, task_arithmetic::METHOD, ties::METHOD, dare::METHOD, ENTROPY];

/// The registry as text, for `--help`.
pub fn registry_help() -> String {
    let mut s = String::from("Merge methods (exact on LoRA products s_i B_i A_i):\n");
    for m in &METHODS {
        s.push_str(&format!("\n  {}: {}\n", m.name, m.description));
        for p in m.params {
            s.push_str(&format!("    {} ({}, default {}): {}\n", p.name, p.ty, p.default, p.help));
        }
    }
    s
}

#[cfg(test)]
mod tests;

impl From<MergeError> for crate::exec::context::StageError {
    fn from(e: MergeError) -> Self {
        crate::exec::context::StageError::domain(e, false)
    }
}

/// `merge.json`: method, parameters, adapters, output rank, dropped energy, seconds.
pub fn summary_json(config: &MergeConfig, output: &MergeOutput, seconds: f64) -> serde_json::Value {
    let r = &output.report;
    serde_json::json!({
        "method": r.method,
        "params": config,
        "adapters": r.adapters,
        "output_rank": { "min": r.output_rank.0, "max": r.output_rank.1 },
        "modules": r.modules,
        "rank": r.rank,
        "dropped_energy": r.dropped_energy,
        "exact": r.exact,
        "note": r.note,
        "seconds": seconds,
    })
}
