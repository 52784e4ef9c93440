//! Protocol tests on the tiny random chat model: likelihood scores equal independently computed
//! log-probabilities (full forward passes over prompt + title, no cache), for every scoring; the
//! evaluate stage's outputs on a real evaluation set.

use std::path::{Path, PathBuf};

use super::likelihood::score_candidates;
use super::metrics::{rank_of, ranking};
use super::params::EvalSettings;
use super::stage::{evaluate_users, write_outputs};
use super::{TestUser, read_test_users};
use crate::backend::{self, DeviceSpec};
use crate::table;
use crate::prompt::Prompter;
use crate::model::generate::logits_of;
use crate::model::load::{TextModel, load_text_model};
use crate::model::tiny::{TinySpec, write_tiny_chat_model};
use crate::recipe::resolve::ResolvedProtocol;
use crate::recipe::types::{BackendChoice, Metric, Scoring};

fn tiny(name: &str) -> (PathBuf, TextModel, Prompter) {
    let dir = std::env::temp_dir().join(format!("rc-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_tiny_chat_model(&dir, TinySpec::default(), 11).unwrap();
    let device = backend::select(BackendChoice::Auto, DeviceSpec::Cpu, None).unwrap().device;
    let mut m = load_text_model(&dir, &device).unwrap();
    let format = crate::prompt::PromptFormat { system_prompt: "You recommend.".into(), chat_template: true };
    let prompter = Prompter::new(&format, m.chat.take());
    (dir, m, prompter)
}

/// log p(continuation | prompt) per token from one uncached forward pass over the concatenation.
fn independent_logprobs(m: &TextModel, prompt: &[u32], cont: &[u32]) -> Vec<f64> {
    let ids: Vec<u32> = prompt.iter().chain(cont).copied().collect();
    let logits = logits_of(&m.backbone.model, &ids);
    (0..cont.len())
        .map(|j| {
            let row = &logits[prompt.len() - 1 + j];
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            row[cont[j] as usize] as f64 - lse
        })
        .collect()
}

fn user(instruction: &str, prior: &str, titles: &[&str], target_slot: usize) -> TestUser {
    TestUser {
        user: "u1".into(),
        target: format!("i{target_slot}"),
        target_title: titles[target_slot].into(),
        instruction: instruction.into(),
        instruction_prior: Some(prior.into()),
        items: (0..titles.len()).map(|i| format!("i{i}")).collect(),
        titles: titles.iter().map(|t| t.to_string()).collect(),
        target_slot,
    }
}

#[test]
fn likelihood_ranking_equals_sorting_independent_logprobs() {
    let (dir, m, prompter) = tiny("lik");
    let tok = &m.tokenizer;
    let titles = ["Heat (1995)", "Babe", "Toy Story (1995)", "Casino (1995)", "Jumanji (1995)", "X"];
    let instruction = "Seen: Toy Story || Heat\nCandidates: Heat || Babe || Toy Story || Casino || Jumanji || X\nPick 3.";
    let prior = "Seen: \nCandidates: Heat || Babe || Toy Story || Casino || Jumanji || X\nPick 3.";
    let prompt = prompter.prompt_ids(tok, instruction).unwrap();
    let prior_prompt = prompter.prompt_ids(tok, prior).unwrap();
    let ids: Vec<Vec<u32>> = titles.iter().map(|t| prompter.title_ids(tok, t).unwrap()).collect();
    for scoring in [Scoring::Sum, Scoring::Mean, Scoring::Calibrated] {
        let got = score_candidates(&m.backbone.model, &prompt, Some(&prior_prompt), &ids, scoring);
        let want: Vec<f64> = ids
            .iter()
            .map(|c| {
                let s: f64 = independent_logprobs(&m, &prompt, c).iter().sum();
                match scoring {
                    Scoring::Sum => s,
                    Scoring::Mean => s / c.len() as f64,
                    Scoring::Calibrated => s - independent_logprobs(&m, &prior_prompt, c).iter().sum::<f64>(),
                }
            })
            .collect();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-3, "{scoring:?}: {g} vs {w}");
        }
        assert_eq!(ranking(&got), ranking(&want), "{scoring:?}");
        // Through the protocol: the user's rank is the target's position in that order.
        let p = EvalSettings { protocol: ResolvedProtocol::Likelihood { scoring }, ks: vec![1, 3], metrics: vec![Metric::Hr, Metric::Mrr], seed: 1, separator: "||".into() };
        for target in [0, 3] {
            let r = evaluate_users(&m.backbone.model, tok, &prompter, &[user(instruction, prior, &titles, target)], &p, &mut |_| {}).unwrap();
            assert_eq!(r[0].rank, Some(rank_of(&want, target)));
            assert_eq!(r[0].ranked, ranking(&want));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn likelihood_is_deterministic_and_generate_grounds_its_own_text() {
    let (dir, m, prompter) = tiny("gen");
    let tok = &m.tokenizer;
    let titles = ["Heat", "Babe", "Casino"];
    let u = user("Candidates: Heat || Babe || Casino. Pick 2.", "Candidates: Heat || Babe || Casino. Pick 2.", &titles, 1);
    let mut p = EvalSettings { protocol: ResolvedProtocol::Likelihood { scoring: Scoring::Sum }, ks: vec![1], metrics: vec![Metric::Hr, Metric::ValidRatio], seed: 3, separator: "||".into() };
    let a = evaluate_users(&m.backbone.model, tok, &prompter, std::slice::from_ref(&u), &p, &mut |_| {}).unwrap();
    let b = evaluate_users(&m.backbone.model, tok, &prompter, std::slice::from_ref(&u), &p, &mut |_| {}).unwrap();
    assert_eq!(a, b, "bit-identical scores on a rerun");
    p.protocol = ResolvedProtocol::Generate { max_new_tokens: 12, fuzzy_match: true };
    let mut calls = Vec::new();
    let g = evaluate_users(&m.backbone.model, tok, &prompter, &[u.clone(), u.clone()], &p, &mut |d| calls.push(d)).unwrap();
    assert_eq!(calls, [1, 2]);
    let text = g[0].generated.clone().unwrap();
    let grounded = super::generate::ground(&text, "||", &u.titles, true);
    assert_eq!(g[0].ranked, grounded.ranked);
    assert_eq!((g[0].generated_items, g[0].valid_items), (grounded.generated, grounded.valid()));
    assert_eq!(g[0].rank, grounded.rank_of(1));
    assert_eq!(g[0], g[1], "greedy generation is deterministic");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn evaluate_outputs_are_readable_tables() {
    let out = std::env::temp_dir().join(format!("rc-eval-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let titles = ["A", "B", "C"];
    let users = vec![user("x", "y", &titles, 0), TestUser { user: "u2".into(), ..user("x", "y", &titles, 2) }];
    let results = vec![
        super::UserResult { user: "u1".into(), target: "i0".into(), target_title: "A".into(), rank: Some(2), ranked: vec![1, 0, 2], scores: Some(vec![-2.0, -1.0, -3.0]), generated: None, generated_items: 3, generated_tokens: 0, valid_items: 3 },
        super::UserResult { user: "u2".into(), target: "i2".into(), target_title: "C".into(), rank: None, ranked: vec![0], scores: None, generated: Some("A || Z".into()), generated_items: 2, generated_tokens: 5, valid_items: 1 },
    ];
    let p = EvalSettings { protocol: ResolvedProtocol::Generate { max_new_tokens: 8, fuzzy_match: false }, ks: vec![1, 3], metrics: vec![Metric::Hr, Metric::Mrr, Metric::ValidRatio], seed: 1, separator: "||".into() };
    write_outputs(&out, &users, &results, &p, 2.0).unwrap();
    let pu = table::read_parquet(&out.join("per_user.parquet")).unwrap();
    assert_eq!(table::opt_i64s(&pu, "rank").unwrap(), [Some(2), None]);
    assert_eq!(table::opt_strs(&pu, "generated").unwrap(), [None, Some("A || Z".into())]);
    assert_eq!(pu.column("ranked").unwrap().dtype().to_string(), "list[str]");
    let m = table::read_parquet(&out.join("metrics.parquet")).unwrap();
    assert_eq!(table::strs(&m, "metric").unwrap(), ["hr", "hr", "mrr", "valid_ratio"]);
    assert_eq!(table::opt_i64s(&m, "k").unwrap(), [Some(1), Some(3), None, None]);
    assert_eq!(table::opt_f64s(&m, "value").unwrap(), [Some(0.0), Some(0.5), Some(0.25), Some(0.75)]);
    let j: serde_json::Value = table::read_json(&out.join("evaluate.json")).unwrap();
    assert_eq!((j["users"].as_u64(), j["protocol"].as_str(), j["users_per_s"].as_f64()), (Some(2), Some("generate"), Some(1.0)));
    assert!(j["scoring"].is_null());
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn reads_the_test_rows_of_an_eval_set() {
    let dir = std::env::temp_dir().join(format!("rc-eval-set-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_set(&dir, true);
    let users = read_test_users(&dir).unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!((users[0].items.clone(), users[0].target_slot), (vec!["b".to_string(), "a".into()], 1), "slot order, not file order");
    assert_eq!(users[0].instruction_prior.as_deref(), Some("p0"));
    write_set(&dir, false);
    let e = read_test_users(&dir).unwrap_err().to_string();
    assert!(e.contains("target of user `u1` is not among the candidates"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

fn write_set(dir: &Path, with_target: bool) {
    use polars::prelude::Column;
    let mut p = table::frame(vec![
        Column::new("set".into(), ["test", "adaptation"]),
        Column::new("user".into(), ["u1", "u2"]),
        Column::new("target".into(), ["a", "c"]),
        Column::new("target_title".into(), ["A", "C"]),
        Column::new("instruction".into(), ["i0", "i1"]),
        Column::new("instruction_prior".into(), ["p0", "p1"]),
    ])
    .unwrap();
    table::write_parquet(&mut p, &dir.join("prompts.parquet")).unwrap();
    let mut c = table::frame(vec![
        Column::new("set".into(), ["test", "test", "adaptation"]),
        Column::new("user".into(), ["u1", "u1", "u2"]),
        Column::new("slot".into(), [1u32, 0, 0]),
        Column::new("item".into(), ["a", "b", "c"]),
        Column::new("title".into(), ["A", "B", "C"]),
        Column::new("is_target".into(), [with_target, false, true]),
    ])
    .unwrap();
    table::write_parquet(&mut c, &dir.join("candidates.parquet")).unwrap();
}
