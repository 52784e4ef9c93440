//! The typed parameters of the `report` stage, built by the plan.

use serde::Serialize;

use crate::recipe::types::{Baseline, Metric, Protocol};

/// What a result row's stage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowSource {
    /// An `evaluate` stage: one arm (or the raw backbone).
    Model,
    /// A `baselines` stage: one row per reference baseline.
    Baselines,
}

/// Which stage answers for each (arm, setting) row of the results.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    pub arm: String,
    pub setting: String,
    pub stage: String,
    pub source: RowSource,
}

/// A merge with learned coefficients, tabulated and plotted by the report.
#[derive(Debug, Clone, Serialize)]
pub struct LearnedMerge {
    /// The merge stage's id.
    pub stage: String,
    /// Its name in the coefficient table (`entropy`, or `entropy:cold` for a per-setting one).
    pub merge: String,
    pub arm: String,
}

/// `report`: gather every evaluation into the long result table and the summary.
#[derive(Debug, Clone, Serialize)]
pub struct ReportParams {
    pub experiment: String,
    pub recipe_hash: String,
    pub seed: u64,
    pub rows: Vec<ResultRow>,
    pub learned: Vec<LearnedMerge>,
    /// The evaluation settings whose sets (the `eval_set` inputs, in this order) the report reads
    /// for their leak checks.
    pub settings: Vec<String>,
    pub ks: Vec<u32>,
    pub metrics: Vec<Metric>,
    pub protocol: Protocol,
    pub baselines: Vec<Baseline>,
    /// Bootstrap resamples of each interval (and random sign flips of each permutation test).
    pub bootstrap: u32,
    /// Paired comparisons `[arm_a, arm_b]`, made in every setting.
    pub comparisons: Vec<[String; 2]>,
    /// The candidate protocol every row states: list length and how negatives are sampled.
    pub candidates: u32,
    pub negatives: crate::recipe::types::NegativeSampling,
    /// How the report's statistics are computed ([`super::compare::METHOD`]): a report cached
    /// under an earlier method is another artifact, not served for this one.
    pub statistics: &'static str,
}
