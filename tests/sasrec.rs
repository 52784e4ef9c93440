//! SASRec against a PyTorch reference (`scripts/fixtures/make_sasrec_fixture.py`): the same
//! weights give the same hidden states, candidate scores, loss and gradients of every parameter.
//! Then a training run on a tiny synthetic domain learns its (deterministic) pattern.

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor};
use reccocktail::sasrec::model::{SasRec, Shape};

fn close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs())).max(1.0);
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= tol * scale, "{what}[{k}]: {g} vs {w}");
    }
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn load(device: &Device) -> (SasRec, serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sasrec");
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let shape: Shape = serde_json::from_value(expected["shape"].clone()).unwrap();
    let mut model = SasRec::init(&shape, 1, device);
    let applied = model.load_from(&mut SafetensorsStore::from_file(dir.join("weights.safetensors"))).unwrap();
    assert!(applied.missing.is_empty() && applied.errors.is_empty() && applied.unused.is_empty(), "{applied:?}");
    (model, expected)
}

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn forward_and_backward_match_pytorch() {
    let device = Device::default().autodiff();
    let (model, e) = load(&device);
    let (seqs, pos, neg, cands) = (ints(&e["seqs"]), ints(&e["pos"]), ints(&e["neg"]), ints(&e["candidates"]));
    let (b, l) = (3, 6);
    let feats = model.features(&seqs, b, l).reshape([b * l, 8]);
    close(&values(feats), &floats(&e["features"]), 1e-4, "features");
    close(&values(model.score_last(&seqs, b, l, &cands, 4)), &floats(&e["scores"]), 1e-4, "scores");

    let loss = model.loss(&seqs, &pos, &neg, b, l);
    let value = loss.clone().inner().into_scalar::<f32>();
    assert!((value as f64 - e["loss"].as_f64().unwrap()).abs() < 1e-5, "loss {value} vs {}", e["loss"]);
    let grads = loss.backward();
    let mut checked = 0;
    let mut check = |name: String, g: Option<Vec<f32>>| {
        let want = floats(&e["grads"][&name]);
        close(&g.unwrap_or_else(|| panic!("{name}: no gradient")), &want, 1e-4, &name);
        checked += 1;
    };
    let g2 = |p: &burn::module::Param<Tensor<2>>| p.val().grad(&grads).map(values);
    let g1 = |p: &burn::module::Param<Tensor<1>>| p.val().grad(&grads).map(|t| t.into_data().try_to_vec::<f32>().unwrap());
    check("item_emb.weight".into(), g2(&model.item_emb.weight));
    check("pos_emb.weight".into(), g2(&model.pos_emb.weight));
    for (i, blk) in model.blocks.iter().enumerate() {
        for (n, lin) in [("q", &blk.q), ("k", &blk.k), ("v", &blk.v), ("out", &blk.out), ("ffn1", &blk.ffn1), ("ffn2", &blk.ffn2)] {
            check(format!("blocks.{i}.{n}.weight"), g2(&lin.weight));
            check(format!("blocks.{i}.{n}.bias"), g1(lin.bias.as_ref().unwrap()));
        }
        for (n, norm) in [("attn_norm", &blk.attn_norm), ("ffn_norm", &blk.ffn_norm)] {
            check(format!("blocks.{i}.{n}.gamma"), g1(&norm.gamma));
            check(format!("blocks.{i}.{n}.beta"), g1(norm.beta.as_ref().unwrap()));
        }
    }
    check("last_norm.gamma".into(), g1(&model.last_norm.gamma));
    check("last_norm.beta".into(), g1(model.last_norm.beta.as_ref().unwrap()));
    assert_eq!(checked, e["grads"].as_object().unwrap().len(), "every parameter's gradient is compared");
    assert!(model.num_params() > 0);
}

/// A domain where every user walks the catalogue in order (item i, then i + 1, wrapping): the
/// next item is a function of the last one, which SASRec must learn.
fn walking_split(users: usize, items: usize, len: usize) -> reccocktail::data::domain::DomainSplit {
    use reccocktail::data::domain::{DomainSplit, SplitSettings};
    use reccocktail::recipe::types::NegativeSampling;
    let sequences: Vec<Vec<u32>> = (0..users).map(|u| (0..len).map(|k| ((u * 7 + k) % items) as u32).collect()).collect();
    DomainSplit {
        settings: SplitSettings { label: "walk".into(), max_history: 5, candidates: 10, negatives: NegativeSampling::Uniform, max_train_per_user: None, min_sequence: 3 },
        items: (0..items).map(|i| format!("i{i}")).collect(),
        titles: (0..items).map(|i| format!("Item {i}")).collect(),
        users: (0..users).map(|u| format!("u{u}")).collect(),
        timestamps: sequences.iter().map(|s| vec![None; s.len()]).collect(),
        sequences,
    }
}

fn done(r: Result<reccocktail::sasrec::train::Outcome, reccocktail::sasrec::SasrecError>) -> (SasRec, reccocktail::sasrec::train::TrainLog) {
    match r.unwrap() {
        reccocktail::sasrec::train::Outcome::Done(model, log) => (model, log),
        reccocktail::sasrec::train::Outcome::Stopped { epochs } => panic!("stopped after {epochs} epochs"),
    }
}

#[test]
fn training_learns_a_deterministic_sequence_and_is_reproducible() {
    use reccocktail::recipe::sasrec::SasrecSpec;
    let split = walking_split(48, 30, 9);
    let spec = SasrecSpec { hidden: Some(16), blocks: Some(1), dropout: Some(0.1), lr: Some(1e-2), max_len: Some(8), batch_size: Some(16), epochs: Some(40), eval_every: Some(5), patience: Some(3), ..Default::default() };
    let cfg = spec.resolve();
    let device = Device::default();
    let (model, log) = done(reccocktail::sasrec::train::train(&split, &cfg, 3, &device, &|_| {}, None));
    assert_eq!(log.train_users, 48);
    assert_eq!(log.valid_users, 48);
    let first = log.validations[0].ndcg_at_10;
    assert!(log.best_ndcg_at_10 > 0.9, "validation NDCG@10 {} (first validation {first}): {:?}", log.best_ndcg_at_10, log.validations);
    assert!(log.validations.iter().all(|v| v.loss.is_finite()));
    // The kept weights are the best validation's: scoring the validation item (history = the
    // training part) ranks it first for most users.
    let trained = reccocktail::sasrec::Trained { model, shape: log.shape };
    let lists: Vec<(&[u32], Vec<u32>)> = split.sequences.iter().map(|s| (&s[..s.len() - 2], vec![s[s.len() - 2], (s[s.len() - 2] + 15) % 30, (s[s.len() - 2] + 5) % 30])).collect();
    let top = trained.scores(&lists).iter().filter(|s| s[0] > s[1] && s[0] > s[2]).count();
    assert!(top >= 44, "the next item ranked first for {top} of 48 users");
    // Same seed, same log (validation scores and losses, bit for bit).
    let (_, again) = done(reccocktail::sasrec::train::train(&split, &cfg, 3, &device, &|_| {}, None));
    let bits = |l: &reccocktail::sasrec::train::TrainLog| l.validations.iter().map(|v| (v.loss.to_bits(), v.ndcg_at_10.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&log), bits(&again));
}

#[test]
fn an_interrupted_training_resumes_from_its_checkpoint_and_ends_with_the_same_network() {
    use reccocktail::sasrec::train::{train, Checkpoints, Outcome};
    let split = walking_split(40, 30, 9);
    let spec = reccocktail::recipe::sasrec::SasrecSpec { hidden: Some(16), blocks: Some(1), dropout: Some(0.1), lr: Some(1e-2), max_len: Some(8), batch_size: Some(16), epochs: Some(9), eval_every: Some(2), patience: Some(10), ..Default::default() };
    let cfg = spec.resolve();
    let device = Device::default();
    let (whole, whole_log) = done(train(&split, &cfg, 5, &device, &|_| {}, None));

    let dir = std::env::temp_dir().join(format!("reccocktail-sasrec-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ck = |stop_after| Some(Checkpoints { dir: &dir, stop_after });
    // Cut after epoch 3 (between validations), then after epoch 6 (right after one).
    assert!(matches!(train(&split, &cfg, 5, &device, &|_| {}, ck(Some(3))).unwrap(), Outcome::Stopped { epochs: 3 }));
    assert!(matches!(train(&split, &cfg, 5, &device, &|_| {}, ck(Some(3))).unwrap(), Outcome::Stopped { epochs: 6 }));
    let (resumed, log) = done(train(&split, &cfg, 5, &device, &|_| {}, ck(None)));
    assert_eq!(log.resumed_after_epoch, Some(6));
    assert_eq!((log.epochs_run, log.best_epoch), (whole_log.epochs_run, whole_log.best_epoch));
    let bits = |l: &reccocktail::sasrec::train::TrainLog| l.validations.iter().map(|v| (v.epoch, v.loss.to_bits(), v.ndcg_at_10.to_bits(), v.hr_at_10.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&log), bits(&whole_log));
    // Every parameter of the kept network, bit for bit.
    let params = |m: &SasRec| {
        let mut v = values(m.item_emb.weight.val());
        v.extend(values(m.pos_emb.weight.val()));
        for b in &m.blocks {
            for l in [&b.q, &b.k, &b.v, &b.out, &b.ffn1, &b.ffn2] {
                v.extend(values(l.weight.val()));
                v.extend(l.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap());
            }
            for n in [&b.attn_norm, &b.ffn_norm] {
                v.extend(n.gamma.val().into_data().try_to_vec::<f32>().unwrap());
            }
        }
        v.into_iter().map(f32::to_bits).collect::<Vec<_>>()
    };
    assert_eq!(params(&resumed), params(&whole));
    // A checkpoint of another seed is refused, not silently used.
    let err = match train(&split, &cfg, 6, &device, &|_| {}, ck(None)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a checkpoint of seed 5 was used for seed 6"),
    };
    assert!(err.contains("another network or seed"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn saved_weights_are_the_same_bytes_every_time() {
    let shape = Shape { items: 12, hidden: 8, blocks: 1, heads: 1, max_len: 6, dropout: 0.0 };
    let model = SasRec::init(&shape, 2, &Device::default());
    let dir = std::env::temp_dir().join(format!("reccocktail-sasrec-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // burn's default header metadata came out in a different order from save to save.
    let saves: Vec<Vec<u8>> = (0..8)
        .map(|k| {
            let path = dir.join(format!("m{k}.safetensors"));
            reccocktail::sasrec::save_weights(&model, &path).unwrap();
            std::fs::read(&path).unwrap()
        })
        .collect();
    assert!(saves.iter().all(|b| b == &saves[0]), "the same weights saved as different bytes");
    let loaded = reccocktail::sasrec::load_weights(&dir.join("m0.safetensors"), &shape, &Device::default()).unwrap();
    assert_eq!(values(loaded.item_emb.weight.val()), values(model.item_emb.weight.val()));
    std::fs::remove_dir_all(&dir).unwrap();
}
