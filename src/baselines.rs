//! Non-LLM reference rows on an evaluation set's fixed candidate lists: `random` (the expected
//! metrics of a uniformly random ranking), `popularity` (candidates ranked by their number of
//! training interactions in the domain), the conventional sequential recommenders `markov`
//! and `itemknn` ([`crate::data::conventional`]) and `sasrec` (the domain's trained network,
//! [`crate::sasrec`]); ties by presentation order, see [`crate::eval::metrics`].
//!
//! Artifacts: `ranks.parquet` (baseline, user, rank: 1-based; the expected rank for random),
//! `metrics.parquet` (baseline, metric, k (null for mrr), value) and `baselines.json`.

use std::collections::HashMap;

use polars::prelude::Column;
use serde_json::json;

use crate::data::conventional::Fitted;
use crate::data::domain::DomainSplit;
use crate::data::params::BaselinesParams;
use crate::data::DataError;
use crate::eval::metrics::{expected, metric_rows, rank_of};
use crate::exec::context::{StageContext, StageError};
use crate::plan::Role;
use crate::recipe::types::Baseline;
use crate::sasrec::Trained;
use crate::table;

pub fn baselines(ctx: &StageContext<'_>, p: &BaselinesParams) -> Result<(), StageError> {
    let (which, ks, metrics) = (&p.baselines, &p.ks, &p.metrics);
    let dir = |role: Role| ctx.optional_input(role).ok_or_else(|| DataError::Invalid(format!("stage `{}` has no {} input", ctx.stage.id, role.name())));
    let (split, _) = DomainSplit::read(dir(Role::Split)?)?;
    let popularity: HashMap<&str, u64> = split.items.iter().map(String::as_str).zip(split.train_counts()).collect();
    let cands = table::read_parquet(&dir(Role::EvalSet)?.join("candidates.parquet"))?;
    let (set, user, item, is_target) = (table::strs(&cands, "set")?, table::strs(&cands, "user")?, table::strs(&cands, "item")?, table::opt_i64s(&cands, "is_target")?);
    let item_index: HashMap<&str, u32> = split.items.iter().enumerate().map(|(i, x)| (x.as_str(), i as u32)).collect();
    let user_index: HashMap<&str, usize> = split.users.iter().enumerate().map(|(i, x)| (x.as_str(), i)).collect();
    // Test lists in file order (slot order within a user): (popularity, is target, item index).
    let mut lists: Vec<(String, Vec<(u64, bool, u32)>)> = Vec::new();
    for k in 0..user.len() {
        if set[k] != "test" {
            continue;
        }
        if lists.last().map(|(u, _)| u != &user[k]).unwrap_or(true) {
            lists.push((user[k].clone(), Vec::new()));
        }
        let count = popularity.get(item[k].as_str()).copied().unwrap_or(0);
        let index = *item_index.get(item[k].as_str()).ok_or_else(|| DataError::Invalid(format!("candidate `{}` is not an item of the split", item[k])))?;
        lists.last_mut().expect("pushed").1.push((count, is_target[k] == Some(1), index));
    }
    let needs_fit = which.iter().any(|b| matches!(b, Baseline::Markov | Baseline::Itemknn));
    let fitted = needs_fit.then(|| Fitted::new(&split));
    // A user's history at the test position: every earlier item of the sequence.
    let history = |u: &str| -> Result<&[u32], DataError> {
        let i = *user_index.get(u).ok_or_else(|| DataError::Invalid(format!("test user `{u}` is not in the split")))?;
        Ok(&split.sequences[i][..split.positions(i).test])
    };
    // SASRec ranks every list in batches, once.
    let sasrec_ranks: Option<Vec<f64>> = if which.contains(&Baseline::Sasrec) {
        let trained = Trained::load(dir(Role::Recommender)?, &ctx.runtime.device).map_err(|e| StageError::domain(e, false))?;
        if trained.shape.items != split.items.len() {
            return Err(DataError::Invalid(format!("the SASRec network knows {} items, the split {}", trained.shape.items, split.items.len())).into());
        }
        let queries: Vec<(&[u32], Vec<u32>)> = lists.iter().map(|(u, l)| Ok((history(u)?, l.iter().map(|c| c.2).collect()))).collect::<Result<_, DataError>>()?;
        let scores = trained.scores(&queries);
        Some(scores.iter().zip(&lists).map(|(s, (_, l))| rank_of(s, l.iter().position(|c| c.1).unwrap_or(0)) as f64).collect())
    } else {
        None
    };
    let (mut rb, mut ru, mut rr) = (Vec::new(), Vec::new(), Vec::new());
    let (mut mb, mut mm, mut mk, mut mv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut summary = serde_json::Map::new();
    for b in which {
        let bname = crate::recipe::types::serde_name(&b);
        let ranks: Vec<f64> = lists
            .iter()
            .enumerate()
            .map(|(k, (u, l))| {
                let t = l.iter().position(|c| c.1).unwrap_or(0);
                let items: Vec<u32> = l.iter().map(|c| c.2).collect();
                Ok(match b {
                    Baseline::Random => (l.len() as f64 + 1.0) / 2.0,
                    Baseline::Popularity => rank_of(&l.iter().map(|c| c.0 as f64).collect::<Vec<_>>(), t) as f64,
                    Baseline::Markov => rank_of(&fitted.as_ref().expect("fitted").markov(history(u)?, &items), t) as f64,
                    Baseline::Itemknn => rank_of(&fitted.as_ref().expect("fitted").itemknn(history(u)?, &items), t) as f64,
                    Baseline::Sasrec => sasrec_ranks.as_ref().expect("scored above")[k],
                })
            })
            .collect::<Result<_, DataError>>()?;
        let sizes: Vec<usize> = lists.iter().map(|(_, l)| l.len()).collect();
        let per_user = |f: &dyn Fn(usize) -> f64| -> f64 {
            if ranks.is_empty() {
                return 0.0;
            }
            let total: f64 = match b {
                Baseline::Random => sizes.iter().map(|&n| expected(n, f)).sum(),
                _ => ranks.iter().map(|&r| f(r as usize)).sum(),
            };
            total / ranks.len() as f64
        };
        // Baselines always rank the candidates themselves: every item is valid.
        let rows = metric_rows(metrics, ks, &per_user, 1.0);
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
    table::write_json(&ctx.out.join("baselines.json"), &json!({ "users": lists.len(), "metrics": summary })).map_err(DataError::from)?;
    Ok(())
}
