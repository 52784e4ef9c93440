//! The executor on the real quickstart plan with injected stage bodies: stages run in order,
//! complete artifacts are cached and skipped, a failed stage leaves nothing half-written, the
//! stages that do not need it still run (the report too, told what failed), and a rerun resumes
//! where the failure stopped. Then the real evaluate and report bodies on a tiny model.

use std::cell::RefCell;
use std::path::Path;

use reccocktail::backend::{self, DeviceSpec};
use reccocktail::exec::{self, RunError, RunOptions, StageContext, StageError};
use reccocktail::plan::{self, CacheStatus, StageKind};
use reccocktail::recipe::{self, ResolvedRecipe};
use reccocktail::recipe::types::BackendChoice;

#[test]
fn runs_caches_fails_atomically_and_resumes() {
    let loaded = recipe::load(Path::new("recipes/quickstart.toml")).unwrap();
    let resolved = ResolvedRecipe::from_loaded(&loaded).unwrap();
    let plan = plan::compile(&resolved).unwrap();
    let runtime = backend::select(BackendChoice::Auto, DeviceSpec::Cpu, Some(1)).unwrap();
    let results = std::env::temp_dir().join(format!("reccocktail-exec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&results);
    let opts = RunOptions { results_dir: results.clone(), only: None, cached_only: false, ..Default::default() };
    let cache = exec::Cache::new(&results);

    // Every stage writes a file derived from its inputs' files: order matters.
    let ran = RefCell::new(Vec::new());
    let fail_at = RefCell::new(Some("train:drama".to_string()));
    let body = |ctx: &StageContext<'_>| -> Result<(), StageError> {
        if fail_at.borrow().as_deref() == Some(ctx.stage.id.as_str()) {
            std::fs::write(ctx.out.join("half.txt"), "partial").unwrap();
            std::fs::create_dir_all(&ctx.scratch).unwrap();
            std::fs::write(ctx.scratch.join("checkpoint"), "step 10").unwrap();
            return Err(StageError::Failed("simulated crash".into()));
        }
        let mut text = ctx.stage.id.clone();
        for (id, dir) in &ctx.inputs {
            let input = std::fs::read_to_string(dir.join("out.txt")).unwrap_or_else(|_| panic!("{} read {id} before it existed", ctx.stage.id));
            text.push_str(&format!("|{}", input.len()));
        }
        if ctx.scratch.join("checkpoint").exists() {
            text.push_str("|resumed");
        }
        std::fs::write(ctx.out.join("out.txt"), text).unwrap();
        ran.borrow_mut().push(ctx.stage.id.clone());
        Ok(())
    };

    let err = exec::run_with(&resolved, &plan, &runtime, &opts, &body).unwrap_err();
    assert!(err.to_string().contains("stage `train:drama` failed: simulated crash"), "{err}");
    let RunError::Failed { summary, failures } = &err else { panic!("{err:?}") };
    assert_eq!(failures.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["train:drama"]);
    // Skipped: exactly the stages that need train:drama (the report excepted: it runs anyway).
    let mut needs: Vec<&str> = plan.stages.iter().filter(|s| s.id != "train:drama" && s.kind != StageKind::Report && plan.closure(&s.id).unwrap().iter().any(|d| d.id == "train:drama")).map(|s| s.id.as_str()).collect();
    let mut skipped: Vec<&str> = summary.skipped.iter().map(String::as_str).collect();
    needs.sort_unstable();
    skipped.sort_unstable();
    assert_eq!(skipped, needs);
    assert!(skipped.contains(&"evaluate:fixed_0.5:warm") && !skipped.contains(&"evaluate:backbone:warm"));
    assert!(summary.executed.contains(&"report".to_string()) && summary.executed.contains(&"evaluate:backbone:cold".to_string()));
    assert_eq!(cache.status(&plan.stage("report").unwrap().key), CacheStatus::Missing, "a report over failed inputs is not cached");
    let failed = plan.stage("train:drama").unwrap();
    assert_eq!(cache.status(&failed.key), CacheStatus::Partial, "checkpoints kept, no artifact");
    assert!(!cache.dir(&failed.key).exists());
    let leftovers: Vec<_> = std::fs::read_dir(cache.root()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-")).collect();
    assert!(leftovers.is_empty(), "temporary output removed");
    let first = plan.stages.iter().filter(|s| cache.status(&s.key) == CacheStatus::Cached).count();
    assert_eq!(first, ran.borrow().len() - 1, "everything that ran is cached but the report");

    // --cached-only computes nothing but the report, which lists what is not cached as not run.
    ran.borrow_mut().clear();
    let cached_only = RunOptions { results_dir: results.clone(), only: None, cached_only: true, ..Default::default() };
    let summary = exec::run_with(&resolved, &plan, &runtime, &cached_only, &body).unwrap();
    assert_eq!(*ran.borrow(), ["report"]);
    assert!(summary.skipped.contains(&"train:drama".to_string()) && summary.skipped.contains(&"evaluate:fixed_0.5:warm".to_string()));
    assert_eq!(cache.status(&failed.key), CacheStatus::Partial, "checkpoints untouched");
    assert_eq!(cache.status(&plan.stage("report").unwrap().key), CacheStatus::Missing);

    *fail_at.borrow_mut() = None;
    ran.borrow_mut().clear();
    let summary = exec::run_with(&resolved, &plan, &runtime, &opts, &body).unwrap();
    assert_eq!(summary.cached.len() + summary.unneeded.len(), first, "completed stages are not redone");
    assert_eq!(summary.executed.len() + summary.cached.len() + summary.unneeded.len(), plan.stages.len());
    // Only what the failed stage's rerun reads is visited; upstream of cached artifacts, nothing.
    assert!(summary.unneeded.contains(&"fetch:ml-100k".to_string()), "{:?}", summary.unneeded);
    assert!(summary.cached.contains(&"fetch:smollm2-135m-instruct".to_string()), "train:drama reads the backbone");
    assert_eq!(ran.borrow()[0], "train:drama", "the run resumes at the failed stage");
    let out = std::fs::read_to_string(cache.dir(&failed.key).join("out.txt")).unwrap();
    assert!(out.ends_with("|resumed"));
    assert!(!cache.scratch(&failed.key).exists(), "scratch space dropped once complete");
    assert!(plan.stages.iter().all(|s| cache.status(&s.key) == CacheStatus::Cached));

    // Raw data gone (say, a machine without network): the cached artifacts built on it still
    // serve, and nothing tries to fetch it again.
    let fetch = plan.stage("fetch:ml-100k").unwrap();
    std::fs::remove_dir_all(cache.dir(&fetch.key)).unwrap();
    ran.borrow_mut().clear();
    let summary = exec::run_with(&resolved, &plan, &runtime, &opts, &body).unwrap();
    assert!(ran.borrow().is_empty(), "{:?}", ran.borrow());
    assert!(summary.unneeded.contains(&"fetch:ml-100k".to_string()));
    assert!(plan.render(&|k| cache.status(k)).lines().any(|l| l.starts_with("  [no need]") && l.contains("fetch:ml-100k")));

    // `--only` runs a stage's closure; here everything is cached already.
    let only = RunOptions { results_dir: results.clone(), only: Some("merge:fixed_0.5".into()), cached_only: false, ..Default::default() };
    ran.borrow_mut().clear();
    let summary = exec::run_with(&resolved, &plan, &runtime, &only, &body).unwrap();
    assert!(ran.borrow().is_empty());
    assert_eq!(summary.cached, ["merge:fixed_0.5"], "a cached target needs nothing upstream");
    assert!(summary.unneeded.contains(&"train:base_spirit".to_string()) && !summary.unneeded.contains(&"report".to_string()));
    std::fs::remove_dir_all(&results).unwrap();
}

#[test]
fn a_failed_evaluate_stage_reaches_the_report_and_the_others_continue() {
    let loaded = recipe::load(Path::new("recipes/quickstart.toml")).unwrap();
    let resolved = ResolvedRecipe::from_loaded(&loaded).unwrap();
    let plan = plan::compile(&resolved).unwrap();
    let runtime = backend::select(BackendChoice::Auto, DeviceSpec::Cpu, Some(1)).unwrap();
    let results = std::env::temp_dir().join(format!("reccocktail-exec-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&results);
    let opts = RunOptions { results_dir: results.clone(), only: None, cached_only: false, ..Default::default() };
    let seen = RefCell::new(None);
    let body = |ctx: &StageContext<'_>| -> Result<(), StageError> {
        if ctx.stage.id == "evaluate:entropy:warm" {
            return Err(StageError::Failed("simulated evaluation crash".into()));
        }
        if ctx.stage.kind == StageKind::Report {
            *seen.borrow_mut() = Some((ctx.inputs.keys().cloned().collect::<Vec<_>>(), ctx.failed_inputs.clone()));
        }
        assert!(ctx.failed_inputs.is_empty() || ctx.stage.kind == StageKind::Report);
        std::fs::write(ctx.out.join("out.txt"), &ctx.stage.id).unwrap();
        Ok(())
    };
    let err = exec::run_with(&resolved, &plan, &runtime, &opts, &body).unwrap_err();
    let RunError::Failed { summary, failures } = &err else { panic!("{err:?}") };
    assert_eq!(failures.len(), 1);
    assert!(summary.skipped.is_empty(), "nothing needs an evaluate stage but the report");
    assert_eq!(summary.executed.len(), plan.stages.len() - 1);
    let (inputs, failed) = seen.borrow().clone().expect("the report ran");
    assert_eq!(failed.keys().collect::<Vec<_>>(), ["evaluate:entropy:warm"]);
    assert!(failed["evaluate:entropy:warm"].reason.contains("simulated evaluation crash"));
    assert_eq!(failed["evaluate:entropy:warm"].status, reccocktail::exec::InputStatus::Failed);
    assert_eq!(inputs.len(), plan.stage("report").unwrap().inputs.len() - 1);
    assert!(!inputs.contains(&"evaluate:entropy:warm".to_string()));
    let log = std::fs::read_to_string(summary.run_dir.join("run.log")).unwrap();
    assert!(log.contains("failed   evaluate:entropy:warm: simulated evaluation crash"), "{log}");
    std::fs::remove_dir_all(&results).unwrap();
}

/// The real evaluate and report bodies on the committed data subset with a tiny random model;
/// training and merging are left out (they fail here), so the merge arm is skipped and reported.
#[test]
fn real_evaluate_and_report_on_a_tiny_model() {
    use reccocktail::table;
    use reccocktail::recipe::resolve::Source;
    let root = std::env::temp_dir().join(format!("reccocktail-exec-tiny-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let tiny = root.join("tiny");
    reccocktail::model::tiny::write_tiny_chat_model(&tiny, reccocktail::model::tiny::TinySpec::default(), 5).unwrap();
    let loaded = recipe::load(Path::new("tests/recipes/small_latest.toml")).unwrap();
    let mut resolved = ResolvedRecipe::from_loaded(&loaded).unwrap();
    resolved.backbone.source = Source::Path { path: reccocktail::assets::LocalPath::new(Path::new("."), &tiny) };
    resolved.evaluation.settings.retain(|s| s.name == "warm" || s.name == "cold");
    let plan = plan::compile(&resolved).unwrap();
    let runtime = backend::select(BackendChoice::Auto, DeviceSpec::Cpu, Some(1)).unwrap();
    let opts = RunOptions { results_dir: root.join("results"), only: None, cached_only: false, ..Default::default() };
    let body = |ctx: &StageContext<'_>| -> Result<(), StageError> {
        match ctx.stage.kind {
            StageKind::Train | StageKind::Import | StageKind::Merge => Err(StageError::Failed("no training in this test".into())),
            _ => exec::dispatch::run_stage(ctx),
        }
    };
    let err = exec::run_with(&resolved, &plan, &runtime, &opts, &body).unwrap_err();
    let RunError::Failed { summary, failures } = &err else { panic!("{err:?}") };
    assert_eq!(failures.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["train:base_spirit", "train:drama"]);
    assert_eq!(summary.skipped, ["merge:fixed", "evaluate:fixed:cold", "evaluate:fixed:warm"]);
    let cache = exec::Cache::new(&opts.results_dir);
    let dir = cache.dir(&plan.stage("evaluate:backbone:warm").unwrap().key);
    let per_user = table::read_parquet(&dir.join("per_user.parquet")).unwrap();
    let ranks = table::opt_i64s(&per_user, "rank").unwrap();
    assert_eq!(ranks.len(), 20);
    assert!(ranks.iter().all(|r| (1..=8).contains(&r.unwrap())));
    let run = &summary.run_dir;
    let r = reccocktail::results::Results::read(run).unwrap();
    let hr1: Vec<_> = r.records.iter().filter(|x| x.setting == "warm" && x.metric == "hr" && x.k == Some(1)).map(|x| (x.arm.as_str(), x.status.as_str(), x.users)).collect();
    assert_eq!(hr1, [("random", "ok", Some(20)), ("popularity", "ok", Some(20)), ("backbone", "ok", Some(20)), ("fixed", "skipped", None)]);
    let backbone_hr1 = r.records.iter().find(|x| x.arm == "backbone" && x.setting == "warm" && x.metric == "hr" && x.k == Some(1)).unwrap().value.unwrap();
    let hits = ranks.iter().filter(|r| **r == Some(1)).count() as f64 / 20.0;
    assert_eq!(backbone_hr1, hits, "the table holds the per-user ranks' mean");
    let md = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(md.contains("## Setting `warm`") && md.contains("- `fixed` on `warm` (stage `evaluate:fixed:warm`): skipped: `train:base_spirit` failed: no training in this test"), "{md}");
    // The skip names the root failure. `reccocktail report RUN_DIR` re-prints the same summary;
    // a directory without a table is a usage error.
    let bin = env!("CARGO_BIN_EXE_reccocktail");
    let out = std::process::Command::new(bin).arg("report").arg(run).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), md);
    let out = std::process::Command::new(bin).args(["report", "--json"]).arg(run).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), r.records.len());
    let out = std::process::Command::new(bin).arg("report").arg(&tiny).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A rerun finds the evaluations cached and rebuilds the (uncached) report identically.
    let err = exec::run_with(&resolved, &plan, &runtime, &opts, &body).unwrap_err();
    let RunError::Failed { summary: again, .. } = &err else { panic!("{err:?}") };
    assert!(again.cached.contains(&"evaluate:backbone:cold".to_string()) && again.executed.contains(&"report".to_string()));
    assert_eq!(std::fs::read(again.run_dir.join("results.csv")).unwrap(), std::fs::read(run.join("results.csv")).unwrap());
    std::fs::remove_dir_all(&root).ok();
}
