//! Entropy-guided adaptive merging: merge coefficients learned without labels by minimizing the
//! prediction entropy of the merged model on unlabeled target-domain prompts.
//!
//! Each adapter i is attached on every module m with its factor A scaled by the current weight
//! w_{m,i}, as a leaf that takes gradients (B and the base stay frozen). After backward,
//! dL/dw_{m,i} = <dL/dA'_{m,i}, A_{m,i}> (A' = w A); [`Learnable`] pulls that back to its raw
//! parameters and takes an Adam step. Objectives:
//! - `candidate_entropy`: entropy of the softmax over the candidates' likelihood scores (the
//!   prompt's cache is computed once and shared by the candidates, as in evaluation);
//! - `token_entropy`: mean next-token entropy over the first k tokens of each item title in the
//!   model's own greedy answer. The prompt is encoded once, with gradients; the answer is
//!   generated greedily without a graph from that cache, then only its tokens are fed with
//!   gradients ([`token_entropy_of_answer`]).

use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Gradients, Int, Tensor, TensorData};

use super::learnable::Learnable;
use super::{Combination, Flags, MergeError, MergeMethod, Method, Param as MethodParam};
use crate::recipe::merge::MergeSpec;
use crate::recipe::merge::MergeConfig;
use crate::model::generate::{GenerationConfig, Padding, continuation_logprob_tensor, continue_generation, generate, greedy_batch, pad_batch};
use crate::model::{ForwardInput, KvCache};
use crate::model::lora::{LoraFactors, Proj, transpose};
use crate::model::peft::PeftAdapter;
use crate::model::tokenizer::TextTokenizer;
use crate::model::CausalLm;
use crate::recipe::types::{EntropyObjective, Granularity, Parameterization};

/// Entropy-guided adaptive merging (its learning loop lives in [`entropy`]).
pub const METHOD: Method = Method {
    name: "entropy",
    description: "coefficients learned without labels by minimizing the merged model's prediction entropy on unlabeled prompts (recipes only)",
    params: &[
        MethodParam { name: "granularity", ty: "\"model\" | \"layer\" | \"module\"", default: "module", help: "one coefficient per adapter, per layer and adapter, or per module and adapter", example: "\"layer\"" },
        MethodParam { name: "parameterization", ty: "\"softmax\" | \"clamp\"", default: "softmax", help: "softmax over logits (w >= 0, sums to 1) or free values clamped to [0, 1]", example: "\"clamp\"" },
        MethodParam { name: "temperature", ty: "float", default: "1", help: "softmax temperature", example: "0.5" },
        MethodParam { name: "init", ty: "[float]", default: "equal (softmax) or 0.3 (clamp)", help: "initial coefficients, one per adapter", example: "[0.5, 0.5]" },
        MethodParam { name: "lr", ty: "float", default: "0.05", help: "Adam learning rate on the coefficients", example: "0.1" },
        MethodParam { name: "lr_grid", ty: "[float]", default: "[lr]", help: "learning rates chosen among on validation labels (never test)", example: "[0.01, 0.1]" },
        MethodParam { name: "epochs", ty: "int", default: "1", help: "passes over the adaptation set", example: "2" },
        MethodParam { name: "objective", ty: "\"token_entropy\" | \"candidate_entropy\"", default: "token_entropy", help: "next-token entropy over the first k tokens of each generated title, or entropy over candidate scores", example: "\"candidate_entropy\"" },
        MethodParam { name: "first_k_tokens", ty: "int", default: "3", help: "tokens of each generated title entering the token entropy", example: "4" },
        MethodParam { name: "answer_tokens", ty: "int", default: "evaluation.max_new_tokens under `generate`, else 48", help: "tokens generated for each `token_entropy` answer", example: "32" },
        MethodParam { name: "answer_titles", ty: "int", default: "every title within answer_tokens", help: "titles of each `token_entropy` answer entering the objective; generation stops once the last has its first k tokens", example: "3" },
        MethodParam { name: "adaptation", ty: "{ source, size, disjoint_from_test }", default: "{ source = \"setting\", size = 50, disjoint_from_test = true }", help: "the unlabeled prompts the coefficients are learned on", example: "{ source = \"domain\", size = 20 }" },
    ],
    standalone: false,
};

pub struct Entropy;

impl MergeMethod for Entropy {
    fn declaration(&self) -> &'static Method {
        &METHOD
    }

    /// Recipes only: the coefficients are learned with the model on a target domain's prompts.
    fn from_flags(&self, _: &Flags) -> Option<MergeSpec> {
        None
    }

    fn combine(&self, _: &MergeConfig, names: &[String], _: &[PeftAdapter]) -> Result<Combination, MergeError> {
        Err(MergeError::Invalid(format!(
            "entropy merging learns its coefficients from unlabeled prompts with the model: it runs only inside a recipe (`reccocktail run`); {} adapters given",
            names.len()
        )))
    }
}

/// One unlabeled adaptation prompt: its token ids and its candidates' title ids.
#[derive(Debug, Clone)]
pub struct AdaptPrompt {
    pub prompt: Vec<u32>,
    pub candidates: Vec<Vec<u32>>,
}

#[derive(Debug, Clone)]
pub struct EntropySettings {
    pub granularity: Granularity,
    pub parameterization: Parameterization,
    pub temperature: f64,
    pub init: Vec<f64>,
    pub lr: f64,
    pub epochs: u32,
    pub objective: EntropyObjective,
    pub first_k_tokens: usize,
    /// Candidate scores as mean (not summed) token log-probabilities.
    pub mean_scores: bool,
    /// For `token_entropy`: the answer's separator between titles, and generation length.
    pub separator: String,
    pub max_new_tokens: usize,
    /// For `token_entropy`: the first N titles of an answer enter the objective (generation
    /// stops there); `None`: every title within `max_new_tokens`.
    pub answer_titles: Option<usize>,
}

/// The objective after each adaptation step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub epoch: u32,
    pub step: u64,
    pub objective: f64,
}

#[derive(Debug, Clone)]
pub struct Adapted {
    pub learnable: Learnable,
    pub history: Vec<StepRow>,
    /// Mean objective of the initial weights and of the learned ones, over all prompts.
    pub objective_before: f64,
    pub objective_after: f64,
}

/// Every module any adapter covers, in model order.
pub fn covered_modules(model: &dyn CausalLm, adapters: &[PeftAdapter]) -> Vec<(usize, Proj)> {
    model.projections().into_iter().map(|(l, p, _)| (l, p)).filter(|m| adapters.iter().any(|a| a.modules.contains_key(m))).collect()
}

/// Attach every adapter to `model` with A scaled by its weight; with `trainable`, the scaled A's
/// take gradients (on an autodiff device); otherwise nothing is tracked and no graph is recorded.
pub fn attach_weighted(model: &mut dyn CausalLm, adapters: &[PeftAdapter], weights: &BTreeMap<(usize, Proj), Vec<f64>>, trainable: bool) {
    let device = model.device();
    for (layer, proj, lin) in model.projections_mut() {
        lin.adapters.clear();
        let Some(w) = weights.get(&(layer, proj)) else { continue };
        for (i, ad) in adapters.iter().enumerate() {
            let Some(pair) = ad.modules.get(&(layer, proj)) else { continue };
            let (r, d_in, d_out) = (pair.a.shape[0], pair.a.shape[1], pair.b.shape[0]);
            let a: Vec<f32> = transpose(r, d_in, &pair.a.data).into_iter().map(|x| x * w[i] as f32).collect();
            let a = Param::from_tensor(Tensor::<2>::from_data(TensorData::new(a, [d_in, r]), &device)).set_require_grad(trainable);
            let b = Param::from_tensor(Tensor::<2>::from_data(TensorData::new(transpose(d_out, r, &pair.b.data), [r, d_out]), &device)).set_require_grad(false);
            lin.adapters.push(LoraFactors::new(a, b, ad.config.scale(layer, proj), 0.0));
        }
    }
}

/// dL/dw_{m,i} for the modules of `modules` (after backward on a model attached by
/// [`attach_weighted`]).
pub(crate) fn weight_grads(model: &dyn CausalLm, adapters: &[PeftAdapter], modules: &[(usize, Proj)], grads: &Gradients) -> Vec<Vec<f64>> {
    let by_module: BTreeMap<(usize, Proj), &crate::model::lora::LoraLinear> = model.projections().into_iter().map(|(l, p, lin)| ((l, p), lin)).collect();
    modules
        .iter()
        .map(|m| {
            let lin = by_module[m];
            let mut k = 0;
            adapters
                .iter()
                .map(|ad| {
                    let Some(pair) = ad.modules.get(m) else { return 0.0 };
                    let f = &lin.adapters[k];
                    k += 1;
                    let Some(g) = f.a.val().grad(grads) else { return 0.0 };
                    let g = crate::backend::host_f32(g);
                    let (r, d_in) = (pair.a.shape[0], pair.a.shape[1]);
                    // g is [in, r] row-major; A (PEFT) is [r, in].
                    (0..d_in).flat_map(|i| (0..r).map(move |j| (i, j))).map(|(i, j)| g[i * r + j] as f64 * pair.a.data[j * d_in + i] as f64).sum()
                })
                .collect()
        })
        .collect()
}

/// [`weight_grads`], exposed for gradient checks.
#[doc(hidden)]
pub fn weight_grads_for_tests(model: &dyn CausalLm, adapters: &[PeftAdapter], modules: &[(usize, Proj)], grads: &Gradients) -> Vec<Vec<f64>> {
    weight_grads(model, adapters, modules, grads)
}

/// Entropy of the softmax over candidate scores (a scalar tensor).
pub fn candidate_entropy(model: &dyn CausalLm, p: &AdaptPrompt, mean_scores: bool) -> Tensor<1> {
    let c = p.candidates.len();
    let lp = continuation_logprob_tensor(model, &p.prompt, &p.candidates);
    let mut scores = lp.sum_dim(1).reshape([c]);
    if mean_scores {
        let lens: Vec<f32> = p.candidates.iter().map(|t| t.len().max(1) as f32).collect();
        scores = scores / Tensor::<1>::from_data(TensorData::new(lens, [c]), &model.device());
    }
    let logq = log_softmax(scores, 0);
    (logq.clone().exp() * logq).sum().neg()
}

/// Token positions (indices into `generated`) of the first `k` tokens of each title in the
/// decoded answer, titles separated by `separator`. A token belongs to a title when its text
/// overlaps the title's: byte-level BPE tokenizers put the leading space inside the word (` Heat`),
/// so such a token starts one byte before the title it begins.
pub fn title_token_positions(tok: &TextTokenizer, generated: &[u32], separator: &str, k: usize) -> Vec<usize> {
    distinct_positions(title_spans(tok, generated, separator, k))
}

/// The positions of every span, ascending, each once.
fn distinct_positions(spans: Vec<Vec<usize>>) -> Vec<usize> {
    let mut out = spans.concat();
    out.sort_unstable();
    out.dedup();
    out
}

/// [`title_token_positions`] title by title, in answer order (a token spanning two titles is
/// listed under both).
pub fn title_spans(tok: &TextTokenizer, generated: &[u32], separator: &str, k: usize) -> Vec<Vec<usize>> {
    let text = tok.decode(generated, true).unwrap_or_default();
    // Byte offset where each token starts, and where it ends (the next one's start).
    let starts: Vec<usize> = (0..generated.len()).map(|t| tok.decode(&generated[..t], true).map(|s| s.len()).unwrap_or(0)).collect();
    let ends: Vec<usize> = starts.iter().skip(1).copied().chain(std::iter::once(text.len())).collect();
    let mut segments = Vec::new();
    let mut from = 0;
    for piece in text.split(separator) {
        let lead = piece.len() - piece.trim_start().len();
        if !piece.trim().is_empty() {
            segments.push((from + lead, from + piece.trim_end().len()));
        }
        from += piece.len() + separator.len();
    }
    segments.into_iter().map(|(s, e)| (0..generated.len()).filter(|&t| starts[t] < e && ends[t] > s).take(k).collect()).collect()
}

impl EntropySettings {
    /// Positions in an answer whose entropies make the token entropy: the first `first_k_tokens`
    /// tokens of each title, of the first `answer_titles` titles when that is set.
    pub fn title_positions(&self, tok: &TextTokenizer, answer: &[u32]) -> Vec<usize> {
        self.positions_in(title_spans(tok, answer, &self.separator, self.first_k_tokens))
    }

    /// [`Self::title_positions`] from spans already computed (`title_spans` at `first_k_tokens`).
    fn positions_in(&self, mut spans: Vec<Vec<usize>>) -> Vec<usize> {
        if let Some(n) = self.answer_titles {
            spans.truncate(n);
        }
        distinct_positions(spans)
    }

    /// Whether a partial answer holds every token the objective reads, so generation can stop:
    /// with `answer_titles = N`, once the N-th title has its first k tokens or a later title has
    /// begun; without it, never (the answer runs to EOS or `max_new_tokens`).
    pub fn answer_complete(&self, tok: &TextTokenizer, answer: &[u32]) -> bool {
        let Some(n) = self.answer_titles else { return false };
        let spans = title_spans(tok, answer, &self.separator, self.first_k_tokens);
        spans.len() > n || (spans.len() == n && spans[n - 1].len() >= self.first_k_tokens)
    }
}

/// The model's greedy answer to `prompt` (generate with a non-trainable attachment: no graph).
pub fn greedy_answer(model: &dyn CausalLm, tok: &TextTokenizer, prompt: &[u32], s: &EntropySettings) -> Vec<u32> {
    let cfg = GenerationConfig { max_new_tokens: s.max_new_tokens, temperature: 0.0, top_p: 1.0, seed: 0, eos_ids: tok.eos_ids().to_vec() };
    generate(model, prompt, &cfg, &mut |a| s.answer_complete(tok, a))
}

/// Mean next-token entropy at the first tokens of each title of `generated` (the answer to
/// `prompt`), in one teacher-forced pass; `None` when the answer has no title.
pub fn token_entropy(model: &dyn CausalLm, tok: &TextTokenizer, prompt: &[u32], generated: &[u32], s: &EntropySettings) -> Option<Tensor<1>> {
    let positions = s.title_positions(tok, generated);
    if positions.is_empty() {
        return None;
    }
    let mut ids = prompt.to_vec();
    ids.extend_from_slice(generated);
    let input = pad_batch(model, &[ids], 0, Padding::Right).input;
    let hidden = model.hidden(&input, None);
    let [_, t, h] = hidden.dims();
    // Token j of the answer is predicted at position len(prompt) + j - 1.
    let rows: Vec<i64> = positions.iter().map(|&j| (prompt.len() + j - 1) as i64).collect();
    let n = rows.len();
    let picked = hidden.reshape([t, h]).select(0, Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &model.device()));
    let logp = log_softmax(model.head(picked), 1);
    Some((logp.clone().exp() * logp).sum().neg().div_scalar(n as f64))
}

/// [`token_entropy`] of the model's own greedy answer with the prompt encoded once: its forward
/// pass (tracked when the model takes gradients) fills a KV cache; a graph-free view of the model
/// (`valid()`) continues greedily from a constant copy of that cache; then only the answer's tokens
/// are fed, over the tracked cache. The gradient is the same as generating with gradients or as a
/// second teacher-forced pass over prompt and answer, without either's cost (see `bench entropy`).
/// Returns the objective (`None` when the answer names no title) and the answer.
pub fn token_entropy_of_answer(model: &dyn CausalLm, tok: &TextTokenizer, prompt: &[u32], s: &EntropySettings) -> (Option<Tensor<1>>, Vec<u32>) {
    let device = model.device();
    let n = prompt.len();
    let mut cache = KvCache::default();
    let last = model.hidden(&ForwardInput::sequence(prompt, 0, &device), Some(&mut cache)).narrow(1, n - 1, 1);
    let plain = model.without_autodiff();
    let mut plain_cache = cache.without_autodiff();
    let first = crate::backend::host_f32(plain.logits(last.clone().without_autodiff()));
    let cfg = GenerationConfig { max_new_tokens: s.max_new_tokens, temperature: 0.0, top_p: 1.0, seed: 0, eos_ids: tok.eos_ids().to_vec() };
    let answer = continue_generation(plain.as_ref(), &mut plain_cache, first, &cfg, &mut |a| s.answer_complete(tok, a));
    let positions = s.title_positions(tok, &answer);
    let Some(&furthest) = positions.last() else { return (None, answer) };
    // Row j predicts answer token j: row 0 is the prompt's last position, row j > 0 the position
    // of answer token j - 1 (fed now, up to the furthest token scored).
    let rows = if furthest == 0 { last } else { Tensor::cat(vec![last, model.hidden(&ForwardInput::sequence(&answer[..furthest], n, &device), Some(&mut cache))], 1) };
    let [_, count, h] = rows.dims();
    let k = positions.len();
    let picked = rows.reshape([count, h]).select(0, Tensor::<1, Int>::from_data(TensorData::new(positions.iter().map(|&p| p as i64).collect(), [k]), &device));
    let logp = log_softmax(model.head(picked), 1);
    (Some((logp.clone().exp() * logp).sum().neg().div_scalar(k as f64)), answer)
}

/// The objective of one prompt at weights `w`, attached trainable (for a step) or not.
fn objective(model: &mut dyn CausalLm, tok: &TextTokenizer, adapters: &[PeftAdapter], w: &BTreeMap<(usize, Proj), Vec<f64>>, p: &AdaptPrompt, s: &EntropySettings, trainable: bool) -> Option<Tensor<1>> {
    attach_weighted(model, adapters, w, trainable);
    match s.objective {
        EntropyObjective::CandidateEntropy => (p.candidates.len() > 1).then(|| candidate_entropy(model, p, s.mean_scores)),
        EntropyObjective::TokenEntropy => token_entropy_of_answer(model, tok, &p.prompt, s).0,
    }
}

/// Prompts answered together when the token entropy is only measured (bounds the batch's KV
/// cache and attention scores: a few hundred MB at 500-token prompts on SmolLM2-135M).
const MEASURE_BATCH: usize = 8;

/// One prompt's measured token entropy, and the shape of the greedy answer it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredAnswer {
    /// `None` where the answer names no title.
    pub entropy: Option<f64>,
    /// Tokens generated (EOS included).
    pub tokens: usize,
    /// Titles the answer names (separator-delimited, non-empty), read or not by the objective.
    pub titles: usize,
}

/// [`token_entropy_of_answer`]'s value for each prompt at the attached weights, without a graph:
/// the answers are generated [`MEASURE_BATCH`] prompts at a time, and each title token's entropy
/// is the one its decoding step computed.
pub fn measured_answers(model: &dyn CausalLm, tok: &TextTokenizer, prompts: &[AdaptPrompt], s: &EntropySettings) -> Vec<MeasuredAnswer> {
    let plain = model.without_autodiff();
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(MEASURE_BATCH) {
        let ids: Vec<Vec<u32>> = chunk.iter().map(|p| p.prompt.clone()).collect();
        for answer in greedy_batch(plain.as_ref(), &ids, s.max_new_tokens, tok.eos_ids(), &mut |a| s.answer_complete(tok, a)) {
            // One span per non-empty title whatever `first_k_tokens` is: the count needs no second pass.
            let spans = title_spans(tok, &answer.tokens, &s.separator, s.first_k_tokens);
            let titles = spans.len();
            let positions = s.positions_in(spans);
            let entropy = (!positions.is_empty()).then(|| positions.iter().map(|&j| answer.entropies[j] as f64).sum::<f64>() / positions.len() as f64);
            out.push(MeasuredAnswer { entropy, tokens: answer.tokens.len(), titles });
        }
    }
    out
}

/// [`measured_answers`]' entropies alone.
pub fn measured_token_entropies(model: &dyn CausalLm, tok: &TextTokenizer, prompts: &[AdaptPrompt], s: &EntropySettings) -> Vec<Option<f64>> {
    measured_answers(model, tok, prompts, s).into_iter().map(|m| m.entropy).collect()
}

/// What the greedy answers of a `token_entropy` measurement looked like: they cost one decoding
/// step per token, and an answer naming more titles than the template asks for is read whole
/// unless `answer_titles` stops it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerShape {
    pub answers: usize,
    pub mean_tokens: f64,
    /// Answers that ran to `answer_tokens` without an EOS.
    pub at_limit: usize,
    pub limit: usize,
    pub more_than_one_title: usize,
}

impl AnswerShape {
    pub(crate) fn of(measured: &[MeasuredAnswer], limit: usize) -> AnswerShape {
        let n = measured.len();
        AnswerShape {
            answers: n,
            mean_tokens: measured.iter().map(|m| m.tokens as f64).sum::<f64>() / n.max(1) as f64,
            at_limit: measured.iter().filter(|m| m.tokens >= limit).count(),
            limit,
            more_than_one_title: measured.iter().filter(|m| m.titles > 1).count(),
        }
    }
}

impl std::fmt::Display for AnswerShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "greedy answers of {:.1} tokens on average, {} of {} at the {}-token limit, {} naming more than one title",
            self.mean_tokens, self.at_limit, self.answers, self.limit, self.more_than_one_title
        )
    }
}

/// The mean objective over some prompts, and for `token_entropy` the shape of the answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub mean: f64,
    pub answers: Option<AnswerShape>,
}

/// Mean objective over `prompts` at the given weights (no update). The token entropy is measured
/// in batches ([`measured_answers`]); the candidate entropy prompt by prompt.
pub fn mean_objective(model: &mut dyn CausalLm, tok: &TextTokenizer, adapters: &[PeftAdapter], l: &Learnable, prompts: &[AdaptPrompt], s: &EntropySettings) -> Measurement {
    let w = l.weights();
    let (vals, answers): (Vec<f64>, _) = match s.objective {
        EntropyObjective::TokenEntropy => {
            attach_weighted(model, adapters, &w, false);
            let measured = measured_answers(model, tok, prompts, s);
            (measured.iter().filter_map(|m| m.entropy).collect(), Some(AnswerShape::of(&measured, s.max_new_tokens)))
        }
        EntropyObjective::CandidateEntropy => (prompts.iter().filter_map(|p| objective(model, tok, adapters, &w, p, s, false)).map(|t| t.without_autodiff().into_scalar::<f32>() as f64).collect(), None),
    };
    let mean = if vals.is_empty() { f64::NAN } else { vals.iter().sum::<f64>() / vals.len() as f64 };
    Measurement { mean, answers }
}

/// Learn the coefficients on `prompts` (one Adam step per prompt, `epochs` passes). `model`
/// must live on an autodiff device.
pub fn adapt(model: &mut dyn CausalLm, tok: &TextTokenizer, adapters: &[PeftAdapter], prompts: &[AdaptPrompt], s: &EntropySettings, progress: &mut dyn FnMut(&StepRow)) -> Adapted {
    let before = initial_objective(model, tok, adapters, prompts, s).mean;
    let mut adapted = adapt_from(model, tok, adapters, prompts, s, before, progress);
    adapted.objective_after = mean_objective(model, tok, adapters, &adapted.learnable, prompts, s).mean;
    adapted
}

/// The mean objective at the initial coefficients, which depend on the settings but not on the
/// learning rate: computed once for a whole learning-rate grid.
pub fn initial_objective(model: &mut dyn CausalLm, tok: &TextTokenizer, adapters: &[PeftAdapter], prompts: &[AdaptPrompt], s: &EntropySettings) -> Measurement {
    let l = Learnable::new(covered_modules(model, adapters), adapters.len(), s.granularity, s.parameterization, s.temperature, &s.init);
    mean_objective(model, tok, adapters, &l, prompts, s)
}

/// [`adapt`] given the [`initial_objective`] `before`, without measuring the objective after
/// (`objective_after` is NaN): a learning-rate grid measures it only for the rate it keeps.
pub fn adapt_from(model: &mut dyn CausalLm, tok: &TextTokenizer, adapters: &[PeftAdapter], prompts: &[AdaptPrompt], s: &EntropySettings, before: f64, progress: &mut dyn FnMut(&StepRow)) -> Adapted {
    let modules = covered_modules(model, adapters);
    let mut l = Learnable::new(modules.clone(), adapters.len(), s.granularity, s.parameterization, s.temperature, &s.init);
    let mut history = Vec::new();
    let mut step = 0;
    for epoch in 0..s.epochs {
        for p in prompts {
            let Some(loss) = objective(model, tok, adapters, &l.weights(), p, s, true) else { continue };
            let grads = loss.backward();
            let value = loss.without_autodiff().into_scalar::<f32>() as f64;
            let dw = weight_grads(model, adapters, &modules, &grads);
            l.adam_step(&l.pull_back(&dw), s.lr);
            step += 1;
            let row = StepRow { epoch, step, objective: value };
            progress(&row);
            history.push(row);
        }
    }
    Adapted { learnable: l, history, objective_before: before, objective_after: f64::NAN }
}
