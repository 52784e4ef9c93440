//! Result tables: every evaluated arm x setting (and the non-LLM references) in one long table,
//! a markdown summary and SVG plots; the `report` stage and `reccocktail report RUN_DIR`.
//!
//! `results.parquet` / `results.csv` columns, one row per arm x setting x metric x K:
//! experiment (str), recipe_hash (str), seed (u64), arm (str; `random` and `popularity` are the
//! references), setting (str), protocol (str: `likelihood`, `generate`, or `reference`), metric
//! (str), k (u32, null for mrr and valid_ratio), value (f64, null when the arm failed), ci_low and
//! ci_high (f64: the 95% percentile-bootstrap interval over users, `evaluation.bootstrap`
//! resamples per setting, seeded; null for the random reference, an exact expectation), users
//! (u64, null when failed), status (`ok`, `failed`, `skipped`, or `not_run` in a `run --cached-only`
//! report), candidates (u32: list length) and negatives (`uniform` / `popularity`, always excluding
//! the user's own items): the candidate protocol, so that tables of two recipes are not compared
//! blind. `report.json` lists each arm without results with the reason; `summary.md` and `plot_<metric>.svg` are rendered from these.

pub mod coefficients;
pub mod params;
mod plot;
pub mod compare;
pub mod stats;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::Column;
use serde::{Deserialize, Serialize};

use crate::table;
use crate::eval::metrics::{hr_at, metric_rows, ndcg_at, reciprocal_rank};
use crate::exec::context::{MissingInput, StageContext};
use crate::recipe::types::{Baseline, serde_name};
use params::{ReportParams, RowSource};
pub use plot::svg_plot;
pub use summary::markdown;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{}: no results table here (results.parquet); expected the run directory of a run that reached its report stage", path.display())]
    NoResults { path: PathBuf },
    #[error("output of stage `{stage}`: {message}")]
    Input { stage: String, message: String },
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
}

impl ResultsError {
    pub fn is_input_problem(&self) -> bool {
        matches!(self, ResultsError::NoResults { .. })
    }
}

/// One row of the long results table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub experiment: String,
    pub recipe_hash: String,
    pub seed: u64,
    pub arm: String,
    pub setting: String,
    pub protocol: String,
    pub metric: String,
    pub k: Option<u32>,
    pub value: Option<f64>,
    /// The 95% percentile-bootstrap interval of `value` over users (none for the random
    /// reference, an exact expectation, and for arms without results).
    #[serde(default)]
    pub ci_low: Option<f64>,
    #[serde(default)]
    pub ci_high: Option<f64>,
    pub users: Option<u64>,
    pub status: String,
    /// The candidate protocol: list length (target + negatives) ...
    #[serde(default)]
    pub candidates: Option<u32>,
    /// ... and how the negatives were sampled (`uniform` or `popularity`; always excluding the
    /// user's own items and second items of one title).
    #[serde(default)]
    pub negatives: Option<String>,
}

/// An arm x setting without results, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub arm: String,
    pub setting: String,
    pub stage: String,
    pub reason: String,
}

/// The whole report: what `report.json` holds next to the tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub experiment: String,
    pub recipe_hash: String,
    pub seed: u64,
    pub records: Vec<Record>,
    pub failures: Vec<Failure>,
    /// What each entropy merge adapted on and how it chose its learning rate.
    #[serde(default)]
    pub adaptations: Vec<coefficients::Adaptation>,
    /// Each evaluation set's users: history lengths and leak check.
    #[serde(default)]
    pub settings: Vec<SettingFacts>,
    /// The paired comparisons of the recipe's pairs.
    #[serde(default)]
    pub comparisons: Vec<compare::Comparison>,
    /// The most random sign flips one comparison could draw ([`compare::flip_budget`]).
    #[serde(default)]
    pub flip_budget: usize,
    /// How many distinct tests the comparisons run (those of the same paired values count once;
    /// the size of Holm's family). 0 in reports written before it was recorded.
    #[serde(default)]
    pub distinct_tests: usize,
    /// The cells whose best LLM arm beats the runner-up significantly (the bold ones).
    #[serde(default)]
    pub best: Vec<BestCell>,
}

/// A column's best LLM arm when a paired test separates it from the runner-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestCell {
    pub setting: String,
    pub metric: String,
    pub k: Option<u32>,
    pub arm: String,
    pub runner_up: String,
    pub p_value: f64,
}

/// What the report says of one evaluation set (from its `eval_set.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingFacts {
    pub setting: String,
    pub test_users: u64,
    pub history_lengths: crate::data::stages::LengthStats,
    pub leakage: crate::data::leakage::LeakReport,
}

/// The facts of the evaluation sets among `ctx`'s inputs (settings in `p.settings` order).
fn setting_facts(ctx: &StageContext<'_>, p: &ReportParams) -> Result<Vec<SettingFacts>, ResultsError> {
    let mut out = Vec::new();
    let sets = ctx.stage.inputs.iter().filter(|i| i.role == crate::plan::Role::EvalSet);
    for (setting, input) in p.settings.iter().zip(sets) {
        // A set that failed (a refused leak check among others) is among the failures already.
        let (id, Some(dir)) = (&input.stage, ctx.inputs.get(&input.stage)) else { continue };
        let j: serde_json::Value = table::read_json(&dir.join("eval_set.json")).map_err(|e| ResultsError::Input { stage: id.to_string(), message: e.to_string() })?;
        out.push(SettingFacts {
            setting: setting.clone(),
            test_users: j["test"].as_u64().unwrap_or(0),
            history_lengths: serde_json::from_value(j["history_lengths"].clone()).unwrap_or_default(),
            leakage: serde_json::from_value(j["leakage"].clone()).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// One arm's per-user outcomes on a setting, in user-id order: the target's rank (`None`: not
/// ranked) and the share of valid generated items.
struct Outcomes {
    users: Vec<String>,
    ranks: Vec<Option<usize>>,
    valid: Vec<f64>,
}

impl Outcomes {
    /// Each user's value of `metric` at `k`.
    fn values(&self, metric: &str, k: Option<u32>) -> Vec<f64> {
        let f = |r: usize| match (metric, k) {
            ("hr", Some(k)) => hr_at(r, k),
            ("ndcg", Some(k)) => ndcg_at(r, k),
            _ => reciprocal_rank(r),
        };
        if metric == "valid_ratio" { self.valid.clone() } else { self.ranks.iter().map(|r| r.map_or(0.0, f)).collect() }
    }
}

/// Per-user outcomes of an evaluate stage's `per_user.parquet` (keyed by the arm's row name, "")
/// or of a baselines stage's `ranks.parquet` (by baseline; `random` has none: its values are exact
/// expectations, not outcomes).
fn per_user_outcomes(dir: &Path, is_ref: bool) -> Result<BTreeMap<String, Outcomes>, ResultsError> {
    let mut rows: BTreeMap<String, Vec<(String, Option<usize>, f64)>> = BTreeMap::new();
    if is_ref {
        let df = table::read_parquet(&dir.join("ranks.parquet"))?;
        let (b, u, r) = (table::strs(&df, "baseline")?, table::strs(&df, "user")?, table::opt_f64s(&df, "rank")?);
        for i in 0..u.len() {
            if b[i] != "random" {
                rows.entry(b[i].clone()).or_default().push((u[i].clone(), r[i].map(|x| x as usize), 1.0));
            }
        }
    } else {
        let df = table::read_parquet(&dir.join("per_user.parquet"))?;
        let (u, r) = (table::strs(&df, "user")?, table::opt_i64s(&df, "rank")?);
        let (g, v) = (table::opt_i64s(&df, "generated_items")?, table::opt_i64s(&df, "valid_items")?);
        let list = rows.entry(String::new()).or_default();
        for i in 0..u.len() {
            let ratio = match (g[i], v[i]) {
                (Some(g), Some(v)) if g > 0 => v as f64 / g as f64,
                _ => 0.0,
            };
            list.push((u[i].clone(), r[i].map(|x| x as usize), ratio));
        }
    }
    Ok(rows
        .into_iter()
        .map(|(name, mut list)| {
            list.sort_by(|a, b| a.0.cmp(&b.0));
            (name, Outcomes { users: list.iter().map(|x| x.0.clone()).collect(), ranks: list.iter().map(|x| x.1).collect(), valid: list.iter().map(|x| x.2).collect() })
        })
        .collect())
}

fn baseline_name(b: Baseline) -> String {
    serde_name(&b)
}

/// Assemble the table of the report's rows (`e.rows`) from the artifact directories of their stages
/// (`dirs`, by stage id); a row whose stage is in `failed` (by stage id, with why) gets null values
/// (for every metric the report expects) and its status.
pub fn gather(e: &ReportParams, dirs: &BTreeMap<String, PathBuf>, failed: &BTreeMap<String, MissingInput>) -> Result<Results, ResultsError> {
    // The recipe's protocol, for the rows of arms that failed.
    let recipe_protocol = serde_name(&e.protocol);
    let mut out = Results { experiment: e.experiment.clone(), recipe_hash: e.recipe_hash.clone(), seed: e.seed, ..Default::default() };
    let mut outcomes: BTreeMap<(String, String), Outcomes> = BTreeMap::new();
    let mut resamples = stats::Resamples::new(e.seed, e.bootstrap as usize);
    let record = |arm: &str, setting: &str, protocol: &str, metric: String, k: Option<u32>, value: Option<f64>, users: Option<u64>, status: &str| Record {
        experiment: e.experiment.clone(),
        recipe_hash: e.recipe_hash.clone(),
        seed: e.seed,
        arm: arm.into(),
        setting: setting.into(),
        protocol: protocol.into(),
        metric,
        k,
        value,
        ci_low: None,
        ci_high: None,
        users,
        status: status.into(),
        candidates: Some(e.candidates),
        negatives: Some(serde_name(&e.negatives)).filter(|n| !n.is_empty()),
    };
    for row in &e.rows {
        let is_ref = row.source == RowSource::Baselines;
        let arms: Vec<String> = if is_ref { e.baselines.iter().map(|b| baseline_name(*b)).collect() } else { vec![row.arm.clone()] };
        let protocol = if is_ref { "reference" } else { recipe_protocol.as_str() };
        let Some(dir) = dirs.get(&row.stage) else {
            let (status, reason) = match failed.get(&row.stage) {
                Some(m) => (m.status.name(), m.reason.clone()),
                None => ("failed", "no output".to_string()),
            };
            for arm in arms {
                for (metric, k, _) in metric_rows(&e.metrics, &e.ks, &|_: &dyn Fn(usize) -> f64| 0.0, 0.0) {
                    out.records.push(record(&arm, &row.setting, protocol, metric, k, None, None, status));
                }
                out.failures.push(Failure { arm, setting: row.setting.clone(), stage: row.stage.clone(), reason: reason.clone() });
            }
            continue;
        };
        let bad = |message: String| ResultsError::Input { stage: row.stage.clone(), message };
        let summary_file = if is_ref { "baselines.json" } else { "evaluate.json" };
        let summary: serde_json::Value = table::read_json(&dir.join(summary_file))?;
        let users = summary["users"].as_u64().ok_or_else(|| bad(format!("{summary_file} has no `users`")))?;
        let m = table::read_parquet(&dir.join("metrics.parquet"))?;
        let (metric, k, value) = (table::strs(&m, "metric")?, table::opt_i64s(&m, "k")?, table::opt_f64s(&m, "value")?);
        let arm_col = if is_ref { table::strs(&m, "baseline")? } else { vec![row.arm.clone(); metric.len()] };
        let protocol = if is_ref { "reference".to_string() } else { summary["protocol"].as_str().unwrap_or(&recipe_protocol).to_string() };
        let mut per_user = per_user_outcomes(dir, is_ref)?;
        let draws = resamples.of(&row.setting, users as usize);
        for i in 0..metric.len() {
            let cut = k[i].map(|x| u32::try_from(x).map_err(|_| bad(format!("k = {x}")))).transpose()?;
            let mut r = record(&arm_col[i], &row.setting, &protocol, metric[i].clone(), cut, value[i], Some(users), "ok");
            if let Some(outcomes) = per_user.get(if is_ref { arm_col[i].as_str() } else { "" })
                && let Some((lo, hi)) = stats::mean_interval(&outcomes.values(&metric[i], cut), draws) {
                (r.ci_low, r.ci_high) = (Some(lo), Some(hi));
            }
            out.records.push(r);
        }
        for (name, o) in std::mem::take(&mut per_user) {
            let arm = if is_ref { name } else { row.arm.clone() };
            outcomes.insert((arm, row.setting.clone()), o);
        }
    }
    (out.comparisons, out.flip_budget, out.distinct_tests) = comparisons(e, &outcomes, &mut resamples);
    out.best = significant_best(e, &out.records, &outcomes);
    Ok(out)
}

/// The users two arms both evaluated and each one's values of `metric` at `k` for them.
fn aligned(a: &Outcomes, b: &Outcomes, metric: &str, k: Option<u32>) -> (Vec<f64>, Vec<f64>) {
    let index: BTreeMap<&str, usize> = b.users.iter().enumerate().map(|(i, u)| (u.as_str(), i)).collect();
    let (va, vb) = (a.values(metric, k), b.values(metric, k));
    a.users.iter().enumerate().filter_map(|(i, u)| Some((va[i], vb[*index.get(u.as_str())?]))).unzip()
}

/// Every declared pair in every setting, metric and K where both arms have outcomes, with
/// Holm-adjusted p-values over the distinct tests of the whole family; the sign-flip tests'
/// budget and the number of distinct tests.
fn comparisons(e: &ReportParams, outcomes: &BTreeMap<(String, String), Outcomes>, resamples: &mut stats::Resamples) -> (Vec<compare::Comparison>, usize, usize) {
    let settings = summary::first_seen(e.rows.iter().map(|r| &r.setting));
    let cells = metric_rows(&e.metrics, &e.ks, &|_: &dyn Fn(usize) -> f64| 0.0, 0.0);
    // The family first: its size sets how far down the sign-flip tests must be able to reach.
    let mut family = Vec::new();
    for setting in &settings {
        for [a, b] in &e.comparisons {
            let (Some(oa), Some(ob)) = (outcomes.get(&(a.clone(), setting.to_string())), outcomes.get(&(b.clone(), setting.to_string()))) else { continue };
            family.extend(cells.iter().map(|(metric, k, _)| (setting, a, b, metric, *k, aligned(oa, ob, metric, *k))));
        }
    }
    // Comparisons that run the same test share one p and count once in Holm's family.
    let mut tests: BTreeMap<compare::TestKey, usize> = BTreeMap::new();
    let group: Vec<usize> = family
        .iter()
        .map(|(_, _, _, metric, _, (va, vb))| {
            let next = tests.len();
            *tests.entry(compare::test_key(va, vb, metric.as_str() == "hr")).or_insert(next)
        })
        .collect();
    let budget = compare::flip_budget(tests.len(), e.bootstrap as usize);
    // Each distinct test runs once; the comparisons sharing it take its p.
    let mut test_of: Vec<Option<(&'static str, f64)>> = vec![None; tests.len()];
    let mut out = Vec::new();
    for ((setting, a, b, metric, k, (va, vb)), &g) in family.into_iter().zip(&group) {
        let (mean_diff, ci) = compare::difference(&va, &vb, resamples.of(setting, va.len()));
        let (test, p_value) = *test_of[g].get_or_insert_with(|| compare::paired_test(&va, &vb, metric == "hr", e.seed, budget));
        out.push(compare::Comparison {
            setting: setting.to_string(),
            metric: metric.clone(),
            k,
            arm_a: a.clone(),
            arm_b: b.clone(),
            users: va.len() as u64,
            mean_diff,
            ci_low: ci.map(|c| c.0),
            ci_high: ci.map(|c| c.1),
            test: test.into(),
            p_value,
            p_holm: p_value,
        });
    }
    let adjusted = compare::holm_grouped(&out.iter().map(|c| c.p_value).collect::<Vec<_>>(), &group);
    for (c, p) in out.iter_mut().zip(adjusted) {
        c.p_holm = p;
    }
    (out, budget, tests.len())
}

/// The cells whose best LLM arm differs from the runner-up by a paired test at
/// [`compare::ALPHA`] (unadjusted): the only ones the summary sets in bold.
fn significant_best(e: &ReportParams, records: &[Record], outcomes: &BTreeMap<(String, String), Outcomes>) -> Vec<BestCell> {
    let mut out = Vec::new();
    let mut cells: Vec<(&str, &str, Option<u32>)> = Vec::new();
    for r in records {
        if !cells.contains(&(r.setting.as_str(), r.metric.as_str(), r.k)) {
            cells.push((r.setting.as_str(), r.metric.as_str(), r.k));
        }
    }
    for (setting, metric, k) in cells {
        let mut arms: Vec<(&str, f64)> = records
            .iter()
            .filter(|r| r.setting == setting && r.metric == metric && r.k == k && !summary::REFERENCES.contains(&r.arm.as_str()))
            .filter_map(|r| Some((r.arm.as_str(), r.value.filter(|v| v.is_finite())?)))
            .collect();
        arms.sort_by(|x, y| y.1.total_cmp(&x.1));
        let [(best, vb), (second, vs), ..] = arms[..] else { continue };
        if vb <= vs {
            continue;
        }
        let key = |a: &str| (a.to_string(), setting.to_string());
        let (Some(ob), Some(os)) = (outcomes.get(&key(best)), outcomes.get(&key(second))) else { continue };
        let (va, vr) = aligned(ob, os, metric, k);
        let (_, p) = compare::paired_test(&va, &vr, metric == "hr", e.seed, compare::flip_budget(1, e.bootstrap as usize));
        if p < compare::ALPHA {
            out.push(BestCell { setting: setting.into(), metric: metric.into(), k, arm: best.into(), runner_up: second.into(), p_value: p });
        }
    }
    out
}

impl Results {
    pub fn frame(&self) -> Result<polars::prelude::DataFrame, table::TableError> {
        let r = &self.records;
        let s = |f: fn(&Record) -> &str| r.iter().map(|x| f(x).to_string()).collect::<Vec<_>>();
        table::frame(vec![
            Column::new("experiment".into(), s(|x| x.experiment.as_str())),
            Column::new("recipe_hash".into(), s(|x| x.recipe_hash.as_str())),
            Column::new("seed".into(), r.iter().map(|x| x.seed).collect::<Vec<_>>()),
            Column::new("arm".into(), s(|x| x.arm.as_str())),
            Column::new("setting".into(), s(|x| x.setting.as_str())),
            Column::new("protocol".into(), s(|x| x.protocol.as_str())),
            Column::new("metric".into(), s(|x| x.metric.as_str())),
            Column::new("k".into(), r.iter().map(|x| x.k).collect::<Vec<_>>()),
            Column::new("value".into(), r.iter().map(|x| x.value).collect::<Vec<_>>()),
            Column::new("ci_low".into(), r.iter().map(|x| x.ci_low).collect::<Vec<_>>()),
            Column::new("ci_high".into(), r.iter().map(|x| x.ci_high).collect::<Vec<_>>()),
            Column::new("users".into(), r.iter().map(|x| x.users).collect::<Vec<_>>()),
            Column::new("status".into(), s(|x| x.status.as_str())),
            Column::new("candidates".into(), r.iter().map(|x| x.candidates).collect::<Vec<_>>()),
            Column::new("negatives".into(), r.iter().map(|x| x.negatives.clone()).collect::<Vec<_>>()),
        ])
    }

    /// `comparisons.parquet`: setting, metric, k, arm_a, arm_b, users, mean_diff (A - B), ci_low,
    /// ci_high (95% paired bootstrap), test, p_value, p_holm.
    pub fn comparisons_frame(&self) -> Result<polars::prelude::DataFrame, table::TableError> {
        let c = &self.comparisons;
        let s = |f: fn(&compare::Comparison) -> &str| c.iter().map(|x| f(x).to_string()).collect::<Vec<_>>();
        table::frame(vec![
            Column::new("setting".into(), s(|x| x.setting.as_str())),
            Column::new("metric".into(), s(|x| x.metric.as_str())),
            Column::new("k".into(), c.iter().map(|x| x.k).collect::<Vec<_>>()),
            Column::new("arm_a".into(), s(|x| x.arm_a.as_str())),
            Column::new("arm_b".into(), s(|x| x.arm_b.as_str())),
            Column::new("users".into(), c.iter().map(|x| x.users).collect::<Vec<_>>()),
            Column::new("mean_diff".into(), c.iter().map(|x| x.mean_diff).collect::<Vec<_>>()),
            Column::new("ci_low".into(), c.iter().map(|x| x.ci_low).collect::<Vec<_>>()),
            Column::new("ci_high".into(), c.iter().map(|x| x.ci_high).collect::<Vec<_>>()),
            Column::new("test".into(), s(|x| x.test.as_str())),
            Column::new("p_value".into(), c.iter().map(|x| x.p_value).collect::<Vec<_>>()),
            Column::new("p_holm".into(), c.iter().map(|x| x.p_holm).collect::<Vec<_>>()),
        ])
    }

    /// The CSV text of the table.
    pub fn csv(&self) -> Result<String, table::TableError> {
        table::csv_text(&mut self.frame()?)
    }

    /// Write `results.parquet`, `results.csv`, `report.json`, `summary.md` and the plots to `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), ResultsError> {
        let io = |path: PathBuf| move |source| ResultsError::Io { path, source };
        table::write_parquet(&mut self.frame()?, &dir.join("results.parquet"))?;
        std::fs::write(dir.join("results.csv"), self.csv()?).map_err(io(dir.join("results.csv")))?;
        table::write_json(&dir.join("report.json"), &serde_json::json!({ "experiment": self.experiment, "recipe_hash": self.recipe_hash, "seed": self.seed, "failures": self.failures, "adaptations": self.adaptations, "settings": self.settings, "comparisons": self.comparisons, "flip_budget": self.flip_budget, "distinct_tests": self.distinct_tests, "best": self.best }))?;
        if !self.comparisons.is_empty() {
            let mut df = self.comparisons_frame()?;
            table::write_parquet(&mut df, &dir.join("comparisons.parquet"))?;
            table::write_csv(&mut df, &dir.join("comparisons.csv"))?;
        }
        std::fs::write(dir.join("summary.md"), markdown(self)).map_err(io(dir.join("summary.md")))?;
        let mut metrics: Vec<&str> = Vec::new();
        for r in &self.records {
            if !metrics.contains(&r.metric.as_str()) {
                metrics.push(&r.metric);
            }
        }
        for m in metrics {
            let path = dir.join(format!("plot_{m}.svg"));
            std::fs::write(&path, svg_plot(self, m)).map_err(io(path.clone()))?;
        }
        Ok(())
    }

    /// Read a run directory's (or report artifact's) tables back.
    pub fn read(dir: &Path) -> Result<Results, ResultsError> {
        let path = dir.join("results.parquet");
        if !path.is_file() {
            return Err(ResultsError::NoResults { path: dir.to_path_buf() });
        }
        let df = table::read_parquet(&path)?;
        let s = |c: &str| table::strs(&df, c);
        let (experiment, recipe_hash, arm, setting, protocol, metric, status) = (s("experiment")?, s("recipe_hash")?, s("arm")?, s("setting")?, s("protocol")?, s("metric")?, s("status")?);
        let (seed, k, value, users) = (table::opt_i64s(&df, "seed")?, table::opt_i64s(&df, "k")?, table::opt_f64s(&df, "value")?, table::opt_i64s(&df, "users")?);
        // Tables written before intervals were reported have no interval columns.
        let has_ci = table::names(&df).iter().any(|c| c == "ci_low");
        let has_protocol = table::names(&df).iter().any(|c| c == "negatives");
        let (candidates, negatives) = if has_protocol { (table::opt_i64s(&df, "candidates")?, table::opt_strs(&df, "negatives")?) } else { (vec![None; arm.len()], vec![None; arm.len()]) };
        let (ci_low, ci_high) = if has_ci { (table::opt_f64s(&df, "ci_low")?, table::opt_f64s(&df, "ci_high")?) } else { (vec![None; arm.len()], vec![None; arm.len()]) };
        let records: Vec<Record> = (0..arm.len())
            .map(|i| Record {
                experiment: experiment[i].clone(),
                recipe_hash: recipe_hash[i].clone(),
                seed: seed[i].unwrap_or(0) as u64,
                arm: arm[i].clone(),
                setting: setting[i].clone(),
                protocol: protocol[i].clone(),
                metric: metric[i].clone(),
                k: k[i].map(|k| k as u32),
                value: value[i],
                ci_low: ci_low[i],
                ci_high: ci_high[i],
                users: users[i].map(|u| u as u64),
                status: status[i].clone(),
                candidates: candidates[i].map(|c| c as u32),
                negatives: negatives[i].clone(),
            })
            .collect();
        let report: Option<serde_json::Value> = table::read_json(&dir.join("report.json")).ok();
        let failures = report.as_ref().and_then(|r| serde_json::from_value(r["failures"].clone()).ok()).unwrap_or_default();
        let adaptations = report.as_ref().and_then(|r| serde_json::from_value(r["adaptations"].clone()).ok()).unwrap_or_default();
        let field = |name: &str| report.as_ref().map(|r| r[name].clone()).unwrap_or_default();
        let settings = serde_json::from_value(field("settings")).unwrap_or_default();
        let comparisons = serde_json::from_value(field("comparisons")).unwrap_or_default();
        let best = serde_json::from_value(field("best")).unwrap_or_default();
        let flip_budget = serde_json::from_value(field("flip_budget")).unwrap_or_default();
        let distinct_tests = serde_json::from_value(field("distinct_tests")).unwrap_or_default();
        let first = records.first();
        Ok(Results {
            experiment: first.map(|r| r.experiment.clone()).unwrap_or_default(),
            recipe_hash: first.map(|r| r.recipe_hash.clone()).unwrap_or_default(),
            seed: first.map_or(0, |r| r.seed),
            records,
            failures,
            adaptations,
            settings,
            comparisons,
            flip_budget,
            distinct_tests,
            best,
        })
    }
}

/// The `report` stage: gather, write into the stage's output and the run directory, log the summary.
pub fn report(ctx: &StageContext<'_>, p: &ReportParams) -> Result<(), ResultsError> {
    let mut results = gather(p, &ctx.inputs, ctx.failed_inputs)?;
    results.adaptations = coefficients::adaptations(&p.learned, &ctx.inputs)?;
    results.settings = setting_facts(ctx, p)?;
    results.write(ctx.out)?;
    let learned = coefficients::gather(&p.learned, &ctx.inputs)?;
    coefficients::write(&learned, ctx.out)?;
    if ctx.run_dir != ctx.out {
        results.write(ctx.run_dir)?;
        coefficients::write(&learned, ctx.run_dir)?;
    }
    (ctx.log)(&markdown(&results));
    Ok(())
}

impl From<ResultsError> for crate::exec::context::StageError {
    fn from(e: ResultsError) -> Self {
        crate::exec::context::StageError::domain(e, false)
    }
}
