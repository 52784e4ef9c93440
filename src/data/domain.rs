//! A domain (a dataset, or the slice of it whose items match a filter) and its chronological
//! leave-one-out split: per user, test = last item, valid = second to last, train = every earlier
//! prefix with at least one history item (latest first, capped by `max_train_per_user`).
//!
//! Artifacts of a `split:<domain>` stage: `items.parquet` (item, title, genres), `sequences.parquet`
//! (user, position, item, timestamp: each user's chronological sequence), `samples.parquet`
//! (user, split, position, target, history: one row per sample) and `split.json`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};

use super::process::Counts;
use super::{DataError, MULTI_SEP};
use crate::table;
use crate::recipe::resolve::{ResolvedData, ResolvedDomain};
use crate::recipe::types::{ItemFilter, NegativeSampling};

/// A user needs a test item, a validation item and one item of history before them.
pub const MIN_SEQUENCE: usize = 3;

/// Settings of the split, carried in `split.json` so later stages read the values their key covers.
/// (Not the domain's name: identical domains share one artifact, whatever they are called.)
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitSettings {
    pub label: String,
    pub max_history: u32,
    pub candidates: u32,
    pub negatives: NegativeSampling,
    pub max_train_per_user: Option<u32>,
    pub min_sequence: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitSummary {
    pub settings: SplitSettings,
    /// The cleaned dataset, then the domain's slice, then its users with enough interactions.
    pub dataset: Counts,
    pub filtered: Counts,
    pub split: Counts,
    pub train_samples: usize,
    pub valid_samples: usize,
    pub test_samples: usize,
    /// Mean number of items before the test item (untruncated).
    pub mean_history: f64,
}

/// Which sequence positions are targets of which split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    pub test: usize,
    pub valid: usize,
    /// Latest first.
    pub train: Vec<usize>,
}

/// Leave-one-out positions of a sequence of `n >= MIN_SEQUENCE` items.
pub fn positions(n: usize, max_train: Option<u32>) -> Positions {
    debug_assert!(n >= MIN_SEQUENCE);
    let cap = max_train.map(|c| c as usize).unwrap_or(usize::MAX);
    Positions { test: n - 1, valid: n - 2, train: (1..n - 2).rev().take(cap).collect() }
}

/// A user and their (item, timestamp) rows.
type UserRows = (String, Vec<(String, Option<i64>)>);

/// A loaded split: items (index = item number), users with their chronological sequences.
#[derive(Debug, Clone)]
pub struct DomainSplit {
    pub settings: SplitSettings,
    pub items: Vec<String>,
    pub titles: Vec<String>,
    pub users: Vec<String>,
    pub sequences: Vec<Vec<u32>>,
    pub timestamps: Vec<Vec<Option<i64>>>,
}

/// Whether an item field value (multi-valued, `|`-joined) matches the filter.
pub fn matches(value: Option<&str>, f: &ItemFilter) -> bool {
    value.is_some_and(|v| v.split(MULTI_SEP).any(|x| f.any_of.iter().any(|w| w == x.trim())))
}

impl DomainSplit {
    /// Slice the cleaned dataset (a `data` stage's artifacts) to the domain and keep users with
    /// at least `max(min_history, MIN_SEQUENCE)` interactions in it.
    pub fn build(data_dir: &Path, name: &str, d: &ResolvedDomain, s: &ResolvedData, min_history: u32) -> Result<(DomainSplit, SplitSummary), DataError> {
        let inter = table::read_parquet(&data_dir.join("interactions.parquet"))?;
        let items = table::read_parquet(&data_dir.join("items.parquet"))?;
        let ids = table::strs(&items, "item")?;
        let titles = table::strs(&items, "title")?;
        let keep: Vec<bool> = match &d.filter {
            None => vec![true; ids.len()],
            Some(f) => {
                if !table::names(&items).contains(&f.field) {
                    return Err(DataError::Invalid(format!(
                        "domain `{name}` filters on item field `{}`, which dataset `{}` does not have (fields: {})",
                        f.field,
                        d.dataset,
                        table::names(&items).join(", ")
                    )));
                }
                table::opt_strs(&items, &f.field)?.iter().map(|v| matches(v.as_deref(), f)).collect()
            }
        };
        let title_of: HashMap<&str, &str> = ids.iter().zip(&titles).zip(&keep).filter(|(_, k)| **k).map(|((i, t), _)| (i.as_str(), t.as_str())).collect();
        let (users, item_col, ts) = (table::strs(&inter, "user")?, table::strs(&inter, "item")?, table::opt_i64s(&inter, "timestamp")?);
        let dataset = counts(users.iter().zip(&item_col));

        // Sequences in the data stage's (chronological) row order; users by first appearance.
        let mut seqs: BTreeMap<usize, UserRows> = BTreeMap::new();
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut filtered_pairs = Vec::new();
        let mut partition: HashMap<&str, bool> = HashMap::new();
        for (k, (u, i)) in users.iter().zip(&item_col).enumerate() {
            if !title_of.contains_key(i.as_str()) {
                continue;
            }
            if let Some(p) = &d.users
                && !*partition.entry(u.as_str()).or_insert_with(|| p.keeps(u)) {
                continue;
            }
            filtered_pairs.push((u, i));
            let slot = *first.entry(u.as_str()).or_insert(k);
            seqs.entry(slot).or_insert_with(|| (u.clone(), Vec::new())).1.push((i.clone(), ts[k]));
        }
        let filtered = counts(filtered_pairs.into_iter());
        let need = (min_history as usize).max(MIN_SEQUENCE);
        let kept: Vec<UserRows> = seqs.into_values().filter(|(_, s)| s.len() >= need).collect();

        let mut item_ids: Vec<String> = kept.iter().flat_map(|(_, s)| s.iter().map(|(i, _)| i.clone())).collect::<HashSet<_>>().into_iter().collect();
        item_ids.sort();
        let index: HashMap<&str, u32> = item_ids.iter().enumerate().map(|(k, i)| (i.as_str(), k as u32)).collect();
        let split = DomainSplit {
            settings: SplitSettings {
                label: d.label.clone(),
                max_history: s.max_history,
                candidates: s.candidates,
                negatives: s.negatives,
                max_train_per_user: s.max_train_per_user,
                min_sequence: need,
            },
            titles: item_ids.iter().map(|i| title_of[i.as_str()].to_string()).collect(),
            users: kept.iter().map(|(u, _)| u.clone()).collect(),
            sequences: kept.iter().map(|(_, s)| s.iter().map(|(i, _)| index[i.as_str()]).collect()).collect(),
            timestamps: kept.iter().map(|(_, s)| s.iter().map(|(_, t)| *t).collect()).collect(),
            items: item_ids.clone(),
        };
        let summary = split.summary(dataset, filtered);
        Ok((split, summary))
    }

    pub fn summary(&self, dataset: Counts, filtered: Counts) -> SplitSummary {
        let n: usize = self.sequences.iter().map(Vec::len).sum();
        let train: usize = self.sequences.iter().map(|s| positions(s.len(), self.settings.max_train_per_user).train.len()).sum();
        let users = self.users.len();
        SplitSummary {
            settings: self.settings.clone(),
            dataset,
            filtered,
            split: Counts { users, items: self.items.len(), interactions: n },
            train_samples: train,
            valid_samples: users,
            test_samples: users,
            mean_history: if users == 0 { 0.0 } else { (n - users) as f64 / users as f64 },
        }
    }

    /// History item numbers before `position`, truncated to the last `max_history`.
    pub fn history(&self, user: usize, position: usize) -> &[u32] {
        let start = position.saturating_sub(self.settings.max_history as usize);
        &self.sequences[user][start..position]
    }

    pub fn positions(&self, user: usize) -> Positions {
        positions(self.sequences[user].len(), self.settings.max_train_per_user)
    }

    /// Interaction counts per item over the training portion (every item before the validation one).
    pub fn train_counts(&self) -> Vec<u64> {
        let mut c = vec![0u64; self.items.len()];
        for s in &self.sequences {
            for &i in &s[..s.len() - 2] {
                c[i as usize] += 1;
            }
        }
        c
    }

    pub fn write(&self, dir: &Path, summary: &SplitSummary) -> Result<(), DataError> {
        let mut items = table::frame(vec![Column::new("item".into(), self.items.clone()), Column::new("title".into(), self.titles.clone())])?;
        table::write_parquet(&mut items, &dir.join("items.parquet"))?;
        let (mut u, mut p, mut it, mut t) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, seq) in self.sequences.iter().enumerate() {
            for (pos, &i) in seq.iter().enumerate() {
                u.push(self.users[k].as_str());
                p.push(pos as u32);
                it.push(self.items[i as usize].as_str());
                t.push(self.timestamps[k][pos]);
            }
        }
        let mut seqs = table::frame(vec![Column::new("user".into(), u), Column::new("position".into(), p), Column::new("item".into(), it), Column::new("timestamp".into(), t)])?;
        table::write_parquet(&mut seqs, &dir.join("sequences.parquet"))?;
        table::write_parquet(&mut self.samples_frame()?, &dir.join("samples.parquet"))?;
        Ok(table::write_json(&dir.join("split.json"), summary)?)
    }

    fn samples_frame(&self) -> Result<DataFrame, DataError> {
        let (mut u, mut split, mut pos, mut target, mut hist) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in 0..self.users.len() {
            let p = self.positions(k);
            let rows = [("test", p.test), ("valid", p.valid)].into_iter().chain(p.train.iter().map(|&t| ("train", t)));
            for (name, at) in rows {
                u.push(self.users[k].as_str());
                split.push(name);
                pos.push(at as u32);
                target.push(self.items[self.sequences[k][at] as usize].as_str());
                hist.push(self.history(k, at).len() as u32);
            }
        }
        Ok(table::frame(vec![
            Column::new("user".into(), u),
            Column::new("split".into(), split),
            Column::new("position".into(), pos),
            Column::new("target".into(), target),
            Column::new("history".into(), hist),
        ])?)
    }

    /// Load a split written by [`DomainSplit::write`].
    pub fn read(dir: &Path) -> Result<(DomainSplit, SplitSummary), DataError> {
        let summary: SplitSummary = table::read_json(&dir.join("split.json"))?;
        let items = table::read_parquet(&dir.join("items.parquet"))?;
        let ids = table::strs(&items, "item")?;
        let index: HashMap<&str, u32> = ids.iter().enumerate().map(|(k, i)| (i.as_str(), k as u32)).collect();
        let seqs = table::read_parquet(&dir.join("sequences.parquet"))?;
        let (u, it, t) = (table::strs(&seqs, "user")?, table::strs(&seqs, "item")?, table::opt_i64s(&seqs, "timestamp")?);
        let mut split = DomainSplit { settings: summary.settings.clone(), items: ids.clone(), titles: table::strs(&items, "title")?, users: Vec::new(), sequences: Vec::new(), timestamps: Vec::new() };
        for k in 0..u.len() {
            if split.users.last() != Some(&u[k]) {
                split.users.push(u[k].clone());
                split.sequences.push(Vec::new());
                split.timestamps.push(Vec::new());
            }
            let i = *index.get(it[k].as_str()).ok_or_else(|| DataError::Invalid(format!("{}: item `{}` is not in items.parquet", dir.display(), it[k])))?;
            split.sequences.last_mut().expect("pushed").push(i);
            split.timestamps.last_mut().expect("pushed").push(t[k]);
        }
        Ok((split, summary))
    }
}

fn counts<'a>(pairs: impl Iterator<Item = (&'a String, &'a String)>) -> Counts {
    let (mut users, mut items, mut n) = (HashSet::new(), HashSet::new(), 0);
    for (u, i) in pairs {
        users.insert(u);
        items.insert(i);
        n += 1;
    }
    Counts { users: users.len(), items: items.len(), interactions: n }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_one_out_positions() {
        assert_eq!(positions(3, None), Positions { test: 2, valid: 1, train: vec![] });
        assert_eq!(positions(6, None), Positions { test: 5, valid: 4, train: vec![3, 2, 1] });
        assert_eq!(positions(6, Some(2)), Positions { test: 5, valid: 4, train: vec![3, 2] });
    }

    #[test]
    fn filter_matches_any_value_of_a_multi_valued_field() {
        let f = ItemFilter { field: "genres".into(), any_of: vec!["Drama".into(), "War".into()] };
        assert!(matches(Some("Action|War"), &f));
        assert!(!matches(Some("Action|Dramatic"), &f));
        assert!(!matches(None, &f));
    }
}
