//! `reccocktail merge` on adapters written by the test: the exact merge against dense products,
//! the dense output against the base model plus the delta, reproducible DARE, exit codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reccocktail::rng::Rng;
use reccocktail::model::lora::Proj;
use reccocktail::model::peft::{LoraPair, PeftAdapter, PeftConfig};
use reccocktail::model::weights::HostTensor;

fn reccocktail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reccocktail")).args(args).env("NO_COLOR", "1").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The tiny model's projections: (layer, proj) -> (out, in).
fn tiny_shapes() -> Vec<Module> {
    let mut v = Vec::new();
    for layer in 0..2 {
        for (proj, shape) in [(Proj::Q, (32, 32)), (Proj::K, (16, 32)), (Proj::V, (16, 32)), (Proj::O, (32, 32)), (Proj::Gate, (64, 32)), (Proj::Up, (64, 32)), (Proj::Down, (32, 64))] {
            v.push(((layer, proj), shape));
        }
    }
    v
}

/// A module and its `[out, in]`.
type Module = ((usize, Proj), (usize, usize));

fn write_adapter(dir: &Path, shapes: &[Module], r: usize, alpha: f64, use_rslora: bool, seed: u64) -> PeftAdapter {
    let mut rng = Rng::new(seed);
    let mut t = |rows: usize, cols: usize| HostTensor { shape: vec![rows, cols], data: (0..rows * cols).map(|_| (rng.unit() - 0.5) as f32 * 0.5).collect() };
    let modules: BTreeMap<_, _> = shapes.iter().map(|&(m, (o, i))| (m, LoraPair { a: t(r, i), b: t(o, r) })).collect();
    let mut targets: Vec<Proj> = shapes.iter().map(|(m, _)| m.1).collect();
    targets.sort();
    targets.dedup();
    let config = PeftConfig { r, alpha, use_rslora, targets, rank_pattern: BTreeMap::new(), alpha_pattern: BTreeMap::new(), base_model: None };
    let a = PeftAdapter { config, modules };
    a.save(dir).unwrap();
    a
}

/// Dense `scale * B A` ([out][in]) in plain f64 loops.
fn product(p: &LoraPair, scale: f64) -> Vec<Vec<f64>> {
    let (r, d_in, d_out) = (p.a.shape[0], p.a.shape[1], p.b.shape[0]);
    (0..d_out).map(|o| (0..d_in).map(|i| scale * (0..r).map(|k| p.b.data[o * r + k] as f64 * p.a.data[k * d_in + i] as f64).sum::<f64>()).collect()).collect()
}

fn delta(a: &PeftAdapter, m: (usize, Proj), shape: (usize, usize)) -> Vec<Vec<f64>> {
    a.modules.get(&m).map_or_else(|| vec![vec![0.0; shape.1]; shape.0], |p| product(p, a.config.scale(m.0, m.1)))
}

fn max_diff(x: &[Vec<f64>], y: &[Vec<f64>]) -> f64 {
    x.iter().flatten().zip(y.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

struct Fixture {
    dir: PathBuf,
    a: PeftAdapter,
    b: PeftAdapter,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("rc-merge-cli-{tag}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        reccocktail::model::tiny::write_tiny_chat_model(&dir.join("model"), reccocktail::model::tiny::TinySpec::default(), 5).unwrap();
        let shapes = tiny_shapes();
        let a = write_adapter(&dir.join("base_spirit"), &shapes, 4, 8.0, false, 1);
        // Different rank, alpha, rsLoRA, and only the attention projections.
        let attn: Vec<_> = shapes.iter().copied().filter(|((_, p), _)| matches!(p, Proj::Q | Proj::K | Proj::V | Proj::O)).collect();
        let b = write_adapter(&dir.join("ingredient"), &attn, 2, 6.0, true, 2);
        Fixture { dir, a, b }
    }

    fn p(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[test]
fn fixed_merge_is_the_weighted_sum_of_products_and_dense_output_adds_it_to_the_base() {
    let f = Fixture::new("fixed");
    let (wa, wb) = (0.6, 1.5);
    let out = reccocktail(&["merge", "--method", "fixed", "--adapter", &format!("{}:{wa}", f.p("base_spirit")), "--adapter", &format!("{}:{wb}", f.p("ingredient")), "--out", &f.p("merged"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["method"], "fixed");
    assert_eq!(summary["exact"], true);
    assert_eq!(summary["output_rank"], serde_json::json!([4, 6]));
    let merged = PeftAdapter::read(&f.dir.join("merged")).unwrap();
    for (m, shape) in tiny_shapes() {
        let want: Vec<Vec<f64>> = delta(&f.a, m, shape).iter().zip(delta(&f.b, m, shape)).map(|(x, y)| x.iter().zip(y).map(|(p, q)| wa * p + wb * q).collect()).collect();
        let err = max_diff(&delta(&merged, m, shape), &want);
        assert!(err < 1e-5, "{m:?}: {err}");
    }
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f.dir.join("merged/merge.json")).unwrap()).unwrap();
    assert_eq!(meta["params"]["weights"], serde_json::json!([wa, wb]));

    // Dense: W0 + ΔW on every module, the rest of the model unchanged.
    let out = reccocktail(&["merge", "--method", "fixed", "--adapter", &format!("{}:{wa}", f.p("base_spirit")), "--adapter", &format!("{}:{wb}", f.p("ingredient")), "--base", &f.p("model"), "--dense", "--out", &f.p("dense")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("dense HF model"), "{}", text(&out.stdout));
    let (_, base) = reccocktail::model::load::read_hf_dir(&f.dir.join("model")).unwrap();
    let (_, dense) = reccocktail::model::load::read_hf_dir(&f.dir.join("dense")).unwrap();
    assert!(f.dir.join("dense/tokenizer.json").is_file());
    assert_eq!(base["model.norm.weight"], dense["model.norm.weight"]);
    for (m, shape) in tiny_shapes() {
        let name = format!("{}.weight", reccocktail::model::peft::module_name(m.0, m.1));
        let d = delta(&merged, m, shape);
        let got: Vec<Vec<f64>> = dense[&name].data.chunks(shape.1).zip(base[&name].data.chunks(shape.1)).map(|(x, w0)| x.iter().zip(w0).map(|(p, q)| (p - q) as f64).collect()).collect();
        assert!(max_diff(&got, &d) < 1e-5, "{name}");
    }

    // A weights-only base directory (no tokenizer) gives a weights-only dense model.
    std::fs::remove_file(f.dir.join("model/tokenizer.json")).unwrap();
    let out = reccocktail(&["merge", "--method", "fixed", "--adapter", &format!("{}:{wa}", f.p("base_spirit")), "--adapter", &format!("{}:{wb}", f.p("ingredient")), "--base", &f.p("model"), "--dense", "--out", &f.p("dense_no_tokenizer")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!f.dir.join("dense_no_tokenizer/tokenizer.json").exists());
    let (_, weights_only) = reccocktail::model::load::read_hf_dir(&f.dir.join("dense_no_tokenizer")).unwrap();
    assert_eq!(weights_only, dense);
}

#[test]
fn task_arithmetic_ties_and_dare_from_the_command_line() {
    let f = Fixture::new("methods");
    let (a, b) = (f.p("base_spirit"), f.p("ingredient"));
    let out = reccocktail(&["merge", "--method", "task_arithmetic", "--lambda", "0.5", "--adapter", &a, "--adapter", &b, "--rank", "3", "--out", &f.p("ta")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("dropped energy"), "{}", text(&out.stdout));
    let ta = PeftAdapter::read(&f.dir.join("ta")).unwrap();
    assert!(ta.modules.values().all(|p| p.a.shape[0] == 3));

    let out = reccocktail(&["merge", "--method", "ties", "--density", "0.4", "--adapter", &a, "--adapter", &b, "--out", &f.p("ties"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["dropped_energy"].as_f64().unwrap() > 0.0, "trimming makes the deltas full rank: {s}");

    let dare = |seed: &str, out: &str| {
        let o = reccocktail(&["merge", "--method", "dare", "--drop-rate", "0.3", "--seed", seed, "--adapter", &a, "--adapter", &b, "--rank", "32", "--out", &f.p(out)]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        std::fs::read(f.dir.join(out).join("adapter_model.safetensors")).unwrap()
    };
    assert_eq!(dare("7", "d1"), dare("7", "d2"), "same seed, same bytes");
    assert_ne!(dare("7", "d1"), dare("8", "d3"), "another seed, other masks");
}

#[test]
fn exit_codes_and_messages() {
    let f = Fixture::new("errors");
    let (a, b) = (f.p("base_spirit"), f.p("ingredient"));
    let check = |args: &[&str], code: i32, needle: &str| {
        let out = reccocktail(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    check(&["merge", "--method", "entropy", "--adapter", &a, "--out", &f.p("o")], 2, "only inside a recipe");
    check(&["merge", "--method", "linear", "--adapter", &a, "--out", &f.p("o")], 2, "invalid value 'linear'");
    check(&["merge", "--method", "fixed", "--adapter", &a], 2, "--out");
    check(&["merge", "--method", "fixed", "--density", "0.5", "--adapter", &a, "--out", &f.p("o")], 2, "--density does not apply to `fixed`");
    check(&["merge", "--method", "fixed", "--adapter", &f.p("nope"), "--out", &f.p("o")], 2, "nope");
    check(&["merge", "--method", "fixed", "--adapter", &a, "--dense", "--out", &f.p("o")], 2, "needs the base model");
    // An adapter of another model: same module, other shape.
    write_adapter(&f.dir.join("other"), &[((0, Proj::Q), (48, 32))], 2, 2.0, false, 9);
    check(&["merge", "--method", "fixed", "--adapter", &a, "--adapter", &f.p("other"), "--out", &f.p("o")], 2, "model.layers.0.self_attn.q_proj");
    check(&["merge", "--method", "fixed", "--adapter", &f.p("other"), "--base", &f.p("model"), "--out", &f.p("o")], 2, "the base model's layer is [32, 32]");
    check(&["merge", "--method", "fixed", "--adapter", &format!("{a}:0"), "--adapter", &format!("{b}:0"), "--out", &f.p("o")], 2, "every merge coefficient is zero");
    // A runtime failure (the dense output cannot be written where a file is): exit 1.
    std::fs::write(f.dir.join("file"), "x").unwrap();
    check(&["merge", "--method", "fixed", "--adapter", &a, "--base", &f.p("model"), "--dense", "--out", &f.p("file")], 1, "writing the dense model");
}

#[test]
fn help_lists_the_registry_and_bench_merge_reports() {
    let out = reccocktail(&["merge", "--help"]);
    let help = text(&out.stdout);
    for needle in ["task_arithmetic", "drop_rate (float in [0, 1), default 0.5)", "granularity", "--rank"] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    let out = reccocktail(&["bench", "merge", "--layers", "1", "--hidden", "64", "--intermediate", "96", "--rank", "4", "--truncate", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stacked"]["output_rank"], 8);
    assert_eq!(v["truncated"]["output_rank"], 2);
    assert!(v["truncated"]["dropped_energy"].as_f64().unwrap() > 0.0);
    assert!(v["stacked"]["peak_rss_mib"].as_f64().unwrap() > 0.0);
    let out = reccocktail(&["bench"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
