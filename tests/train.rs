//! LoRA training on a tiny random model: the loss falls, only LoRA factors change, prompt tokens
//! are never targets, a resumed run equals an uninterrupted one, and the guards fire.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use reccocktail::model::CausalLm;
use reccocktail::backend::{DeviceSpec, select};
use reccocktail::model::generate::logits_of;
use reccocktail::model::load::{TextModel, load_text_model};
use reccocktail::model::tiny::{TinySpec, write_tiny_chat_model};
use reccocktail::model::Llama;
use reccocktail::recipe::resolve::{LoraConfig, TrainingConfig};
use reccocktail::recipe::types::{BackendChoice, Batching, LoraTarget, Schedule, SelectBy, Side};
use reccocktail::train::batches::{Encoded, TrainBatch};
use reccocktail::train::lora_state::LoraState;
use reccocktail::train::trainer::{self, RankValidation, TrainError, TrainOptions, TrainOutcome};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rc-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Trainings in one process share the backend's global RNG (dropout masks are drawn from it after
/// a per-step seed) and, on flex, reductions whose rounding can depend on how concurrent work
/// interleaves: the tests of this file train one at a time, as the executor does.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn device() -> Device {
    select(BackendChoice::Auto, DeviceSpec::Cpu, Some(1)).unwrap().device
}

fn model(dir: &Path, device: &Device) -> TextModel {
    if !dir.join("config.json").exists() {
        write_tiny_chat_model(dir, TinySpec::default(), 3).unwrap();
    }
    load_text_model(dir, device).unwrap()
}

fn lora(dropout: f64) -> LoraConfig {
    LoraConfig { rank: 4, alpha: 8.0, dropout, targets: vec![LoraTarget::QProj, LoraTarget::VProj, LoraTarget::UpProj, LoraTarget::DownProj], rslora: false }
}

fn training(lr: f64, epochs: u32) -> TrainingConfig {
    TrainingConfig {
        lr,
        epochs,
        max_steps: None,
        batch_size: 2,
        grad_accum: 1,
        warmup_ratio: 0.0,
        schedule: Schedule::Constant,
        weight_decay: 0.01,
        betas: [0.9, 0.999],
        max_seq_len: 64,
        truncation: Side::Left,
        batching: Batching::Length,
        eval_every: 2,
        checkpoint_every: 2,
        early_stopping_patience: None,
        max_grad_norm: 1.0,
        select_by: SelectBy::Loss,
        select_users: None,
    }
}

fn samples(m: &TextModel) -> Vec<Encoded> {
    let pairs = [("Liked: Heat || Alien. Next?", "Aliens"), ("Liked: Up || Cars. Next?", "Toy Story"), ("Liked: Fargo. Next?", "Heat"), ("Liked: Big || Jaws || Up. Next?", "Cars 2")];
    pairs
        .iter()
        .map(|(p, r)| {
            let p = m.tokenizer.encode(&format!("<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n"), false).unwrap();
            let answer = m.tokenizer.encode(r, false).unwrap().len();
            let r = m.tokenizer.encode(&format!("{r}<|im_end|>\n"), false).unwrap();
            Encoded::new(&p, &r, 64, Side::Left).unwrap().with_answer_len(answer)
        })
        .collect()
}

fn run(model: &mut Llama, train: &[Encoded], valid: &[Encoded], lora: &LoraConfig, cfg: &TrainingConfig, ck: Option<PathBuf>, interrupt: Option<u64>) -> Result<TrainOutcome, TrainError> {
    run_selecting(model, train, valid, lora, cfg, ck, interrupt, None)
}

/// [`run`] with checkpoints selected by the validation MRR `rank` reports.
#[allow(clippy::too_many_arguments)]
fn run_selecting(model: &mut Llama, train: &[Encoded], valid: &[Encoded], lora: &LoraConfig, cfg: &TrainingConfig, ck: Option<PathBuf>, interrupt: Option<u64>, rank: Option<RankValidation<'_>>) -> Result<TrainOutcome, TrainError> {
    let mut progress = |_: &trainer::Progress<'_>| {};
    let select_by_mrr: Option<RankValidation<'_>> = match rank {
        Some(r) => Some(&mut *r),
        None => None,
    };
    let opts = TrainOptions { checkpoint_dir: ck, interrupt_after: interrupt, progress: &mut progress, log: &|_| {}, select_by_mrr };
    trainer::train(model, train, valid, lora, cfg, 11, 256, opts)
}

fn base_weights(m: &Llama) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f32>> = m.projections().iter().map(|(_, _, l)| l.weight.val().into_data().try_to_vec::<f32>().unwrap()).collect();
    out.push(m.embed_tokens.val().into_data().try_to_vec::<f32>().unwrap());
    out.push(m.lm_head.val().into_data().try_to_vec::<f32>().unwrap());
    out
}

#[test]
fn loss_falls_and_only_lora_factors_change() {
    let _serial = serial();
    let dir = tmp("falls");
    let ad = device().autodiff();
    let mut m = model(&dir, &ad);
    let data = samples(&m);
    let before = base_weights(&m.backbone.model);
    let out = run(&mut m.backbone.model, &data, &data[..2], &lora(0.0), &training(1e-2, 12), None, None).unwrap();
    let (first, last) = (out.log[0].loss, out.log.last().unwrap().loss);
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    assert_eq!(out.steps, 24);
    assert!(out.best_valid_loss.unwrap() < out.log[1].valid_loss.unwrap());
    let after = base_weights(&m.backbone.model);
    assert!(before == after, "base weights must stay bitwise identical");
    // The factors did change, and B is no longer zero.
    assert!(out.adapter.modules.iter().any(|f| f.b.iter().any(|x| *x != 0.0)));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mrr_selection_keeps_the_checkpoint_of_the_best_validation_mrr() {
    let _serial = serial();
    let dir = tmp("mrr-select");
    let ad = device().autodiff();
    let mut m = model(&dir, &ad);
    let data = samples(&m);
    let cfg = training(1e-2, 4);
    let by_loss = run(&mut m.backbone.model, &data, &data[..2], &lora(0.0), &cfg, None, None).unwrap();
    // The loss falls to the end: loss selection keeps the last validated step.
    assert_eq!(by_loss.best_step, by_loss.steps);
    assert!(by_loss.log.iter().all(|r| r.valid_mrr.is_none()));
    // A ranker whose MRR peaks at the second validation (then ties, which never displace it).
    let scripted = [0.1, 0.5, 0.2, 0.5, 0.5, 0.3, 0.1, 0.1];
    let mut calls = 0usize;
    let mut rank = |_: &dyn reccocktail::model::CausalLm| {
        calls += 1;
        Ok(scripted[(calls - 1).min(scripted.len() - 1)])
    };
    let by_mrr = run_selecting(&mut m.backbone.model, &data, &data[..2], &lora(0.0), &cfg, None, None, Some(&mut rank)).unwrap();
    let validated: Vec<u64> = by_mrr.log.iter().filter(|r| r.valid_loss.is_some()).map(|r| r.step).collect();
    assert_eq!(by_mrr.best_step, validated[1]);
    assert_eq!(by_mrr.best_valid_mrr, Some(0.5));
    assert_eq!(by_mrr.best_valid_loss, by_mrr.log.iter().find(|r| r.step == validated[1]).unwrap().valid_loss);
    assert_eq!(by_mrr.log.iter().filter_map(|r| r.valid_mrr).count(), validated.len());
    // Same data, seed and schedule: the loss curves agree, the kept adapters do not.
    assert_eq!(by_loss.log.iter().map(|r| r.loss).collect::<Vec<_>>(), by_mrr.log.iter().map(|r| r.loss).collect::<Vec<_>>());
    assert!(by_loss.adapter != by_mrr.adapter);
    // A ranker that fails stops training with its message.
    let mut failing = |_: &dyn reccocktail::model::CausalLm| Err::<f64, String>("no candidates".into());
    let err = run_selecting(&mut m.backbone.model, &data, &data[..2], &lora(0.0), &cfg, None, None, Some(&mut failing)).unwrap_err();
    assert!(matches!(err, TrainError::Validation(ref m) if m == "no candidates"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Mixed precision: the frozen weights in bf16, the factors, optimizer and loss in fp32. The loss
/// curve tracks fp32's step by step, the kept adapter is fp32, and the bf16 weights never change.
#[test]
fn bf16_training_tracks_fp32_and_keeps_the_frozen_weights() {
    let _serial = serial();
    let dir = tmp("bf16");
    let ad = device().autodiff();
    let mut m = model(&dir, &ad);
    let data = samples(&m);
    let cfg = training(1e-2, 4);
    let fp32 = run(&mut m.backbone.model, &data, &data[..2], &lora(0.0), &cfg, None, None).unwrap();
    m.backbone.model.cast_frozen(burn::tensor::FloatDType::BF16);
    assert!(m.backbone.model.projections().iter().all(|(_, _, l)| !l.is_f32()));
    let frozen = |m: &Llama| m.projections().iter().map(|(_, _, l)| l.weight.val().cast(burn::tensor::FloatDType::F32).into_data().try_to_vec::<f32>().unwrap()).collect::<Vec<_>>();
    let before = frozen(&m.backbone.model);
    let bf16 = run(&mut m.backbone.model, &data, &data[..2], &lora(0.0), &cfg, None, None).unwrap();
    assert_eq!(before, frozen(&m.backbone.model), "frozen bf16 weights changed");
    assert_eq!(fp32.log.len(), bf16.log.len());
    for (a, b) in fp32.log.iter().zip(&bf16.log) {
        let rel = (a.loss - b.loss).abs() / a.loss.abs().max(1e-6);
        assert!(rel < 0.05, "step {}: fp32 loss {} vs bf16 {} ({:.1}% apart)", a.step, a.loss, b.loss, rel * 100.0);
    }
    // Not the fp32 run under another name: the losses differ somewhere.
    assert!(fp32.log.iter().zip(&bf16.log).any(|(a, b)| a.loss != b.loss));
    assert!(bf16.log.last().unwrap().loss < bf16.log[0].loss, "bf16 training learns");
    // Attention's products in bf16 too (`[backbone] attention = "bf16"`): within the same
    // tolerance of fp32, and, where libtorch's fused kernel runs them, another computation.
    m.backbone.model.set_attention(reccocktail::recipe::types::AttentionDtype::Bf16);
    let bf16_attention = run(&mut m.backbone.model, &data, &data[..2], &lora(0.0), &cfg, None, None).unwrap();
    for (a, b) in fp32.log.iter().zip(&bf16_attention.log) {
        let rel = (a.loss - b.loss).abs() / a.loss.abs().max(1e-6);
        assert!(rel < 0.05, "step {}: fp32 loss {} vs bf16 with bf16 attention {} ({:.1}% apart)", a.step, a.loss, b.loss, rel * 100.0);
    }
    let fused = reccocktail::backend::compiled_backends().contains(&reccocktail::backend::BackendKind::Tch);
    assert_eq!(bf16.log.iter().zip(&bf16_attention.log).any(|(a, b)| a.loss != b.loss), fused);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn loss_counts_response_tokens_only() {
    let _serial = serial();
    let dir = tmp("mask");
    let dev = device();
    let m = model(&dir, &dev);
    let data = samples(&m);
    let s = &data[0];
    let logits = logits_of(&m.backbone.model, &s.ids);
    let nll = |j: usize| -> f64 {
        let row = &logits[j - 1];
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max + row.iter().map(|x| (*x as f64 - max).exp()).sum::<f64>().ln();
        lse - row[s.ids[j] as usize] as f64
    };
    let want: f64 = (s.response_start..s.len()).map(nll).sum();
    let batch = TrainBatch::new(&[s], 256, &dev);
    let got: f32 = trainer::nll_sum(&m.backbone.model, &batch).into_scalar();
    assert!((got as f64 - want).abs() < 1e-3 * want.abs().max(1.0), "{got} vs {want}");
    // Changing a prompt token's label (here: its id in the target position set, by making it a
    // target) changes the loss by exactly that token's term; otherwise prompt tokens never count.
    let mut wider = s.clone();
    wider.response_start -= 1;
    let got2: f32 = trainer::nll_sum(&m.backbone.model, &TrainBatch::new(&[&wider], 256, &dev)).into_scalar();
    assert!((got2 as f64 - want - nll(s.response_start - 1)).abs() < 1e-3 * want.abs().max(1.0));
    // Padding another, longer sample next to it changes nothing for this one.
    let long = &data[3];
    let both: f32 = trainer::nll_sum(&m.backbone.model, &TrainBatch::new(&[s, long], 256, &dev)).into_scalar();
    let alone: f32 = trainer::nll_sum(&m.backbone.model, &TrainBatch::new(&[long], 256, &dev)).into_scalar();
    assert!(((both - alone) as f64 - want).abs() < 1e-3 * want.abs().max(1.0));
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 17, item 8: checkpoints were selected on a validation loss that counted `<|im_end|>` and
/// the newline after every answer. It counts the answer's tokens only.
#[test]
fn validation_loss_counts_answer_tokens_only() {
    let _serial = serial();
    let dir = tmp("valid");
    let dev = device();
    let mut m = model(&dir, &dev);
    let data = samples(&m);
    let (mut total, mut n) = (0.0f64, 0usize);
    for s in &data {
        assert!(s.answer_end < s.len(), "the end-of-turn tokens follow the answer");
        let logits = logits_of(&m.backbone.model, &s.ids);
        for j in s.response_start..s.answer_end {
            let row = &logits[j - 1];
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            total += max + row.iter().map(|x| (*x as f64 - max).exp()).sum::<f64>().ln() - row[s.ids[j] as usize] as f64;
            n += 1;
        }
    }
    let want = total / n as f64;
    let cfg = lora(0.0);
    // A fresh adapter (B = 0) leaves the model as it is.
    let state = LoraState::init(&m.backbone.model, &cfg, 3);
    let got = trainer::validation_loss(&mut m.backbone.model, &state, &data, 2, 256);
    assert!((got - want).abs() < 1e-4 * want.abs().max(1.0), "{got} vs {want} (answer tokens only)");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn resumed_training_equals_uninterrupted() {
    let _serial = serial();
    let dir = tmp("resume");
    let ad = device().autodiff();
    let mut cfg = training(5e-3, 3);
    cfg.grad_accum = 2;
    cfg.schedule = Schedule::Cosine;
    cfg.warmup_ratio = 0.2;
    let lora = lora(0.1);
    let mut m = model(&dir, &ad);
    let data = samples(&m);
    let whole = run(&mut m.backbone.model, &data, &data[..2], &lora, &cfg, Some(dir.join("ck-a")), None).unwrap();
    let first = run(&mut m.backbone.model, &data, &data[..2], &lora, &cfg, Some(dir.join("ck-b")), Some(2)).unwrap();
    assert!(!first.finished);
    let rest = run(&mut m.backbone.model, &data, &data[..2], &lora, &cfg, Some(dir.join("ck-b")), None).unwrap();
    assert_eq!(rest.resumed_from, Some(2));
    assert!(rest.finished);
    assert_eq!(whole.steps, rest.steps);
    let diff = whole.adapter.modules.iter().zip(&rest.adapter.modules).flat_map(|(a, b)| a.a.iter().zip(&b.a).chain(a.b.iter().zip(&b.b))).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(whole.adapter == rest.adapter, "resumed adapter differs from the uninterrupted one by up to {diff}");
    let strip = |o: &TrainOutcome| o.log.iter().map(|r| (r.step, r.epoch, r.loss, r.lr, r.grad_norm, r.valid_loss)).collect::<Vec<_>>();
    assert_eq!(strip(&whole), strip(&rest));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn guards_refuse_silent_failures() {
    let _serial = serial();
    let dir = tmp("guards");
    let ad = device().autodiff();
    let mut m = model(&dir, &ad);
    let data_samples = samples(&m);
    let err = match run(&mut m.backbone.model, &data_samples, &[], &lora(0.0), &training(0.0, 1), None, None) {
        Err(e) => e,
        Ok(_) => panic!("a zero learning rate must leave the adapter unchanged and fail"),
    };
    assert!(matches!(err, TrainError::Unchanged { .. }), "{err}");
    // A non-finite activation (here: a poisoned embedding row) stops training with the step named.
    let e = m.backbone.model.embed_tokens.val();
    let [v, h] = e.dims();
    let mut data = e.into_data().try_to_vec::<f32>().unwrap();
    data[(b'L' as usize) * h] = f32::NAN;
    m.backbone.model.embed_tokens = burn::module::Param::from_tensor(burn::tensor::Tensor::<2>::from_data(burn::tensor::TensorData::new(data, [v, h]), &ad)).set_require_grad(false);
    let err = match run(&mut m.backbone.model, &data_samples, &[], &lora(0.0), &training(1e-3, 1), None, None) {
        Err(e) => e,
        Ok(o) => panic!("training with a NaN embedding succeeded after {} steps", o.steps),
    };
    assert!(matches!(err, TrainError::NonFinite { step: 1, .. }), "{err}");
    assert!(err.to_string().contains("optimizer step"));
    // The adapter state starts from the PEFT initialization: B zero, A bounded by 1/sqrt(in).
    let s = LoraState::init(&m.backbone.model, &lora(0.0), 1);
    assert!(s.modules.iter().all(|f| f.b.iter().all(|x| *x == 0.0) && f.a.iter().all(|x| x.abs() <= 1.0 / (f.d_in as f32).sqrt())));
    std::fs::remove_dir_all(&dir).ok();
}
