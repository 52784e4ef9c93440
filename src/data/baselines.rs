//! Non-LLM reference rows on an evaluation set's fixed candidate lists: `random` (the expected
//! metrics of a uniformly random ranking) and `popularity` (candidates ranked by their number of
//! training interactions in the domain; ties by presentation order). Also the ranking metrics.
//!
//! Artifacts: `ranks.parquet` (baseline, user, rank: 1-based; the expected rank for random),
//! `metrics.parquet` (baseline, metric, k (null for mrr), value) and `baselines.json`.

use std::collections::HashMap;

use polars::prelude::Column;
use serde_json::json;

use super::domain::DomainSplit;
use super::{DataError, table};
use crate::exec::StageContext;
use crate::recipe::types::{Baseline, Metric};

/// HR@K of one ranking with the target at 1-based `rank`.
pub fn hr_at(rank: usize, k: u32) -> f64 {
    if rank <= k as usize { 1.0 } else { 0.0 }
}

/// NDCG@K with one relevant item: 1 / log2(rank + 1) within the cut-off.
pub fn ndcg_at(rank: usize, k: u32) -> f64 {
    if rank <= k as usize { 1.0 / ((rank + 1) as f64).log2() } else { 0.0 }
}

pub fn reciprocal_rank(rank: usize) -> f64 {
    1.0 / rank as f64
}

/// The expected value of a metric when the target's rank is uniform over `1..=n`.
pub fn expected(n: usize, metric: impl Fn(usize) -> f64) -> f64 {
    (1..=n).map(metric).sum::<f64>() / n as f64
}

/// The mean over users of a function of the target's rank.
pub type MeanOverUsers<'a> = &'a dyn Fn(&dyn Fn(usize) -> f64) -> f64;

/// (metric name, k, value) rows for per-user ranks, averaged.
pub fn metric_rows(metrics: &[Metric], ks: &[u32], per_user: MeanOverUsers<'_>) -> Vec<(String, Option<u32>, f64)> {
    let mut out = Vec::new();
    for m in metrics {
        match m {
            Metric::Hr => ks.iter().for_each(|&k| out.push(("hr".into(), Some(k), per_user(&|r| hr_at(r, k))))),
            Metric::Ndcg => ks.iter().for_each(|&k| out.push(("ndcg".into(), Some(k), per_user(&|r| ndcg_at(r, k))))),
            Metric::Mrr => out.push(("mrr".into(), None, per_user(&reciprocal_rank))),
            // Baselines always rank the candidates themselves.
            Metric::ValidRatio => out.push(("valid_ratio".into(), None, 1.0)),
        }
    }
    out
}

pub fn baselines(ctx: &StageContext<'_>) -> Result<(), DataError> {
    let params = &ctx.stage.params;
    let which: Vec<Baseline> = serde_json::from_value(params["baselines"].clone()).map_err(|e| DataError::Invalid(format!("baselines: {e}")))?;
    let ks: Vec<u32> = serde_json::from_value(params["k"].clone()).map_err(|e| DataError::Invalid(format!("k: {e}")))?;
    let metrics: Vec<Metric> = serde_json::from_value(params["metrics"].clone()).map_err(|e| DataError::Invalid(format!("metrics: {e}")))?;
    let dir = |prefix: &str| {
        ctx.inputs.iter().find(|(id, _)| id.starts_with(prefix)).map(|(_, p)| p.clone()).ok_or_else(|| DataError::Invalid(format!("no {prefix} input")))
    };
    let (split, _) = DomainSplit::read(&dir("split:")?)?;
    let popularity: HashMap<&str, u64> = split.items.iter().map(String::as_str).zip(split.train_counts()).collect();
    let cands = table::read_parquet(&dir("eval-set:")?.join("candidates.parquet"))?;
    let (set, user, item, is_target) = (table::strs(&cands, "set")?, table::strs(&cands, "user")?, table::strs(&cands, "item")?, table::opt_i64s(&cands, "is_target")?);
    // Test lists in file order (slot order within a user).
    let mut lists: Vec<(String, Vec<(u64, bool)>)> = Vec::new();
    for k in 0..user.len() {
        if set[k] != "test" {
            continue;
        }
        if lists.last().map(|(u, _)| u != &user[k]).unwrap_or(true) {
            lists.push((user[k].clone(), Vec::new()));
        }
        let count = popularity.get(item[k].as_str()).copied().unwrap_or(0);
        lists.last_mut().expect("pushed").1.push((count, is_target[k] == Some(1)));
    }
    let (mut rb, mut ru, mut rr) = (Vec::new(), Vec::new(), Vec::new());
    let (mut mb, mut mm, mut mk, mut mv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut summary = serde_json::Map::new();
    for b in which {
        let bname = serde_json::to_value(b).expect("enum").as_str().unwrap_or_default().to_string();
        let ranks: Vec<f64> = lists
            .iter()
            .map(|(_, l)| {
                let t = l.iter().position(|c| c.1).unwrap_or(0);
                match b {
                    Baseline::Random => (l.len() as f64 + 1.0) / 2.0,
                    Baseline::Popularity => (1 + l.iter().enumerate().filter(|(i, c)| c.0 > l[t].0 || (c.0 == l[t].0 && *i < t)).count()) as f64,
                }
            })
            .collect();
        let sizes: Vec<usize> = lists.iter().map(|(_, l)| l.len()).collect();
        let per_user = |f: &dyn Fn(usize) -> f64| -> f64 {
            if ranks.is_empty() {
                return 0.0;
            }
            let total: f64 = match b {
                Baseline::Random => sizes.iter().map(|&n| expected(n, f)).sum(),
                Baseline::Popularity => ranks.iter().map(|&r| f(r as usize)).sum(),
            };
            total / ranks.len() as f64
        };
        let rows = metric_rows(&metrics, &ks, &per_user);
        let mut m = serde_json::Map::new();
        for (metric, k, v) in rows {
            m.insert(k.map(|k| format!("{metric}@{k}")).unwrap_or_else(|| metric.clone()), json!(v));
            mb.push(bname.clone());
            mm.push(metric);
            mk.push(k);
            mv.push(v);
        }
        summary.insert(bname.clone(), json!(m));
        for ((u, _), r) in lists.iter().zip(&ranks) {
            rb.push(bname.clone());
            ru.push(u.clone());
            rr.push(*r);
        }
    }
    let mut ranks = table::frame(vec![Column::new("baseline".into(), rb), Column::new("user".into(), ru), Column::new("rank".into(), rr)])?;
    table::write_parquet(&mut ranks, &ctx.out.join("ranks.parquet"))?;
    let mut m = table::frame(vec![Column::new("baseline".into(), mb), Column::new("metric".into(), mm), Column::new("k".into(), mk), Column::new("value".into(), mv)])?;
    table::write_parquet(&mut m, &ctx.out.join("metrics.parquet"))?;
    table::write_json(&ctx.out.join("baselines.json"), &json!({ "users": lists.len(), "metrics": summary }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_one_ranking() {
        assert_eq!(hr_at(1, 1), 1.0);
        assert_eq!(hr_at(2, 1), 0.0);
        assert_eq!(ndcg_at(1, 3), 1.0);
        assert!((ndcg_at(3, 3) - 0.5).abs() < 1e-12);
        assert_eq!(ndcg_at(4, 3), 0.0);
        assert_eq!(reciprocal_rank(4), 0.25);
    }

    #[test]
    fn random_expectations() {
        assert!((expected(10, |r| hr_at(r, 3)) - 0.3).abs() < 1e-12);
        assert!((expected(10, |r| ndcg_at(r, 1)) - 0.1).abs() < 1e-12);
        let h10: f64 = (1..=10).map(|r| 1.0 / r as f64).sum();
        assert!((expected(10, reciprocal_rank) - h10 / 10.0).abs() < 1e-12);
    }
}
