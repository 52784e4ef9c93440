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
pub mod combine;
pub mod command;
pub mod dare;
pub mod entropy;
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
use crate::recipe::merge::MergeSpec;
use crate::recipe::merge::MergeConfig;

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

/// What a method makes of its adapters, before the output adapter is built.
pub enum Combination {
    /// Per-module coefficients of the exact products `s_i B_i A_i`: the factors are stacked along
    /// the rank axis, so the output is the exact merge (the linear path).
    Linear(Coefficients),
    /// Dense merged deltas built entry by entry, refactorized by SVD; `nominal` holds the
    /// per-adapter weights the coefficient table records.
    EntryWise { deltas: lowrank::DenseDeltas, nominal: Coefficients },
}

/// The flags of `reccocktail merge` a standalone method may read.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// The `:WEIGHT` of each `--adapter` (default 1).
    pub weights: Vec<f64>,
    pub lambda: Option<f64>,
    pub density: Option<f64>,
    pub drop_rate: Option<f64>,
    pub seed: Option<u64>,
}

/// A merge method: its declaration (name, parameters with defaults, standalone or recipe-only)
/// and what it computes. One implementation per file; [`REGISTRY`] lists them, and `merge()`,
/// the `merge` command's flags and `--help`, and the schema test all consult it.
pub trait MergeMethod: Sync {
    fn declaration(&self) -> &'static Method;

    /// The recipe's merge table the command-line flags stand for (`None`: recipes only).
    fn from_flags(&self, flags: &Flags) -> Option<MergeSpec>;

    /// The merged deltas (linear or entry-wise) of a resolved configuration of this method.
    fn combine(&self, config: &MergeConfig, names: &[String], adapters: &[PeftAdapter]) -> Result<Combination, MergeError>;
}

/// Every merge method, in the order docs list them.
pub static REGISTRY: [&dyn MergeMethod; 5] = [&fixed::Fixed, &task_arithmetic::TaskArithmetic, &ties::Ties, &dare::Dare, &entropy::Entropy];

/// The registered method named `name`.
pub fn find(name: &str) -> Option<&'static dyn MergeMethod> {
    REGISTRY.iter().copied().find(|m| m.declaration().name == name)
}

/// The declarations of every method, in registry order.
pub fn declarations() -> impl Iterator<Item = &'static Method> {
    REGISTRY.iter().map(|m| m.declaration())
}

/// The error of a method handed another method's configuration (a bug, not a user mistake).
fn other_config(method: &Method, config: &MergeConfig) -> MergeError {
    MergeError::Invalid(format!("the `{}` method was given a `{}` configuration", method.name, method_name(config)))
}

/// The linear kernel of `fixed` and `task_arithmetic`: one checked value per adapter, the same on
/// every module the adapter adapts.
pub fn uniform(what: &str, names: &[String], adapters: &[PeftAdapter], values: &[f64]) -> Result<Coefficients, MergeError> {
    check_list(what, values, adapters.len())?;
    Ok(Coefficients::uniform(names, adapters, values))
}

/// Merge with any method but `entropy` (whose coefficients are learned inside a plan by
/// [`adaptation::learn`]; then [`from_coefficients`] finishes).
pub fn merge(names: &[String], adapters: &[PeftAdapter], config: &MergeConfig, rank: Option<usize>) -> Result<MergeOutput, MergeError> {
    check_compatible(names, adapters)?;
    let method = find(method_name(config)).ok_or_else(|| MergeError::Invalid(format!("no registered merge method `{}`", method_name(config))))?;
    match method.combine(config, names, adapters)? {
        Combination::Linear(coef) => from_coefficients(config, names, adapters, coef, rank),
        Combination::EntryWise { deltas, nominal } => from_dense(config, names, adapters, deltas, nominal, rank),
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

/// The registry as text, for `--help`.
pub fn registry_help() -> String {
    let mut s = String::from("Merge methods (exact on LoRA products s_i B_i A_i):\n");
    for m in declarations() {
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
