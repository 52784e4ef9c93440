//! Inference: batched forward with padding, greedy and sampled generation with a KV cache, and
//! log-probabilities of candidate continuations after one shared prompt (the prompt's cache is
//! computed once and reused for every candidate).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::causal_lm::{CausalLm, ForwardInput, KvCache};

/// Where padding goes in a batch of sequences of different lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Left,
    Right,
}

/// A padded batch: ids, positions and key padding mask, plus where each sequence sits.
pub struct Batch {
    pub input: ForwardInput,
    pub lengths: Vec<usize>,
    pub width: usize,
    pub padding: Padding,
}

/// Pad `seqs` to one width. Positions count real tokens only, so a left-padded sequence sees the
/// same positions as it would alone.
pub fn pad_batch(model: &dyn CausalLm, seqs: &[Vec<u32>], pad_id: u32, padding: Padding) -> Batch {
    let device = model.device();
    let b = seqs.len();
    let width = seqs.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = Vec::with_capacity(b * width);
    let mut pos = Vec::with_capacity(b * width);
    let mut pad = Vec::with_capacity(b * width);
    for s in seqs {
        let n = s.len();
        let offset = if padding == Padding::Left { width - n } else { 0 };
        for j in 0..width {
            let real = j >= offset && j < offset + n;
            ids.push(if real { s[j - offset] as i64 } else { pad_id as i64 });
            pos.push(if real { (j - offset) as i64 } else { 0 });
            pad.push(!real);
        }
    }
    let input = ForwardInput {
        ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [b, width]), &device),
        positions: Tensor::<2, Int>::from_data(TensorData::new(pos, [b, width]), &device),
        key_padding: Some(Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, width]), &device)),
        visibility: None,
    };
    Batch { input, lengths: seqs.iter().map(Vec::len).collect(), width, padding }
}

/// Logits of a single sequence, [len, vocab], as a host vector per position.
pub fn logits_of(model: &dyn CausalLm, ids: &[u32]) -> Vec<Vec<f32>> {
    let batch = pad_batch(model, &[ids.to_vec()], 0, Padding::Right);
    let logits = model.forward(&batch.input, None);
    let [_, t, v] = logits.dims();
    let data = crate::backend::host_f32(logits);
    (0..t).map(|i| data[i * v..(i + 1) * v].to_vec()).collect()
}

/// How generation picks tokens and when it stops.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    pub eos_ids: Vec<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self { max_new_tokens: 64, temperature: 0.0, top_p: 1.0, seed: 42, eos_ids: Vec::new() }
    }
}

/// A small deterministic generator (SplitMix64) for sampling.
struct SplitMix(u64);
impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn pick(logits: &[f32], cfg: &GenerationConfig, rng: &mut SplitMix) -> u32 {
    if cfg.temperature <= 0.0 {
        // First maximum, like torch.argmax.
        let mut best = 0;
        for (i, x) in logits.iter().enumerate() {
            if *x > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(usize, f64)> = logits.iter().enumerate().map(|(i, x)| (i, ((*x as f64 - max) / cfg.temperature).exp())).collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut kept = Vec::new();
    let mut mass = 0.0;
    for (i, p) in probs {
        kept.push((i, p / total));
        mass += p / total;
        if mass >= cfg.top_p {
            break;
        }
    }
    let norm: f64 = kept.iter().map(|p| p.1).sum();
    let mut u = rng.next_f64() * norm;
    for (i, p) in &kept {
        if u < *p {
            return *i as u32;
        }
        u -= p;
    }
    kept.last().map_or(0, |p| p.0 as u32)
}

/// Generate after `prompt`; stops at an EOS id, after `max_new_tokens`, or when `stop` says so
/// (given the tokens so far). Returns the new tokens (EOS excluded).
pub fn generate(model: &dyn CausalLm, prompt: &[u32], cfg: &GenerationConfig, stop: &mut dyn FnMut(&[u32]) -> bool) -> Vec<u32> {
    let (mut cache, logits) = prefill(model, prompt);
    continue_generation(model, &mut cache, crate::backend::host_f32(logits), cfg, stop)
}

/// The prompt step of generation: `prompt` encoded into a fresh KV cache, and the next-token
/// logits `[1, 1, vocab]` at its last position (the LM head runs there only).
pub fn prefill(model: &dyn CausalLm, prompt: &[u32]) -> (KvCache, Tensor<3>) {
    let mut cache = KvCache::default();
    let hidden = model.hidden(&ForwardInput::sequence(prompt, 0, &model.device()), Some(&mut cache));
    (cache, model.logits(hidden.narrow(1, prompt.len() - 1, 1)))
}

/// Generation from an encoded prompt: `cache` holds its keys and values, `logits` the next-token
/// logits at its last position. Extends `cache`; returns the new tokens (EOS excluded).
pub fn continue_generation(model: &dyn CausalLm, cache: &mut KvCache, mut logits: Vec<f32>, cfg: &GenerationConfig, stop: &mut dyn FnMut(&[u32]) -> bool) -> Vec<u32> {
    let device = model.device();
    let mut rng = SplitMix(cfg.seed);
    let mut out = Vec::new();
    let n = cache.len();
    for step in 0..cfg.max_new_tokens {
        let next = pick(&logits, cfg, &mut rng);
        if cfg.eos_ids.contains(&next) {
            break;
        }
        out.push(next);
        if stop(&out) || step + 1 == cfg.max_new_tokens || n + out.len() >= model.max_positions() {
            break;
        }
        let l = model.forward(&ForwardInput::sequence(&[next], n + out.len() - 1, &device), Some(cache));
        logits = crate::backend::host_f32(l);
    }
    out
}

/// A greedy answer, and for each of its tokens the full-vocabulary entropy (nats) of the
/// next-token distribution it was picked from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GreedyAnswer {
    pub tokens: Vec<u32>,
    pub entropies: Vec<f32>,
}

/// Greedy answers to several prompts at once: left-padded into one batch and one KV cache, then
/// one token per row and step until every row has met an EOS id, `max_new_tokens`, the model's
/// last position or `stop` (given the row's tokens so far, as in [`generate`]). Each row sees the positions and keys it would see alone, so the answers are
/// those of [`generate`] up to the float rounding of batched kernels; the step's log-softmax gives
/// both the pick (first maximum) and its entropy, so no second pass is needed.
pub fn greedy_batch(model: &dyn CausalLm, prompts: &[Vec<u32>], max_new_tokens: usize, eos_ids: &[u32], stop: &mut dyn FnMut(&[u32]) -> bool) -> Vec<GreedyAnswer> {
    let b = prompts.len();
    let mut out = vec![GreedyAnswer::default(); b];
    if b == 0 || max_new_tokens == 0 {
        return out;
    }
    let device = model.device();
    let batch = pad_batch(model, prompts, 0, Padding::Left);
    // Key padding of every row over the cache's positions, row by row (true: hidden).
    let mut hidden_keys: Vec<Vec<bool>> = prompts.iter().map(|p| (0..batch.width).map(|j| j < batch.width - p.len()).collect()).collect();
    let mut cache = KvCache::default();
    let hidden = model.hidden(&batch.input, Some(&mut cache));
    let mut logits = model.logits(hidden.narrow(1, batch.width - 1, 1));
    let last_position = model.max_positions() - 1;
    let mut done = vec![false; b];
    for _ in 0..max_new_tokens {
        let v = logits.dims()[2];
        let logp = log_softmax(logits.reshape([b, v]), 1);
        let entropy = crate::backend::host_f32((logp.clone().exp() * logp.clone()).sum_dim(1).neg());
        let next = logp.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().expect("int tensor");
        for r in 0..b {
            if done[r] {
                continue;
            }
            let token = next[r] as u32;
            if eos_ids.contains(&token) {
                done[r] = true;
                continue;
            }
            out[r].tokens.push(token);
            out[r].entropies.push(entropy[r]);
            done[r] = out[r].tokens.len() == max_new_tokens || prompts[r].len() + out[r].tokens.len() > last_position || stop(&out[r].tokens);
        }
        if done.iter().all(|&d| d) {
            break;
        }
        // Rows that are done are fed a hidden padding token; the others their last pick.
        let ids: Vec<i64> = (0..b).map(|r| if done[r] { 0 } else { *out[r].tokens.last().expect("a token") as i64 }).collect();
        let positions: Vec<i64> = (0..b).map(|r| (prompts[r].len() + out[r].tokens.len()).saturating_sub(1).min(last_position) as i64).collect();
        for (r, keys) in hidden_keys.iter_mut().enumerate() {
            keys.push(done[r]);
        }
        let keys = hidden_keys[0].len();
        let input = ForwardInput {
            ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [b, 1]), &device),
            positions: Tensor::<2, Int>::from_data(TensorData::new(positions, [b, 1]), &device),
            key_padding: Some(Tensor::<2, Bool>::from_data(TensorData::new(hidden_keys.concat(), [b, keys]), &device)),
            visibility: None,
        };
        logits = model.forward(&input, Some(&mut cache));
    }
    out
}

/// Log-probability of every token of each continuation after `prompt`. The prompt and all
/// continuations run as one packed row in one forward pass, with shared prefixes computed once
/// (see [`PrefixTree`]).
pub fn continuation_logprobs(model: &dyn CausalLm, prompt: &[u32], continuations: &[Vec<u32>]) -> Vec<Vec<f32>> {
    if continuations.is_empty() {
        return Vec::new();
    }
    let lp = continuation_logprob_tensor(model, prompt, continuations);
    let width = lp.dims()[1];
    let data = crate::backend::host_f32(lp);
    continuations.iter().enumerate().map(|(i, s)| data[i * width..i * width + s.len()].to_vec()).collect()
}

/// [`continuation_logprobs`] as a tensor `[continuations, longest]` (zero past each one's end),
/// differentiable when the model's parameters take gradients.
pub fn continuation_logprob_tensor(model: &dyn CausalLm, prompt: &[u32], continuations: &[Vec<u32>]) -> Tensor<2> {
    let device = model.device();
    let n = prompt.len();
    let c = continuations.len();
    let width = continuations.iter().map(Vec::len).max().unwrap_or(0).max(1);
    // One forward pass over the prompt and the prefix tree packed behind it: the prompt's rows
    // are causal, each node sees the prompt and its own ancestors. No KV cache, and on a GPU one
    // pass of kernel launches instead of two.
    let tree = PrefixTree::build(continuations);
    let l = tree.len();
    let ids: Vec<i64> = prompt.iter().chain(&tree.ids).map(|&t| t as i64).collect();
    let positions: Vec<i64> = (0..n).chain(tree.depth.iter().map(|&d| n + d)).map(|p| p as i64).collect();
    let input = ForwardInput {
        ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n + l]), &device),
        positions: Tensor::<2, Int>::from_data(TensorData::new(positions, [1, n + l]), &device),
        key_padding: None,
        visibility: Some(Tensor::<2, Bool>::from_data(TensorData::new(tree.hidden_keys_behind_causal_prompt(n), [n + l, n + l]), &device)),
    };
    let hidden = model.hidden(&input, None);
    // Row 0: the prompt's last position, which scores every continuation's first token; row
    // r > 0: node r - 1. The LM head runs on these rows only.
    let v = model.vocab_size();
    let table = log_softmax(model.logits(hidden.narrow(1, n - 1, 1 + l)), 2).reshape([1 + l, v]);
    // Entries past a continuation's end pick entry 0 and are zeroed by the mask.
    let entries = table.dims()[0] * v;
    let (mut index, mut mask) = (vec![0i64; c * width], vec![0f32; c * width]);
    for (i, s) in continuations.iter().enumerate() {
        for (j, &tok) in s.iter().enumerate() {
            let row = if j == 0 { 0 } else { tree.paths[i][j - 1] + 1 };
            index[i * width + j] = (row * v + tok as usize) as i64;
            mask[i * width + j] = 1.0;
        }
    }
    let picked = table.reshape([entries]).select(0, Tensor::<1, Int>::from_data(TensorData::new(index, [c * width]), &device));
    (picked * Tensor::<1>::from_data(TensorData::new(mask, [c * width]), &device)).reshape([c, width])
}

/// Continuations packed into one row as a prefix tree: each distinct prefix of a continuation
/// (all its tokens but the last, whose logits are never needed) is one node, fed its last token at
/// position `prompt + depth`, and sees the prompt, its ancestors and itself. Candidate titles
/// that share leading tokens share their computation; no position is padding.
#[derive(Debug, Default)]
pub struct PrefixTree {
    /// Token fed at each node.
    pub ids: Vec<u32>,
    /// The parent node; `None` under the prompt.
    pub parent: Vec<Option<usize>>,
    /// Zero for children of the prompt.
    pub depth: Vec<usize>,
    /// For continuation i, the node holding its prefix of length j + 1 (`len - 1` entries).
    pub paths: Vec<Vec<usize>>,
}

impl PrefixTree {
    pub fn build(continuations: &[Vec<u32>]) -> Self {
        let mut tree = PrefixTree::default();
        let mut children: std::collections::HashMap<(Option<usize>, u32), usize> = std::collections::HashMap::new();
        for s in continuations {
            let mut at = None;
            let mut path = Vec::with_capacity(s.len().saturating_sub(1));
            for &tok in &s[..s.len().saturating_sub(1)] {
                let node = *children.entry((at, tok)).or_insert_with(|| {
                    tree.ids.push(tok);
                    tree.depth.push(at.map_or(0, |p| tree.depth[p] + 1));
                    tree.parent.push(at);
                    tree.ids.len() - 1
                });
                path.push(node);
                at = Some(node);
            }
            tree.paths.push(path);
        }
        tree
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Attention mask `[nodes, past + nodes]`, row-major, true where a key is hidden: each node
    /// sees the `past` prompt positions, its ancestors and itself.
    pub fn hidden_keys(&self, past: usize) -> Vec<bool> {
        let (l, keys) = (self.len(), past + self.len());
        let mut hidden = vec![true; l * keys];
        for q in 0..l {
            let row = &mut hidden[q * keys..(q + 1) * keys];
            row[..past].fill(false);
            let mut at = Some(q);
            while let Some(node) = at {
                row[past + node] = false;
                at = self.parent[node];
            }
        }
        hidden
    }

    /// Attention mask `[past + nodes, past + nodes]`, true where a key is hidden, for the prompt
    /// (`past` tokens, causal) and the tree packed behind it in one sequence: prompt rows see
    /// earlier prompt positions only, node rows as in [`PrefixTree::hidden_keys`].
    pub fn hidden_keys_behind_causal_prompt(&self, past: usize) -> Vec<bool> {
        let keys = past + self.len();
        let mut hidden = vec![true; past * keys];
        for q in 0..past {
            hidden[q * keys..q * keys + q + 1].fill(false);
        }
        hidden.extend(self.hidden_keys(past));
        hidden
    }
}

#[cfg(test)]
mod tests {
    use super::PrefixTree;

    #[test]
    fn prefix_tree_shares_leading_tokens_and_drops_last_tokens() {
        let tree = PrefixTree::build(&[vec![5, 6, 7], vec![5, 6, 9, 1], vec![8], vec![5, 2], vec![]]);
        // Nodes: 5, 5>6, 5>6>9, 5 (shared) ; [8] and [] need no node; [5, 2] reuses node 0.
        assert_eq!(tree.ids, vec![5, 6, 9]);
        assert_eq!(tree.parent, vec![None, Some(0), Some(1)]);
        assert_eq!(tree.depth, vec![0, 1, 2]);
        assert_eq!(tree.paths, vec![vec![0, 1], vec![0, 1, 2], vec![], vec![0], vec![]]);
        // Two prompt positions, then the nodes: each sees the prompt, its ancestors and itself.
        let h = tree.hidden_keys(2);
        let rows: Vec<Vec<bool>> = h.chunks(5).map(|r| r.iter().map(|x| !x).collect()).collect();
        assert_eq!(rows[0], vec![true, true, true, false, false]);
        assert_eq!(rows[1], vec![true, true, true, true, false]);
        assert_eq!(rows[2], vec![true, true, true, true, true]);
    }

    #[test]
    fn packed_mask_is_causal_over_the_prompt_then_the_tree() {
        let tree = PrefixTree::build(&[vec![5, 6, 7], vec![8, 1]]);
        // Prompt of 2, nodes 5, 5>6, 8.
        let h = tree.hidden_keys_behind_causal_prompt(2);
        let rows: Vec<Vec<bool>> = h.chunks(5).map(|r| r.iter().map(|x| !x).collect()).collect();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0], vec![true, false, false, false, false]);
        assert_eq!(rows[1], vec![true, true, false, false, false]);
        assert_eq!(rows[2], vec![true, true, true, false, false]);
        assert_eq!(rows[3], vec![true, true, true, true, false]);
        assert_eq!(rows[4], vec![true, true, false, false, true]);
    }

    #[test]
    fn prefix_tree_keeps_siblings_apart() {
        let tree = PrefixTree::build(&[vec![1, 2, 3], vec![1, 4, 3]]);
        assert_eq!(tree.ids, vec![1, 2, 4]);
        let h = tree.hidden_keys(0);
        // Node 2 (prefix 1,4) must not see node 1 (prefix 1,2).
        assert!(h[2 * 3 + 1]);
        assert!(!h[2 * 3]);
    }
}
