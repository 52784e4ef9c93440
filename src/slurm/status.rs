//! `reccocktail status RUN_DIR`: where each stage of a submission stands, from the cache (an
//! artifact sealed under the stage's key is done, whoever computed it) and `squeue` (pending,
//! running). `sacct` is not needed (small clusters often run without accounting): a job that is
//! neither queued nor sealed has failed or was cancelled, and its output file says why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{output, Submission, SlurmError};
use crate::exec::Cache;
use crate::plan::CacheStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// In the cache before the submission: not submitted.
    Cached,
    /// Sealed in the cache by its job (or by any other worker).
    Done,
    Pending,
    Running,
    /// Neither queued nor sealed: failed, cancelled (a failed input cancels it) or timed out.
    Failed,
    /// A dry run's script, never submitted.
    NotSubmitted,
    /// Not sealed, and `squeue` could not be asked.
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub state: State,
    pub job: Option<String>,
    /// The job's output file (for failures).
    pub log: Option<PathBuf>,
}

/// Queue states of jobs `ids` (`PENDING`, `RUNNING`, ...; absent when not queued). `None`
/// when `squeue` cannot be run.
fn queue_states(ids: &[&str]) -> Option<BTreeMap<String, String>> {
    if ids.is_empty() {
        return Some(BTreeMap::new());
    }
    let args = vec!["--noheader".to_string(), "--format=%i|%T".to_string(), format!("--jobs={}", ids.join(","))];
    // squeue fails on job ids it no longer knows: then ask for every job and filter.
    let text = output("squeue", &args).or_else(|_| output("squeue", &args[..2])).ok()?;
    Some(text.lines().filter_map(|l| l.trim().split_once('|')).map(|(i, s)| (i.to_string(), s.to_string())).collect())
}

pub fn status(run_dir: &Path) -> Result<(Submission, Vec<StageStatus>), SlurmError> {
    let sub = Submission::read(run_dir)?;
    let cache = Cache::new(&sub.results);
    let ids: Vec<&str> = sub.jobs.iter().filter_map(|j| j.job.as_deref()).collect();
    let queue = if sub.dry_run { Some(BTreeMap::new()) } else { queue_states(&ids) };
    let mut out: Vec<StageStatus> = sub.cached.iter().map(|s| StageStatus { stage: s.clone(), state: State::Cached, job: None, log: None }).collect();
    for j in &sub.jobs {
        let sealed = cache.status(&j.key) == CacheStatus::Cached;
        let queued = j.job.as_ref().and_then(|id| queue.as_ref().and_then(|q| q.get(id)));
        let state = match (sealed, queued.map(String::as_str), &j.job) {
            // The report is sealed only when complete, but it is never cached across a failure.
            (true, None, _) => State::Done,
            (_, Some("RUNNING" | "COMPLETING" | "CONFIGURING"), _) => State::Running,
            (_, Some(_), _) => State::Pending,
            (false, None, None) => State::NotSubmitted,
            (false, None, Some(_)) if queue.is_none() => State::Unknown,
            (false, None, Some(_)) => State::Failed,
        };
        out.push(StageStatus { stage: j.stage.clone(), state, job: j.job.clone(), log: (state == State::Failed).then(|| j.log.clone()) });
    }
    Ok((sub, out))
}

/// A table for the terminal.
pub fn render(sub: &Submission, rows: &[StageStatus]) -> String {
    let width = rows.iter().map(|r| r.stage.len()).max().unwrap_or(5).max(5);
    let mut s = format!("submission of `{}` (recipe {}){}\n", sub.experiment, sub.recipe_hash, if sub.dry_run { ", dry run" } else { "" });
    for r in rows {
        let state = crate::recipe::types::serde_name(&r.state);
        let job = r.job.as_deref().map(|j| format!("job {j}")).unwrap_or_default();
        let log = r.log.as_ref().map(|l| format!("  log: {}", l.display())).unwrap_or_default();
        s += &format!("  {:<width$}  {state:<13} {job}{log}\n", r.stage);
    }
    let count = |st: State| rows.iter().filter(|r| r.state == st).count();
    s += &format!("{} cached, {} done, {} running, {} pending, {} failed\n", count(State::Cached), count(State::Done), count(State::Running), count(State::Pending), count(State::Failed));
    s
}
