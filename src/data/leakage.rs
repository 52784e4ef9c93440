//! The leak check of an evaluation set: were its test targets shown to an adapter in training?
//!
//! Domains sliced from one dataset share users and items (a drama film is often an action film
//! too), so a base spirit trained on other slices can have seen a test user's held-out item, as a
//! target or in a history, for the very users a table calls cold. Counted per evaluation set:
//! - `targets_in_training`: test users whose (user, target item) pair occurs, within the same
//!   dataset, as the target or among the history items of any adapter's training or validation
//!   samples (`by_adapter` splits it);
//! - `shared_titles`: distinct test target titles that are training targets in samples of another
//!   dataset (ids do not compare across datasets; titles may, and then the item may be known).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::DataError;
use super::params::LeakageParams;
use crate::recipe::types::Leakage;
use crate::table;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakReport {
    pub policy: Option<Leakage>,
    pub targets_in_training: usize,
    pub by_adapter: BTreeMap<String, usize>,
    pub shared_titles: usize,
}

/// One evaluated user's held-out target.
pub struct TestTarget<'a> {
    pub user: &'a str,
    pub item: &'a str,
    pub title: &'a str,
}

/// Count the leaks of the test targets of a setting of `domain` against the training samples in
/// `training` (each adapter's prompts directory, in the order of `p.adapters`).
pub fn check(p: &LeakageParams, domain: &str, tests: &[TestTarget<'_>], training: &[PathBuf]) -> Result<LeakReport, DataError> {
    let dataset = p.datasets.get(domain).map(String::as_str).unwrap_or(domain);
    let mut report = LeakReport { policy: Some(p.policy), ..Default::default() };
    let mut leaked: HashSet<(&str, &str)> = HashSet::new();
    let mut foreign_titles: HashSet<String> = HashSet::new();
    for (name, dir) in p.adapters.iter().zip(training) {
        let mut seen: HashSet<(String, String)> = HashSet::new();
        for file in ["train.parquet", "valid.parquet"] {
            let df = table::read_parquet(&dir.join(file))?;
            if !table::names(&df).iter().any(|c| c == "history_items") {
                return Err(DataError::Invalid(format!(
                    "{} has no `history_items` column, which the leak check needs (written by an older reccocktail: remove that cache entry to rebuild it)",
                    dir.join(file).display()
                )));
            }
            let (domains, users, targets, titles) = (table::strs(&df, "domain")?, table::strs(&df, "user")?, table::strs(&df, "target")?, table::strs(&df, "target_title")?);
            let histories = table::str_lists(&df, "history_items")?;
            for k in 0..users.len() {
                if p.datasets.get(&domains[k]).map_or(domains[k].as_str(), String::as_str) == dataset {
                    seen.insert((users[k].clone(), targets[k].clone()));
                    seen.extend(histories[k].iter().map(|i| (users[k].clone(), i.clone())));
                } else {
                    foreign_titles.insert(titles[k].clone());
                }
            }
        }
        let mut hits = 0;
        for t in tests.iter().filter(|t| seen.contains(&(t.user.to_string(), t.item.to_string()))) {
            hits += 1;
            leaked.insert((t.user, t.item));
        }
        report.by_adapter.insert(name.clone(), hits);
    }
    report.targets_in_training = leaked.len();
    report.shared_titles = tests.iter().map(|t| t.title).filter(|t| foreign_titles.contains(*t)).collect::<HashSet<_>>().len();
    Ok(report)
}

impl LeakReport {
    /// One line for logs and summaries.
    pub fn describe(&self, tests: usize) -> String {
        let adapters: Vec<String> = self.by_adapter.iter().filter(|(_, n)| **n > 0).map(|(a, n)| format!("{a}: {n}")).collect();
        let by = if adapters.is_empty() { String::new() } else { format!(" ({})", adapters.join(", ")) };
        format!("{} of {tests} test targets seen in adapter training{by}; {} target titles shared with another dataset's training targets", self.targets_in_training, self.shared_titles)
    }
}
