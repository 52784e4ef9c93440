//! Recipes: the shipped ones are valid, the schema is committed, bad ones are rejected with
//! every problem located, resolution and plans are locked by snapshots.

use std::path::Path;

use reccocktail::plan::{self, CacheStatus};
use reccocktail::recipe::{self, RecipeError, ResolvedRecipe, Severity};

const SHIPPED: [&str; 3] = ["recipes/quickstart.toml", "recipes/cold_start_movies.toml", "recipes/cold_start_movies_cpu.toml"];

fn resolved(path: &str) -> ResolvedRecipe {
    let loaded = recipe::load(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    ResolvedRecipe::from_loaded(&loaded).unwrap()
}

#[test]
fn shipped_recipes_are_valid_and_point_at_the_schema() {
    for path in SHIPPED {
        resolved(path);
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.starts_with("#:schema ../schema/recipe.schema.json\n"), "{path} must start with its #:schema line");
    }
}

#[test]
fn committed_schema_matches_the_generated_one() {
    let generated = recipe::schema::schema_text();
    let committed = std::fs::read_to_string(recipe::schema::COMMITTED_PATH).unwrap_or_default();
    if std::env::var_os("RECCOCKTAIL_UPDATE_SCHEMA").is_some() {
        std::fs::write(recipe::schema::COMMITTED_PATH, &generated).unwrap();
        return;
    }
    assert!(
        committed == generated,
        "schema/recipe.schema.json is out of date: run `cargo run -- schema --out schema/recipe.schema.json` (or set RECCOCKTAIL_UPDATE_SCHEMA=1 and rerun this test)"
    );
}

#[test]
fn bad_recipes_report_every_problem_with_location() {
    insta::glob!("recipes/bad/*.toml", |path| {
        let rel = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let err = match recipe::load(rel) {
            Ok(_) => panic!("{} should be rejected", rel.display()),
            Err(RecipeError::Invalid(d)) => d,
            Err(e) => panic!("{}: unexpected error {e}", rel.display()),
        };
        assert!(!err.items.is_empty());
        for item in &err.items {
            let span = item.span.as_ref().expect("every problem has a location");
            assert!(span.start <= err.source.len(), "span inside the file");
        }
        insta::assert_snapshot!(err.to_string());
    });
}

#[test]
fn resolved_recipes() {
    for path in SHIPPED {
        let r = resolved(path);
        let name = Path::new(path).file_stem().unwrap().to_string_lossy().to_string();
        insta::assert_json_snapshot!(format!("resolved_{name}"), r);
    }
}

#[test]
fn plans() {
    for path in SHIPPED {
        let plan = plan::compile(&resolved(path)).unwrap();
        let name = Path::new(path).file_stem().unwrap().to_string_lossy().to_string();
        insta::assert_snapshot!(format!("plan_{name}"), plan.render(&|_| CacheStatus::Missing));
    }
}

/// A recipe means the same however its path is written: its hash, its resolution and its stage
/// keys do not depend on the working directory or on the path's form (relative, through `..`,
/// absolute), so tables and caches agree between invocations.
#[test]
fn the_recipe_path_as_typed_changes_nothing() {
    let absolute = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/quickstart.toml");
    let forms = ["recipes/quickstart.toml".to_string(), "tests/../recipes/./quickstart.toml".to_string(), absolute.display().to_string()];
    let json = |r: &ResolvedRecipe| serde_json::to_string(r).unwrap();
    let reference = resolved(&forms[0]);
    let keys = |r: &ResolvedRecipe| plan::compile(r).unwrap().stages.iter().map(|s| s.key.clone()).collect::<Vec<_>>();
    for form in &forms[1..] {
        let r = resolved(form);
        assert_eq!(r.recipe_hash, reference.recipe_hash, "{form}");
        assert_eq!(json(&r), json(&reference), "{form}");
        assert_eq!(keys(&r), keys(&reference), "{form}");
    }
    // The files are still opened where they are.
    assert!(reference.templates.values().all(|t| t.path.is_file()));
}

#[test]
fn sweeps_expand_in_place_and_shared_stages_appear_once() {
    let r = resolved("recipes/cold_start_movies.toml");
    let names: Vec<&str> = r.arms.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["base_only", "ingredient_only", "fixed_0.5", "task_arithmetic@lambda=0.3", "task_arithmetic@lambda=0.7", "task_arithmetic@lambda=1.0", "entropy"]
    );
    let plan = plan::compile(&r).unwrap();
    let trains: Vec<&str> = plan.stages.iter().filter(|s| s.kind == plan::StageKind::Train).map(|s| s.id.as_str()).collect();
    assert_eq!(trains, ["train:base_spirit", "train:movies"], "each adapter is trained once for all arms");
    // Every stage's inputs come before it, and keys are unique.
    let mut seen = std::collections::BTreeSet::new();
    for s in &plan.stages {
        for i in s.input_ids() {
            assert!(seen.contains(i), "{} needs {i} first", s.id);
        }
        seen.insert(s.id.as_str());
    }
    let keys: std::collections::BTreeSet<&str> = plan.stages.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys.len(), plan.stages.len());
    // The entropy arm adapts per setting; the others are merged once.
    assert!(plan.stage("merge:entropy:cold").is_some() && plan.stage("merge:entropy").is_none());
    assert!(plan.stage("merge:base_only").is_some() && plan.stage("merge:base_only:cold").is_none());
}

#[test]
fn identical_arms_share_their_stages() {
    let text = std::fs::read_to_string("recipes/quickstart.toml").unwrap().replace(
        "[[arms]]\nname = \"base_only\"",
        "[[arms]]\nname = \"same_as_base\"\nmerge = { method = \"fixed\", weights = [1.0, 0.0] }\n\n[[arms]]\nname = \"base_only\"",
    );
    let loaded = recipe::check_bytes("quickstart-copy.toml", text.as_bytes(), Path::new("recipes")).unwrap();
    let plan = plan::compile(&ResolvedRecipe::from_loaded(&loaded).unwrap()).unwrap();
    let merge = plan.stage("merge:base_only").unwrap();
    assert_eq!(merge.id, "merge:same_as_base");
    assert_eq!(merge.aliases, ["merge:base_only"]);
    // Both arms still get their own result rows, answered by the same evaluation stage.
    let rows: Vec<_> = plan.rows.iter().filter(|r| r.setting == "warm" && (r.arm == "base_only" || r.arm == "same_as_base")).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].stage, rows[1].stage);
}

#[test]
fn formatting_and_comments_do_not_change_the_recipe_hash() {
    let text = std::fs::read_to_string("recipes/quickstart.toml").unwrap();
    let reformatted = format!("# a new comment\n{}", text.replace("seed = 42", "seed    =    42   # same"));
    let a = ResolvedRecipe::from_loaded(&recipe::check_bytes("a.toml", text.as_bytes(), Path::new("recipes")).unwrap()).unwrap();
    let b = ResolvedRecipe::from_loaded(&recipe::check_bytes("b.toml", reformatted.as_bytes(), Path::new("recipes")).unwrap()).unwrap();
    assert_eq!(a.recipe_hash, b.recipe_hash);
    let changed = text.replace("seed = 42", "seed = 7");
    let c = ResolvedRecipe::from_loaded(&recipe::check_bytes("c.toml", changed.as_bytes(), Path::new("recipes")).unwrap()).unwrap();
    assert_ne!(a.recipe_hash, c.recipe_hash);
}

/// A small deterministic generator (no dependency needed for this).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_recipes_never_panic_and_always_locate_problems() {
    let original = std::fs::read_to_string("recipes/quickstart.toml").unwrap();
    let replacements = [
        "nan", "-inf", "1e999", "-1", "0", "\"\"", "[]", "{}", "99999999999999999999", "true", "\"x\"", "[1, \"a\"]", "{ a = 1 }", "1979-05-27", "0.5", "\"\u{1F600}\"",
    ];
    // RECCOCKTAIL_FUZZ_CASES=100000 for a longer hunt.
    let cases: usize = std::env::var("RECCOCKTAIL_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(400);
    let mut rng = Lcg(7);
    for case in 0..cases {
        let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(lines.len());
            match rng.below(6) {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let l = lines[i].clone();
                    lines.insert(i, l);
                }
                2 => {
                    if let Some(eq) = lines[i].find(" = ") {
                        let v = replacements[rng.below(replacements.len())];
                        lines[i] = format!("{} = {v}", &lines[i][..eq]);
                    }
                }
                3 => {
                    let chars: Vec<char> = lines[i].chars().collect();
                    if !chars.is_empty() {
                        let j = rng.below(chars.len());
                        let mut c = chars.clone();
                        c.remove(j);
                        lines[i] = c.into_iter().collect();
                    }
                }
                4 => {
                    if let Some(eq) = lines[i].find(" = ") {
                        let key = &lines[i][..eq];
                        lines[i] = format!("{key}x{}", &lines[i][eq..]);
                    }
                }
                _ => lines[i] = lines[i].to_uppercase(),
            }
        }
        let text = lines.join("\n");
        match recipe::check_bytes("mutant.toml", text.as_bytes(), Path::new("recipes")) {
            Ok(loaded) => {
                let r = ResolvedRecipe::from_loaded(&loaded).unwrap_or_else(|e| panic!("case {case}: valid recipe failed to resolve: {e}\n{text}"));
                plan::compile(&r).unwrap();
            }
            Err(RecipeError::Invalid(d)) => {
                assert!(!d.items.is_empty(), "case {case}: rejected without a problem\n{text}");
                for item in &d.items {
                    assert!(item.span.is_some(), "case {case}: `{}` has no location\n{text}", item.message);
                }
                let _ = d.to_string();
            }
            Err(e) => panic!("case {case}: {e}"),
        }
    }
}

#[test]
fn pathological_inputs_are_rejected_cleanly() {
    let deep = format!("x = {}1{}", "[".repeat(5000), "]".repeat(5000));
    let long_key = format!("{} = 1", "k".repeat(100_000));
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff, 0xfe, 0x00],
        b"\x00\x00\x00".to_vec(),
        deep.into_bytes(),
        long_key.into_bytes(),
        b"[experiment]\nname = \"x\"\n[[experiment]]\n".to_vec(),
        b"experiment = 1\nbackbone = []\ndatasets = \"\"\n".to_vec(),
    ];
    for bytes in inputs {
        match recipe::check_bytes("weird.toml", &bytes, Path::new(".")) {
            Err(RecipeError::Invalid(d)) => assert!(!d.items.is_empty()),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}

fn quickstart_variant(name: &str, text: &str) -> Result<recipe::LoadedRecipe, RecipeError> {
    recipe::check_bytes(name, text.as_bytes(), Path::new("recipes"))
}

#[test]
fn base_spirit_on_a_target_domain_warns_unless_allowed_or_refused() {
    let text = std::fs::read_to_string("tests/recipes/quickstart_variants.toml").unwrap();
    let spirit = "domains = [\"comedy\", \"action\", \"thriller\"]";
    assert!(quickstart_variant("q.toml", &text).unwrap().warnings.is_empty());
    let overlap = text.replace(spirit, "domains = [\"comedy\", \"action\", \"thriller\", \"drama\"]");
    let loaded = quickstart_variant("overlap.toml", &overlap).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    let w = &loaded.warnings[0];
    assert_eq!((w.code, w.severity, w.path.as_str()), ("target-overlap", Severity::Warning, "base_spirit.domains[3]"));
    assert_eq!(&overlap[w.span.clone().unwrap()], "\"drama\"");
    let report = loaded.warnings_report().unwrap().to_string();
    assert!(report.starts_with("warning[target-overlap]: the base spirit trains on domain `drama`: the target domain of ingredient `drama`\n"), "{report}");
    assert!(report.ends_with("overlap.toml: 1 warning"), "{report}");

    let policy = |p: &str| overlap.replace("samples_per_user = 1\nmax_samples = 40", &format!("samples_per_user = 1\nmax_samples = 40\ntarget_overlap = \"{p}\""));
    assert!(quickstart_variant("allow.toml", &policy("allow")).unwrap().warnings.is_empty());
    match quickstart_variant("error.toml", &policy("error")) {
        Err(RecipeError::Invalid(d)) => {
            assert_eq!(d.items.len(), 1);
            assert_eq!((d.items[0].code, d.items[0].severity), ("target-overlap", Severity::Error));
            assert!(d.to_string().ends_with("error.toml: 1 problem found"));
        }
        other => panic!("expected the overlap to be refused: {:?}", other.map(|l| l.warnings)),
    }

    // The whole dataset the target domain is a slice of, and an identical slice under another name.
    let slices = text
        .replace("[domains.drama]", "[domains.all_movies]\ndataset = \"ml100k\"\n\n[domains.dramas]\ndataset = \"ml100k\"\nfilter = { field = \"genres\", any_of = [\"Drama\"] }\n\n[domains.drama]")
        .replace(spirit, "domains = [\"comedy\", \"all_movies\", \"dramas\"]");
    let loaded = quickstart_variant("slices.toml", &slices).unwrap();
    let messages: Vec<&str> = loaded.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "the base spirit trains on domain `all_movies`, the whole dataset `ml100k` that `drama` is a slice of: the target domain of ingredient `drama`",
            "the base spirit trains on domain `dramas`, the same slice of `ml100k` as `drama`: the target domain of ingredient `drama`",
        ]
    );
}

#[test]
fn stage_keys_follow_mixture_adaptation_sizes_and_token_budget() {
    let text = std::fs::read_to_string("tests/recipes/quickstart_variants.toml").unwrap();
    let plan_of = |text: &str| plan::compile(&ResolvedRecipe::from_loaded(&quickstart_variant("k.toml", text).unwrap()).unwrap()).unwrap();
    let key = |plan: &plan::Plan, id: &str| plan.stage(id).unwrap_or_else(|| panic!("no stage {id}")).key.clone();
    let base = plan_of(&text);

    let mixed = plan_of(&text.replace("max_samples = 40\n", "max_samples = 40\nmixture = { comedy = 0.5, action = 0.3, thriller = 0.2 }\n"));
    assert_ne!(key(&mixed, "prompts:base_spirit"), key(&base, "prompts:base_spirit"));
    assert_eq!(key(&mixed, "prompts:drama"), key(&base, "prompts:drama"));
    // The evaluation set's leak check reads every adapter's samples: its key follows them.
    assert_ne!(key(&mixed, "eval-set:warm"), key(&base, "eval-set:warm"));
    assert!(mixed.stage("eval-set:warm").unwrap().inputs.iter().any(|i| i.stage == "prompts:base_spirit" && i.role == plan::Role::Training));
    let params = mixed.stage("prompts:base_spirit").unwrap().params.to_json();
    assert_eq!(params["mixture"], serde_json::json!([0.5, 0.3, 0.2]));

    // The entropy arm adapts on 8 prompts of users disjoint from the test users (the default).
    assert_eq!(base.stage("eval-set:warm").unwrap().params.to_json()["adaptation"], serde_json::json!({ "disjoint": 8, "from_test": null }));
    for changed in ["adaptation = { size = 12 }", "adaptation = { size = 8, disjoint_from_test = false }"] {
        let p = plan_of(&text.replace("adaptation = { size = 8 }", changed));
        assert_ne!(key(&p, "eval-set:warm"), key(&base, "eval-set:warm"), "{changed}");
        assert_eq!(key(&p, "prompts:drama"), key(&base, "prompts:drama"));
    }
    // A second adaptive arm asking for less changes nothing: the largest size is prepared.
    let smaller = text.replace("[evaluation]", "[[arms]]\nname = \"entropy_small\"\nmerge = { method = \"entropy\", adaptation = { size = 4 } }\n\n[evaluation]");
    assert_eq!(key(&plan_of(&smaller), "eval-set:warm"), key(&base, "eval-set:warm"));
    // Domain-level adaptation does not come from the evaluation sets.
    let domain = plan_of(&text.replace("adaptation = { size = 8 }", "adaptation = { source = \"domain\", size = 8 }"));
    assert_eq!(domain.stage("eval-set:warm").unwrap().params.to_json()["adaptation"], serde_json::json!({ "disjoint": null, "from_test": null }));

    // The entropy merge reads the evaluation's scoring rule and answer length: its keys follow them.
    let scoring = |s: &str| plan_of(&text.replace("protocol = { kind = \"likelihood\", scoring = \"sum\" }", s));
    let mean = scoring("protocol = { kind = \"likelihood\", scoring = \"mean\" }");
    let calibrated = scoring("protocol = { kind = \"likelihood\", scoring = \"calibrated\" }");
    let generate = scoring("protocol = { kind = \"generate\", max_new_tokens = 32 }");
    for id in ["merge:entropy:warm", "merge:entropy:cold"] {
        assert_ne!(key(&mean, id), key(&base, id), "{id}");
        assert_ne!(key(&generate, id), key(&base, id), "{id}");
        assert_ne!(key(&calibrated, id), key(&base, id), "{id}");
        assert_eq!(mean.stage(id).unwrap().params.to_json()["entropy"]["evaluation"]["protocol"]["scoring"], serde_json::json!("mean"));
        assert_eq!(generate.stage(id).unwrap().params.to_json()["entropy"]["answer_tokens"], serde_json::json!(32));
    }
    assert_eq!(key(&mean, "merge:fixed_0.5"), key(&base, "merge:fixed_0.5"));
    assert_ne!(key(&calibrated, "evaluate:entropy:warm"), key(&base, "evaluate:entropy:warm"));

    // A history token budget: the prompt stages read the backbone's tokenizer, keys follow it.
    let budget = |n: u32| plan_of(&text.replace("max_history = 8\n", &format!("max_history = 8\nhistory_token_budget = {n}\n")));
    let (b40, b50) = (budget(40), budget(50));
    for id in ["prompts:drama", "prompts:base_spirit", "eval-set:warm"] {
        assert_ne!(key(&b40, id), key(&b50, id), "{id}");
        assert!(b40.stage(id).unwrap().input_ids().any(|i| i == "fetch:smollm2-135m-instruct"), "{id}");
        assert!(!base.stage(id).unwrap().input_ids().any(|i| i == "fetch:smollm2-135m-instruct"), "{id}");
    }
}

/// The backbone's precision (`dtype`, and `attention` under bf16 weights) is in the key of every
/// stage that runs the model, and of every stage reading what such a stage made, and in no other:
/// an adapter trained one way is never served for another, and the data stages stay shared.
#[test]
fn precision_keys_the_model_stages_and_nothing_else() {
    let text = std::fs::read_to_string("tests/recipes/quickstart_variants.toml").unwrap();
    let backbone = "asset = \"smollm2-135m-instruct\"\n";
    assert_eq!(text.matches(backbone).count(), 1);
    let plan_of = |extra: &str| plan::compile(&ResolvedRecipe::from_loaded(&quickstart_variant("p.toml", &text.replace(backbone, &format!("{backbone}{extra}"))).unwrap()).unwrap()).unwrap();
    let f32 = plan_of("");
    let bf16 = plan_of("dtype = \"bf16\"\n");
    let bf16_attention = plan_of("dtype = \"bf16\"\nattention = \"bf16\"\n");
    // The default attention is f32, and with f32 weights `attention = "f32"` is the default.
    assert_eq!(plan_of("dtype = \"bf16\"\nattention = \"f32\"\n").stages.iter().map(|s| &s.key).collect::<Vec<_>>(), bf16.stages.iter().map(|s| &s.key).collect::<Vec<_>>());
    assert_eq!(plan_of("dtype = \"f32\"\nattention = \"f32\"\n").stages.iter().map(|s| &s.key).collect::<Vec<_>>(), f32.stages.iter().map(|s| &s.key).collect::<Vec<_>>());
    let model_kinds = ["train:", "merge:", "evaluate:", "report"];
    let mut model_stages = 0;
    for stage in &bf16.stages {
        let of = |p: &plan::Plan| p.stage(&stage.id).unwrap().key.clone();
        if model_kinds.iter().any(|k| stage.id.starts_with(k)) {
            model_stages += 1;
            assert_ne!(stage.key, of(&bf16_attention), "{}", stage.id);
            assert_ne!(stage.key, of(&f32), "{}", stage.id);
        } else {
            assert_eq!(stage.key, of(&bf16_attention), "{}", stage.id);
            assert_eq!(stage.key, of(&f32), "{}", stage.id);
        }
    }
    assert!(model_stages >= 10, "{model_stages}");
    assert_eq!((bf16.precision.dtype, bf16.precision.attention), (recipe::types::Dtype::Bf16, recipe::types::AttentionDtype::F32));
    assert_eq!(bf16_attention.precision.attention, recipe::types::AttentionDtype::Bf16);
}

#[test]
fn memory_heavy_micro_batches_warn_at_validate() {
    let text = std::fs::read_to_string("tests/recipes/quickstart_variants.toml").unwrap();
    assert!(quickstart_variant("q.toml", &text).unwrap().warnings.is_empty());
    let heavy = text.replace("batch_size = 4", "batch_size = 64");
    assert_ne!(heavy, text, "the variant recipe sets batch_size = 4");
    let loaded = quickstart_variant("heavy.toml", &heavy).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!((w.code, w.severity, w.path.as_str()), ("memory-heavy", Severity::Warning, "training.batch_size"));
    let report = loaded.warnings_report().unwrap().to_string();
    assert!(report.contains("tokens per micro-batch, over the 8192"), "{report}");
    assert!(report.contains("raise grad_accum"), "{report}");
}

#[test]
fn the_same_cocktail_twice_warns_at_the_later_arm() {
    let text = std::fs::read_to_string("tests/recipes/quickstart_variants.toml").unwrap();
    assert!(text.contains("lambda = 0.7"), "the variant's task_arithmetic arm changed");
    // A sweep point equal to a declared arm: `task_arithmetic` at 0.5 is `fixed_0.5`.
    let swept = format!("{text}\n[[sweep]]\narm = \"task_arithmetic\"\ngrid = {{ \"merge.lambda\" = [0.5, 1.0] }}\n");
    let loaded = quickstart_variant("swept.toml", &swept).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!((w.code, w.severity, w.path.as_str()), ("same-cocktail", Severity::Warning, "sweep[0].grid"));
    assert_eq!(
        w.message,
        "arms `fixed_0.5` and `task_arithmetic@lambda=0.5` are the same cocktail (base_spirit 0.5, drama 0.5): `fixed` and `task_arithmetic` merge with one linear kernel, so it is evaluated twice"
    );
    // Per-adapter lambdas equal to `base_only`'s weights; a zero weight leaves its adapter out.
    let declared = text.replace("lambda = 0.7", "lambda = [1.0, 0.0]");
    let loaded = quickstart_variant("declared.toml", &declared).unwrap();
    let found: Vec<(&str, &str)> = loaded.warnings.iter().map(|w| (w.code, w.path.as_str())).collect();
    assert_eq!(found, [("same-cocktail", "arms[3].merge")]);
    assert!(loaded.warnings[0].message.starts_with("arms `base_only` and `task_arithmetic` are the same cocktail (base_spirit 1):"), "{}", loaded.warnings[0].message);
    // Other weights: no warning.
    assert!(quickstart_variant("q.toml", &text).unwrap().warnings.is_empty());
}
