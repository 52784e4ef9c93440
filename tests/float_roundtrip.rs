//! Every float the cache writes and reads back comes back bit-exact: training checkpoints (JSON
//! metadata with the log, safetensors factors), JSON summaries, parquet tables, and stage
//! parameters as JSON. A value one ulp off after a resume makes a resumed run differ from an
//! uninterrupted one (issue 15: `2.8756028536961318` read back as `2.875602853696132`).

use std::path::PathBuf;

use polars::prelude::*;
use reccocktail::table;
use reccocktail::model::lora::Proj;
use reccocktail::train::checkpoint::{self, Checkpoint};
use reccocktail::train::lora_state::{LoraState, ModuleFactors};
use reccocktail::train::optim::Moments;
use reccocktail::train::log::LogRow;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rc-floats-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Values known to trip fast or naive decimal parsers, then many finite values drawn over the
/// whole bit range (a fixed xorshift: the same values on every machine).
#[allow(clippy::excessive_precision, reason = "the literals are the decimals that trip parsers, digit for digit")]
fn hard_f64() -> Vec<f64> {
    let mut v = vec![
        2.8756028536961318, // read back one ulp off without serde_json's `float_roundtrip`
        9.354880332946776,
        9.354880332946777,
        0.1 + 0.2,
        1e23,
        8.98846567431158e307,
        2.2250738585072011e-308,
        2.2250738585072014e-308,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        -0.0,
        0.0,
        9007199254740993.0,
        1.0 / 3.0,
        std::f64::consts::PI,
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while v.len() < 4000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let f = f64::from_bits(x);
        if f.is_finite() {
            v.push(f);
        }
        // And values of the magnitudes losses and learning rates have.
        v.push((x >> 11) as f64 / (1u64 << 53) as f64 * 12.0);
    }
    v
}

fn hard_f32() -> Vec<f32> {
    let mut v = vec![0.1f32, 1.0 / 3.0, f32::MAX, f32::MIN_POSITIVE, 1e-45, 1.1754942e-38, 16777217.0, -0.0, 3.4028235e38, 7.038531e-26];
    let mut x: u32 = 0x2545_F491;
    while v.len() < 4000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let f = f32::from_bits(x);
        if f.is_finite() {
            v.push(f);
        }
    }
    v
}

fn bits64(v: &[f64]) -> Vec<u64> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn bits32(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn checkpoint_log_and_factors_round_trip_bit_exact() {
    let f64s = hard_f64();
    let f32s = hard_f32();
    let n = 64;
    let module = |a: &[f32], b: &[f32]| ModuleFactors { layer: 0, proj: Proj::Q, d_in: n, d_out: n, a: a.to_vec(), b: b.to_vec() };
    let chunk = |i: usize| &f32s[i * n..(i + 1) * n];
    let state = LoraState { rank: 1, alpha: 2.8756028536961318, rslora: false, modules: vec![module(chunk(0), chunk(1))] };
    let best = LoraState { modules: vec![module(chunk(2), chunk(3))], ..state.clone() };
    let moments = vec![Moments { m: f32s[4 * n..6 * n].to_vec(), v: f32s[6 * n..8 * n].to_vec() }];
    let log: Vec<LogRow> = f64s
        .chunks_exact(8)
        .enumerate()
        .map(|(i, c)| LogRow {
            step: i as u64,
            epoch: 0,
            loss: c[0],
            lr: c[1],
            grad_norm: c[2],
            tokens: 1,
            samples: 1,
            tokens_per_s: c[3],
            forward_s: c[4],
            backward_s: c[5],
            update_s: c[6],
            valid_loss: Some(c[7]),
            valid_mrr: (i % 2 == 0).then(|| c[7] / 3.0),
        })
        .collect();
    let ck = Checkpoint { state: state.clone(), moments, step: 7, epoch: 1, group: 2, best, best_valid: Some(2.8756028536961318), best_step: 3, since_best: 1, log };
    let dir = tmp("checkpoint").join("ck");
    checkpoint::save(&dir, &ck).unwrap();
    let back = checkpoint::load(&dir, &state).unwrap().expect("a checkpoint was written");
    let log_bits = |l: &[LogRow]| -> Vec<u64> { l.iter().flat_map(|r| [r.loss, r.lr, r.grad_norm, r.tokens_per_s, r.forward_s, r.backward_s, r.update_s, r.valid_loss.unwrap()]).map(f64::to_bits).collect() };
    assert_eq!(log_bits(&back.log), log_bits(&ck.log));
    assert_eq!(back.best_valid.map(f64::to_bits), ck.best_valid.map(f64::to_bits));
    assert_eq!(bits32(&back.state.modules[0].a), bits32(&ck.state.modules[0].a));
    assert_eq!(bits32(&back.state.modules[0].b), bits32(&ck.state.modules[0].b));
    assert_eq!(bits32(&back.best.modules[0].a), bits32(&ck.best.modules[0].a));
    assert_eq!(bits32(&back.moments[0].m), bits32(&ck.moments[0].m));
    assert_eq!(bits32(&back.moments[0].v), bits32(&ck.moments[0].v));
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

#[test]
fn json_summaries_round_trip_bit_exact() {
    let dir = tmp("json");
    let (f64s, f32s) = (hard_f64(), hard_f32());
    table::write_json(&dir.join("a.json"), &(&f64s, &f32s)).unwrap();
    let (b64, b32): (Vec<f64>, Vec<f32>) = table::read_json(&dir.join("a.json")).unwrap();
    assert_eq!(bits64(&b64), bits64(&f64s));
    assert_eq!(bits32(&b32), bits32(&f32s));
    // Through a JSON value and back, as stage parameters and manifests travel.
    let value = serde_json::to_value(&f64s).unwrap();
    let text = serde_json::to_string(&value).unwrap();
    let back: Vec<f64> = serde_json::from_value(serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(bits64(&back), bits64(&f64s));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn parquet_tables_round_trip_bit_exact() {
    let dir = tmp("parquet");
    let (f64s, f32s) = (hard_f64(), hard_f32());
    let n = f64s.len().min(f32s.len());
    let mut df = table::frame(vec![Column::new("x".into(), &f64s[..n]), Column::new("y".into(), &f32s[..n])]).unwrap();
    let path = dir.join("t.parquet");
    table::write_parquet(&mut df, &path).unwrap();
    let back = table::read_parquet(&path).unwrap();
    let x: Vec<f64> = table::opt_f64s(&back, "x").unwrap().into_iter().map(Option::unwrap).collect();
    assert_eq!(bits64(&x), bits64(&f64s[..n]));
    let y: Vec<f32> = back.column("y").unwrap().f32().unwrap().iter().map(Option::unwrap).collect();
    assert_eq!(bits32(&y), bits32(&f32s[..n]));
    let _ = std::fs::remove_dir_all(&dir);
}
