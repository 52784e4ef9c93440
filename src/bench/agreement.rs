//! How far two runs of the same plan apart (another dtype, backend or machine) agree, for
//! `reccocktail bench agreement RUN_A RUN_B`: the training losses step by step, and the rankings of
//! every evaluated user. Stages are matched by id; each run's artifacts are read from the cache of
//! the results directory holding it (`RUN/../../.cache/<key>`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::table;

#[derive(Debug, Serialize)]
pub struct TrainAgreement {
    pub stage: String,
    pub steps: usize,
    /// Largest and mean |loss_b - loss_a| / |loss_a| over the steps both logged.
    pub max_rel_diff: f64,
    pub mean_rel_diff: f64,
}

#[derive(Debug, Serialize)]
pub struct EvalAgreement {
    pub stage: String,
    pub users: usize,
    /// Users whose whole candidate ranking is the same in both runs.
    pub same_ranking: usize,
    /// Users whose target got the same rank.
    pub same_target_rank: usize,
    /// Users whose top candidate is the same.
    pub same_top1: usize,
}

#[derive(Debug, Serialize)]
pub struct Agreement {
    pub a: String,
    pub b: String,
    pub train: Vec<TrainAgreement>,
    pub evaluate: Vec<EvalAgreement>,
}

fn fail(m: impl Into<String>) -> crate::Error {
    crate::Error::Usage(m.into())
}

/// Stage id -> artifact directory of a run (only stages the run's plan lists as cached or done).
fn stage_dirs(run: &Path) -> Result<BTreeMap<String, PathBuf>, crate::Error> {
    let text = std::fs::read_to_string(run.join("plan.json")).map_err(|e| fail(format!("{}: no plan.json ({e}): is it a run directory?", run.display())))?;
    let plan: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(format!("{}/plan.json: {e}", run.display())))?;
    let cache = run.parent().and_then(Path::parent).map(|r| r.join(".cache")).ok_or_else(|| fail(format!("{}: not inside a results directory", run.display())))?;
    let stages = plan["stages"].as_array().ok_or_else(|| fail(format!("{}/plan.json has no stages", run.display())))?;
    Ok(stages
        .iter()
        .filter_map(|s| Some((s["id"].as_str()?.to_string(), cache.join(s["key"].as_str()?))))
        .filter(|(_, d)| d.join("stage.json").exists())
        .collect())
}

fn losses(dir: &Path) -> Result<Vec<f64>, crate::Error> {
    let df = table::read_parquet(&dir.join("train_log.parquet")).map_err(|e| fail(e.to_string()))?;
    Ok(table::opt_f64s(&df, "loss").map_err(|e| fail(e.to_string()))?.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// user -> (target rank, ranked candidates).
fn rankings(dir: &Path) -> Result<BTreeMap<String, (Option<i64>, Vec<String>)>, crate::Error> {
    let df = table::read_parquet(&dir.join("per_user.parquet")).map_err(|e| fail(e.to_string()))?;
    let users = table::strs(&df, "user").map_err(|e| fail(e.to_string()))?;
    let rank = table::opt_i64s(&df, "rank").map_err(|e| fail(e.to_string()))?;
    let ranked = table::str_lists(&df, "ranked").map_err(|e| fail(e.to_string()))?;
    Ok(users.into_iter().zip(rank.into_iter().zip(ranked)).collect())
}

/// Compare the train and evaluate stages two runs share.
pub fn compare(a: &Path, b: &Path) -> Result<Agreement, crate::Error> {
    let (da, db) = (stage_dirs(a)?, stage_dirs(b)?);
    let mut out = Agreement { a: a.display().to_string(), b: b.display().to_string(), train: Vec::new(), evaluate: Vec::new() };
    for (id, dir_a) in &da {
        let Some(dir_b) = db.get(id) else { continue };
        if id.starts_with("train:") {
            let (la, lb) = (losses(dir_a)?, losses(dir_b)?);
            let rel: Vec<f64> = la.iter().zip(&lb).map(|(x, y)| (y - x).abs() / x.abs().max(1e-12)).collect();
            let n = rel.len();
            out.train.push(TrainAgreement { stage: id.clone(), steps: n, max_rel_diff: rel.iter().cloned().fold(0.0, f64::max), mean_rel_diff: rel.iter().sum::<f64>() / n.max(1) as f64 });
        } else if id.starts_with("evaluate:") {
            let (ra, rb) = (rankings(dir_a)?, rankings(dir_b)?);
            let mut e = EvalAgreement { stage: id.clone(), users: 0, same_ranking: 0, same_target_rank: 0, same_top1: 0 };
            for (user, (rank_a, list_a)) in &ra {
                let Some((rank_b, list_b)) = rb.get(user) else { continue };
                e.users += 1;
                e.same_ranking += usize::from(list_a == list_b);
                e.same_target_rank += usize::from(rank_a == rank_b);
                e.same_top1 += usize::from(list_a.first() == list_b.first());
            }
            out.evaluate.push(e);
        }
    }
    if out.train.is_empty() && out.evaluate.is_empty() {
        return Err(fail(format!("{} and {} share no completed train or evaluate stage", a.display(), b.display())));
    }
    Ok(out)
}

impl Agreement {
    /// A plain-text report, stage by stage, with the totals over every evaluated user.
    pub fn render(&self) -> String {
        let mut s = format!("A: {}\nB: {}\n\n", self.a, self.b);
        for t in &self.train {
            s += &format!("{:<34} {:>4} steps   loss |B-A|/A  max {:>6.2}%  mean {:>6.2}%\n", t.stage, t.steps, 100.0 * t.max_rel_diff, 100.0 * t.mean_rel_diff);
        }
        let pct = |k: usize, n: usize| 100.0 * k as f64 / n.max(1) as f64;
        for e in &self.evaluate {
            s += &format!(
                "{:<34} {:>4} users   same ranking {:>5.1}%  same target rank {:>5.1}%  same top-1 {:>5.1}%\n",
                e.stage,
                e.users,
                pct(e.same_ranking, e.users),
                pct(e.same_target_rank, e.users),
                pct(e.same_top1, e.users)
            );
        }
        let n: usize = self.evaluate.iter().map(|e| e.users).sum();
        let sum = |f: fn(&EvalAgreement) -> usize| self.evaluate.iter().map(f).sum::<usize>();
        s += &format!(
            "{:<34} {:>4} users   same ranking {:>5.1}%  same target rank {:>5.1}%  same top-1 {:>5.1}%\n",
            "all evaluations",
            n,
            pct(sum(|e| e.same_ranking), n),
            pct(sum(|e| e.same_target_rank), n),
            pct(sum(|e| e.same_top1), n)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::params::EvalSettings;
    use crate::eval::{TestUser, UserResult};
    use crate::recipe::resolve::ResolvedProtocol;
    use crate::recipe::types::{Metric, Scoring};
    use crate::train::log::{LogRow, write_log};

    fn row(step: u64, loss: f64) -> LogRow {
        LogRow { step, epoch: 0, loss, lr: 1e-3, grad_norm: 1.0, tokens: 10, samples: 1, tokens_per_s: 1.0, forward_s: 0.0, backward_s: 0.0, update_s: 0.0, valid_loss: None, valid_mrr: None }
    }

    fn result(user: &str, ranked: Vec<usize>) -> UserResult {
        let rank = ranked.iter().position(|&s| s == 0).map(|p| p + 1);
        UserResult { user: user.into(), target: "i0".into(), target_title: "A".into(), rank, ranked, scores: None, generated: None, generated_items: 3, generated_tokens: 0, valid_items: 3 }
    }

    /// A run directory `results/exp/<name>` whose plan lists a train and an evaluate stage.
    fn run(root: &Path, name: &str, losses: &[f64], ranked: &[Vec<usize>]) -> PathBuf {
        let dir = root.join("exp").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (train, eval) = (format!("t-{name}"), format!("e-{name}"));
        let plan = serde_json::json!({ "stages": [{ "id": "train:x", "key": train }, { "id": "evaluate:arm:cold", "key": eval }, { "id": "evaluate:never:run", "key": "missing" }] });
        std::fs::write(dir.join("plan.json"), plan.to_string()).unwrap();
        let t = root.join(".cache").join(&train);
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("stage.json"), "{}").unwrap();
        write_log(&losses.iter().enumerate().map(|(i, &l)| row(i as u64 + 1, l)).collect::<Vec<_>>(), &t.join("train_log.parquet")).unwrap();
        let e = root.join(".cache").join(&eval);
        std::fs::create_dir_all(&e).unwrap();
        std::fs::write(e.join("stage.json"), "{}").unwrap();
        let titles = ["A".to_string(), "B".into(), "C".into()];
        let users: Vec<TestUser> = (0..ranked.len())
            .map(|u| TestUser { user: format!("u{u}"), target: "i0".into(), target_title: "A".into(), instruction: "q".into(), instruction_prior: None, items: vec!["i0".into(), "i1".into(), "i2".into()], titles: titles.to_vec(), target_slot: 0 })
            .collect();
        let results: Vec<UserResult> = ranked.iter().enumerate().map(|(u, r)| result(&format!("u{u}"), r.clone())).collect();
        let p = EvalSettings { protocol: ResolvedProtocol::Likelihood { scoring: Scoring::Sum }, ks: vec![1], metrics: vec![Metric::Hr], seed: 1, separator: "||".into() };
        crate::eval::stage::write_outputs(&e, &users, &results, &p, 1.0).unwrap();
        dir
    }

    #[test]
    fn losses_and_rankings_are_compared_stage_by_stage() {
        let root = std::env::temp_dir().join(format!("rc-agreement-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let a = run(&root, "a", &[2.0, 1.0, 0.5], &[vec![0, 1, 2], vec![1, 0, 2], vec![2, 1, 0]]);
        // u0 identical; u1 swaps its two last (same target rank, same top-1); u2 another top-1.
        let b = run(&root, "b", &[2.0, 1.1, 0.5], &[vec![0, 1, 2], vec![1, 0, 2].into_iter().take(2).chain([2]).collect(), vec![1, 2, 0]]);
        let c = compare(&a, &b).unwrap();
        assert_eq!(c.train.len(), 1);
        assert_eq!(c.train[0].steps, 3);
        assert!((c.train[0].max_rel_diff - 0.1).abs() < 1e-12 && (c.train[0].mean_rel_diff - 0.1 / 3.0).abs() < 1e-12, "{:?}", c.train);
        assert_eq!(c.evaluate.len(), 1, "stages without artifacts are skipped");
        let e = &c.evaluate[0];
        assert_eq!((e.users, e.same_ranking, e.same_target_rank, e.same_top1), (3, 2, 3, 2));
        assert!(c.render().contains("all evaluations                       3 users   same ranking  66.7%"), "{}", c.render());
        let e = compare(&a, &root.join("nowhere")).unwrap_err().to_string();
        assert!(e.contains("no plan.json"), "{e}");
        std::fs::remove_dir_all(&root).ok();
    }
}
