//! The whole experiment end to end on a tiny random model and the committed MovieLens subset:
//! train base spirit and ingredient, merge every arm (fixed, task arithmetic, TIES, DARE, entropy),
//! evaluate warm and cold users, report. The result table is locked by an insta snapshot: same
//! recipe, same tables, byte for byte; a second run takes everything from the cache.

use std::path::{Path, PathBuf};

use reccocktail::model::tiny::{TinySpec, write_tiny_chat_model};

mod common;
use common::root;

fn recipe(model: &Path) -> String {
    common::tiny_recipe_head("tiny_e2e", model)
        + r#"[[arms]]
name = "base_only"
merge = { method = "fixed", weights = [1.0, 0.0] }

[[arms]]
name = "ingredient_only"
merge = { method = "fixed", weights = [0.0, 1.0] }

[[arms]]
name = "fixed_0.5"
merge = { method = "fixed", weights = [0.5, 0.5] }

[[arms]]
name = "task_arithmetic"
merge = { method = "task_arithmetic", lambda = 0.7 }

[[arms]]
name = "entropy"
merge = { method = "entropy", granularity = "layer", lr_grid = [0.05, 0.5], objective = "candidate_entropy", adaptation = { source = "domain", size = 3 } }

[evaluation]
protocol = { kind = "likelihood" }
template = "rank"
k = [1, 3]
baselines = ["random", "popularity", "markov", "itemknn", "sasrec"]

[evaluation.sasrec]
hidden = 8
heads = 2
blocks = 1
max_len = 6
batch_size = 16
epochs = 4
eval_every = 2

[evaluation.settings.warm]
domain = "drama"
users = "warm"
max_users = 4

[evaluation.settings.cold]
domain = "drama"
users = "unseen_users"
max_users = 4
"#
}

fn reccocktail(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_reccocktail")).args(args).current_dir(root()).output().unwrap()
}

#[test]
fn tiny_experiment_runs_end_to_end_and_is_reproducible() {
    let dir = std::env::temp_dir().join(format!("rc-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_tiny_chat_model(&dir.join("model"), TinySpec::default(), 11).unwrap();
    let recipe_path = dir.join("tiny.toml");
    std::fs::write(&recipe_path, recipe(&dir.join("model"))).unwrap();
    let results = dir.join("results");
    let run = |results: &Path| reccocktail(&["run", recipe_path.to_str().unwrap(), "--results", results.to_str().unwrap()]);
    let out = run(&results);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let run_dir = |results: &Path| -> PathBuf {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(results.join("tiny_e2e")).unwrap().map(|e| e.unwrap().path()).collect();
        runs.sort();
        runs.pop().unwrap()
    };
    let first = std::fs::read_to_string(run_dir(&results).join("results.csv")).unwrap();
    for arm in ["backbone", "base_only", "ingredient_only", "fixed_0.5", "task_arithmetic", "entropy", "random", "popularity", "markov", "itemknn", "sasrec"] {
        for setting in ["warm", "cold"] {
            assert!(first.lines().any(|l| l.contains(&format!(",{arm},{setting},"))), "no {arm}/{setting} row in\n{first}");
        }
    }
    // The entropy arm's learned coefficients: a table (one value per layer, module and adapter of
    // the tiny model) and the per-layer plot.
    let coefficients = std::fs::read_to_string(run_dir(&results).join("coefficients.csv")).unwrap();
    assert!(coefficients.starts_with("merge,arm,layer,module,adapter,value\n"), "{coefficients}");
    assert!(coefficients.lines().skip(1).all(|l| l.starts_with("entropy,entropy,")), "{coefficients}");
    let plot = std::fs::read_to_string(run_dir(&results).join("plot_coefficients.svg")).unwrap();
    assert_eq!(plot.matches("<polyline").count(), 2, "one line per adapter");
    // The learning rate was chosen on validation MRR among the grid, each rate's score recorded.
    let summaries: Vec<serde_json::Value> = std::fs::read_dir(results.join(".cache")).unwrap().filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("entropy.json")).ok()).map(|t| serde_json::from_str(&t).unwrap()).collect();
    assert!(!summaries.is_empty(), "no entropy.json in the cache");
    for summary in &summaries {
        let grid: Vec<(f64, f64)> = summary["lr_grid"].as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap())).collect();
        // Rate 0 (no adaptation) is always a candidate, first, and wins ties.
        assert_eq!(grid.iter().map(|g| g.0).collect::<Vec<_>>(), [0.0, 0.05, 0.5], "{summary}");
        let best = grid.iter().fold(grid[0], |b, g| if g.1 > b.1 { *g } else { b });
        assert_eq!(summary["lr"].as_f64(), Some(best.0), "the first rate with the best validation MRR: {summary}");
        let steps = if best.0 == 0.0 { 0 } else { 3 };
        assert_eq!(summary["steps"].as_u64(), Some(steps), "the chosen rate's own run is kept: one step per prompt, {summary}");
    }
    // The report names whose prompts the entropy merge adapted on, and every candidate rate.
    let summary_md = std::fs::read_to_string(run_dir(&results).join("summary.md")).unwrap();
    assert!(summary_md.contains("| entropy [domain] |") && summary_md.contains("## Entropy merges"), "{summary_md}");
    let line = summary_md.lines().find(|l| l.starts_with("| entropy | domain | 3 |")).unwrap_or_else(|| panic!("{summary_md}"));
    assert!(line.contains("0: ") && line.contains("0.05: ") && line.contains("0.5: "), "{line}");
    // Everything is cached the second time, and the table is the same byte for byte.
    let out = run(&results);
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.lines().any(|l| l.starts_with("start ")), "a second run recomputed stages:\n{log}");
    assert_eq!(first, std::fs::read_to_string(run_dir(&results).join("results.csv")).unwrap());
    // A fresh results directory (nothing cached) gives the same table too.
    let fresh = dir.join("fresh");
    assert_eq!(run(&fresh).status.code(), Some(0));
    let again = std::fs::read_to_string(run_dir(&fresh).join("results.csv")).unwrap();
    assert_eq!(first, again, "a fresh run gave another table");
    // The recipe holds temporary paths, so its hash differs between runs of the test: redacted.
    let hash = first.lines().nth(1).and_then(|l| l.split(',').find(|f| f.len() == 16 && f.chars().all(|c| c.is_ascii_hexdigit()))).unwrap_or("").to_string();
    let stable = if hash.is_empty() { first.clone() } else { first.replace(&hash, "[recipe-hash]") };
    insta::assert_snapshot!("tiny_e2e_results", stable);
    std::fs::remove_dir_all(&dir).ok();
}

/// The tiny experiment with the ingredient's checkpoint chosen by validation MRR: its train stage
/// reads its domain's split, ranks validation users at every validation, records their MRR, and
/// keeps the best checkpoint by it; the base spirit keeps choosing by loss.
#[test]
fn an_ingredient_can_choose_its_checkpoint_by_validation_mrr() {
    let dir = std::env::temp_dir().join(format!("rc-e2e-mrr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_tiny_chat_model(&dir.join("model"), TinySpec::default(), 11).unwrap();
    let text = common::tiny_recipe_head("tiny_mrr", &dir.join("model")).replace(
        "[ingredients.drama]\ndomains = [\"drama\"]\ntemplate = \"rank\"\nmax_samples = 8\nmax_valid_samples = 4\n",
        "[ingredients.drama]\ndomains = [\"drama\"]\ntemplate = \"rank\"\nmax_samples = 8\nmax_valid_samples = 4\ntraining = { select_by = \"mrr\", select_users = 6 }\n",
    ) + r#"[[arms]]
name = "fixed_0.5"
merge = { method = "fixed", weights = [0.5, 0.5] }

[evaluation]
protocol = { kind = "likelihood", scoring = "calibrated" }
template = "rank"
k = [1, 3]
backbone = false

[evaluation.settings.warm]
domain = "drama"
users = "warm"
max_users = 4
"#;
    assert!(text.contains("select_by = \"mrr\""));
    let recipe_path = dir.join("tiny.toml");
    std::fs::write(&recipe_path, text).unwrap();
    let results = dir.join("results");
    let out = reccocktail(&["run", recipe_path.to_str().unwrap(), "--results", results.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("adapter `drama`: checkpoints chosen by the validation MRR of 6 users"), "{stderr}");
    let mut summaries: Vec<(serde_json::Value, PathBuf)> = std::fs::read_dir(results.join(".cache"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            std::fs::read_to_string(p.join("train.json")).ok().map(|t| (serde_json::from_str(&t).unwrap(), p))
        })
        .collect();
    summaries.sort_by_key(|(s, _)| s["adapter"].as_str().unwrap().to_string());
    assert_eq!(summaries.len(), 2);
    let (base, ingredient) = (&summaries[0].0, &summaries[1].0);
    assert_eq!((base["adapter"].as_str(), base["select_by"].as_str(), base["best_valid_mrr"].as_f64()), (Some("base_spirit"), Some("loss"), None), "{base}");
    assert_eq!((ingredient["adapter"].as_str(), ingredient["select_by"].as_str(), ingredient["select_users"].as_u64()), (Some("drama"), Some("mrr"), Some(6)), "{ingredient}");
    // The kept checkpoint is the first of the highest validation MRR in the training log.
    let log = reccocktail::table::read_parquet(&summaries[1].1.join("train_log.parquet")).unwrap();
    let steps = reccocktail::table::opt_i64s(&log, "step").unwrap();
    let mrr = reccocktail::table::opt_f64s(&log, "valid_mrr").unwrap();
    let validated: Vec<(u64, f64)> = steps.iter().zip(&mrr).filter_map(|(s, m)| m.map(|m| (s.unwrap() as u64, m))).collect();
    assert!(!validated.is_empty() && validated.iter().all(|(_, m)| (0.0..=1.0).contains(m)), "{validated:?}");
    let best = validated.iter().fold(validated[0], |b, v| if v.1 > b.1 { *v } else { b });
    assert_eq!((ingredient["best_step"].as_u64(), ingredient["best_valid_mrr"].as_f64()), (Some(best.0), Some(best.1)), "{ingredient}");
    std::fs::remove_dir_all(&dir).ok();
}
