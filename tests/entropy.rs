//! Entropy-guided merging on a tiny random model: exact coefficient gradients, the objective
//! falls during adaptation, coefficients stay in their domain, title token positions.

use std::collections::BTreeMap;

use reccocktail::backend::{DeviceSpec, select};
use reccocktail::rng::Rng;
use reccocktail::merge::entropy::{self, AdaptPrompt, EntropySettings};
use reccocktail::merge::learnable::Learnable;
use reccocktail::model::load::{TextModel, load_text_model};
use reccocktail::model::peft::PeftAdapter;
use reccocktail::model::tiny::{TinySpec, write_tiny_chat_model};
use reccocktail::recipe::resolve::LoraConfig;
use reccocktail::recipe::types::{BackendChoice, EntropyObjective, Granularity, LoraTarget, Parameterization};
use reccocktail::train::lora_state::LoraState;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup(name: &str) -> (TextModel, Vec<PeftAdapter>, Vec<AdaptPrompt>) {
    let dir = std::env::temp_dir().join(format!("rc-entropy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_tiny_chat_model(&dir, TinySpec::default(), 5).unwrap();
    let device = select(BackendChoice::Auto, DeviceSpec::Cpu, Some(1)).unwrap().device.autodiff();
    let m = load_text_model(&dir, &device).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let adapters: Vec<PeftAdapter> = [(4, vec![LoraTarget::QProj, LoraTarget::VProj, LoraTarget::DownProj]), (2, vec![LoraTarget::QProj, LoraTarget::UpProj])]
        .into_iter()
        .enumerate()
        .map(|(i, (rank, targets))| {
            let cfg = LoraConfig { rank, alpha: 2.0 * rank as f64, dropout: 0.0, targets, rslora: false };
            let mut s = LoraState::init(&m.backbone.model, &cfg, 100 + i as u64);
            let mut rng = Rng::new(7 + i as u64);
            for f in &mut s.modules {
                f.b.iter_mut().for_each(|x| *x = (rng.unit() as f32 - 0.5) * 0.8);
            }
            s.to_peft(None)
        })
        .collect();
    let enc = |t: &str| m.tokenizer.encode(t, false).unwrap();
    let prompts = ["Liked: Heat || Alien. Pick one:", "Liked: Up. Pick one:", "Liked: Big || Jaws. Pick one:"]
        .iter()
        .map(|p| AdaptPrompt { prompt: enc(&format!("<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n")), candidates: vec![enc("Cars"), enc("Toy Story"), enc("Fargo"), enc("Heat 2")] })
        .collect();
    (m, adapters, prompts)
}

fn settings(objective: EntropyObjective, parameterization: Parameterization, granularity: Granularity) -> EntropySettings {
    let init = match parameterization {
        Parameterization::Softmax => vec![0.5, 0.5],
        Parameterization::Clamp => vec![0.3, 0.3],
    };
    EntropySettings { granularity, parameterization, temperature: 1.0, init, lr: 0.1, epochs: 6, objective, first_k_tokens: 3, mean_scores: false, separator: "||".into(), max_new_tokens: 8, answer_titles: None }
}

#[test]
fn coefficient_gradients_match_finite_differences() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut m, adapters, prompts) = setup("grad");
    let model = &mut m.backbone.model;
    let modules = entropy::covered_modules(model, &adapters);
    // One clamp coefficient per adapter for the whole model: dL/dθ_i = sum over modules of dL/dw_{m,i}.
    let l = Learnable::new(modules.clone(), 2, Granularity::Model, Parameterization::Clamp, 1.0, &[0.6, 0.9]);
    entropy::attach_weighted(model, &adapters, &l.weights(), true);
    let grads = entropy::candidate_entropy(model, &prompts[0], false).backward();
    let analytic = l.pull_back(&entropy::weight_grads_for_tests(model, &adapters, &modules, &grads));
    let loss_at = |model: &mut reccocktail::model::Llama, w: &BTreeMap<_, Vec<f64>>| -> f64 {
        entropy::attach_weighted(model, &adapters, w, false);
        entropy::candidate_entropy(model, &prompts[0], false).without_autodiff().into_scalar::<f32>() as f64
    };
    let h = 1e-2;
    for i in 0..2 {
        let shifted = |d: f64| -> BTreeMap<_, Vec<f64>> { l.weights().into_iter().map(|(k, mut v)| { v[i] += d; (k, v) }).collect() };
        let fd = (loss_at(model, &shifted(h)) - loss_at(model, &shifted(-h))) / (2.0 * h);
        assert!((fd - analytic[0][i]).abs() < 2e-2 * fd.abs().max(0.05), "adapter {i}: finite difference {fd} vs analytic {}", analytic[0][i]);
        assert!(fd.abs() > 1e-4, "the check needs a non-trivial gradient ({fd})");
    }
}

#[test]
fn candidate_entropy_falls_and_weights_stay_in_their_domain() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut m, adapters, prompts) = setup("falls");
    for (param, gran) in [(Parameterization::Softmax, Granularity::Layer), (Parameterization::Clamp, Granularity::Module)] {
        let s = settings(EntropyObjective::CandidateEntropy, param, gran);
        let out = entropy::adapt(&mut m.backbone.model, &m.tokenizer, &adapters, &prompts, &s, &mut |_| {});
        assert_eq!(out.history.len(), 18);
        assert!(out.objective_after < out.objective_before - 1e-3, "{param:?}: {} -> {}", out.objective_before, out.objective_after);
        for w in out.learnable.weights().values() {
            assert!(w.iter().all(|x| (0.0..=1.0).contains(x)), "{w:?}");
            if param == Parameterization::Softmax {
                assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            }
        }
    }
}

#[test]
fn token_entropy_runs_on_generated_titles() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut m, adapters, prompts) = setup("tokens");
    let mut s = settings(EntropyObjective::TokenEntropy, Parameterization::Softmax, Granularity::Model);
    s.epochs = 1;
    let out = entropy::adapt(&mut m.backbone.model, &m.tokenizer, &adapters, &prompts, &s, &mut |_| {});
    assert_eq!(out.history.len(), 3);
    assert!(out.history.iter().all(|r| r.objective.is_finite() && r.objective >= 0.0));
    assert!(out.objective_before.is_finite() && out.objective_after.is_finite());
    // Title positions on a crafted answer: the first 2 byte-tokens of each title.
    let ids = m.tokenizer.encode("Heat || Up ||  Cars", false).unwrap();
    let pos = entropy::title_token_positions(&m.tokenizer, &ids, "||", 2);
    let text: Vec<String> = pos.iter().map(|&p| m.tokenizer.decode(&ids[p..p + 1], false).unwrap()).collect();
    assert_eq!(text, vec!["H", "e", "U", "p", "C", "a"]);
}

#[test]
fn token_entropy_with_one_prompt_pass_equals_the_two_pass_way_in_value_and_gradient() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut m, adapters, prompts) = setup("onepass");
    let model = &mut m.backbone.model;
    let s = settings(EntropyObjective::TokenEntropy, Parameterization::Softmax, Granularity::Layer);
    let modules = entropy::covered_modules(model, &adapters);
    let l = Learnable::new(modules.clone(), 2, Granularity::Layer, Parameterization::Clamp, 1.0, &[0.6, 0.9]);
    for p in &prompts {
        // Two passes: greedy answer without a graph, then prompt + answer teacher-forced.
        entropy::attach_weighted(model, &adapters, &l.weights(), false);
        let answer = entropy::greedy_answer(model, &m.tokenizer, &p.prompt, &s);
        entropy::attach_weighted(model, &adapters, &l.weights(), true);
        let two = entropy::token_entropy(model, &m.tokenizer, &p.prompt, &answer, &s).expect("a title in the answer");
        let two_grads = entropy::weight_grads_for_tests(model, &adapters, &modules, &two.backward());
        // One pass over the prompt, the answer generated from its cache.
        entropy::attach_weighted(model, &adapters, &l.weights(), true);
        let (one, one_answer) = entropy::token_entropy_of_answer(model, &m.tokenizer, &p.prompt, &s);
        let one = one.expect("a title in the answer");
        assert_eq!(one_answer, answer, "the same greedy answer");
        let one_grads = entropy::weight_grads_for_tests(model, &adapters, &modules, &one.backward());
        let (a, b) = (one.without_autodiff().into_scalar::<f32>(), two.without_autodiff().into_scalar::<f32>());
        assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "objective {a} vs {b}");
        let scale = two_grads.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(scale > 1e-6, "the check needs a non-trivial gradient");
        for (x, y) in one_grads.iter().flatten().zip(two_grads.iter().flatten()) {
            assert!((x - y).abs() < 1e-4 * scale, "gradient {x} vs {y} (scale {scale})");
        }
    }
}

#[test]
fn batched_greedy_answers_and_entropies_match_one_prompt_at_a_time() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut m, adapters, prompts) = setup("batched");
    let s = settings(EntropyObjective::TokenEntropy, Parameterization::Softmax, Granularity::Layer);
    let model = &mut m.backbone.model;
    let modules = entropy::covered_modules(model, &adapters);
    let w: BTreeMap<_, _> = modules.iter().map(|m| (*m, vec![0.7, 0.3])).collect();
    entropy::attach_weighted(model, &adapters, &w, false);
    // Prompts of different lengths share one left-padded batch.
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.prompt.clone()).collect();
    assert!(ids.iter().map(Vec::len).collect::<std::collections::BTreeSet<_>>().len() > 1);
    let batched = reccocktail::model::generate::greedy_batch(model, &ids, s.max_new_tokens, m.tokenizer.eos_ids(), &mut |_| false);
    let answers = entropy::measured_answers(model, &m.tokenizer, &prompts, &s);
    let measured: Vec<Option<f64>> = answers.iter().map(|a| a.entropy).collect();
    assert_eq!(measured, entropy::measured_token_entropies(model, &m.tokenizer, &prompts, &s));
    assert!(measured.iter().any(Option::is_some), "no answer named a title: the check would be empty");
    for (i, p) in prompts.iter().enumerate() {
        let alone = entropy::greedy_answer(model, &m.tokenizer, &p.prompt, &s);
        assert_eq!(batched[i].tokens, alone, "prompt {i}");
        assert_eq!(answers[i].tokens, alone.len(), "prompt {i}");
        assert_eq!(answers[i].titles, entropy::title_spans(&m.tokenizer, &alone, &s.separator, 1).len(), "prompt {i}");
        assert_eq!(batched[i].entropies.len(), alone.len());
        // The measured objective is the differentiated one's value.
        let (value, answer) = entropy::token_entropy_of_answer(model, &m.tokenizer, &p.prompt, &s);
        assert_eq!(answer, alone);
        match (value, measured[i]) {
            (Some(v), Some(x)) => {
                let v = v.into_scalar::<f32>() as f64;
                assert!((v - x).abs() < 1e-4, "prompt {i}: {v} vs {x}");
            }
            (None, None) => {}
            (v, x) => panic!("prompt {i}: {:?} vs {x:?}", v.map(|t| t.into_scalar::<f32>())),
        }
    }
}

#[test]
fn answer_titles_limits_the_objective_and_stops_generation_there() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut m, adapters, prompts) = setup("titles");
    let tok = &m.tokenizer;
    let enc = |t: &str| tok.encode(t, false).unwrap();
    let mut s = settings(EntropyObjective::TokenEntropy, Parameterization::Softmax, Granularity::Model);
    s.first_k_tokens = 2;
    s.answer_titles = Some(2);
    let ids = enc("Heat || Up ||  Cars");
    let text: Vec<String> = s.title_positions(tok, &ids).iter().map(|&p| tok.decode(&ids[p..p + 1], false).unwrap()).collect();
    assert_eq!(text, vec!["H", "e", "U", "p"]);
    // Complete once the second title has its first 2 tokens, not before.
    assert!(!s.answer_complete(tok, &enc("Heat || U")));
    assert!(s.answer_complete(tok, &enc("Heat || Up")));
    // A title shorter than k is complete when the next one begins.
    s.first_k_tokens = 8;
    assert!(!s.answer_complete(tok, &enc("Heat || Up")));
    assert!(s.answer_complete(tok, &enc("Heat || Up || C")));
    s.answer_titles = None;
    assert!(!s.answer_complete(tok, &enc("Heat || Up || Cars || Fargo")));

    // On the model: the limited answer stops early, as a prefix of the full one, and both ways of
    // computing its objective agree.
    s.first_k_tokens = 2;
    let model = &mut m.backbone.model;
    let modules = entropy::covered_modules(model, &adapters);
    let w: BTreeMap<_, _> = modules.iter().map(|m| (*m, vec![0.5, 0.5])).collect();
    entropy::attach_weighted(model, &adapters, &w, false);
    let full = entropy::greedy_answer(model, &m.tokenizer, &prompts[0].prompt, &s);
    s.answer_titles = Some(1);
    let limited = entropy::greedy_answer(model, &m.tokenizer, &prompts[0].prompt, &s);
    assert!(limited.len() < full.len(), "{limited:?} vs {full:?}");
    assert_eq!(limited[..], full[..limited.len()]);
    let (value, answer) = entropy::token_entropy_of_answer(model, &m.tokenizer, &prompts[0].prompt, &s);
    assert_eq!(answer, limited);
    let measured = entropy::measured_token_entropies(model, &m.tokenizer, &prompts[..1], &s)[0].expect("a title");
    assert!((value.expect("a title").into_scalar::<f32>() as f64 - measured).abs() < 1e-4);
}
