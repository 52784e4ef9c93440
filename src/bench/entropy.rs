//! `reccocktail bench entropy`: seconds per unlabeled prompt of one entropy-adaptation step
//! (objective, backward, coefficient gradients) on a real model with two seeded random LoRA
//! adapters, for `candidate_entropy` and three ways to the same `token_entropy` gradient: this
//! tool's (the prompt encoded once with gradients, the answer generated from its cache without a
//! graph, then only the answer's tokens fed), two passes (generate without gradients, then
//! prompt + answer teacher-forced), and generating with gradients tracked through every decoding
//! step. A measurement, never a test.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;
use serde::Serialize;

use super::merge::synthetic;
use crate::merge::entropy::{AdaptPrompt, EntropySettings, attach_weighted, candidate_entropy, covered_modules, greedy_answer, measured_token_entropies, token_entropy, token_entropy_of_answer, weight_grads};
use crate::prompt::Prompter;
use crate::model::CausalLm;
use crate::model::{ForwardInput, KvCache};
use crate::model::lora::Proj;
use crate::model::peft::PeftAdapter;
use crate::model::tokenizer::TextTokenizer;

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// Mean seconds per prompt of one step (objective, backward, coefficient gradients).
    pub seconds_per_prompt: f64,
    /// Mean objective over the prompts.
    pub objective: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntropyBench {
    pub prompts: usize,
    pub candidates: usize,
    pub mean_prompt_tokens: f64,
    pub mean_generated_tokens: f64,
    pub adapter_rank: usize,
    pub candidate_entropy: Timing,
    /// The prompt encoded once with gradients, the answer generated from its cache without a
    /// graph, then only the answer's tokens fed with gradients (this tool).
    pub token_entropy: Timing,
    /// Generate without gradients, then prompt + answer in one teacher-forced pass.
    pub token_entropy_two_passes: Timing,
    /// Greedy generation with gradients tracked through every step (the naive way).
    pub token_entropy_generating_with_gradients: Timing,
    /// Seconds per prompt generating with gradients over this tool's.
    pub speedup: f64,
    /// Seconds per prompt of the two-pass way over this tool's.
    pub speedup_over_two_passes: f64,
    /// Measuring the token entropy without a graph (an entropy merge's objective before and
    /// after), prompt by prompt: the prompt encoded, the answer generated, its titles' tokens fed.
    pub measure_one_by_one: Timing,
    /// The same prompts measured in batches, the entropies taken while decoding (this tool).
    pub measure_batched: Timing,
    /// Prompts in the measuring comparison.
    pub measure_prompts: usize,
}

/// What `bench entropy` runs besides its prompts.
#[derive(Debug, Clone)]
pub struct EntropyBenchSpec {
    pub max_new_tokens: usize,
    /// The merge parameter `answer_titles` (`None`: every title within the answer).
    pub answer_titles: Option<usize>,
    /// Rank of each random adapter.
    pub rank: usize,
    /// Prompts (after the warm-up) of the measuring comparison.
    pub measure: usize,
}

impl EntropyBench {
    pub fn line(&self) -> String {
        format!(
            "token_entropy step {:.2} s/prompt | generating with gradients {:.2} s/prompt (ratio {:.2}x) | two passes {:.2} s/prompt (ratio {:.2}x) | candidate_entropy step {:.2} s/prompt ({} prompts, {:.0} prompt tokens, {:.0} generated tokens, {} candidates) | measuring {} prompts: one by one {:.2} s/prompt (objective {:.5}), batched {:.2} s/prompt (objective {:.5}, ratio {:.2}x)",
            self.token_entropy.seconds_per_prompt,
            self.token_entropy_generating_with_gradients.seconds_per_prompt,
            self.speedup,
            self.token_entropy_two_passes.seconds_per_prompt,
            self.speedup_over_two_passes,
            self.candidate_entropy.seconds_per_prompt,
            self.prompts,
            self.mean_prompt_tokens,
            self.mean_generated_tokens,
            self.candidates,
            self.measure_prompts,
            self.measure_one_by_one.seconds_per_prompt,
            self.measure_one_by_one.objective,
            self.measure_batched.seconds_per_prompt,
            self.measure_batched.objective,
            self.measure_one_by_one.seconds_per_prompt / self.measure_batched.seconds_per_prompt.max(1e-12)
        )
    }
}

/// Two seeded random adapters of rank `r` shaped for `model`'s projections.
pub fn adapters_for(model: &dyn CausalLm, r: usize) -> Vec<PeftAdapter> {
    let shapes: BTreeMap<(usize, Proj), (usize, usize)> = model.projections().into_iter().map(|(l, p, lin)| ((l, p), (lin.d_out(), lin.d_in()))).collect();
    let shape = |l: usize, p: Proj| shapes[&(l, p)];
    (1..=2).map(|seed| synthetic(model.num_layers(), shape, r, seed)).collect()
}

/// Mean next-token entropy at the title tokens of the model's own greedy answer, generating
/// with gradients tracked through every step; also returns the answer's length.
pub fn token_entropy_while_generating(model: &dyn CausalLm, tok: &TextTokenizer, prompt: &[u32], s: &EntropySettings) -> (Option<Tensor<1>>, usize) {
    let device = model.device();
    let n = prompt.len();
    let mut cache = KvCache::default();
    let hidden = model.hidden(&ForwardInput::sequence(prompt, 0, &device), Some(&mut cache));
    let v = model.vocab_size();
    let mut logits = model.logits(hidden.narrow(1, n - 1, 1)).reshape([v]);
    let (mut entropies, mut out) = (Vec::new(), Vec::new());
    for _ in 0..s.max_new_tokens {
        let logp = log_softmax(logits, 0);
        let next = logp.clone().argmax(0).into_scalar::<i64>() as u32;
        entropies.push((logp.clone().exp() * logp).sum().neg());
        if tok.eos_ids().contains(&next) {
            break;
        }
        out.push(next);
        if s.answer_complete(tok, &out) {
            break;
        }
        logits = model.forward(&ForwardInput::sequence(&[next], n + out.len() - 1, &device), Some(&mut cache)).reshape([v]);
    }
    let positions = s.title_positions(tok, &out);
    if positions.is_empty() {
        return (None, out.len());
    }
    let k = positions.len();
    let picked: Vec<Tensor<1>> = positions.iter().map(|&j| entropies[j].clone()).collect();
    (Some(Tensor::cat(picked, 0).sum().div_scalar(k as f64)), out.len())
}

/// One timed step per prompt for each way (after one untimed warm-up prompt each), then the
/// objective measured without a graph on `measure` (after the same warm-up), one by one and
/// batched. `model` must live on an autodiff device.
pub fn run(model: &mut dyn CausalLm, tok: &TextTokenizer, prompts: &[AdaptPrompt], measure: &[AdaptPrompt], s: &EntropySettings, rank: usize) -> EntropyBench {
    let adapters = adapters_for(model, rank);
    let modules = covered_modules(model, &adapters);
    let w: BTreeMap<(usize, Proj), Vec<f64>> = modules.iter().map(|m| (*m, vec![0.5, 0.5])).collect();
    let mut generated = 0usize;
    let mut time = |model: &mut dyn CausalLm, way: u8| -> Timing {
        let (mut secs, mut sum, mut counted) = (0.0, 0.0, 0usize);
        for (i, p) in prompts.iter().enumerate() {
            let start = Instant::now();
            let loss = match way {
                0 => {
                    attach_weighted(model, &adapters, &w, true);
                    Some(candidate_entropy(model, p, false))
                }
                1 => {
                    attach_weighted(model, &adapters, &w, true);
                    token_entropy_of_answer(model, tok, &p.prompt, s).0
                }
                2 => {
                    attach_weighted(model, &adapters, &w, false);
                    let answer = greedy_answer(model, tok, &p.prompt, s);
                    attach_weighted(model, &adapters, &w, true);
                    token_entropy(model, tok, &p.prompt, &answer, s)
                }
                _ => {
                    attach_weighted(model, &adapters, &w, true);
                    let (loss, len) = token_entropy_while_generating(model, tok, &p.prompt, s);
                    if i > 0 {
                        generated += len;
                    }
                    loss
                }
            };
            let Some(loss) = loss else { continue };
            let grads = loss.backward();
            let _ = weight_grads(model, &adapters, &modules, &grads);
            let elapsed = start.elapsed().as_secs_f64();
            // The first prompt warms up (allocations, kernels) and is not counted.
            if i > 0 {
                secs += elapsed;
                sum += loss.without_autodiff().into_scalar::<f32>() as f64;
                counted += 1;
            }
        }
        let n = counted.max(1) as f64;
        Timing { seconds_per_prompt: secs / n, objective: sum / n }
    };
    let candidate = time(model, 0);
    let ours = time(model, 1);
    let two = time(model, 2);
    let naive = time(model, 3);
    let timed = prompts.len().saturating_sub(1).max(1) as f64;
    attach_weighted(model, &adapters, &w, false);
    let measured = &measure[1.min(measure.len())..];
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let per_prompt = |start: Instant| start.elapsed().as_secs_f64() / measured.len().max(1) as f64;
    let start = Instant::now();
    let one: Vec<f64> = measured.iter().filter_map(|p| token_entropy_of_answer(model, tok, &p.prompt, s).0).map(|t| t.without_autodiff().into_scalar::<f32>() as f64).collect();
    let measure_one_by_one = Timing { seconds_per_prompt: per_prompt(start), objective: mean(&one) };
    let start = Instant::now();
    let batched: Vec<f64> = measured_token_entropies(model, tok, measured, s).into_iter().flatten().collect();
    let measure_batched = Timing { seconds_per_prompt: per_prompt(start), objective: mean(&batched) };
    EntropyBench {
        prompts: prompts.len().saturating_sub(1),
        candidates: prompts.first().map_or(0, |p| p.candidates.len()),
        mean_prompt_tokens: prompts.iter().skip(1).map(|p| p.prompt.len()).sum::<usize>() as f64 / timed,
        mean_generated_tokens: generated as f64 / timed,
        adapter_rank: rank,
        speedup: naive.seconds_per_prompt / ours.seconds_per_prompt.max(1e-12),
        speedup_over_two_passes: two.seconds_per_prompt / ours.seconds_per_prompt.max(1e-12),
        candidate_entropy: candidate,
        token_entropy: ours,
        token_entropy_two_passes: two,
        token_entropy_generating_with_gradients: naive,
        measure_one_by_one,
        measure_batched,
        measure_prompts: measured.len(),
    }
}

/// Adaptation prompts from rendered test users: prompt ids and candidate title ids.
pub fn prompts_of(users: &[crate::eval::TestUser], prompter: &Prompter, tok: &TextTokenizer) -> Result<Vec<AdaptPrompt>, crate::exec::context::StageError> {
    users
        .iter()
        .map(|u| Ok(AdaptPrompt { prompt: prompter.prompt_ids(tok, &u.instruction)?, candidates: u.titles.iter().map(|t| prompter.title_ids(tok, t)).collect::<Result<_, _>>()? }))
        .collect()
}

/// The whole benchmark from files: titles (`movies.csv`), a prompt template and a model (HF
/// directory or `.gguf`), loaded on the autodiff version of `device`. `spec.users` prompts, the
/// first a warm-up; the measuring comparison takes the warm-up and `bench.measure` prompts.
pub fn from_files(model: &std::path::Path, titles: &std::path::Path, template: &std::path::Path, spec: &super::eval::PromptSpec, bench: &EntropyBenchSpec, device: &burn::tensor::Device, precision: crate::model::precision::Precision) -> Result<EntropyBench, crate::Error> {
    use crate::Error;
    use crate::recipe::types::{EntropyObjective, Granularity, Parameterization};
    let usage = |e: &dyn std::fmt::Display| Error::Usage(e.to_string());
    let titles = super::eval::read_titles(titles).map_err(|e| usage(&e))?;
    let template = crate::prompt::PromptTemplate::load(template).map_err(|e| usage(&e))?;
    let drawn = super::eval::PromptSpec { users: spec.users.max(bench.measure + 1), ..spec.clone() };
    let users = super::eval::synthetic_users(&titles, &template, &drawn).map_err(|e| usage(&e))?;
    let mut m = crate::model::load::load_text_model_as(model, &device.clone().autodiff(), precision).map_err(Error::Model)?;
    let prompter = Prompter::with_defaults(m.chat.take());
    let prompts = prompts_of(&users, &prompter, &m.tokenizer).map_err(|e| usage(&e))?;
    let s = EntropySettings {
        granularity: Granularity::Layer,
        parameterization: Parameterization::Softmax,
        temperature: 1.0,
        init: vec![0.5, 0.5],
        lr: 0.05,
        epochs: 1,
        objective: EntropyObjective::TokenEntropy,
        first_k_tokens: 3,
        mean_scores: false,
        separator: spec.separator.clone(),
        max_new_tokens: bench.max_new_tokens,
        answer_titles: bench.answer_titles,
    };
    let steps = &prompts[..spec.users.min(prompts.len())];
    let measure = &prompts[..(bench.measure + 1).min(prompts.len())];
    Ok(run(&mut m.backbone.model, &m.tokenizer, steps, measure, &s, bench.rank))
}
