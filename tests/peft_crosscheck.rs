//! An adapter trained by reccocktail, read by Python peft: the committed fixture
//! `tests/fixtures/trained/` holds an adapter this trainer produced on the tiny Llama fixture, and
//! the logits peft computes with it (scripts/fixtures/check_trained_adapter.py, dev time only).
//!
//! Regenerate: `RECCOCKTAIL_WRITE_FIXTURES=1 cargo test --test peft_crosscheck`, then run the
//! Python script.

use std::path::{Path, PathBuf};

use reccocktail::backend::{DeviceSpec, select};
use reccocktail::model::generate::logits_of;
use reccocktail::model::load::load_hf_dir;
use reccocktail::model::peft::PeftAdapter;
use reccocktail::recipe::resolve::{LoraConfig, TrainingConfig};
use reccocktail::recipe::types::{BackendChoice, Batching, LoraTarget, Schedule, SelectBy, Side};
use reccocktail::train::batches::Encoded;
use reccocktail::train::trainer::{self, TrainOptions};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

const SAMPLES: [(&[u32], &[u32]); 4] = [(&[1, 17, 42, 99, 5], &[63, 120, 7, 2]), (&[1, 88, 3, 64], &[31, 12, 2]), (&[1, 5, 9, 33, 71, 8], &[44, 2]), (&[1, 100, 101], &[102, 103, 104, 2])];

fn train_fixture_adapter() -> PeftAdapter {
    let device = select(BackendChoice::Flex, DeviceSpec::Cpu, Some(1)).unwrap().device.autodiff();
    let mut b = load_hf_dir(&root().join("models/llama/model"), &device).unwrap();
    let samples: Vec<Encoded> = SAMPLES.iter().map(|(p, r)| Encoded::new(p, r, 32, Side::Left).unwrap()).collect();
    let lora = LoraConfig { rank: 4, alpha: 8.0, dropout: 0.0, targets: vec![LoraTarget::QProj, LoraTarget::KProj, LoraTarget::VProj, LoraTarget::OProj, LoraTarget::GateProj, LoraTarget::UpProj, LoraTarget::DownProj], rslora: false };
    let cfg = TrainingConfig {
        lr: 2e-2, epochs: 5, max_steps: None, batch_size: 2, grad_accum: 1, warmup_ratio: 0.1, schedule: Schedule::Cosine, weight_decay: 0.0,
        betas: [0.9, 0.999], max_seq_len: 32, truncation: Side::Left, batching: Batching::Length, eval_every: 1000, checkpoint_every: 1000,
        early_stopping_patience: None, max_grad_norm: 1.0, select_by: SelectBy::Loss, select_users: None,
    };
    let mut progress = |_: &trainer::Progress<'_>| {};
    let opts = TrainOptions { checkpoint_dir: None, interrupt_after: None, progress: &mut progress, log: &|_| {}, select_by_mrr: None };
    let out = trainer::train(&mut b.model, &samples, &[], &lora, &cfg, 5, 0, opts).unwrap();
    out.adapter.to_peft(Some("tests/fixtures/models/llama/model".into()))
}

#[test]
fn trained_adapter_matches_peft_logits() {
    let dir = root().join("trained");
    let trained = train_fixture_adapter();
    if std::env::var_os("RECCOCKTAIL_WRITE_FIXTURES").is_some() {
        trained.save(&dir.join("adapter")).unwrap();
        let ids: Vec<Vec<u32>> = SAMPLES.iter().map(|(p, r)| p.iter().chain(r.iter()).copied().collect()).collect();
        std::fs::write(dir.join("ids.json"), serde_json::to_string(&ids).unwrap()).unwrap();
        eprintln!("wrote {}; now run scripts/fixtures/check_trained_adapter.py", dir.display());
        return;
    }
    let device = select(BackendChoice::Auto, DeviceSpec::Cpu, Some(1)).unwrap().device;
    let mut b = load_hf_dir(&root().join("models/llama/model"), &device).unwrap();
    let committed = PeftAdapter::load(&dir.join("adapter"), &b.model).unwrap();
    // The committed adapter is what this trainer produces (same seed, same data).
    for (k, pair) in &committed.modules {
        let mine = &trained.modules[k];
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
        assert!(close(&pair.a.data, &mine.a.data) && close(&pair.b.data, &mine.b.data), "module {k:?} differs from a fresh training run");
    }
    committed.attach(&mut b.model, 1.0);
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(expected["ids"].clone()).unwrap();
    let want: Vec<Vec<Vec<f32>>> = serde_json::from_value(expected["logits"].clone()).unwrap();
    let mut worst = 0f32;
    for (seq, want) in ids.iter().zip(&want) {
        for (got, want) in logits_of(&b.model, seq).iter().zip(want) {
            for (g, w) in got.iter().zip(want) {
                worst = worst.max((g - w).abs());
            }
        }
    }
    assert!(worst < 1e-4, "logits differ from peft's by up to {worst}");
    // And the adapter is not a no-op: peft's logits with it differ from the base model's.
    let base: Vec<Vec<Vec<f32>>> = serde_json::from_value(expected["base_logits"].clone()).unwrap();
    let moved = base.iter().flatten().flatten().zip(want.iter().flatten().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(moved > 1e-2, "the trained adapter barely changes the logits ({moved})");
}
