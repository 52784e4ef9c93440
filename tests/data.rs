//! The data stages end to end on the committed MovieLens latest-small subset: statistics
//! snapshot, split and candidate invariants, warm/cold sets, determinism, baselines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use reccocktail::backend::{self, DeviceSpec};
use reccocktail::data::domain::DomainSplit;
use reccocktail::data::table;
use reccocktail::exec;
use reccocktail::plan::{self, Plan};
use reccocktail::recipe::types::BackendChoice;
use reccocktail::recipe::{self, ResolvedRecipe};

const RECIPE: &str = "tests/recipes/small_latest.toml";

fn setup() -> (ResolvedRecipe, Plan) {
    let loaded = recipe::load(Path::new(RECIPE)).unwrap();
    let resolved = ResolvedRecipe::from_loaded(&loaded).unwrap();
    let plan = plan::compile(&resolved).unwrap();
    (resolved, plan)
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("reccocktail-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Run the data stages (and baselines) into `results`; artifact directories by stage id.
fn run(results: &Path) -> BTreeMap<String, PathBuf> {
    let (resolved, plan) = setup();
    let runtime = backend::select(BackendChoice::Auto, DeviceSpec::Cpu, Some(1)).unwrap();
    let ids: Vec<&str> = plan.stages.iter().filter(|s| ["data", "split", "prompts", "eval-set", "baselines"].contains(&s.kind.name())).map(|s| s.id.as_str()).collect();
    exec::ensure(&resolved, &plan, &runtime, results, &ids, &|_| {}).unwrap()
}

#[test]
fn data_command_json_snapshot_and_text() {
    let results = tempdir("stats");
    let bin = env!("CARGO_BIN_EXE_reccocktail");
    let out = std::process::Command::new(bin).args(["data", RECIPE, "--json", "--results", results.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    insta::assert_json_snapshot!("data_small_latest", stats);
    // Second time: every stage comes from the cache; the text report has the same numbers.
    let out = std::process::Command::new(bin).args(["data", RECIPE, "--results", results.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("running"), "all cached");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("dataset `latest` (movielens_latest)\n  raw         200 users, 2581 items, 10497 interactions"), "{text}");
    assert!(text.contains("--- instruction ---"), "{text}");
    std::fs::remove_dir_all(&results).unwrap();
}

#[test]
fn split_candidates_and_settings_hold_their_invariants() {
    let results = tempdir("invariants");
    let dirs = run(&results);
    let (split, summary) = DomainSplit::read(&dirs["split:drama"]).unwrap();
    assert_eq!(summary.split.users, split.users.len());
    for (u, seq) in split.sequences.iter().enumerate() {
        assert!(seq.len() >= 3);
        let p = split.positions(u);
        let test_item = seq[p.test];
        assert_eq!(seq.iter().filter(|&&i| i == test_item).count(), 1, "test item not in the user's training prefixes");
        assert!(p.train.iter().all(|&t| t < p.valid && t >= 1));
        assert!(p.train.len() <= 3, "max_train_per_user");
        assert!(split.history(u, p.test).len() <= 5, "max_history");
        assert!(split.timestamps[u].windows(2).all(|w| w[0] <= w[1]), "chronological");
    }

    let seqs: HashMap<&str, &Vec<u32>> = split.users.iter().map(String::as_str).zip(&split.sequences).collect();
    let index: HashMap<&str, u32> = split.items.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32)).collect();
    let seen = table::read_parquet(&dirs["prompts:drama"].join("seen_users.parquet")).unwrap();
    let seen: HashSet<String> = table::strs(&seen, "user").unwrap().into_iter().collect();
    for setting in ["warm", "cold", "new_items", "short"] {
        let dir = &dirs[&format!("eval-set:{setting}")];
        let c = table::read_parquet(&dir.join("candidates.parquet")).unwrap();
        let (users, items, targets) = (table::strs(&c, "user").unwrap(), table::strs(&c, "item").unwrap(), table::opt_i64s(&c, "is_target").unwrap());
        let mut lists: BTreeMap<&str, Vec<(&str, bool)>> = BTreeMap::new();
        for k in 0..users.len() {
            lists.entry(users[k].as_str()).or_default().push((items[k].as_str(), targets[k] == Some(1)));
        }
        for (user, list) in &lists {
            assert_eq!(list.len(), 8);
            assert_eq!(list.iter().filter(|c| c.1).count(), 1, "the target once");
            let seq = seqs[user];
            let target = list.iter().find(|c| c.1).unwrap().0;
            assert_eq!(index[target], *seq.last().unwrap(), "target = the test item");
            assert!(list.iter().filter(|c| !c.1).all(|c| !seq.contains(&index[c.0])), "negatives outside the history");
            assert_eq!(list.iter().map(|c| c.0).collect::<HashSet<_>>().len(), 8);
        }
        let p = table::read_parquet(&dir.join("prompts.parquet")).unwrap();
        let (sets, pu) = (table::strs(&p, "set").unwrap(), table::strs(&p, "user").unwrap());
        let test: HashSet<&str> = pu.iter().zip(&sets).filter(|(_, s)| *s == "test").map(|(u, _)| u.as_str()).collect();
        let adapt: HashSet<&str> = pu.iter().zip(&sets).filter(|(_, s)| *s == "adaptation").map(|(u, _)| u.as_str()).collect();
        assert!(test.is_disjoint(&adapt), "adaptation prompts never come from test users");
        match setting {
            "warm" => assert!(test.iter().all(|u| seen.contains(*u)) && test.len() == 20),
            "cold" => assert!(test.iter().all(|u| !seen.contains(*u)) && !test.is_empty()),
            "short" => assert!(test.iter().all(|u| seqs[u].len() - 1 <= 6)),
            _ => {}
        }
    }
    // Baselines: popularity ranks within 1..=8; random is the expectation.
    let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dirs["baselines:warm"].join("baselines.json")).unwrap()).unwrap();
    assert_eq!(b["metrics"]["random"]["hr@1"], serde_json::json!(0.125));
    let ranks = table::read_parquet(&dirs["baselines:warm"].join("ranks.parquet")).unwrap();
    assert!(table::opt_f64s(&ranks, "rank").unwrap().iter().all(|r| (1.0..=8.0).contains(&r.unwrap())));
    std::fs::remove_dir_all(&results).unwrap();
}

fn files(dir: &Path, out: &mut BTreeMap<String, Vec<u8>>, root: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out, root);
        } else if p.file_name().unwrap() != "stage.json" {
            out.insert(p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap());
        }
    }
}

#[test]
fn same_inputs_give_byte_identical_artifacts() {
    let (a, b) = (tempdir("det-a"), tempdir("det-b"));
    run(&a);
    run(&b);
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    files(&a.join(".cache"), &mut fa, &a);
    files(&b.join(".cache"), &mut fb, &b);
    assert!(fa.len() > 20);
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(v == &fb[k], "{k} differs between two runs");
    }
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}
