//! `reccocktail bench eval`: users ranked per second with `likelihood` (score every candidate)
//! versus `generate` (greedy top-K list) on the same prompts and model. A benchmark, never a
//! timed assertion in tests.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::eval::TestUser;
use crate::eval::params::EvalSettings;
use crate::eval::stage::evaluate_users;
use crate::rng::Rng;
use crate::exec::context::StageError;
use crate::prompt::Prompter;
use crate::model::load::{TextModel, load_text_model_as};
use crate::prompt::{PromptContext, PromptTemplate};
use crate::recipe::resolve::ResolvedProtocol;
use crate::recipe::types::{Metric, Scoring};

/// How the benchmark's synthetic users are built.
#[derive(Debug, Clone)]
pub struct PromptSpec {
    pub users: usize,
    pub candidates: usize,
    pub history: usize,
    /// Items the generated list names (the prompt's K).
    pub k: u32,
    pub separator: String,
    pub seed: u64,
}

/// Test users drawn from `titles`: each a random history and a shuffled candidate list holding
/// the target (the item after the history), rendered with `template`.
pub fn synthetic_users(titles: &[String], template: &PromptTemplate, spec: &PromptSpec) -> Result<Vec<TestUser>, StageError> {
    let need = spec.history + spec.candidates;
    if titles.len() < need {
        return Err(StageError::Failed(format!("{} titles, fewer than the {need} one user needs", titles.len())));
    }
    let mut out = Vec::new();
    for u in 0..spec.users {
        let mut rng = Rng::derive(spec.seed, &["bench-user", &u.to_string()]);
        let picked = rng.sample_indices(titles.len(), need);
        let history: Vec<String> = picked[..spec.history].iter().map(|&i| titles[i].clone()).collect();
        let mut slots: Vec<usize> = picked[spec.history..].to_vec();
        let target = slots[0];
        rng.shuffle(&mut slots);
        let candidates: Vec<String> = slots.iter().map(|&i| titles[i].clone()).collect();
        let ctx = PromptContext { history, candidates: candidates.clone(), target: titles[target].clone(), k: spec.k, domain: "movies".into(), separator: spec.separator.clone() };
        let r = template.render(&ctx).map_err(|e| StageError::Failed(e.to_string()))?;
        let prior = template.render(&PromptContext { history: Vec::new(), ..ctx }).map_err(|e| StageError::Failed(e.to_string()))?;
        out.push(TestUser {
            user: format!("u{u}"),
            target: target.to_string(),
            target_title: titles[target].clone(),
            instruction: r.instruction,
            instruction_prior: Some(prior.instruction),
            items: slots.iter().map(|i| i.to_string()).collect(),
            target_slot: slots.iter().position(|&i| i == target).unwrap_or(0),
            titles: candidates,
        });
    }
    Ok(out)
}

/// Item titles from a MovieLens `movies.csv` (column `title`).
pub fn read_titles(path: &Path) -> Result<Vec<String>, StageError> {
    let fail = |e: &dyn std::fmt::Display| StageError::Failed(format!("{}: {e}", path.display()));
    let mut r = csv::Reader::from_path(path).map_err(|e| fail(&e))?;
    let col = r.headers().map_err(|e| fail(&e))?.iter().position(|h| h == "title").ok_or_else(|| fail(&"no `title` column"))?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| fail(&e))?;
        if let Some(t) = rec.get(col).filter(|t| !t.trim().is_empty()) {
            out.push(t.trim().to_string());
        }
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct ProtocolTiming {
    pub seconds: f64,
    pub users_per_s: f64,
    pub hr_at_1: f64,
}

#[derive(Debug, Serialize)]
pub struct EvalBench {
    pub users: usize,
    pub candidates: usize,
    pub mean_prompt_tokens: f64,
    pub max_new_tokens: usize,
    pub mean_generated_items: f64,
    /// New tokens per generated list (EOS excluded).
    pub mean_new_tokens: f64,
    pub likelihood: ProtocolTiming,
    pub generate: ProtocolTiming,
    /// likelihood users/s over generate users/s.
    pub ratio: f64,
    /// Seconds per user of the prompt pass alone (into a KV cache, with the last position's
    /// log-probabilities, as `generate` starts), timed on the same users: the least any protocol
    /// can cost.
    pub prompt_s_per_user: f64,
    /// What `likelihood` costs beyond the prompt pass, relative to it: (likelihood − prompt) /
    /// prompt. `likelihood` runs the prompt and the candidates in one pass.
    pub candidate_share: f64,
}

/// The whole benchmark from files: titles (`movies.csv`), a prompt template and a model (HF
/// directory or `.gguf`, with its chat template and the default system prompt).
/// `dump`: also write the token ids the benchmark feeds (see [`dump_inputs`]) for a peer to time
/// the same work.
#[allow(clippy::too_many_arguments)]
pub fn from_files(model: &Path, titles: &Path, template: &Path, spec: &PromptSpec, max_new_tokens: usize, device: &burn::tensor::Device, precision: crate::model::precision::Precision, dump: Option<&Path>) -> Result<EvalBench, crate::Error> {
    use crate::Error;
    let titles = read_titles(titles).map_err(|e| Error::Usage(e.to_string()))?;
    let template = PromptTemplate::load(template).map_err(|e| Error::Usage(e.to_string()))?;
    let users = synthetic_users(&titles, &template, spec).map_err(|e| Error::Usage(e.to_string()))?;
    let mut m = load_text_model_as(model, device, precision).map_err(Error::Model)?;
    let prompter = Prompter::with_defaults(m.chat.take());
    if let Some(path) = dump {
        dump_inputs(&m, &prompter, &users, max_new_tokens, path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    }
    run(&m, &prompter, &users, max_new_tokens, &spec.separator, spec.seed).map_err(|e| Error::Model(crate::model::ModelError::Other(format!("benchmark: {e}"))))
}

/// The benchmark's inputs as JSON, token ids only: `{"max_new_tokens", "eos": [ids], "users":
/// [{"prompt": [ids], "titles": [[ids]...], "target_slot"}]}`. `scripts/bench/peer_eval.py`
/// times PyTorch + transformers on exactly these.
pub fn dump_inputs(m: &TextModel, prompter: &Prompter, users: &[TestUser], max_new_tokens: usize, path: &Path) -> Result<(), StageError> {
    let mut rows = Vec::with_capacity(users.len());
    for u in users {
        let titles = u.titles.iter().map(|t| prompter.title_ids(&m.tokenizer, t)).collect::<Result<Vec<_>, _>>()?;
        rows.push(serde_json::json!({ "prompt": prompter.prompt_ids(&m.tokenizer, &u.instruction)?, "titles": titles, "target_slot": u.target_slot }));
    }
    let doc = serde_json::json!({ "max_new_tokens": max_new_tokens, "eos": m.tokenizer.eos_ids(), "users": rows });
    std::fs::write(path, serde_json::to_vec(&doc).map_err(|e| StageError::Failed(e.to_string()))?).map_err(|e| StageError::Failed(e.to_string()))
}

impl EvalBench {
    /// The side-by-side line.
    pub fn line(&self) -> String {
        format!(
            "likelihood {:.3} users/s | generate {:.3} users/s ({:.1} new tokens of {} max, {:.1} items) | ratio {:.2}x ({} users, {} candidates, {:.0} prompt tokens) | prompt pass {:.3} s/user, candidates add {:.0}%",
            self.likelihood.users_per_s,
            self.generate.users_per_s,
            self.mean_new_tokens,
            self.max_new_tokens,
            self.mean_generated_items,
            self.ratio,
            self.users,
            self.candidates,
            self.mean_prompt_tokens,
            self.prompt_s_per_user,
            100.0 * self.candidate_share
        )
    }
}

/// The prompt pass of each prompt as `generate` runs it: encode into a fresh KV cache, then the
/// log-probabilities at the last position, read back to the host (which also waits for an
/// asynchronous device).
fn prompt_pass(model: &dyn crate::model::CausalLm, prompts: &[Vec<u32>]) {
    for p in prompts {
        let (_cache, logits) = crate::model::generate::prefill(model, p);
        std::hint::black_box(burn::tensor::activation::log_softmax(logits, 2).into_data());
    }
}

/// Time both protocols on `users` (one untimed warm-up user each first).
pub fn run(m: &TextModel, prompter: &Prompter, users: &[TestUser], max_new_tokens: usize, separator: &str, seed: u64) -> Result<EvalBench, StageError> {
    let params = |protocol| EvalSettings { protocol, ks: vec![1], metrics: vec![Metric::Hr], seed, separator: separator.to_string() };
    let model = &m.backbone.model;
    let timing = |protocol| -> Result<(ProtocolTiming, f64, f64), StageError> {
        let p = params(protocol);
        evaluate_users(model, &m.tokenizer, prompter, &users[..1.min(users.len())], &p, &mut |_| {})?;
        let start = Instant::now();
        let r = evaluate_users(model, &m.tokenizer, prompter, users, &p, &mut |_| {})?;
        let seconds = start.elapsed().as_secs_f64();
        let hits = r.iter().filter(|r| r.rank == Some(1)).count() as f64;
        let items = r.iter().map(|r| r.generated_items).sum::<usize>() as f64;
        let tokens = r.iter().map(|r| r.generated_tokens).sum::<usize>() as f64;
        let n = users.len().max(1) as f64;
        Ok((ProtocolTiming { seconds, users_per_s: users.len() as f64 / seconds.max(1e-9), hr_at_1: hits / n }, items / n, tokens / n))
    };
    let (likelihood, _, _) = timing(ResolvedProtocol::Likelihood { scoring: Scoring::Sum })?;
    let (generate, items, new_tokens) = timing(ResolvedProtocol::Generate { max_new_tokens: max_new_tokens as u32, fuzzy_match: false })?;
    let mut prompts = Vec::with_capacity(users.len());
    for u in users {
        prompts.push(prompter.prompt_ids(&m.tokenizer, &u.instruction)?);
    }
    let tokens: usize = prompts.iter().map(Vec::len).sum();
    prompt_pass(model, &prompts[..1.min(prompts.len())]);
    let start = Instant::now();
    prompt_pass(model, &prompts);
    let prompt_s_per_user = start.elapsed().as_secs_f64() / users.len().max(1) as f64;
    let likelihood_s_per_user = likelihood.seconds / users.len().max(1) as f64;
    Ok(EvalBench {
        prompt_s_per_user,
        candidate_share: (likelihood_s_per_user - prompt_s_per_user) / prompt_s_per_user.max(1e-12),
        users: users.len(),
        candidates: users.first().map_or(0, |u| u.items.len()),
        mean_prompt_tokens: tokens as f64 / users.len().max(1) as f64,
        max_new_tokens,
        mean_generated_items: items,
        mean_new_tokens: new_tokens,
        ratio: likelihood.users_per_s / generate.users_per_s.max(1e-12),
        likelihood,
        generate,
    })
}
