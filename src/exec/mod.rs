//! Executing a plan: stages in dependency order, cached ones skipped, outputs sealed atomically,
//! a run directory recording what ran, progress on the terminal.
//!
//! A failed stage does not stop the run: the stages that need it (directly or not) are skipped,
//! every other stage still runs, and the run ends with [`RunError::Failed`] listing the failures.
//! The `report` stage is the exception to skipping: it runs with the inputs that completed and is
//! told which failed (its tables list those arms as failed), but its output is then not cached,
//! so the next run rebuilds it once the failures are fixed.

pub mod atomic_dir;
pub mod backbone;
pub mod cache;
pub mod context;
pub mod rundir;
pub mod dispatch;
pub mod gc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::Runtime;
use crate::memory;
use crate::plan::{CacheStatus, Plan, Stage, StageKind};
use crate::recipe::ResolvedRecipe;
pub use cache::Cache;
pub use rundir::RunDir;
pub use context::{InputStatus, MissingInput, StageContext, StageError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no stage `{0}` in the plan (see `reccocktail plan`)")]
    UnknownStage(String),
    #[error("stage `{stage}` needs `{input}`, which is not in the cache (a single-stage run computes nothing else: run or submit `{input}` first)")]
    InputNotCached { stage: String, input: String },
    #[error("cannot prepare the run: {0}")]
    Io(#[from] std::io::Error),
    #[error("stage `{id}` failed: {source}")]
    Stage { id: String, source: StageError },
    /// Some stages failed (the others ran); the stages needing them were skipped. (The summary
    /// is boxed so that every `Result<_, RunError>` stays small.)
    #[error("{}", failed_message(failures, &summary.skipped))]
    Failed { summary: Box<RunSummary>, failures: Vec<StageFailure> },
}

#[derive(Debug)]
pub struct StageFailure {
    pub id: String,
    pub error: StageError,
}

fn failed_message(failures: &[StageFailure], skipped: &[String]) -> String {
    let mut lines: Vec<String> = failures.iter().map(|f| format!("stage `{}` failed: {}", f.id, f.error)).collect();
    if !skipped.is_empty() {
        lines.push(format!("{} stage{} skipped because {} a failed stage: {}", skipped.len(), if skipped.len() == 1 { "" } else { "s" }, if skipped.len() == 1 { "it needs" } else { "they need" }, skipped.join(", ")));
    }
    lines.join("\n")
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Results root (`results/`): run directories and the artifact cache live here.
    pub results_dir: PathBuf,
    /// Run only this stage and what it needs.
    pub only: Option<String>,
    /// Run exactly this stage, whose inputs must all be cached (a scheduler's job: it fails
    /// rather than computing an input).
    pub stage: Option<String>,
    /// Log into this existing run directory instead of creating one (the jobs of one submission
    /// share the submission's).
    pub run_dir: Option<PathBuf>,
    /// Execute no stage but the report, which lists the arms whose stages are not cached as not run
    /// (and is then not cached itself).
    pub cached_only: bool,
}

#[derive(Debug)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub executed: Vec<String>,
    pub cached: Vec<String>,
    /// Stages not run because a stage they need failed (or, with `cached_only`, was not cached).
    pub skipped: Vec<String>,
    /// Stages not visited at all: every stage that reads them is cached (see [`crate::plan::needed_ids`]).
    pub unneeded: Vec<String>,
}

/// The function that performs one stage (the real one is [`dispatch::run_stage`]; tests inject others).
pub type StageRunner<'r> = &'r dyn Fn(&StageContext<'_>) -> Result<(), StageError>;

pub fn run(resolved: &ResolvedRecipe, plan: &Plan, runtime: &Runtime, opts: &RunOptions) -> Result<RunSummary, RunError> {
    run_with(resolved, plan, runtime, opts, &dispatch::run_stage)
}

pub fn run_with(resolved: &ResolvedRecipe, plan: &Plan, runtime: &Runtime, opts: &RunOptions, runner: StageRunner<'_>) -> Result<RunSummary, RunError> {
    let cache = Cache::new(&opts.results_dir);
    let stages = match (&opts.stage, &opts.only) {
        (Some(id), _) => {
            let stage = plan.stage(id).ok_or_else(|| RunError::UnknownStage(id.clone()))?;
            if let Some(input) = stage.inputs.iter().find(|i| cache.status(&plan.stage(&i.stage).expect("inputs are plan stages").key) != CacheStatus::Cached) {
                return Err(RunError::InputNotCached { stage: stage.id.clone(), input: input.stage.clone() });
            }
            vec![stage]
        }
        (None, Some(id)) => plan.closure(id).ok_or_else(|| RunError::UnknownStage(id.clone()))?,
        (None, None) => plan.stages.iter().collect(),
    };
    let needed = crate::plan::needed_ids(&stages, |s| cache.status(&s.key) == CacheStatus::Cached);
    let (stages, unneeded): (Vec<&Stage>, Vec<&Stage>) = stages.into_iter().partition(|s| needed.contains(&s.id));
    let run_dir = match &opts.run_dir {
        Some(path) => RunDir::open(path)?,
        None => RunDir::create(&opts.results_dir, &resolved.experiment.name, &resolved.recipe_hash)?,
    };
    if opts.run_dir.is_none() || !run_dir.path.join("resolved.json").exists() {
        run_dir.write_json("resolved.json", resolved)?;
        run_dir.write_json("plan.json", &plan.to_json(&|k| cache.status(k)))?;
    }
    let e = &resolved.experiment;
    run_dir.write_json("environment.json", &rundir::environment(runtime, e.seed, e.threads, plan.precision))?;

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
    let on_cpu = runtime.device_spec == crate::backend::DeviceSpec::Cpu;
    if let Some(warning) = crate::model::precision::bf16_without_unit_warning(plan.precision.dtype, on_cpu, crate::model::precision::cpu_has_bf16_unit()) {
        log(&warning);
    }

    let mut summary = RunSummary { run_dir: run_dir.path.clone(), executed: Vec::new(), cached: Vec::new(), skipped: Vec::new(), unneeded: unneeded.iter().map(|s| s.id.clone()).collect() };
    if !unneeded.is_empty() {
        log(&format!("not needed (every stage reading them is cached): {}", summary.unneeded.join(", ")));
    }
    let mut failures: Vec<StageFailure> = Vec::new();
    // Failed or skipped stages -> why (naming the failed stage at the root).
    let mut bad: BTreeMap<String, MissingInput> = BTreeMap::new();
    for stage in stages {
        bar.set_message(stage.id.clone());
        let failed_inputs: BTreeMap<String, MissingInput> = stage.input_ids().filter_map(|i| bad.get(i).map(|m| (i.to_string(), m.clone()))).collect();
        if let Some((input, why)) = failed_inputs.iter().next().filter(|_| stage.kind != StageKind::Report) {
            log(&format!("skipped  {} (needs `{input}`: {})", stage.id, why.reason));
            // A stage left out because of --cached-only stays `not_run` downstream.
            let status = if why.status == InputStatus::NotRun { InputStatus::NotRun } else { InputStatus::Skipped };
            let reason = if why.status == InputStatus::Failed { format!("skipped: `{input}` {}", why.reason) } else { why.reason.clone() };
            bad.insert(stage.id.clone(), MissingInput { status, reason });
            summary.skipped.push(stage.id.clone());
            bar.inc(1);
            continue;
        }
        let status = cache.status(&stage.key);
        if opts.cached_only && status != CacheStatus::Cached && stage.kind != StageKind::Report {
            log(&format!("not run  {} (not cached; --cached-only)", stage.id));
            bad.insert(stage.id.clone(), MissingInput { status: InputStatus::NotRun, reason: "not run: not cached (--cached-only)".into() });
            summary.skipped.push(stage.id.clone());
            bar.inc(1);
            continue;
        }
        if status == CacheStatus::Cached && failed_inputs.is_empty() {
            log(&format!("cached   {} [{}]", stage.id, stage.key));
            if stage.kind == StageKind::Report {
                copy_files(&cache.dir(&stage.key), &run_dir.path)?;
            }
            summary.cached.push(stage.id.clone());
            bar.inc(1);
            continue;
        }
        let verb = if status == CacheStatus::Partial { "resume" } else { "start" };
        log(&format!("{verb:<8} {} [{}]", stage.id, stage.key));
        let started = Instant::now();
        let peak = memory::StagePeak::start();
        let result = execute(&cache, plan, stage, runtime, &run_dir.path, &log, &multi, runner, &failed_inputs);
        // Read before releasing (the kernel's peak misses what madvise gives back), then hand the
        // pages of the stage's freed model and activations back before the next stage.
        let peak = peak.bytes();
        memory::release_freed();
        match result {
            Ok(Executed::ByAnother) => summary.cached.push(stage.id.clone()),
            Ok(Executed::Here) => {
                let mut note = peak.map(|b| format!(", peak resident {}", memory::gb(b))).unwrap_or_default();
                if !failed_inputs.is_empty() {
                    note += &format!(" (without {} failed input{}; not cached)", failed_inputs.len(), if failed_inputs.len() == 1 { "" } else { "s" });
                }
                log(&format!("done     {} in {:.1}s{note}", stage.id, started.elapsed().as_secs_f64()));
                summary.executed.push(stage.id.clone());
            }
            Err(RunError::Stage { id, source }) => {
                log(&format!("failed   {id}: {source}"));
                bad.insert(id.clone(), MissingInput { status: InputStatus::Failed, reason: format!("failed: {source}") });
                failures.push(StageFailure { id, error: source });
            }
            Err(other) => {
                bar.abandon();
                run_dir.log(&format!("error    {other}"));
                return Err(other);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    log(&format!("finished: {} stages run, {} cached, {} failed, {} skipped, {} not needed", summary.executed.len(), summary.cached.len(), failures.len(), summary.skipped.len(), summary.unneeded.len()));
    if failures.is_empty() { Ok(summary) } else { Err(RunError::Failed { summary: Box::new(summary), failures }) }
}

/// Copy the files of `from` (not its manifest) into `to`: a cached report's tables into the run.
fn copy_files(from: &Path, to: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() && e.file_name() != cache::MANIFEST {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Who computed a stage [`execute`] was asked for.
enum Executed {
    Here,
    /// Another worker sealed it while this one waited for the key's lock.
    ByAnother,
}

/// Run one stage into the cache: a fresh temporary directory, sealed on success, removed on
/// failure. With `failed_inputs` (a report), those inputs are left out and nothing is sealed.
#[allow(clippy::too_many_arguments)]
fn execute(cache: &Cache, plan: &Plan, stage: &Stage, runtime: &Runtime, run_dir: &Path, log: &dyn Fn(&str), progress: &MultiProgress, runner: StageRunner<'_>, failed_inputs: &BTreeMap<String, MissingInput>) -> Result<Executed, RunError> {
    // One worker per key at a time, across processes; a worker that waited finds the artifact the
    // other sealed (a report without some inputs is never sealed: it always runs).
    let _lock = cache.lock(&stage.key, &|| log(&format!("waiting  {} [{}]: another worker holds it", stage.id, stage.key)))?;
    if failed_inputs.is_empty() && cache.status(&stage.key) == CacheStatus::Cached {
        log(&format!("cached   {} [{}] (sealed by another worker meanwhile)", stage.id, stage.key));
        if stage.kind == StageKind::Report {
            copy_files(&cache.dir(&stage.key), run_dir)?;
        }
        return Ok(Executed::ByAnother);
    }
    let stale = cache.clean_stale(&stage.key)?;
    if stale > 0 {
        log(&format!("removed {stale} unfinished attempt{} at {} left by a stopped worker", if stale == 1 { "" } else { "s" }, stage.id));
    }
    let started = Instant::now();
    let tmp = cache.begin(&stage.key)?;
    let inputs: BTreeMap<String, PathBuf> =
        stage.input_ids().filter(|id| !failed_inputs.contains_key(*id)).map(|id| (id.to_string(), cache.dir(&plan.stage(id).expect("inputs are plan stages").key))).collect();
    let ctx = StageContext { stage, inputs, failed_inputs, out: &tmp, scratch: cache.scratch(&stage.key), run_dir, runtime, log, progress };
    match runner(&ctx) {
        Ok(()) if !failed_inputs.is_empty() => {
            cache.abort(&tmp);
            Ok(Executed::Here)
        }
        Ok(()) => {
            let manifest = serde_json::json!({ "id": stage.id, "kind": stage.kind, "key": stage.key, "inputs": stage.inputs, "params": stage.params.to_json(), "seconds": started.elapsed().as_secs_f64() });
            cache.commit(&stage.key, &tmp, &manifest)?;
            Ok(Executed::Here)
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
pub fn ensure(plan: &Plan, runtime: &Runtime, results_dir: &Path, ids: &[&str], log: &dyn Fn(&str)) -> Result<BTreeMap<String, PathBuf>, RunError> {
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
            execute(&cache, plan, stage, runtime, cache.root(), log, &hidden, &dispatch::run_stage, &BTreeMap::new())?;
        }
        dirs.insert(stage.id.clone(), cache.dir(&stage.key));
    }
    Ok(dirs)
}

/// Fetch a known asset into the artifact cache of `results_dir`, exactly where the plan's
/// `fetch:<asset>` stage keeps it (so `run` finds it done). Returns the asset's directory and
/// whether it was already there.
pub fn fetch_into_cache(results_dir: &Path, asset: &crate::assets::Asset) -> Result<(PathBuf, bool), crate::data::fetch::FetchError> {
    let params = crate::assets::FetchParams::of(asset);
    let key = crate::plan::fetch_key(asset);
    let cache = Cache::new(results_dir);
    let io = |what: &'static str, p: &Path| { let path = p.to_path_buf(); move |source| crate::data::fetch::FetchError::Io { context: what, path, source } };
    if cache.status(&key) == CacheStatus::Cached {
        return Ok((cache.dir(&key), true));
    }
    let root = cache.root().to_path_buf();
    let _lock = cache.lock(&key, &|| {}).map_err(io("cannot lock a key in", &root))?;
    if cache.status(&key) == CacheStatus::Cached {
        return Ok((cache.dir(&key), true));
    }
    cache.clean_stale(&key).map_err(io("cannot clean unfinished attempts in", &root))?;
    let tmp = cache.begin(&key).map_err(io("cannot create a directory in", &root))?;
    match crate::data::fetch::fetch(asset, &cache.scratch(&key), &tmp) {
        Ok(_) => {
            let manifest = serde_json::json!({ "id": format!("fetch:{}", asset.name), "kind": StageKind::Fetch, "key": key, "inputs": [], "params": params });
            let dir = cache.commit(&key, &tmp, &manifest).map_err(io("cannot seal", &tmp))?;
            Ok((dir, false))
        }
        Err(e) => {
            cache.abort(&tmp);
            Err(e)
        }
    }
}
