//! Tests of the exact merge (stacking, truncation), the registry against the recipe schema, and
//! the merged adapter on a tiny model; helpers shared by the strategies' tests.

use std::collections::BTreeMap;

use super::combine::{dense, truncate};
use super::linalg::Mat;
use super::*;
use crate::model::CausalLm;
use crate::rng::Rng;
use crate::model::peft::{LoraPair, PeftConfig};
use crate::model::weights::HostTensor;

/// A module and its `[out, in]`.
pub type Module = ((usize, Proj), (usize, usize));

fn random(rows: usize, cols: usize, rng: &mut Rng) -> HostTensor {
    HostTensor { shape: vec![rows, cols], data: (0..rows * cols).map(|_| (rng.unit() - 0.5) as f32).collect() }
}

/// A random adapter on `modules` ((layer, proj), (out, in)).
pub fn adapter_on(modules: &[Module], r: usize, alpha: f64, use_rslora: bool, seed: u64) -> PeftAdapter {
    let mut rng = Rng::new(seed);
    let mut targets: Vec<Proj> = modules.iter().map(|((_, p), _)| *p).collect();
    targets.sort();
    targets.dedup();
    let config = PeftConfig { r, alpha, use_rslora, targets, rank_pattern: BTreeMap::new(), alpha_pattern: BTreeMap::new(), base_model: Some("tiny".into()) };
    let modules = modules.iter().map(|&(m, (o, i))| (m, LoraPair { a: random(r, i, &mut rng), b: random(o, r, &mut rng) })).collect();
    PeftAdapter { config, modules }
}

/// A random adapter on q_proj of the given (layer, out, in) modules.
pub fn adapter(modules: &[(usize, usize, usize)], r: usize, alpha: f64, use_rslora: bool, seed: u64) -> PeftAdapter {
    let m: Vec<_> = modules.iter().map(|&(l, o, i)| ((l, Proj::Q), (o, i))).collect();
    adapter_on(&m, r, alpha, use_rslora, seed)
}

/// A rank-1, scale-1 adapter on layer 0's q_proj whose delta is the row `values` ([1, n]).
pub fn rank1(values: &[f64]) -> PeftAdapter {
    let a = HostTensor { shape: vec![1, values.len()], data: values.iter().map(|x| *x as f32).collect() };
    let b = HostTensor { shape: vec![1, 1], data: vec![1.0] };
    let config = PeftConfig { r: 1, alpha: 1.0, use_rslora: false, targets: vec![Proj::Q], rank_pattern: BTreeMap::new(), alpha_pattern: BTreeMap::new(), base_model: None };
    PeftAdapter { config, modules: BTreeMap::from([((0, Proj::Q), LoraPair { a, b })]) }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("ad{i}")).collect()
}

/// The dense delta of module `m` of a (possibly merged) adapter, zero if absent.
fn delta_of(a: &PeftAdapter, m: (usize, Proj), shape: (usize, usize)) -> Mat {
    a.modules.get(&m).map_or_else(|| Mat::zeros(shape.0, shape.1), |p| dense(p, a.config.scale(m.0, m.1)))
}

fn rel_err(got: &Mat, want: &Mat) -> f64 {
    got.max_abs_diff(want) / want.max_abs().max(1e-30)
}

#[test]
fn single_adapter_at_weight_one_round_trips() {
    let a = adapter(&[(0, 6, 5), (1, 6, 5)], 3, 6.0, false, 1);
    let one = std::slice::from_ref(&a);
    let merged = combine(one, &Coefficients::uniform(&names(1), one, &[1.0])).unwrap();
    for (&m, p) in &a.modules {
        assert_eq!(merged.modules[&m].a.shape, p.a.shape);
        let err = rel_err(&delta_of(&merged, m, (6, 5)), &dense(p, 2.0));
        assert!(err < 1e-6, "{m:?}: {err}");
    }
    assert_eq!(merged.config.scale(0, Proj::Q), 1.0);
}

#[test]
fn merged_delta_is_the_weighted_sum_of_products_across_ranks_alphas_and_rslora() {
    let shapes = [((0, Proj::Q), (8, 6)), ((0, Proj::Down), (6, 10)), ((1, Proj::Q), (8, 6))];
    let a = adapter_on(&shapes, 4, 8.0, false, 1);
    let mut b = adapter_on(&shapes[..2], 2, 3.0, true, 2);
    // A per-module rank override on b's down_proj (PEFT's rank_pattern / alpha_pattern).
    b.config.rank_pattern.insert("down_proj".into(), 2);
    b.config.alpha_pattern.insert("model.layers.0.mlp.down_proj".into(), 5.0);
    let c = adapter_on(&shapes, 1, 16.0, false, 3);
    let ads = [a, b, c];
    let mut coef = Coefficients::uniform(&names(3), &ads, &[0.7, -0.4, 1.3]);
    coef.values.get_mut(&(1, Proj::Q)).unwrap()[0] = 2.5;
    let merged = combine(&ads, &coef).unwrap();
    for &(m, shape) in &shapes {
        let mut want = Mat::zeros(shape.0, shape.1);
        for (i, ad) in ads.iter().enumerate() {
            want.add_scaled(&delta_of(ad, m, shape), coef.values[&m][i]);
        }
        let err = rel_err(&delta_of(&merged, m, shape), &want);
        assert!(err < 1e-5, "{m:?}: relative error {err}");
    }
    // Ranks: 4 + 2 + 1 where all three adapt the module, 4 + 1 on layer 1 (b does not adapt it).
    assert_eq!(merged.modules[&(0, Proj::Q)].a.shape[0], 7);
    assert_eq!(merged.modules[&(1, Proj::Q)].a.shape[0], 5);
    assert_eq!(merged.config.r, 7);
    assert_eq!(merged.config.rank_pattern.get("layers.1.self_attn.q_proj"), Some(&5));
    assert_eq!(merged.config.targets, vec![Proj::Q, Proj::Down]);
    // b's scale with rsLoRA and the alpha override actually entered.
    assert!((ads[1].config.scale(0, Proj::Down) - 5.0 / 2f64.sqrt()).abs() < 1e-12);
}

#[test]
fn merged_adapter_saves_and_reads_back_with_scale_one() {
    let dir = std::env::temp_dir().join(format!("rc-merge-save-{}", std::process::id()));
    let a = adapter(&[(0, 8, 6), (1, 8, 6)], 4, 8.0, false, 1);
    let b = adapter(&[(0, 8, 6)], 2, 2.0, true, 2);
    let ads = [a, b];
    let merged = combine(&ads, &Coefficients::uniform(&names(2), &ads, &[0.5, 0.5])).unwrap();
    merged.save(&dir).unwrap();
    let back = PeftAdapter::read(&dir).unwrap();
    assert_eq!(back, merged);
    for &(l, p) in back.modules.keys() {
        assert_eq!(back.config.scale(l, p), 1.0, "layer {l}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn zero_weights_drop_out_and_all_zero_is_an_error() {
    let a = adapter(&[(0, 8, 6)], 4, 8.0, false, 1);
    let b = adapter(&[(0, 8, 6)], 2, 2.0, false, 2);
    let ads = [a.clone(), b];
    let merged = combine(&ads, &Coefficients::uniform(&names(2), &ads, &[1.0, 0.0])).unwrap();
    assert_eq!(merged.modules[&(0, Proj::Q)].a.shape[0], 4, "the zero-weight adapter is left out");
    assert!(rel_err(&delta_of(&merged, (0, Proj::Q), (8, 6)), &delta_of(&a, (0, Proj::Q), (8, 6))) < 1e-6);
    let e = combine(&ads, &Coefficients::uniform(&names(2), &ads, &[0.0, 0.0])).unwrap_err().to_string();
    assert!(e.contains("every merge coefficient is zero"), "{e}");
    let mut coef = Coefficients::uniform(&names(2), &ads, &[1.0, 1.0]);
    coef.values.clear();
    assert!(combine(&ads, &coef).unwrap_err().to_string().contains("no merge coefficients for `model.layers.0.self_attn.q_proj`"));
}

#[test]
fn mismatched_shapes_name_the_module() {
    let a = adapter(&[(0, 8, 6)], 4, 8.0, false, 1);
    let b = adapter(&[(0, 8, 7)], 2, 2.0, false, 2);
    let e = check_compatible(&["base".into(), "ing".into()], &[a.clone(), b.clone()]).unwrap_err().to_string();
    assert!(e.contains("`base` and `ing`") && e.contains("model.layers.0.self_attn.q_proj") && e.contains("[8, 6] vs [8, 7]"), "{e}");
    let cfg = MergeConfig::Fixed { weights: vec![0.5, 0.5] };
    assert!(matches!(merge(&["base".into(), "ing".into()], &[a, b], &cfg, None), Err(MergeError::Invalid(_))));
}

#[test]
fn truncation_at_full_rank_is_exact() {
    let shapes = [((0, Proj::Q), (9, 7)), ((0, Proj::Up), (12, 7))];
    let ads = [adapter_on(&shapes, 3, 6.0, false, 4), adapter_on(&shapes, 2, 4.0, true, 5)];
    let stacked = combine(&ads, &Coefficients::uniform(&names(2), &ads, &[0.6, 0.9])).unwrap();
    let (t, e) = truncate(&stacked, 5).unwrap();
    assert!(e.dropped_fraction() < 1e-12, "{}", e.dropped_fraction());
    for &(m, shape) in &shapes {
        assert_eq!(t.modules[&m].a.shape[0], 5);
        assert!(rel_err(&delta_of(&t, m, shape), &delta_of(&stacked, m, shape)) < 1e-5);
    }
}

#[test]
fn truncation_drops_the_right_energy_on_a_constructed_case() {
    // ΔW = B A with orthonormal A rows and B columns scaled by 3, 2, 1: singular values 3, 2, 1.
    let mut a = HostTensor { shape: vec![3, 5], data: vec![0.0; 15] };
    let mut b = HostTensor { shape: vec![4, 3], data: vec![0.0; 12] };
    for (j, s) in [3.0f32, 2.0, 1.0].into_iter().enumerate() {
        a.data[j * 5 + (j + 1)] = 1.0;
        b.data[(3 - j) * 3 + j] = s;
    }
    let config = PeftConfig { r: 3, alpha: 3.0, use_rslora: false, targets: vec![Proj::V], rank_pattern: BTreeMap::new(), alpha_pattern: BTreeMap::new(), base_model: None };
    let ad = PeftAdapter { config, modules: BTreeMap::from([((2, Proj::V), LoraPair { a, b })]) };
    let (t, e) = truncate(&ad, 2).unwrap();
    assert!((e.dropped_fraction() - 1.0 / 14.0).abs() < 1e-12, "{}", e.dropped_fraction());
    assert_eq!(t.config.r, 2);
    let mut residual = delta_of(&t, (2, Proj::V), (4, 5));
    residual.add_scaled(&delta_of(&ad, (2, Proj::V), (4, 5)), -1.0);
    let err = residual.norm_squared();
    assert!((err - 1.0).abs() < 1e-6, "the residual is the dropped singular value squared: {err}");
    let out = from_coefficients(&MergeConfig::Fixed { weights: vec![1.0] }, &names(1), &[ad], Coefficients::uniform(&names(1), &[rank1(&[1.0])], &[1.0]), Some(1));
    assert!(out.is_err(), "coefficients for a module the adapter does not have");
}

#[test]
fn ties_at_full_rank_is_the_dense_merge() {
    let shapes = [((0, Proj::K), (5, 4))];
    let ads = [adapter_on(&shapes, 2, 4.0, false, 8), adapter_on(&shapes, 3, 3.0, false, 9)];
    let cfg = MergeConfig::Ties { density: 0.5, lambda: 0.8, weights: vec![1.0, 1.0] };
    let want = ties::merge(&ads, 0.5, 0.8, &[1.0, 1.0]).unwrap().modules[&(0, Proj::K)].clone();
    let out = merge(&names(2), &ads, &cfg, Some(4)).unwrap();
    assert!(out.report.exact);
    assert!(rel_err(&delta_of(&out.adapter, (0, Proj::K), (5, 4)), &want) < 1e-5);
    // Default rank: 2 + 3 = 5 > min(5, 4), so full rank too; a lower rank reports dropped energy.
    let out = merge(&names(2), &ads, &cfg, Some(1)).unwrap();
    assert!(!out.report.exact && out.report.dropped_energy.unwrap() > 0.0);
    assert_eq!(out.coefficients.values[&(0, Proj::K)], vec![0.8, 0.8]);
}

/// The TOML inline table of a method with every declared parameter at its example value.
fn example_table(m: &Method) -> String {
    let mut s = format!("{{ method = \"{}\"", m.name);
    for p in m.params {
        s.push_str(&format!(", {} = {}", p.name, p.example));
    }
    s + " }"
}

#[test]
fn every_registry_method_parses_from_a_recipe_and_matches_the_schema() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recipes");
    let text = std::fs::read_to_string(dir.join("small_latest.toml")).unwrap();
    let line = "merge = { method = \"fixed\", weights = [0.5, 0.5] }";
    assert!(text.contains(line));
    let schema = serde_json::to_value(schemars::schema_for!(crate::recipe::merge::MergeSpec)).unwrap();
    let variants = schema["oneOf"].as_array().expect("tagged enum");
    assert_eq!(variants.len(), REGISTRY.len(), "one registry entry per schema variant");
    for m in declarations() {
        let recipe = text.replace(line, &format!("merge = {}", example_table(m)));
        let loaded = crate::recipe::check_bytes("t.toml", recipe.as_bytes(), &dir).unwrap_or_else(|e| panic!("{}: {e:?}", m.name));
        let resolved = crate::recipe::ResolvedRecipe::from_loaded(&loaded).unwrap();
        let cfg = &resolved.arms[0].merge;
        assert_eq!(method_name(cfg), m.name);
        // What a merge stage reads back from its params.
        let back: MergeConfig = serde_json::from_value(serde_json::to_value(cfg).unwrap()).unwrap();
        assert_eq!(&back, cfg);
        let variant = variants.iter().find(|v| v["properties"]["method"]["const"] == m.name).unwrap_or_else(|| panic!("no schema variant {}", m.name));
        let mut props: Vec<&str> = variant["properties"].as_object().unwrap().keys().map(String::as_str).filter(|k| *k != "method").collect();
        let mut declared: Vec<&str> = m.params.iter().map(|p| p.name).collect();
        props.sort();
        declared.sort();
        assert_eq!(props, declared, "{}: schema vs registry", m.name);
    }
    assert!(registry_help().contains("drop_rate (float in [0, 1), default 0.5)"));
}

#[test]
fn merged_adapter_on_a_tiny_model_gives_the_same_logits_as_the_weighted_inputs() {
    let dir = std::env::temp_dir().join(format!("rc-merge-tiny-{}", std::process::id()));
    crate::model::tiny::write_tiny_chat_model(&dir.join("model"), crate::model::tiny::TinySpec::default(), 3).unwrap();
    let device = crate::backend::select(crate::recipe::types::BackendChoice::Auto, crate::backend::DeviceSpec::Cpu, None).unwrap().device;
    let load = || crate::model::load::load_text_model(&dir.join("model"), &device).unwrap().backbone.model;
    let base = load();
    let shapes: Vec<_> = base.projections().into_iter().map(|(l, p, lin)| ((l, p), (lin.d_out(), lin.d_in()))).collect();
    let mut a = adapter_on(&shapes, 4, 8.0, false, 21);
    let b = adapter_on(&shapes[..9], 2, 4.0, true, 22);
    for p in a.modules.values_mut() {
        p.b.data.iter_mut().for_each(|x| *x *= 0.5);
    }
    a.save(&dir.join("a")).unwrap();
    b.save(&dir.join("b")).unwrap();
    let ads = [PeftAdapter::load(&dir.join("a"), &base).unwrap(), PeftAdapter::load(&dir.join("b"), &base).unwrap()];
    let out = merge(&names(2), &ads, &MergeConfig::Fixed { weights: vec![0.6, 1.5] }, None).unwrap();
    out.adapter.save(&dir.join("merged")).unwrap();
    let ids = [257u32, 10, 70, 200, 33, 5];
    let mut reference = load();
    ads[0].attach(&mut reference, 0.6);
    ads[1].attach(&mut reference, 1.5);
    let want = crate::model::generate::logits_of(&reference, &ids);
    let mut merged = load();
    PeftAdapter::load(&dir.join("merged"), &merged).unwrap().attach(&mut merged, 1.0);
    let got = crate::model::generate::logits_of(&merged, &ids);
    let plain = crate::model::generate::logits_of(&base, &ids);
    let diff = |x: &[Vec<f32>], y: &[Vec<f32>]| x.iter().flatten().zip(y.iter().flatten()).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
    assert!(diff(&got, &want) < 1e-4, "merged vs weighted inputs: {}", diff(&got, &want));
    assert!(diff(&plain, &want) > 1e-2, "the adapters change the logits: {}", diff(&plain, &want));
    std::fs::remove_dir_all(&dir).ok();
}

/// Every numeric default a merge method documents (in the schema's descriptions and in the
/// registry) is the one resolution applies.
#[test]
fn documented_merge_defaults_are_the_resolved_ones() {
    use crate::recipe::merge::MergeSpec;
    let schema = serde_json::to_value(schemars::schema_for!(MergeSpec)).unwrap();
    let number_after = |text: &str, marker: &str| -> Option<f64> {
        let rest = &text[text.find(marker)? + marker.len()..];
        rest.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).next().and_then(|n| n.trim_end_matches('.').parse().ok())
    };
    let mut checked = 0;
    for m in declarations() {
        // Every optional parameter left out: what resolution makes of the method alone.
        let spec: Option<MergeSpec> = serde_json::from_value(serde_json::json!({ "method": m.name })).ok();
        let Some(spec) = spec else { continue };
        let fields = serde_json::to_value(crate::recipe::merge::merge_config(&spec, 2, 7)).unwrap();
        let variant = schema["oneOf"].as_array().unwrap().iter().find(|v| v["properties"]["method"]["const"] == m.name).unwrap();
        for p in m.params {
            let doc = variant["properties"][p.name]["description"].as_str().unwrap_or_default();
            let Some(documented) = number_after(doc, "Default ") else { continue };
            let registry: f64 = p.default.parse().unwrap_or_else(|_| panic!("{}.{}: the registry says `{}`, the schema {documented}", m.name, p.name, p.default));
            let got = fields[p.name].as_f64().unwrap_or_else(|| panic!("{}.{} is not resolved to a number: {fields}", m.name, p.name));
            assert_eq!((documented, registry), (got, got), "{}.{}: schema, registry, resolution", m.name, p.name);
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} documented defaults found");
}

#[test]
fn answer_shape_counts_long_answers_and_extra_titles() {
    use super::entropy::{AnswerShape, MeasuredAnswer};
    let m = |tokens, titles| MeasuredAnswer { entropy: Some(1.0), tokens, titles };
    let shape = AnswerShape::of(&[m(5, 1), m(48, 3), m(10, 2), m(48, 1)], 48);
    assert_eq!((shape.answers, shape.at_limit, shape.more_than_one_title), (4, 2, 2));
    assert!((shape.mean_tokens - 27.75).abs() < 1e-12);
    assert_eq!(shape.to_string(), "greedy answers of 27.8 tokens on average, 2 of 4 at the 48-token limit, 2 naming more than one title");
}
