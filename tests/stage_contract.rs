//! The contract between the plan and its stages: a stage reads only its typed parameters and its
//! inputs (the type system sees to that: a stage's context holds no recipe), so what must hold
//! here is that every recipe value reaches the parameters of the stages it concerns, and that a
//! key changes exactly when its stage's parameters or inputs do.

use std::collections::BTreeMap;
use std::path::Path;

use reccocktail::plan::{self, Plan};
use reccocktail::recipe::{self, ResolvedRecipe};

const VARIANTS: &str = "tests/recipes/quickstart_variants.toml";

fn plan_of(text: &str) -> Option<Plan> {
    let loaded = recipe::check_bytes("variant.toml", text.as_bytes(), Path::new("recipes")).ok()?;
    Some(plan::compile(&ResolvedRecipe::from_loaded(&loaded).ok()?).unwrap())
}

/// Every scalar of a TOML document, by path (array elements included).
fn leaves(v: &toml::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                path.push(k.clone());
                leaves(v, path, out);
                path.pop();
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(i.to_string());
                leaves(v, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn at<'a>(v: &'a mut toml::Value, path: &[String]) -> &'a mut toml::Value {
    path.iter().fold(v, |v, k| match v {
        toml::Value::Table(t) => t.get_mut(k).unwrap(),
        toml::Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        _ => unreachable!(),
    })
}

/// Another valid-looking value of the same type; `None` for strings (names and enum values).
fn perturbed(v: &toml::Value) -> Option<toml::Value> {
    Some(match v {
        toml::Value::Integer(i) => toml::Value::Integer(i + 1),
        toml::Value::Float(f) => toml::Value::Float(if *f == 0.0 { 0.25 } else { f * 0.5 }),
        toml::Value::Boolean(b) => toml::Value::Boolean(!b),
        _ => return None,
    })
}

/// Stage id -> (key, parameters as JSON, input ids).
fn by_id(p: &Plan) -> BTreeMap<String, (String, serde_json::Value, Vec<String>)> {
    p.stages.iter().map(|s| (s.id.clone(), (s.key.clone(), s.params.to_json(), s.input_ids().map(str::to_string).collect()))).collect()
}

#[test]
fn every_recipe_value_reaches_a_stage_and_keys_change_exactly_with_parameters_and_inputs() {
    let doc: toml::Value = toml::from_str(&std::fs::read_to_string(VARIANTS).unwrap()).unwrap();
    let base_text = toml::to_string(&doc).unwrap();
    let base = by_id(&plan_of(&base_text).expect("the variants recipe is valid"));
    let mut paths = Vec::new();
    leaves(&doc, &mut Vec::new(), &mut paths);
    let mut tested = Vec::new();
    for path in &paths {
        let mut d = doc.clone();
        let leaf = at(&mut d, path);
        let Some(new) = perturbed(leaf) else { continue };
        *leaf = new;
        let Some(p) = plan_of(&toml::to_string(&d).unwrap()) else { continue };
        let name = path.join(".");
        let changed = by_id(&p);
        let mut params_changed = Vec::new();
        // In dependency order: a stage's key must change iff its parameters, its inputs, or an
        // input's key changed.
        let mut key_changed: BTreeMap<&str, bool> = BTreeMap::new();
        for s in &p.stages {
            let Some((old_key, old_params, old_inputs)) = base.get(&s.id) else { continue };
            let (new_key, new_params, new_inputs) = &changed[&s.id];
            let inputs_changed = new_inputs != old_inputs || new_inputs.iter().any(|i| key_changed.get(i.as_str()).copied().unwrap_or(true));
            let expected = new_params != old_params || inputs_changed;
            assert_eq!(new_key != old_key, expected, "`{name}`: stage `{}` key changed: {}, parameters or inputs changed: {expected}", s.id, new_key != old_key);
            key_changed.insert(&s.id, new_key != old_key);
            if new_params != old_params && s.kind != plan::StageKind::Report {
                params_changed.push(s.id.clone());
            }
        }
        // The report's parameters carry the recipe hash, which every value changes: a value that
        // reaches no other stage would be dropped on its way from the recipe to the stages.
        assert!(!params_changed.is_empty(), "`{name}` changes the parameters of no stage but the report");
        tested.push(name);
    }
    assert!(tested.len() >= 25, "too few recipe values perturbed: {tested:?}");
}

/// The variants recipe with both adapters imported (`pretrained`) and a domain-level entropy arm:
/// what `reccocktail plan --json` showed keeping one key across changes it reads.
fn pretrained(text: &str) -> String {
    let adapter = "pretrained = \"../tests/fixtures/trained/adapter\"\n";
    text.replace("[base_spirit]\n", &format!("[base_spirit]\n{adapter}"))
        .replace("[ingredients.drama]\n", &format!("[ingredients.drama]\n{adapter}"))
        .replace("adaptation = { size = 8 }", "adaptation = { source = \"domain\", size = 8 }")
}

#[test]
fn entropy_merges_with_pretrained_adapters_are_keyed_on_what_they_read() {
    let text = pretrained(&std::fs::read_to_string(VARIANTS).unwrap());
    let base = plan_of(&text).expect("the pretrained variant is valid");
    assert!(base.stage("import:drama").is_some() && base.stage("train:drama").is_none());
    let key = |p: &Plan| p.stage("merge:entropy").expect("one domain-level entropy merge").key.clone();
    let fixed_key = |p: &Plan| p.stage("merge:fixed_0.5").unwrap().key.clone();
    for (what, changed) in [
        ("evaluation.k", text.replace("k = [1, 3, 5]", "k = [1, 3]")),
        ("backbone.system_prompt", text.replace("[backbone]\n", "[backbone]\nsystem_prompt = \"You recommend movies.\"\n")),
        ("backbone.chat_template", text.replace("[backbone]\n", "[backbone]\nchat_template = false\n")),
        ("data.history_token_budget", text.replace("max_history = 8\n", "max_history = 8\nhistory_token_budget = 40\n")),
        ("the merge's answer_tokens", text.replace("adaptation = { source", "answer_tokens = 32, adaptation = { source")),
        ("the merge's answer_titles", text.replace("adaptation = { source", "answer_titles = 2, adaptation = { source")),
    ] {
        let p = plan_of(&changed).unwrap_or_else(|| panic!("{what}: the changed recipe is valid"));
        assert_ne!(key(&p), key(&base), "{what} is read by the entropy merge");
        assert_eq!(fixed_key(&p), fixed_key(&base), "{what} is not read by a fixed merge");
    }
    // Two history budgets: the adaptation prompts are rendered with the budget, like the
    // evaluation's, so the merge's key follows its value too.
    let budget = |n: u32| plan_of(&text.replace("max_history = 8\n", &format!("max_history = 8\nhistory_token_budget = {n}\n"))).unwrap();
    assert_ne!(key(&budget(40)), key(&budget(50)));
}

/// The entropy merge chooses its learning rate on validation users evaluated exactly as the
/// evaluate stages evaluate (issue 17, bug 2: `calibrated` was validated as `sum`): its parameters
/// carry the very evaluation settings of the evaluate stages, for every scoring rule.
#[test]
fn entropy_validation_is_evaluated_with_the_evaluate_stages_settings() {
    let text = std::fs::read_to_string(VARIANTS).unwrap();
    for scoring in ["sum", "mean", "calibrated"] {
        let p = plan_of(&text.replace("scoring = \"sum\"", &format!("scoring = \"{scoring}\""))).unwrap();
        let merge = p.stage("merge:entropy:warm").unwrap().params.to_json();
        let evaluate = p.stage("evaluate:entropy:warm").unwrap().params.to_json();
        let settings: serde_json::Map<String, serde_json::Value> = evaluate.as_object().unwrap().iter().filter(|(k, _)| !["backbone", "format"].contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(merge["entropy"]["evaluation"], serde_json::Value::Object(settings), "{scoring}");
        assert_eq!(merge["entropy"]["evaluation"]["protocol"]["scoring"], scoring);
    }
}
