//! `reccocktail data RECIPE`: what the data stages make of a recipe, per dataset, domain, adapter
//! and evaluation setting, with one rendered example prompt. The stages run through the artifact
//! cache like in `run` (so a later `run` finds them done), without a run directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::domain::SplitSummary;
use super::process::{Counts, Step};
use super::stages::{DataReport, EvalSetSummary, PromptsSummary};
use super::DataError;
use crate::table;
use crate::backend::Runtime;
use crate::exec::{self, RunError};
use crate::plan::{Plan, StageKind};
use crate::prompt::Rendered;
use crate::recipe::ResolvedRecipe;

#[derive(Debug, Serialize)]
pub struct DatasetStats {
    pub format: String,
    pub raw: Counts,
    pub filtered: Counts,
    pub malformed_rows: u64,
    pub steps: Vec<Step>,
}

#[derive(Debug, Serialize)]
pub struct DomainStats {
    pub dataset: String,
    pub label: String,
    /// The domain's slice of the cleaned dataset, then the users kept for the split.
    pub filtered: Counts,
    pub split: Counts,
    pub train_samples: usize,
    pub valid_samples: usize,
    pub test_samples: usize,
    pub mean_history: f64,
}

#[derive(Debug, Serialize)]
pub struct DataStats {
    pub experiment: String,
    pub datasets: BTreeMap<String, DatasetStats>,
    pub domains: BTreeMap<String, DomainStats>,
    pub adapters: BTreeMap<String, PromptsSummary>,
    pub settings: BTreeMap<String, EvalSetSummary>,
    /// One rendered prompt (the first evaluation prompt, else the first training prompt).
    pub example: Option<Rendered>,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Run (or find in the cache) every data stage of the plan and gather their summaries.
pub fn data_stats(resolved: &ResolvedRecipe, plan: &Plan, runtime: &Runtime, results_dir: &Path, log: &dyn Fn(&str)) -> Result<DataStats, InspectError> {
    // Fetch stages come in only as what these need (never the backbone).
    let kinds = [StageKind::Data, StageKind::Split, StageKind::Prompts, StageKind::EvalSet];
    let ids: Vec<&str> = plan.stages.iter().filter(|s| kinds.contains(&s.kind)).map(|s| s.id.as_str()).collect();
    let dirs = exec::ensure(plan, runtime, results_dir, &ids, log)?;
    let dir_of = |id: &str| -> &Path { dirs[&plan.stage(id).expect("plan stage").id].as_path() };

    let mut datasets = BTreeMap::new();
    for name in resolved.datasets.keys() {
        let r: DataReport = table::read_json(&dir_of(&format!("data:{name}")).join("report.json"))?;
        let raw = r.steps.first().map(|s| s.counts).unwrap_or_default();
        let filtered = r.steps.last().map(|s| s.counts).unwrap_or_default();
        datasets.insert(name.clone(), DatasetStats { format: r.format, raw, filtered, malformed_rows: r.load.malformed(), steps: r.steps });
    }
    let mut domains = BTreeMap::new();
    for (name, d) in &resolved.domains {
        let s: SplitSummary = table::read_json(&dir_of(&format!("split:{name}")).join("split.json"))?;
        domains.insert(name.clone(), DomainStats {
            dataset: d.dataset.clone(),
            label: d.label.clone(),
            filtered: s.filtered,
            split: s.split,
            train_samples: s.train_samples,
            valid_samples: s.valid_samples,
            test_samples: s.test_samples,
            mean_history: round(s.mean_history),
        });
    }
    let mut adapters = BTreeMap::new();
    for a in resolved.adapters.iter().filter(|a| a.pretrained.is_none()) {
        let p: PromptsSummary = table::read_json(&dir_of(&format!("prompts:{}", a.name)).join("prompts.json"))?;
        adapters.insert(a.name.clone(), p);
    }
    let mut settings = BTreeMap::new();
    for s in &resolved.evaluation.settings {
        let mut e: EvalSetSummary = table::read_json(&dir_of(&format!("eval-set:{}", s.name)).join("eval_set.json"))?;
        e.mean_history = round(e.mean_history);
        settings.insert(s.name.clone(), e);
    }
    let example = settings.values().find_map(|e| e.example.clone()).or_else(|| adapters.values().find_map(|a| a.example.clone()));
    // Examples are shown once, at the top level.
    settings.values_mut().for_each(|e| e.example = None);
    adapters.values_mut().for_each(|a| a.example = None);
    Ok(DataStats { experiment: resolved.experiment.name.clone(), datasets, domains, adapters, settings, example })
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn counts(c: &Counts) -> String {
    format!("{} users, {} items, {} interactions", c.users, c.items, c.interactions)
}

/// The human-readable report.
pub fn render(s: &DataStats) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "experiment `{}`", s.experiment);
    for (name, d) in &s.datasets {
        let _ = writeln!(o, "\ndataset `{name}` ({})", d.format);
        for step in &d.steps {
            let _ = writeln!(o, "  {:<11} {}", step.step, counts(&step.counts));
        }
        if d.malformed_rows > 0 {
            let _ = writeln!(o, "  malformed rows skipped: {}", d.malformed_rows);
        }
    }
    for (name, d) in &s.domains {
        let _ = writeln!(o, "\ndomain `{name}` (\"{}\", dataset `{}`)", d.label, d.dataset);
        let _ = writeln!(o, "  {:<11} {}", "filtered", counts(&d.filtered));
        let _ = writeln!(o, "  {:<11} {}", "split", counts(&d.split));
        let _ = writeln!(o, "  {:<11} {} train, {} valid, {} test; mean history {:.1}", "samples", d.train_samples, d.valid_samples, d.test_samples, d.mean_history);
    }
    for (name, a) in &s.adapters {
        let per: Vec<String> = a.domains.iter().map(|d| format!("{} {}+{}", d.domain, d.train, d.valid)).collect();
        let _ = writeln!(o, "\nadapter `{name}`: {} training, {} validation prompts ({}; K = {})", a.train, a.valid, per.join(", "), a.k);
    }
    for (name, e) in &s.settings {
        let users = crate::recipe::types::serde_name(&e.users);
        let _ = writeln!(
            o,
            "\nsetting `{name}` ({users} users of `{}`): {} of {} test users eligible, {} evaluated; mean history {:.1}, {} candidates",
            e.domain, e.eligible, e.domain_users, e.test, e.mean_history, e.candidates
        );
        let _ = writeln!(o, "  history length of the test users: {}", e.history_lengths.describe());
        let _ = writeln!(o, "  leak check: {}", e.leakage.describe(e.test));
        for (kind, set) in [("disjoint from the test users", &e.adaptation.disjoint), ("of the test users", &e.adaptation.from_test)] {
            if let Some(a) = set {
                let _ = writeln!(o, "  adaptation prompts {kind}: {} of {} requested", a.prompts, a.requested);
            }
        }
    }
    if let Some(ex) = &s.example {
        let _ = writeln!(o, "\nexample prompt\n--- instruction ---\n{}\n--- response ---\n{}", ex.instruction, ex.response);
    }
    o
}

impl From<crate::table::TableError> for InspectError {
    fn from(e: crate::table::TableError) -> Self {
        InspectError::Data(crate::data::DataError::from(e))
    }
}
