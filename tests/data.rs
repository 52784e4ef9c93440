//! The data stages end to end on the committed MovieLens latest-small subset: statistics
//! snapshot, split and candidate invariants, warm/cold sets, determinism, baselines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use reccocktail::backend::{self, DeviceSpec};
use reccocktail::data::domain::DomainSplit;
use reccocktail::table;
use reccocktail::exec;
use reccocktail::plan::{self, Plan};
use reccocktail::recipe::types::BackendChoice;
use reccocktail::recipe::{self, ResolvedRecipe};

const RECIPE: &str = "tests/recipes/small_latest.toml";

fn setup() -> (ResolvedRecipe, Plan) {
    let loaded = recipe::load(Path::new(RECIPE)).unwrap();
    compiled(&loaded)
}

fn compiled(loaded: &recipe::LoadedRecipe) -> (ResolvedRecipe, Plan) {
    let resolved = ResolvedRecipe::from_loaded(loaded).unwrap();
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
    run_plan(&resolved, &plan, results)
}

fn run_plan(_resolved: &ResolvedRecipe, plan: &Plan, results: &Path) -> BTreeMap<String, PathBuf> {
    let runtime = backend::select(BackendChoice::Auto, DeviceSpec::Cpu, Some(1)).unwrap();
    let ids: Vec<&str> = plan.stages.iter().filter(|s| ["data", "split", "prompts", "eval-set", "baselines"].contains(&s.kind.name())).map(|s| s.id.as_str()).collect();
    exec::ensure(plan, &runtime, results, &ids, &|_| {}).unwrap()
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
        assert!(sets.iter().all(|s| s == "test"), "labelled prompts are test prompts only");
        let test: HashSet<&str> = pu.iter().map(String::as_str).collect();
        // No adaptive entropy arm in this recipe: no adaptation prompts are prepared.
        assert_eq!(table::read_parquet(&dir.join("adaptation.parquet")).unwrap().height(), 0);
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

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The small recipe with a weighted base-spirit mixture, entropy arms asking for adaptation
/// prompts of both kinds, and a history token budget counted by the tiny model's tokenizer (one
/// token per byte: it has no merges).
#[test]
fn mixture_adaptation_sets_and_history_token_budget() {
    let results = tempdir("extras");
    let model = results.join("tiny-model");
    reccocktail::model::tiny::write_tiny_chat_model(&model, reccocktail::model::tiny::TinySpec::default(), 1).unwrap();
    let text = std::fs::read_to_string(RECIPE)
        .unwrap()
        .replace("path = \"no_model\"", &format!("path = {:?}", model.display().to_string()))
        .replace("samples_per_user = 1\nmax_samples = 30", "samples_per_user = 1\nmax_samples = 20\nmixture = { comedy = 0.75, action = 0.25 }")
        .replace("max_history = 5\n", "max_history = 5\nhistory_token_budget = 60\n")
        .replace(
            "[evaluation]",
            "[[arms]]\nname = \"entropy\"\nmerge = { method = \"entropy\", adaptation = { size = 40 } }\n\n[[arms]]\nname = \"entropy_test\"\nmerge = { method = \"entropy\", adaptation = { size = 5, disjoint_from_test = false } }\n\n[evaluation]",
        );
    let loaded = recipe::check_bytes("extras.toml", text.as_bytes(), Path::new("tests/recipes")).unwrap();
    let (resolved, plan) = compiled(&loaded);
    assert_eq!(resolved.data.history_token_budget, Some(60));
    let dirs = run_plan(&resolved, &plan, &results);

    // The mixture: 20 samples, 15 comedy and 5 action.
    let p = json(&dirs["prompts:base_spirit"].join("prompts.json"));
    let domains = p["domains"].as_array().unwrap();
    assert_eq!(domains.iter().map(|d| (d["domain"].as_str().unwrap(), d["quota"].as_u64().unwrap(), d["shortfall"].as_u64().unwrap())).collect::<Vec<_>>(), [("comedy", 15, 0), ("action", 5, 0)]);
    for d in domains {
        // Each chosen sample is rendered or counted as lacking candidates (so are validation ones).
        let (train, quota, none) = (d["train"].as_u64().unwrap(), d["quota"].as_u64().unwrap(), d["no_candidates"].as_u64().unwrap());
        assert!(train <= quota && train + none >= quota, "{d}");
    }
    let train = table::read_parquet(&dirs["prompts:base_spirit"].join("train.parquet")).unwrap();
    let per_domain = table::strs(&train, "domain").unwrap().into_iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d).or_insert(0) += 1;
        m
    });
    assert_eq!(per_domain.values().sum::<usize>(), p["train"].as_u64().unwrap() as usize);
    assert!(per_domain["comedy"] > per_domain["action"], "{per_domain:?}");

    let (split, _) = DomainSplit::read(&dirs["split:drama"]).unwrap();
    let user_index: HashMap<&str, usize> = split.users.iter().enumerate().map(|(k, u)| (u.as_str(), k)).collect();
    for setting in ["warm", "cold", "new_items", "short"] {
        let dir = &dirs[&format!("eval-set:{setting}")];
        let summary = json(&dir.join("eval_set.json"));
        let prompts = table::read_parquet(&dir.join("prompts.parquet")).unwrap();
        let test: Vec<String> = table::strs(&prompts, "user").unwrap();
        let test_set: HashSet<&str> = test.iter().map(String::as_str).collect();

        // Adaptation prompts: unlabeled, disjoint ones outside the test users, the others of them.
        let a = table::read_parquet(&dir.join("adaptation.parquet")).unwrap();
        assert_eq!(table::names(&a), ["kind", "domain", "user", "position", "instruction"], "no target, no response");
        let c = table::read_parquet(&dir.join("adaptation_candidates.parquet")).unwrap();
        assert_eq!(table::names(&c), ["kind", "user", "slot", "item", "title"], "which candidate is the target is not said");
        let (kinds, users) = (table::strs(&a, "kind").unwrap(), table::strs(&a, "user").unwrap());
        let disjoint: Vec<&str> = users.iter().zip(&kinds).filter(|(_, k)| *k == "disjoint").map(|(u, _)| u.as_str()).collect();
        let shared: Vec<&str> = users.iter().zip(&kinds).filter(|(_, k)| *k == "from_test").map(|(u, _)| u.as_str()).collect();
        assert!(disjoint.iter().all(|u| !test_set.contains(u)), "{setting}: disjoint adaptation users are not test users");
        assert_eq!(disjoint.iter().collect::<HashSet<_>>().len(), disjoint.len());
        assert!(shared.iter().all(|u| test_set.contains(u)), "{setting}: the other kind comes from the test users");
        let d = &summary["adaptation"]["disjoint"];
        assert_eq!(d["requested"], 40);
        assert_eq!(d["prompts"].as_u64().unwrap() as usize, disjoint.len());
        assert_eq!(d["prompts"].as_u64().unwrap() + d["shortfall"].as_u64().unwrap(), 40);
        // Only the setting's own eligible users who are not evaluated (issue 17, item 4: a cold
        // setting's prompts were filled up with warm users'); a shortfall when they run out.
        let left = summary["eligible"].as_u64().unwrap() as usize - test.len() - summary["no_candidates"].as_u64().unwrap() as usize;
        assert_eq!(disjoint.len(), left.min(40), "{setting}: {summary}");
        assert!(d.get("outside_selection").is_none());
        let f = &summary["adaptation"]["from_test"];
        assert_eq!((f["requested"].as_u64(), f["prompts"].as_u64().unwrap() as usize), (Some(5), shared.len()));
        assert_eq!(shared.len(), 5.min(test.len()));

        // The history token budget: the history adds at most 60 tokens (bytes) to each prompt,
        // and the next older item would not have fit.
        let instr = table::strs(&prompts, "instruction").unwrap();
        let mut truncated = 0;
        for (u, text) in test.iter().zip(&instr) {
            let k = user_index[u.as_str()];
            let titles: Vec<&str> = split.history(k, split.positions(k).test).iter().map(|&i| split.titles[i as usize].as_str()).collect();
            let start = (0..=titles.len()).find(|&s| titles[s..].join(" || ").len() <= 60).unwrap();
            truncated += usize::from(start > 0);
            assert!(text.contains(&format!("oldest first:\n{}\n\nCandidates", titles[start..].join(" || "))), "{setting} {u}: {text}");
        }
        assert_eq!(summary["budget_truncated"].as_u64().unwrap() as usize, truncated);
    }
    assert!(json(&dirs["eval-set:warm"].join("eval_set.json"))["budget_truncated"].as_u64().unwrap() > 0, "the budget binds on this data");
    std::fs::remove_dir_all(&results).unwrap();
}

/// `max_users` on the ingredient: its samples come from that many users only (validation ones
/// too), and every other user of the domain is cold. Without it the stage keys do not change.
#[test]
fn ingredient_max_users_sets_the_cold_population() {
    let results = tempdir("max-users");
    let base = std::fs::read_to_string(RECIPE).unwrap();
    let text = base.replace("max_samples = 60\nmax_valid_samples = 10", "max_samples = 60\nmax_valid_samples = 10\nmax_users = 12");
    assert_ne!(text, base);
    let loaded = recipe::check_bytes("max_users.toml", text.as_bytes(), Path::new("tests/recipes")).unwrap();
    let (resolved, plan) = compiled(&loaded);
    let (plain_resolved, plain_plan) = setup();
    let key = |p: &Plan, id: &str| p.stages.iter().find(|s| s.id == id).unwrap().key.clone();
    assert_ne!(key(&plan, "prompts:drama"), key(&plain_plan, "prompts:drama"));
    assert_eq!(key(&plan, "prompts:base_spirit"), key(&plain_plan, "prompts:base_spirit"));
    assert_ne!(resolved.recipe_hash, plain_resolved.recipe_hash);
    let dirs = run_plan(&resolved, &plan, &results);

    let prompts = &dirs["prompts:drama"];
    let seen = table::read_parquet(&prompts.join("seen_users.parquet")).unwrap();
    let seen: HashSet<String> = table::strs(&seen, "user").unwrap().into_iter().collect();
    assert!(!seen.is_empty() && seen.len() <= 12, "{} users seen", seen.len());
    for file in ["train.parquet", "valid.parquet"] {
        let t = table::read_parquet(&prompts.join(file)).unwrap();
        let users: HashSet<String> = table::strs(&t, "user").unwrap().into_iter().collect();
        if file == "train.parquet" {
            assert_eq!(users, seen, "the seen users are the training users");
        }
        assert!(users.is_subset(&seen), "{file}: samples from users outside the chosen ones");
    }
    // The cold setting is every other user with a test item (capped at the setting's 20).
    let (split, _) = DomainSplit::read(&dirs["split:drama"]).unwrap();
    let cold = json(&dirs["eval-set:cold"].join("eval_set.json"));
    assert_eq!(cold["eligible"].as_u64().unwrap() as usize, split.users.len() - seen.len(), "{cold}");
    assert_eq!(cold["test"], serde_json::json!(20));
    let p = table::read_parquet(&dirs["eval-set:cold"].join("prompts.parquet")).unwrap();
    assert!(table::strs(&p, "user").unwrap().iter().all(|u| !seen.contains(u)));
    // Issue 17, item 6: the 12 users are stratified by sequence length, so warm and cold do not
    // differ by history length by construction: for every length L, the share of chosen users
    // with at most L items is within one user of the share among all users with a training item.
    let lens: Vec<usize> = (0..split.users.len()).filter(|&u| !split.positions(u).train.is_empty()).map(|u| split.sequences[u].len()).collect();
    let chosen: Vec<usize> = (0..split.users.len()).filter(|&u| seen.contains(&split.users[u])).map(|u| split.sequences[u].len()).collect();
    assert_eq!(chosen.len(), 12);
    for l in lens.iter().copied().collect::<std::collections::BTreeSet<_>>() {
        let expected = 12.0 * lens.iter().filter(|&&x| x <= l).count() as f64 / lens.len() as f64;
        let got = chosen.iter().filter(|&&x| x <= l).count() as f64;
        assert!((got - expected).abs() <= 1.0 + 1e-9, "length <= {l}: {got} chosen, {expected:.2} expected (lengths {chosen:?})");
    }
    std::fs::remove_dir_all(&results).unwrap();
}

/// Issue 17, item 5: the leak check of every evaluation set equals an independent count over the
/// adapters' samples; `error` refuses a leaking setting; a user partition removes the leaks.
#[test]
fn leak_check_counts_targets_seen_in_training_and_partitions_remove_them() {
    let results = tempdir("leak");
    let dirs = run(&results);
    let mut leaked_somewhere = false;
    for setting in ["warm", "cold", "new_items", "short"] {
        let set = &dirs[&format!("eval-set:{setting}")];
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(set.join("eval_set.json")).unwrap()).unwrap();
        let prompts = table::read_parquet(&set.join("prompts.parquet")).unwrap();
        let tests: Vec<(String, String)> = table::strs(&prompts, "user").unwrap().into_iter().zip(table::strs(&prompts, "target").unwrap()).collect();
        let mut total = HashSet::new();
        for adapter in ["base_spirit", "drama"] {
            let mut seen = HashSet::new();
            for file in ["train.parquet", "valid.parquet"] {
                let df = table::read_parquet(&dirs[&format!("prompts:{adapter}")].join(file)).unwrap();
                let (users, targets) = (table::strs(&df, "user").unwrap(), table::strs(&df, "target").unwrap());
                let histories = table::str_lists(&df, "history_items").unwrap();
                for k in 0..users.len() {
                    seen.insert((users[k].clone(), targets[k].clone()));
                    for h in &histories[k] {
                        seen.insert((users[k].clone(), h.clone()));
                    }
                }
            }
            let hits: Vec<&(String, String)> = tests.iter().filter(|t| seen.contains(*t)).collect();
            assert_eq!(summary["leakage"]["by_adapter"][adapter].as_u64(), Some(hits.len() as u64), "{setting}/{adapter}: {summary}");
            total.extend(hits);
        }
        assert_eq!(summary["leakage"]["targets_in_training"].as_u64(), Some(total.len() as u64), "{setting}");
        assert_eq!(summary["leakage"]["shared_titles"].as_u64(), Some(0), "one dataset");
        leaked_somewhere |= !total.is_empty();
    }
    assert!(leaked_somewhere, "this recipe's base spirit shares users and films with its target domain");

    // `error` (the default) refuses the leaking settings.
    // Copies outside tests/recipes: every relative path made absolute.
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(RECIPE).unwrap().replace("path = \"no_model\"", &format!("path = \"{root}/tests/recipes/no_model\""));
    let strict = results.join("strict.toml");
    std::fs::write(&strict, text.replace("leakage = \"warn\"", "").replace("path = \"../../", &format!("path = \"{root}/"))).unwrap();
    let bin = env!("CARGO_BIN_EXE_reccocktail");
    let out = std::process::Command::new(bin).args(["data", strict.to_str().unwrap(), "--results", results.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("test targets seen in adapter training (base_spirit: ") && stderr.contains("evaluation.leakage"), "{stderr}");

    // Disjoint user halves for the base spirit's domains and the target: nothing leaks.
    let mut parted = text.replace("leakage = \"warn\"", "").replace("path = \"../../", &format!("path = \"{root}/"));
    for d in ["comedy", "action"] {
        parted = parted.replace(&format!("[domains.{d}]\ndataset = \"latest\"\n"), &format!("[domains.{d}]\ndataset = \"latest\"\nusers = {{ parts = 2, part = 0 }}\n"));
    }
    parted = parted.replace("[domains.drama]\ndataset = \"latest\"\n", "[domains.drama]\ndataset = \"latest\"\nusers = { parts = 2, part = 1 }\n");
    let parted_path = results.join("parted.toml");
    std::fs::write(&parted_path, &parted).unwrap();
    let out = std::process::Command::new(bin).args(["data", parted_path.to_str().unwrap(), "--json", "--results", results.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let settings = stats["settings"].as_object().unwrap_or_else(|| panic!("{stats}"));
    for (name, s) in settings {
        assert_eq!(s["leakage"]["targets_in_training"].as_u64(), Some(0), "{name}: {s}");
    }
    std::fs::remove_dir_all(&results).ok();
}
