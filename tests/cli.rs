//! The binary: exit codes and messages of every subcommand that exists so far.

use std::process::{Command, Output};

fn reccocktail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reccocktail")).args(args).env("NO_COLOR", "1").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_accepts_the_shipped_recipes() {
    let mut recipes: Vec<String> = std::fs::read_dir("recipes").unwrap().map(|e| e.unwrap().path().display().to_string()).filter(|p| p.ends_with(".toml")).collect();
    recipes.sort();
    assert!(recipes.len() >= 5, "{recipes:?}");
    let args: Vec<&str> = std::iter::once("validate").chain(recipes.iter().map(String::as_str)).collect();
    let out = reccocktail(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Without a warning either: no shipped recipe evaluates one cocktail twice or trains on its test.
    let expected: String = recipes.iter().map(|r| format!("{r}: ok\n")).collect();
    assert_eq!(text(&out.stdout), expected);
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn validate_rejects_with_exit_2_and_locations() {
    let out = reccocktail(&["validate", "recipes/quickstart.toml", "tests/recipes/bad/many_problems.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--> tests/recipes/bad/many_problems.toml:"), "{err}");
    assert!(err.contains("did you mean `rank`?"), "{err}");
    assert!(err.contains("1 of 2 recipes are invalid"), "{err}");
}

#[test]
fn validate_prints_warnings_and_accepts() {
    let out = reccocktail(&["validate", "tests/recipes/target_overlap.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "tests/recipes/target_overlap.toml: ok (1 warning)\n");
    let err = text(&out.stderr);
    assert!(err.starts_with("warning[target-overlap]: the base spirit trains on domain `drama`: the target domain of ingredient `drama`\n  --> tests/recipes/target_overlap.toml:"), "{err}");
    let out = reccocktail(&["validate", "--json", "tests/recipes/target_overlap.toml"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[0]["problems"][0]["severity"], "warning");
    assert_eq!(v[0]["problems"][0]["path"], "base_spirit.domains[2]");
    // Commands that use the recipe show the warning and go on.
    let out = reccocktail(&["resolve", "tests/recipes/target_overlap.toml"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("warning[target-overlap]"));
}

#[test]
fn validate_json_lists_problems_with_lines() {
    let out = reccocktail(&["validate", "--json", "tests/recipes/bad/typo_key.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v[0]["problems"][0];
    assert_eq!(p["code"], "unknown-key");
    assert_eq!(p["path"], "lora.rnak");
    assert!(p["line"].as_u64().unwrap() > 1);
}

#[test]
fn missing_file_and_bad_arguments_exit_2() {
    let out = reccocktail(&["validate", "no/such/recipe.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read recipe no/such/recipe.toml"));
    assert_eq!(reccocktail(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(reccocktail(&["run", "recipes/quickstart.toml", "--device", "gpu"]).status.code(), Some(2));
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = reccocktail(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), std::fs::read_to_string("schema/recipe.schema.json").unwrap());
}

#[test]
fn plan_lists_stages_and_json_has_cache_status() {
    let dir = tempdir("plan");
    let out = reccocktail(&["plan", "recipes/quickstart.toml", "--results", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("plan `quickstart`"), "{s}");
    assert!(s.contains("train:base_spirit") && s.contains("merge:entropy ") && s.contains("report"));
    let out = reccocktail(&["plan", "--json", "recipes/quickstart.toml", "--results", dir.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["stages"].as_array().unwrap().iter().all(|s| s["cache"] == "missing"));
}

#[test]
fn gc_lists_what_no_named_recipe_uses_and_removes_it_only_when_asked() {
    let dir = tempdir("gc");
    let results = dir.to_str().unwrap();
    let out = reccocktail(&["plan", "--json", "recipes/quickstart.toml", "--results", results]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let train = plan["stages"].as_array().unwrap().iter().find(|s| s["id"] == "train:base_spirit").unwrap()["key"].as_str().unwrap().to_string();
    // A stage of the quickstart's plan, and one of no plan (a merge of an edited recipe).
    for (key, id) in [(train.as_str(), "train:base_spirit"), ("0123456789abcdef", "merge:old")] {
        let d = dir.join(".cache").join(key);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("stage.json"), format!("{{\"id\": \"{id}\", \"kind\": \"merge\"}}")).unwrap();
    }
    let out = reccocktail(&["gc", "recipes/quickstart.toml", "--results", results]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("0123456789abcdef  merge:old") && !s.contains(&train) && s.contains("1 unused entry") && s.contains("nothing removed"), "{s}");
    assert!(dir.join(".cache/0123456789abcdef").exists(), "a listing removes nothing");
    let out = reccocktail(&["gc", "recipes/quickstart.toml", "--results", results, "--delete"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("removed 1 entry"), "{}", text(&out.stdout));
    assert!(!dir.join(".cache/0123456789abcdef").exists() && dir.join(".cache").join(&train).exists());
    // No recipe named: nothing would be kept, so it is refused.
    assert_eq!(reccocktail(&["gc", "--results", results]).status.code(), Some(2));
}

#[test]
fn run_reports_failed_stages_and_goes_on_with_the_others() {
    let dir = tempdir("run");
    // The data stages run (on the committed subset); this recipe's backbone does not exist, so
    // training and every LLM arm fail; the report still lists them.
    let out = reccocktail(&["run", "tests/recipes/small_latest.toml", "--backend", "flex", "--threads", "1", "--results", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error: stage `train:base_spirit` failed: cannot read tests/recipes/no_model/config.json"), "{err}");
    assert!(err.contains("stage `evaluate:backbone:warm` failed"), "{err}");
    let summary = text(&out.stdout);
    assert!(summary.contains("| popularity |") && summary.contains("## Arms without results"), "{summary}");
    // The run directory records the run even when it stops early.
    let runs: Vec<_> = std::fs::read_dir(dir.join("small_latest")).unwrap().collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].as_ref().unwrap().path();
    for f in ["resolved.json", "plan.json", "environment.json", "run.log", "results.csv", "summary.md"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert!(std::fs::read_to_string(run.join("run.log")).unwrap().contains("no_model/config.json"));
    // The commit the binary was built from: 40 hex digits, `-dirty` when tracked files had
    // uncommitted changes (a checkout without git says `unknown`).
    let env: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("environment.json")).unwrap()).unwrap();
    let commit = env["git_commit"].as_str().unwrap();
    let hash = commit.strip_suffix("-dirty").unwrap_or(commit);
    assert!(commit == "unknown" || (hash.len() == 40 && hash.chars().all(|c| c.is_ascii_hexdigit())), "{commit}");
    let out = reccocktail(&["run", "recipes/quickstart.toml", "--only", "no-such-stage", "--results", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn env_checks_every_compiled_backend() {
    let out = reccocktail(&["env"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("smoke test ok"));
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("reccocktail-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn model_commands_reject_bad_inputs_with_exit_2() {
    let missing = reccocktail(&["generate", "--model", "no/such/model.gguf", "--prompt", "hi"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));
    let dir = tempdir("convert");
    let bogus = dir.join("bogus.gguf");
    std::fs::write(&bogus, b"not a gguf file at all").unwrap();
    let out = reccocktail(&["convert", bogus.to_str().unwrap(), dir.join("out").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("bogus.gguf"), "{}", text(&out.stderr));
}

#[test]
fn bench_eval_times_both_protocols_and_dumps_the_token_ids_it_fed() {
    let dir = std::env::temp_dir().join(format!("reccocktail-bench-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    reccocktail::model::tiny::write_tiny_chat_model(&dir.join("model"), reccocktail::model::tiny::TinySpec::default(), 3).unwrap();
    let dump = dir.join("inputs.json");
    let model = dir.join("model");
    let args = ["bench", "eval", "--model", model.to_str().unwrap(), "--users", "2", "--candidates", "4", "--history", "2", "--max-new-tokens", "3", "--backend", "flex", "--threads", "1"];
    let out = reccocktail(&[&args[..], &["--dump", dump.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &r["eval"];
    assert_eq!((e["users"].as_u64(), e["candidates"].as_u64(), r["device"].as_str()), (Some(2), Some(4), Some("cpu")));
    for key in ["prompt_s_per_user", "ratio", "candidate_share"] {
        assert!(e[key].as_f64().is_some_and(f64::is_finite), "{key}: {e}");
    }
    assert!(e["likelihood"]["users_per_s"].as_f64().unwrap() > 0.0 && e["generate"]["users_per_s"].as_f64().unwrap() > 0.0);
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(&dump).unwrap()).unwrap();
    assert_eq!((d["max_new_tokens"].as_u64(), d["eos"].as_array().map(Vec::len)), (Some(3), Some(1)));
    let users = d["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    for u in users {
        let prompt = u["prompt"].as_array().unwrap();
        assert!(prompt.len() as f64 <= e["mean_prompt_tokens"].as_f64().unwrap() * 2.0 && !prompt.is_empty());
        let titles = u["titles"].as_array().unwrap();
        assert_eq!(titles.len(), 4);
        assert!(titles.iter().all(|t| !t.as_array().unwrap().is_empty()));
        assert!(u["target_slot"].as_u64().unwrap() < 4);
    }
    // A CUDA device on a CPU build is refused with a message, not a panic.
    let out = reccocktail(&[&args[..], &["--device", "cuda"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn merge_flags_are_checked_against_the_method_registry() {
    let adapter = "tests/fixtures/trained/adapter";
    let out = std::env::temp_dir().join(format!("rc-cli-merge-{}", std::process::id()));
    let out = out.to_str().unwrap();
    let o = reccocktail(&["merge", "--method", "entropy", "--adapter", adapter, "--out", out]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("runs only inside a recipe") && text(&o.stderr).contains("standalone methods: fixed, task_arithmetic, ties, dare"), "{}", text(&o.stderr));
    let o = reccocktail(&["merge", "--method", "fixed", "--density", "0.3", "--adapter", adapter, "--out", out]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--density does not apply to `fixed` (only to ties)"), "{}", text(&o.stderr));
    let o = reccocktail(&["merge", "--method", "dare", "--adapter", &format!("{adapter}:1"), "--adapter", &format!("{adapter}:0.5"), "--out", out]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Resolved through the recipe's function: its defaults (drop rate 0.5, seed 42).
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!("{out}/merge.json")).unwrap()).unwrap();
    assert_eq!(meta["params"], serde_json::json!({ "method": "dare", "drop_rate": 0.5, "lambda": 1.0, "weights": [1.0, 0.5], "seed": 42 }));
    std::fs::remove_dir_all(out).ok();
}
