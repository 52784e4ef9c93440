//! Running a plan as Slurm jobs: one batch job per stage that is not cached, chained with
//! `afterok` dependencies, the content-addressed cache on a shared filesystem as the store.
//!
//! `reccocktail submit RECIPE` writes one script per stage into `<run>/slurm/` (each runs
//! `reccocktail run RECIPE --stage ID --run-dir RUN`, which computes that stage alone and fails if
//! an input is missing), submits them in plan order with `--dependency=afterok:<input jobs>` and
//! `--kill-on-invalid-dep=yes` (a failed job cancels its dependents), and records the submission
//! in `<run>/submission.json`. Cached stages are not submitted; a stage whose job is still queued
//! or running (found by job name, `rc-<key>`, in `squeue`) is not submitted again, and its job
//! is what dependents wait for. The `report` job comes last. `reccocktail status RUN` reads the
//! record back ([`status`]).

pub mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::exec::{Cache, RunDir};
use crate::plan::{CacheStatus, Plan, StageKind};
use crate::recipe::cluster::ClusterSpec;
use crate::recipe::ResolvedRecipe;

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run `{program}`: {source} (is this a Slurm login node? `--dry-run` writes the scripts without it)")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },
    #[error("`sbatch` printed no job id for stage `{stage}`: {stdout:?}")]
    NoJobId { stage: String, stdout: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{path}: not a submission record ({message}); `reccocktail status` reads the run directory `submit` printed")]
    Record { path: String, message: String },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SlurmError {
    let context = context.into();
    move |source| SlurmError::Io { context, source }
}

/// What a submitted stage's job runs, and how.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// The recipe as given (jobs start in `workdir`, so a relative path reads the same file).
    pub recipe: PathBuf,
    /// The results root, absolute (the cache shared by every job).
    pub results: PathBuf,
    /// The binary the jobs run (this one).
    pub exe: PathBuf,
    /// Where jobs start.
    pub workdir: PathBuf,
    /// `--backend`, `--device`, `--threads` passed on to every job.
    pub run_args: Vec<String>,
    pub dry_run: bool,
}

/// One stage's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub stage: String,
    pub key: String,
    pub kind: String,
    /// The Slurm job id (`None` in a dry run).
    pub job: Option<String>,
    /// True when the job was already queued or running and was not submitted again.
    #[serde(default)]
    pub reused: bool,
    pub script: PathBuf,
    /// The job's output file.
    pub log: PathBuf,
    /// The `sbatch` command line.
    pub command: Vec<String>,
    /// The stages whose jobs this one waits for.
    pub after: Vec<String>,
}

/// `submission.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub experiment: String,
    pub recipe_hash: String,
    pub recipe: PathBuf,
    pub results: PathBuf,
    pub dry_run: bool,
    /// Stages already in the cache at submission (not submitted).
    pub cached: Vec<String>,
    pub jobs: Vec<Job>,
}

impl Submission {
    pub fn read(run_dir: &Path) -> Result<Submission, SlurmError> {
        let path = run_dir.join("submission.json");
        let text = std::fs::read_to_string(&path).map_err(io(format!("cannot read {}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| SlurmError::Record { path: path.display().to_string(), message: e.to_string() })
    }
}

/// Output of a command, or why it could not run.
fn output(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let out = Command::new(program).args(args).output().map_err(|source| SlurmError::Spawn { program: program.to_string(), source })?;
    if !out.status.success() {
        return Err(SlurmError::Command { command: format!("{program} {}", args.join(" ")), status: out.status.to_string(), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Queued or running jobs of this tool: key -> job id (from `squeue`; none when it is missing).
pub fn queued_by_key() -> BTreeMap<String, String> {
    let args = ["--noheader", "--format=%i|%j|%T"].map(String::from);
    let Ok(text) = output("squeue", &args) else { return BTreeMap::new() };
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            let (id, name) = (f.next()?, f.next()?);
            Some((name.strip_prefix("rc-")?.to_string(), id.to_string()))
        })
        .collect()
}

/// A file name for a stage id (`evaluate:task_arithmetic@lambda=0.3:cold` ->
/// `evaluate-task_arithmetic-lambda-0.3-cold`).
fn file_stem(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '-' }).collect()
}

fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:@+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The batch script of one stage.
fn script(resolved: &ResolvedRecipe, stage: &crate::plan::Stage, opts: &SubmitOptions, run_dir: &Path, log: &Path, resources: &[String]) -> String {
    let mut s = String::from("#!/bin/bash\n");
    s += &format!("#SBATCH --job-name=rc-{}\n#SBATCH --output={}\n", stage.key, log.display());
    for r in resources {
        s += &format!("#SBATCH {r}\n");
    }
    s += &format!("# Stage `{}` [{}] of `{}` (recipe {}), written by `reccocktail submit`.\nset -euo pipefail\n", stage.id, stage.key, resolved.experiment.name, resolved.recipe_hash);
    s += &format!("cd {}\n", quote(&opts.workdir.display().to_string()));
    let mut cmd = vec![opts.exe.display().to_string(), "run".into(), opts.recipe.display().to_string(), "--stage".into(), stage.id.clone(), "--results".into(), opts.results.display().to_string(), "--run-dir".into(), run_dir.display().to_string()];
    cmd.extend(opts.run_args.iter().cloned());
    s += &format!("exec {}\n", cmd.iter().map(|c| quote(c)).collect::<Vec<_>>().join(" "));
    s
}

/// Submit (or, with `dry_run`, only write) the jobs of every stage of `plan` not in the cache.
pub fn submit(resolved: &ResolvedRecipe, plan: &Plan, cluster: &ClusterSpec, opts: &SubmitOptions, say: &dyn Fn(&str)) -> Result<(PathBuf, Submission), SlurmError> {
    let cache = Cache::new(&opts.results);
    let all: Vec<&crate::plan::Stage> = plan.stages.iter().collect();
    let is_cached = |s: &crate::plan::Stage| cache.status(&s.key) == CacheStatus::Cached;
    let needed = crate::plan::needed_ids(&all, is_cached);
    let run_dir = RunDir::create(&opts.results, &resolved.experiment.name, &resolved.recipe_hash).map_err(io("cannot create the run directory"))?;
    run_dir.write_json("resolved.json", resolved).map_err(io("cannot write resolved.json"))?;
    run_dir.write_json("plan.json", &plan.to_json(&|k| cache.status(k))).map_err(io("cannot write plan.json"))?;
    let dir = run_dir.path.join("slurm");
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let queued = if opts.dry_run { BTreeMap::new() } else { queued_by_key() };

    let mut cached = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    // Stage id -> the job its dependents wait for (None in a dry run).
    let mut job_of: BTreeMap<String, Option<String>> = BTreeMap::new();
    for stage in &plan.stages {
        // The report always runs last, even when cached: it writes the run directory's tables.
        if stage.kind != StageKind::Report && (!needed.contains(&stage.id) || is_cached(stage)) {
            if is_cached(stage) {
                cached.push(stage.id.clone());
            }
            continue;
        }
        let mut after: Vec<String> = Vec::new();
        for i in stage.input_ids().filter(|i| job_of.contains_key(*i)) {
            // A stage may read one input in two roles: one dependency.
            if !after.iter().any(|a| a == i) {
                after.push(i.to_string());
            }
        }
        let stem = format!("{:02}-{}", jobs.len() + 1, file_stem(&stage.id));
        let (script_path, log) = (dir.join(format!("{stem}.sh")), dir.join(format!("{stem}.out")));
        let kind = stage.kind.name().to_string();
        let resources = cluster.for_kind(&kind).sbatch_options();
        std::fs::write(&script_path, script(resolved, stage, opts, &run_dir.path, &log, &resources)).map_err(io(format!("cannot write {}", script_path.display())))?;
        let mut command = vec!["sbatch".to_string(), "--parsable".to_string()];
        // A dry run names the jobs it would wait for by their stages.
        let dep_ids: Vec<String> = after.iter().map(|a| job_of[a].clone().unwrap_or_else(|| format!("<{a}>"))).collect();
        if !dep_ids.is_empty() {
            command.push(format!("--dependency=afterok:{}", dep_ids.join(":")));
            command.push("--kill-on-invalid-dep=yes".into());
        }
        command.push(script_path.display().to_string());
        let (job, reused) = match queued.get(&stage.key) {
            Some(id) => (Some(id.clone()), true),
            None if opts.dry_run => (None, false),
            None => {
                let out = output(&command[0], &command[1..])?;
                let id = out.trim().split(';').next().unwrap_or("").to_string();
                if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
                    return Err(SlurmError::NoJobId { stage: stage.id.clone(), stdout: out });
                }
                (Some(id), false)
            }
        };
        let shown = command.iter().map(|c| quote(c)).collect::<Vec<_>>().join(" ");
        match (&job, reused) {
            (Some(id), true) => say(&format!("queued    {} [{}]: job {id} (already queued or running; not submitted again)", stage.id, stage.key)),
            (Some(id), false) => say(&format!("submitted {} [{}]: job {id}", stage.id, stage.key)),
            (None, _) => say(&shown),
        }
        job_of.insert(stage.id.clone(), job.clone());
        jobs.push(Job { stage: stage.id.clone(), key: stage.key.clone(), kind, job, reused, script: script_path, log, command, after });
    }
    let submission = Submission {
        experiment: resolved.experiment.name.clone(),
        recipe_hash: resolved.recipe_hash.clone(),
        recipe: opts.recipe.clone(),
        results: opts.results.clone(),
        dry_run: opts.dry_run,
        cached,
        jobs,
    };
    run_dir.write_json("submission.json", &submission).map_err(io("cannot write submission.json"))?;
    run_dir.log(&format!("submit: {} jobs ({} stages cached){}", submission.jobs.len(), submission.cached.len(), if opts.dry_run { ", dry run: nothing submitted" } else { "" }));
    Ok((run_dir.path.clone(), submission))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_ids_become_file_names_and_shell_words() {
        assert_eq!(file_stem("evaluate:task_arithmetic@lambda=0.3:cold"), "evaluate-task_arithmetic-lambda-0.3-cold");
        assert_eq!(quote("/a/b-c.toml"), "/a/b-c.toml");
        assert_eq!(quote("it's here"), "'it'\\''s here'");
    }
}
