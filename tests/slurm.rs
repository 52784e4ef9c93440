//! Many workers on one cache, and the plan as Slurm jobs.
//!
//! - Two processes on one key: the loser waits for the winner's lock, then reuses its sealed
//!   artifact; a dead attempt's temporary directory is cleaned by the next worker.
//! - `run --stage` computes exactly one stage and refuses to compute a missing input.
//! - `submit` against stand-in `sbatch` / `squeue` (shell scripts on PATH that record their
//!   arguments): one job per uncached stage in plan order, `afterok` dependencies on exactly the
//!   input jobs, cached and queued stages not submitted, `status` from the cache and the queue.
//!   (A real single-node Slurm runs the same in `.ci/run` when it can be installed.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use reccocktail::exec::Cache;
use reccocktail::plan::{self, Plan};
use reccocktail::recipe::{self, ResolvedRecipe};

/// Absolute, as `submit` hands it to the jobs (a local dataset's key includes its path as written).
const RECIPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/recipes/small_latest.toml");

mod common;
use common::root;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rc-slurm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn plan() -> Plan {
    let loaded = recipe::load(Path::new(RECIPE)).unwrap();
    plan::compile(&ResolvedRecipe::from_loaded(&loaded).unwrap()).unwrap()
}

fn reccocktail(args: &[&str], path_prefix: Option<&Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reccocktail"));
    c.args(args).current_dir(root());
    if let Some(p) = path_prefix {
        c.env("PATH", format!("{}:{}", p.display(), std::env::var("PATH").unwrap_or_default()));
    }
    c
}

#[test]
fn a_second_worker_waits_for_the_key_then_reuses_the_sealed_artifact() {
    let dir = tmp("race");
    let key = plan().stage("data:latest").unwrap().key.clone();
    // The artifact, computed once elsewhere (what the winner will have sealed).
    let elsewhere = dir.join("elsewhere");
    let out = reccocktail(&["run", RECIPE, "--only", "data:latest", "--backend", "flex", "--results", elsewhere.to_str().unwrap()], None).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // Winner: this process holds the key's lock; a dead attempt's directory lies around.
    let results = dir.join("results");
    let cache = Cache::new(&results);
    let lock = cache.lock(&key, &|| panic!("nobody else holds it")).unwrap();
    std::fs::create_dir_all(cache.root().join(format!(".tmp-{key}-999999"))).unwrap();
    let mut loser = reccocktail(&["run", RECIPE, "--only", "data:latest", "--backend", "flex", "--results", results.to_str().unwrap()], None).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    if loser.try_wait().unwrap().is_some() {
        let out = loser.wait_with_output().unwrap();
        panic!("the second worker must wait while the key is locked: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The winner seals its result (a copy of the artifact, renamed into place) and lets go.
    let staged = cache.root().join(format!(".tmp-{key}-{}", std::process::id()));
    copy_dir(&Cache::new(&elsewhere).dir(&key), &staged);
    std::fs::rename(&staged, cache.dir(&key)).unwrap();
    drop(lock);
    let out = loser.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("another worker holds it") && log.contains("sealed by another worker meanwhile"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("done     data:latest")), "the loser computed the stage again:\n{log}");

    // A worker that finds a dead attempt (no lock held) cleans it and computes.
    let fresh = dir.join("fresh");
    let stale = Cache::new(&fresh).root().join(format!(".tmp-{key}-999999"));
    std::fs::create_dir_all(&stale).unwrap();
    let out = reccocktail(&["run", RECIPE, "--only", "data:latest", "--backend", "flex", "--results", fresh.to_str().unwrap()], None).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(!stale.exists() && log.contains("removed 1 unfinished attempt"), "{log}");
    std::fs::remove_dir_all(&dir).ok();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_single_stage_run_refuses_missing_inputs_and_computes_only_its_stage() {
    let dir = tmp("stage");
    let results = dir.join("results");
    let r = results.to_str().unwrap();
    let out = reccocktail(&["run", RECIPE, "--stage", "split:drama", "--backend", "flex", "--results", r], None).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs `data:latest`, which is not in the cache"), "{err}");
    let out = reccocktail(&["run", RECIPE, "--only", "data:latest", "--backend", "flex", "--results", r], None).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let run_dir = dir.join("shared-run");
    let out = reccocktail(&["run", RECIPE, "--stage", "split:drama", "--backend", "flex", "--results", r, "--run-dir", run_dir.to_str().unwrap()], None).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let started: Vec<&str> = err.lines().filter(|l| l.starts_with("start ")).collect();
    assert_eq!(started.len(), 1, "{err}");
    assert!(started[0].contains("split:drama"));
    assert!(std::fs::read_to_string(run_dir.join("run.log")).unwrap().contains("done     split:drama"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Stand-in `sbatch` (records its arguments, prints ids 101, 102, ...) and `squeue` (prints
/// `queue.txt`).
fn fake_slurm(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let write = |name: &str, body: String| {
        let p = bin.join(name);
        std::fs::write(&p, body).unwrap();
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    };
    let d = dir.display();
    write("sbatch", format!("#!/bin/sh\nn=$(cat {d}/next 2>/dev/null || echo 101)\necho $((n + 1)) > {d}/next\necho \"$n $*\" >> {d}/sbatch.log\necho \"$n\"\n"));
    write("squeue", format!("#!/bin/sh\ncat {d}/queue.txt 2>/dev/null\nexit 0\n"));
    bin
}

#[test]
fn submit_chains_uncached_stages_with_afterok_and_status_reads_them_back() {
    let dir = tmp("submit");
    let bin = fake_slurm(&dir);
    let results = dir.join("results");
    let r = results.to_str().unwrap();
    let p = plan();
    // data:latest is cached; its dependents are submitted, it is not.
    assert_eq!(reccocktail(&["run", RECIPE, "--only", "data:latest", "--backend", "flex", "--results", r], None).output().unwrap().status.code(), Some(0));

    // Dry run: scripts and sbatch lines, nothing submitted.
    let out = reccocktail(&["submit", RECIPE, "--dry-run", "--results", r], Some(&bin)).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.join("sbatch.log").exists(), "a dry run submitted");
    let lines = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(lines.lines().all(|l| l.starts_with("sbatch --parsable ")), "{lines}");
    // The run directory's name carries the time: redacted with the temporary paths.
    let run_name = lines.lines().next().and_then(|l| l.split("/small_latest/").nth(1)).and_then(|t| t.split('/').next()).unwrap().to_string();
    insta::assert_snapshot!("submit_dry_run", lines.replace(&run_name, "[run]").replace(r, "[results]"));

    let out = reccocktail(&["submit", RECIPE, "--results", r, "--threads", "1"], Some(&bin)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let run_dir = PathBuf::from(err.trim().rsplit("run directory: ").next().unwrap());
    let sub: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("submission.json")).unwrap()).unwrap();
    let jobs = sub["jobs"].as_array().unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j["stage"].as_str().unwrap()).collect();
    assert!(sub["cached"].as_array().unwrap().iter().any(|s| s == "data:latest") && !ids.contains(&"data:latest"));
    assert_eq!(*ids.last().unwrap(), "report", "the report is the last job");
    // Every job waits for exactly its submitted inputs' jobs.
    let job_of = |stage: &str| jobs.iter().find(|j| j["stage"] == stage).and_then(|j| j["job"].as_str()).map(str::to_string);
    for j in jobs {
        let stage = p.stage(j["stage"].as_str().unwrap()).unwrap();
        let mut want: Vec<String> = stage.input_ids().filter_map(job_of).collect();
        want.sort();
        want.dedup();
        let line = std::fs::read_to_string(dir.join("sbatch.log")).unwrap().lines().find(|l| l.starts_with(&format!("{} ", j["job"].as_str().unwrap()))).unwrap().to_string();
        let mut got: Vec<String> = line.split_whitespace().find_map(|w| w.strip_prefix("--dependency=afterok:")).map(|d| d.split(':').map(str::to_string).collect()).unwrap_or_default();
        got.sort();
        assert_eq!(got, want, "{line}");
        assert_eq!(!want.is_empty(), line.contains("--kill-on-invalid-dep=yes"), "{line}");
        let script = std::fs::read_to_string(j["script"].as_str().unwrap()).unwrap();
        assert!(script.contains(&format!("--stage {}", stage.id)) && script.contains("--threads 1") && script.contains(&format!("#SBATCH --job-name=rc-{}", stage.key)), "{script}");
    }

    // Status: split:drama running, the first train job pending, everything else gone without a
    // sealed artifact: failed, with its log.
    let split = job_of("split:drama").unwrap();
    let queued_stage = ids.iter().find(|s| s.starts_with("train:")).unwrap();
    std::fs::write(dir.join("queue.txt"), format!("{split}|RUNNING\n{}|PENDING\n", job_of(queued_stage).unwrap())).unwrap();
    let out = reccocktail(&["status", run_dir.to_str().unwrap(), "--json"], Some(&bin)).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let state = |s: &str| rows.iter().find(|r| r["stage"] == s).map(|r| r["state"].as_str().unwrap().to_string()).unwrap();
    assert_eq!(state("data:latest"), "cached");
    assert_eq!(state("split:drama"), "running");
    assert_eq!(state(queued_stage), "pending");
    assert_eq!(state("report"), "failed");
    assert!(rows.iter().any(|r| r["state"] == "failed" && r["log"].as_str().is_some_and(|l| l.ends_with(".out"))));

    // Submitting again: the queued and running jobs are reused, not submitted twice.
    std::fs::write(dir.join("queue.txt"), format!("{split}|rc-{}|RUNNING\n", p.stage("split:drama").unwrap().key)).unwrap();
    let before = std::fs::read_to_string(dir.join("sbatch.log")).unwrap().lines().count();
    let out = reccocktail(&["submit", RECIPE, "--results", r], Some(&bin)).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("queued    split:drama [{}]: job {split}", p.stage("split:drama").unwrap().key)), "{stdout}");
    let after = std::fs::read_to_string(dir.join("sbatch.log")).unwrap().lines().count();
    assert_eq!(after - before, jobs.len() - 1, "every job but the queued one submitted again");
    std::fs::remove_dir_all(&dir).ok();
}

/// A small experiment on a tiny random model: two adapters, two arms, warm and cold users.
fn tiny_recipe(dir: &Path) -> PathBuf {
    use reccocktail::model::tiny::{write_tiny_chat_model, TinySpec};
    write_tiny_chat_model(&dir.join("model"), TinySpec::default(), 11).unwrap();
    let text = common::tiny_recipe_head("tiny_slurm", &dir.join("model"))
        + r#"[[arms]]
name = "fixed_0.5"
merge = { method = "fixed", weights = [0.5, 0.5] }

[[arms]]
name = "task_arithmetic"
merge = { method = "task_arithmetic", lambda = 0.7 }

[evaluation]
template = "rank"
k = [1, 3]
baselines = ["random", "popularity", "markov"]

[evaluation.settings.warm]
domain = "drama"
users = "warm"
max_users = 4

[evaluation.settings.cold]
domain = "drama"
users = "unseen_users"
max_users = 4
"#;
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// On a real Slurm cluster (`sudo bash scripts/slurm_local.sh` starts a single-node one; `.ci/run`
/// does): the plan as jobs gives the same table as a local run, byte for byte.
#[test]
#[ignore = "needs a running Slurm cluster: bash scripts/slurm_local.sh, then cargo test --test slurm -- --ignored"]
fn real_slurm_runs_the_plan_and_gives_the_same_table_as_a_local_run() {
    let dir = tmp("real");
    let recipe = tiny_recipe(&dir);
    let r = recipe.to_str().unwrap();
    let local = dir.join("local");
    let started_local = std::time::Instant::now();
    let out = reccocktail(&["run", r, "--results", local.to_str().unwrap()], None).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let latest = |results: &Path| -> PathBuf {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(results.join("tiny_slurm")).unwrap().map(|e| e.unwrap().path()).collect();
        runs.sort();
        runs.pop().unwrap()
    };
    let want = std::fs::read_to_string(latest(&local).join("results.csv")).unwrap();

    let local_s = started_local.elapsed().as_secs_f64();

    let shared = dir.join("shared");
    let submit = |extra: &[&str]| -> (PathBuf, serde_json::Value) {
        let mut args = vec!["submit", r, "--results", shared.to_str().unwrap()];
        args.extend(extra);
        let out = reccocktail(&args, None).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(0), "{err}");
        let run_dir = PathBuf::from(err.trim().rsplit("run directory: ").next().unwrap());
        let sub = serde_json::from_str(&std::fs::read_to_string(run_dir.join("submission.json")).unwrap()).unwrap();
        (run_dir, sub)
    };
    let stage_ids = |sub: &serde_json::Value| -> Vec<String> { sub["jobs"].as_array().unwrap().iter().map(|j| j["stage"].as_str().unwrap().to_string()).collect() };
    // First submission; one training job is cancelled before it can run: Slurm cancels the jobs
    // that wait for it, and the rest completes.
    let started_slurm = std::time::Instant::now();
    let (run_dir, sub) = submit(&[]);
    let victim = sub["jobs"].as_array().unwrap().iter().find(|j| j["stage"] == "train:drama").unwrap()["job"].as_str().unwrap().to_string();
    assert!(Command::new("scancel").arg(&victim).status().unwrap().success());
    let rows = wait(&run_dir);
    let state = |stage: &str| rows.iter().find(|r| r["stage"] == stage).unwrap()["state"].as_str().unwrap().to_string();
    assert_eq!(state("train:drama"), "failed");
    assert_eq!(state("train:base_spirit"), "done");
    assert_eq!(state("merge:fixed_0.5"), "failed", "a dependent of the cancelled job");
    let missing: Vec<String> = rows.iter().filter(|r| r["state"] == "failed").map(|r| r["stage"].as_str().unwrap().to_string()).collect();
    // Submitting again runs exactly the stages that are not cached.
    let (run_dir, sub) = submit(&[]);
    assert_eq!(stage_ids(&sub), missing, "the second submission must be exactly what is missing");
    let rows = wait(&run_dir);
    let slurm_s = started_slurm.elapsed().as_secs_f64();
    let failed: Vec<String> = rows.iter().filter(|r| r["state"] == "failed").map(|r| format!("{}: {}", r["stage"], r["log"].as_str().and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default())).collect();
    assert!(failed.is_empty(), "failed jobs:\n{}", failed.join("\n"));
    let got = std::fs::read_to_string(run_dir.join("results.csv")).unwrap();
    assert_eq!(got, want, "the Slurm run's table differs from the local run's");
    let jobs = stage_ids(&sub).len() + sub["cached"].as_array().unwrap().len();
    eprintln!("slurm overhead: local run {local_s:.1} s, as Slurm jobs (two submissions) {slurm_s:.1} s, {jobs} stages");
    // Everything is cached now: a third submission has only the report to run.
    let out = reccocktail(&["submit", r, "--dry-run", "--results", shared.to_str().unwrap()], None).output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(lines, 1, "{}", String::from_utf8_lossy(&out.stdout));
    std::fs::remove_dir_all(&dir).ok();
}

/// Poll `status` until no job is pending or running.
fn wait(run_dir: &Path) -> Vec<serde_json::Value> {
    let started = std::time::Instant::now();
    loop {
        let out = reccocktail(&["status", run_dir.to_str().unwrap(), "--json"], None).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        if rows.iter().all(|r| ["cached", "done", "failed"].contains(&r["state"].as_str().unwrap())) {
            return rows;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "jobs still queued after 15 minutes: {rows:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
}
