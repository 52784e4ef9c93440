//! The executor on the real quickstart plan with injected stage bodies: stages run in order,
//! complete artifacts are cached and skipped, a failed stage leaves nothing half-written, and a
//! rerun resumes where the failure stopped.

use std::cell::RefCell;
use std::path::Path;

use reccocktail::backend::{self, DeviceSpec};
use reccocktail::exec::{self, RunOptions, StageContext, StageError};
use reccocktail::plan::{self, CacheStatus};
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
    let opts = RunOptions { results_dir: results.clone(), only: None };
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
    assert!(err.to_string().contains("stage `train:drama` failed: simulated crash"));
    let failed = plan.stage("train:drama").unwrap();
    assert_eq!(cache.status(&failed.key), CacheStatus::Partial, "checkpoints kept, no artifact");
    assert!(!cache.dir(&failed.key).exists());
    let leftovers: Vec<_> = std::fs::read_dir(cache.root()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-")).collect();
    assert!(leftovers.is_empty(), "temporary output removed");
    let first = ran.borrow().len();
    assert!(first > 0);

    *fail_at.borrow_mut() = None;
    ran.borrow_mut().clear();
    let summary = exec::run_with(&resolved, &plan, &runtime, &opts, &body).unwrap();
    assert_eq!(summary.cached.len(), first, "completed stages are not redone");
    assert_eq!(summary.executed.len() + summary.cached.len(), plan.stages.len());
    assert_eq!(ran.borrow()[0], "train:drama", "the run resumes at the failed stage");
    let out = std::fs::read_to_string(cache.dir(&failed.key).join("out.txt")).unwrap();
    assert!(out.ends_with("|resumed"));
    assert!(!cache.scratch(&failed.key).exists(), "scratch space dropped once complete");
    assert!(plan.stages.iter().all(|s| cache.status(&s.key) == CacheStatus::Cached));

    // `--only` runs a stage's closure; here everything is cached already.
    let only = RunOptions { results_dir: results.clone(), only: Some("merge:fixed_0.5".into()) };
    ran.borrow_mut().clear();
    let summary = exec::run_with(&resolved, &plan, &runtime, &only, &body).unwrap();
    assert!(ran.borrow().is_empty());
    assert!(summary.cached.contains(&"train:base_spirit".to_string()) && !summary.cached.contains(&"report".to_string()));
    std::fs::remove_dir_all(&results).unwrap();
}
