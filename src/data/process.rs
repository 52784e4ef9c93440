//! Dataset cleaning declared in the recipe, in this order: interactions with items lacking a title
//! dropped (`no_metadata`), `min_rating`, chronological order (timestamp, ties by file order; or
//! file order), `dedup` (first interaction of each user-item pair kept), iterative `k_core`, and
//! `min_history`. Counts after every step are kept for the report.

use std::collections::{HashMap, HashSet};

use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};

use super::DataError;
use crate::table;
use crate::recipe::resolve::DatasetSpec;
use crate::recipe::types::Order;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub user: u32,
    pub item: u32,
    pub timestamp: Option<i64>,
    pub rating: Option<f64>,
    /// Position of the row in its file.
    pub order: u64,
}

/// An interaction log with interned user and item ids.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub users: Vec<String>,
    pub items: Vec<String>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub step: String,
    #[serde(flatten)]
    pub counts: Counts,
}

fn intern(map: &mut HashMap<String, u32>, names: &mut Vec<String>, s: String) -> u32 {
    if let Some(&i) = map.get(&s) {
        return i;
    }
    let i = names.len() as u32;
    map.insert(s.clone(), i);
    names.push(s);
    i
}

impl Log {
    /// From a canonical interactions table.
    pub fn from_frame(df: &DataFrame) -> Result<Log, DataError> {
        let (users, items) = (table::strs(df, "user")?, table::strs(df, "item")?);
        let (ts, ratings, order) = (table::opt_i64s(df, "timestamp")?, table::opt_f64s(df, "rating")?, table::opt_i64s(df, "order")?);
        let mut log = Log::default();
        let (mut um, mut im) = (HashMap::new(), HashMap::new());
        for (k, (u, i)) in users.into_iter().zip(items).enumerate() {
            let user = intern(&mut um, &mut log.users, u);
            let item = intern(&mut im, &mut log.items, i);
            log.rows.push(Row { user, item, timestamp: ts[k], rating: ratings[k], order: order[k].unwrap_or(k as i64) as u64 });
        }
        Ok(log)
    }

    /// The canonical interactions table, rows in the log's order.
    pub fn to_frame(&self) -> Result<DataFrame, DataError> {
        let r = &self.rows;
        Ok(table::frame(vec![
            Column::new("user".into(), r.iter().map(|x| self.users[x.user as usize].as_str()).collect::<Vec<_>>()),
            Column::new("item".into(), r.iter().map(|x| self.items[x.item as usize].as_str()).collect::<Vec<_>>()),
            Column::new("timestamp".into(), r.iter().map(|x| x.timestamp).collect::<Vec<_>>()),
            Column::new("rating".into(), r.iter().map(|x| x.rating).collect::<Vec<_>>()),
            Column::new("order".into(), r.iter().map(|x| x.order).collect::<Vec<_>>()),
        ])?)
    }

    pub fn counts(&self) -> Counts {
        let users: HashSet<u32> = self.rows.iter().map(|r| r.user).collect();
        let items: HashSet<u32> = self.rows.iter().map(|r| r.item).collect();
        Counts { users: users.len(), items: items.len(), interactions: self.rows.len() }
    }

    fn retain(&mut self, keep: impl FnMut(&Row) -> bool) {
        self.rows.retain(keep);
    }
}

/// Sort chronologically: by timestamp with ties in file order, or by file order.
pub fn sort_chronologically(log: &mut Log, order: Order, format: &str) -> Result<(), DataError> {
    match order {
        Order::File => log.rows.sort_by_key(|r| r.order),
        Order::Timestamp => {
            if log.rows.iter().any(|r| r.timestamp.is_none()) {
                return Err(DataError::NoTimestamps { format: format.to_string() });
            }
            log.rows.sort_by_key(|r| (r.timestamp, r.order));
        }
    }
    Ok(())
}

/// Keep only users and items with at least `k` interactions, repeatedly until stable.
pub fn k_core(log: &mut Log, k: u32) {
    let k = k as usize;
    loop {
        let mut per_user = vec![0usize; log.users.len()];
        let mut per_item = vec![0usize; log.items.len()];
        for r in &log.rows {
            per_user[r.user as usize] += 1;
            per_item[r.item as usize] += 1;
        }
        let before = log.rows.len();
        log.retain(|r| per_user[r.user as usize] >= k && per_item[r.item as usize] >= k);
        if log.rows.len() == before {
            return;
        }
    }
}

/// Drop users with fewer than `n` interactions.
pub fn min_history(log: &mut Log, n: u32) {
    let mut per_user = vec![0usize; log.users.len()];
    for r in &log.rows {
        per_user[r.user as usize] += 1;
    }
    log.retain(|r| per_user[r.user as usize] >= n as usize);
}

/// Apply the dataset's cleaning. `titled` holds the items that have a title.
pub fn clean(mut log: Log, titled: &HashSet<&str>, d: &DatasetSpec, format: &str) -> Result<(Log, Vec<Step>), DataError> {
    let mut steps = vec![Step { step: "raw".into(), counts: log.counts() }];
    let mut record = |name: &str, log: &Log| steps.push(Step { step: name.into(), counts: log.counts() });
    let has_title: Vec<bool> = log.items.iter().map(|i| titled.contains(i.as_str())).collect();
    log.retain(|r| has_title[r.item as usize]);
    record("no_metadata", &log);
    if let Some(min) = d.min_rating {
        log.retain(|r| r.rating.is_some_and(|x| x >= min));
        record("min_rating", &log);
    }
    sort_chronologically(&mut log, d.order, format)?;
    if d.dedup {
        let mut seen = HashSet::new();
        log.retain(|r| seen.insert((r.user, r.item)));
        record("dedup", &log);
    }
    if let Some(k) = d.k_core {
        k_core(&mut log, k);
        record("k_core", &log);
    }
    min_history(&mut log, d.min_history);
    record("min_history", &log);
    Ok((log, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(rows: &[(&str, &str, i64)]) -> Log {
        let mut l = Log::default();
        let (mut um, mut im) = (HashMap::new(), HashMap::new());
        for (k, (u, i, t)) in rows.iter().enumerate() {
            let user = intern(&mut um, &mut l.users, u.to_string());
            let item = intern(&mut im, &mut l.items, i.to_string());
            l.rows.push(Row { user, item, timestamp: Some(*t), rating: Some(5.0), order: k as u64 });
        }
        l
    }

    #[test]
    fn k_core_is_iterative() {
        // d has 1 interaction: dropping it leaves u3 with 1, dropping u3 leaves c with 1 (u1's).
        let mut l = log(&[("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "a", 1), ("u2", "b", 2), ("u3", "c", 1), ("u3", "d", 2)]);
        k_core(&mut l, 2);
        assert_eq!(l.counts(), Counts { users: 2, items: 2, interactions: 4 });
        assert!(l.rows.iter().all(|r| ["a", "b"].contains(&l.items[r.item as usize].as_str())));
    }

    #[test]
    fn chronological_with_ties_in_file_order_and_dedup_keeps_first() {
        let mut l = log(&[("u", "b", 5), ("u", "a", 5), ("u", "c", 1), ("u", "a", 9)]);
        sort_chronologically(&mut l, Order::Timestamp, "x").unwrap();
        let seq: Vec<&str> = l.rows.iter().map(|r| l.items[r.item as usize].as_str()).collect();
        assert_eq!(seq, ["c", "b", "a", "a"]);
        let mut seen = HashSet::new();
        l.retain(|r| seen.insert((r.user, r.item)));
        assert_eq!(l.rows.iter().map(|r| r.timestamp.unwrap()).collect::<Vec<_>>(), [1, 5, 5]);
        let mut no_ts = log(&[("u", "a", 1)]);
        no_ts.rows[0].timestamp = None;
        assert!(sort_chronologically(&mut no_ts, Order::Timestamp, "book_crossing").unwrap_err().to_string().contains("order = \"file\""));
    }
}
