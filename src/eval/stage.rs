//! The `evaluate` stage: one model (the raw backbone, or the backbone with a merged adapter
//! folded into its weights) ranks the fixed candidate lists of one evaluation setting.
//!
//! Artifacts:
//! - `per_user.parquet`: user, target, target_title, rank (u32; null when `generate` missed the
//!   target), ranked (list of item ids, best first), scores (list of f64 in slot order;
//!   `likelihood` only), generated (text; `generate` only), generated_items, valid_items (u32);
//! - `metrics.parquet`: metric, k (u32, null for mrr and valid_ratio), value (f64);
//! - `evaluate.json`: users, protocol, scoring, seconds, users_per_s, and the metrics by name.

use std::time::Instant;

use polars::prelude::{Column, DataType, NamedFrom, Series};
use serde_json::{Value as Json, json};

use super::metrics::{mean_over, metric_rows};
use super::params::{EvalParams, EvalSettings};
use super::{EvalError, Ranker, TestUser, UserResult, read_test_users};
use crate::table;
use crate::exec::backbone::load;
use crate::exec::context::{StageContext, StageError};
use crate::plan::Role;
use crate::prompt::Prompter;
use crate::model::CausalLm;
use crate::model::peft::PeftAdapter;
use crate::model::tokenizer::TextTokenizer;

/// Evaluate every user in order; `progress(done)` after each.
pub fn evaluate_users(model: &dyn CausalLm, tok: &TextTokenizer, prompter: &Prompter, users: &[TestUser], p: &EvalSettings, progress: &mut dyn FnMut(usize)) -> Result<Vec<UserResult>, EvalError> {
    let protocol = p.protocol();
    let r = Ranker { model, tok, prompter };
    let mut out = Vec::with_capacity(users.len());
    for (done, u) in users.iter().enumerate() {
        let prompt = prompter.prompt_ids(tok, &u.instruction)?;
        out.push(protocol.rank(&r, &prompt, u)?);
        progress(done + 1);
    }
    Ok(out)
}

/// Metric rows (metric, k, value) of a set of user results. The valid ratio is the mean over
/// users of valid items / generated items (0 for a user who generated nothing).
pub fn metrics_of(results: &[UserResult], p: &EvalSettings) -> Vec<(String, Option<u32>, f64)> {
    let ranks: Vec<Option<usize>> = results.iter().map(|r| r.rank).collect();
    let valid = if results.is_empty() {
        0.0
    } else {
        results.iter().map(|r| if r.generated_items == 0 { 0.0 } else { r.valid_items as f64 / r.generated_items as f64 }).sum::<f64>() / results.len() as f64
    };
    metric_rows(&p.metrics, &p.ks, &|f| mean_over(&ranks, f), valid)
}

/// Write the stage's artifacts (`per_user.parquet`, `metrics.parquet`, `evaluate.json`) into
/// `out` for `results` of `users` (same order) evaluated in `seconds`.
pub fn write_outputs(out: &std::path::Path, users: &[TestUser], results: &[UserResult], p: &EvalSettings, seconds: f64) -> Result<(), EvalError> {
    let rows = metrics_of(results, p);
    let col = |name: &str, s: Series| Column::from(s.with_name(name.into()));
    let ranked: Vec<Series> = users.iter().zip(results).map(|(u, r)| Series::new("".into(), r.ranked.iter().map(|&s| u.items[s].clone()).collect::<Vec<_>>())).collect();
    let scores: Vec<Option<Series>> = results.iter().map(|r| r.scores.as_ref().map(|s| Series::new("".into(), s.clone()))).collect();
    let mut per_user = table::frame(vec![
        Column::new("user".into(), results.iter().map(|r| r.user.clone()).collect::<Vec<_>>()),
        Column::new("target".into(), results.iter().map(|r| r.target.clone()).collect::<Vec<_>>()),
        Column::new("target_title".into(), results.iter().map(|r| r.target_title.clone()).collect::<Vec<_>>()),
        Column::new("rank".into(), results.iter().map(|r| r.rank.map(|x| x as u32)).collect::<Vec<_>>()),
        col("ranked", Series::new("".into(), ranked)),
        // All-null for `generate`: typed as a list of f64 all the same.
        col("scores", Series::new("".into(), scores).cast(&DataType::List(Box::new(DataType::Float64))).map_err(table::polars_err("scores column"))?),
        Column::new("generated".into(), results.iter().map(|r| r.generated.clone()).collect::<Vec<_>>()),
        Column::new("generated_items".into(), results.iter().map(|r| r.generated_items as u32).collect::<Vec<_>>()),
        Column::new("valid_items".into(), results.iter().map(|r| r.valid_items as u32).collect::<Vec<_>>()),
    ])?;
    table::write_parquet(&mut per_user, &out.join("per_user.parquet"))?;
    let mut m = table::frame(vec![
        Column::new("metric".into(), rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()),
        Column::new("k".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        Column::new("value".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
    ])?;
    table::write_parquet(&mut m, &out.join("metrics.parquet"))?;
    let metrics: serde_json::Map<String, Json> = rows.iter().map(|(m, k, v)| (super::metrics::label(m, *k), json!(v))).collect();
    let n = results.len();
    let summary = json!({ "users": n, "protocol": p.protocol.kind(), "scoring": p.protocol.scoring(), "seconds": seconds, "users_per_s": n as f64 / seconds.max(1e-9), "metrics": metrics });
    Ok(table::write_json(&out.join("evaluate.json"), &summary)?)
}

/// The stage body.
pub fn evaluate(ctx: &StageContext<'_>, params: &EvalParams) -> Result<(), StageError> {
    let p = &params.settings;
    let set_dir = ctx.input(Role::EvalSet)?;
    let users = read_test_users(set_dir)?;
    p.protocol().check_set(&users, set_dir)?;
    let mut m = load(ctx, &params.backbone, &params.format, &ctx.runtime.device)?;
    if let Some(merge) = ctx.optional_input(Role::Merge) {
        let dir = merge.join("adapter");
        PeftAdapter::load(&dir, &m.text.backbone.model)?.attach(&mut m.text.backbone.model, 1.0);
        // Fold the merged adapter into the weights: evaluation then costs what the raw model costs.
        // (Not into bf16 weights, which would round the adapter's small deltas away.)
        for (_, _, lin) in m.text.backbone.model.projections_mut() {
            if !lin.adapters.is_empty() && lin.is_f32() {
                lin.fold();
            }
        }
        (ctx.log)(&format!("{}: merged adapter {} folded into the backbone", ctx.stage.id, dir.display()));
    }
    let started = Instant::now();
    let n = users.len();
    let every = (n / 10).max(1);
    let mut progress = |done: usize| {
        if done.is_multiple_of(every) || done == n {
            let s = started.elapsed().as_secs_f64();
            (ctx.log)(&format!("{}: {done}/{n} users ({:.2} users/s)", ctx.stage.id, done as f64 / s.max(1e-9)));
        }
    };
    let results = evaluate_users(&m.text.backbone.model, &m.text.tokenizer, &m.prompter, &users, p, &mut progress)?;
    Ok(write_outputs(ctx.out, &users, &results, p, started.elapsed().as_secs_f64())?)
}
