//! Executing a plan: stages in dependency order, cached ones skipped, outputs sealed atomically,
//! a run directory recording what ran, progress on the terminal.

pub mod backbone;
pub mod cache;
pub mod rundir;
pub mod stages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::Runtime;
use crate::plan::{CacheStatus, Plan, Stage};
use crate::recipe::ResolvedRecipe;
pub use cache::Cache;
pub use rundir::RunDir;
pub use stages::{StageContext, StageError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no stage `{0}` in the plan (see `reccocktail plan`)")]
    UnknownStage(String),
    #[error("cannot prepare the run: {0}")]
    Io(#[from] std::io::Error),
    #[error("stage `{id}` failed: {source}")]
    Stage { id: String, source: StageError },
}

pub struct RunOptions {
    /// Results root (`results/`): run directories and the artifact cache live here.
    pub results_dir: PathBuf,
    /// Run only this stage and what it needs.
    pub only: Option<String>,
}

#[derive(Debug)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub executed: Vec<String>,
    pub cached: Vec<String>,
}

/// The function that performs one stage (the real one is [`stages::run_stage`]; tests inject others).
pub type StageRunner<'r> = &'r dyn Fn(&StageContext<'_>) -> Result<(), StageError>;

pub fn run(resolved: &ResolvedRecipe, plan: &Plan, runtime: &Runtime, opts: &RunOptions) -> Result<RunSummary, RunError> {
    run_with(resolved, plan, runtime, opts, &stages::run_stage)
}

pub fn run_with(resolved: &ResolvedRecipe, plan: &Plan, runtime: &Runtime, opts: &RunOptions, runner: StageRunner<'_>) -> Result<RunSummary, RunError> {
    let stages = match &opts.only {
        Some(id) => plan.closure(id).ok_or_else(|| RunError::UnknownStage(id.clone()))?,
        None => plan.stages.iter().collect(),
    };
    let cache = Cache::new(&opts.results_dir);
    let run_dir = RunDir::create(&opts.results_dir, &resolved.experiment.name, &resolved.recipe_hash)?;
    run_dir.write_json("resolved.json", resolved)?;
    run_dir.write_json("plan.json", &plan.to_json(&|k| cache.status(k)))?;
    run_dir.write_json("environment.json", &rundir::environment(runtime, resolved.experiment.seed, resolved.experiment.threads))?;

    let multi = MultiProgress::new();
    let bar = multi.add(ProgressBar::new(stages.len() as u64));
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}").expect("static template"));
    let log = |line: &str| {
        run_dir.log(line);
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    log(&format!("run {} of `{}` (recipe {}) on {}", run_dir.path.display(), resolved.experiment.name, resolved.recipe_hash, runtime.describe()));

    let mut summary = RunSummary { run_dir: run_dir.path.clone(), executed: Vec::new(), cached: Vec::new() };
    for stage in stages {
        bar.set_message(stage.id.clone());
        let status = cache.status(&stage.key);
        if status == CacheStatus::Cached {
            log(&format!("cached   {} [{}]", stage.id, stage.key));
            summary.cached.push(stage.id.clone());
            bar.inc(1);
            continue;
        }
        let verb = if status == CacheStatus::Partial { "resume" } else { "start" };
        log(&format!("{verb:<8} {} [{}]", stage.id, stage.key));
        let started = Instant::now();
        match execute(&cache, resolved, plan, stage, runtime, &run_dir.path, &log, &multi, runner) {
            Ok(()) => {
                log(&format!("done     {} in {:.1}s", stage.id, started.elapsed().as_secs_f64()));
                summary.executed.push(stage.id.clone());
                bar.inc(1);
            }
            Err(err) => {
                bar.abandon();
                run_dir.log(&format!("error    {err}"));
                return Err(err);
            }
        }
    }
    bar.finish_and_clear();
    log(&format!("finished: {} stages run, {} cached", summary.executed.len(), summary.cached.len()));
    Ok(summary)
}

/// Run one stage into the cache: a fresh temporary directory, sealed on success, removed on failure.
#[allow(clippy::too_many_arguments)]
fn execute(cache: &Cache, resolved: &ResolvedRecipe, plan: &Plan, stage: &Stage, runtime: &Runtime, run_dir: &Path, log: &dyn Fn(&str), progress: &MultiProgress, runner: StageRunner<'_>) -> Result<(), RunError> {
    let started = Instant::now();
    let tmp = cache.begin(&stage.key)?;
    let inputs: BTreeMap<String, PathBuf> = stage.inputs.iter().map(|id| (id.clone(), cache.dir(&plan.stage(id).expect("inputs are plan stages").key))).collect();
    let ctx = StageContext { resolved, plan, stage, inputs, out: &tmp, scratch: cache.scratch(&stage.key), run_dir, runtime, log, progress };
    match runner(&ctx) {
        Ok(()) => {
            let manifest = serde_json::json!({ "id": stage.id, "kind": stage.kind, "key": stage.key, "inputs": stage.inputs, "params": stage.params, "seconds": started.elapsed().as_secs_f64() });
            cache.commit(&stage.key, &tmp, &manifest)?;
            Ok(())
        }
        Err(source) => {
            cache.abort(&tmp);
            Err(RunError::Stage { id: stage.id.clone(), source })
        }
    }
}

/// Make sure the stages `ids` (and everything they need) are in the cache, running the missing
/// ones, without a run directory: for inspection commands such as `reccocktail data`. Returns
/// every needed stage's artifact directory by stage id.
pub fn ensure(resolved: &ResolvedRecipe, plan: &Plan, runtime: &Runtime, results_dir: &Path, ids: &[&str], log: &dyn Fn(&str)) -> Result<BTreeMap<String, PathBuf>, RunError> {
    let mut needed: Vec<&Stage> = Vec::new();
    for id in ids {
        for s in plan.closure(id).ok_or_else(|| RunError::UnknownStage(id.to_string()))? {
            if !needed.iter().any(|n| n.id == s.id) {
                needed.push(s);
            }
        }
    }
    needed.sort_by_key(|s| plan.stages.iter().position(|p| p.id == s.id));
    let cache = Cache::new(results_dir);
    let mut dirs = BTreeMap::new();
    let hidden = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    for stage in needed {
        if cache.status(&stage.key) != CacheStatus::Cached {
            log(&format!("running  {} [{}]", stage.id, stage.key));
            execute(&cache, resolved, plan, stage, runtime, cache.root(), log, &hidden, &stages::run_stage)?;
        }
        dirs.insert(stage.id.clone(), cache.dir(&stage.key));
    }
    Ok(dirs)
}
