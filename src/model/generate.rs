//! Inference: batched forward with padding, greedy and sampled generation with a KV cache, and
//! log-probabilities of candidate continuations after one shared prompt (the prompt's cache is
//! computed once and reused for every candidate).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::llama::{ForwardInput, KvCache, Llama};

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
pub fn pad_batch(model: &Llama, seqs: &[Vec<u32>], pad_id: u32, padding: Padding) -> Batch {
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
    };
    Batch { input, lengths: seqs.iter().map(Vec::len).collect(), width, padding }
}

/// Logits of a single sequence, [len, vocab], as a host vector per position.
pub fn logits_of(model: &Llama, ids: &[u32]) -> Vec<Vec<f32>> {
    let batch = pad_batch(model, &[ids.to_vec()], 0, Padding::Right);
    let logits = model.forward(&batch.input, None);
    let [_, t, v] = logits.dims();
    let data = logits.into_data().try_to_vec::<f32>().expect("f32 tensor");
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
pub fn generate(model: &Llama, prompt: &[u32], cfg: &GenerationConfig, stop: &mut dyn FnMut(&[u32]) -> bool) -> Vec<u32> {
    let device = model.device();
    let mut cache = KvCache::default();
    let mut rng = SplitMix(cfg.seed);
    let mut out = Vec::new();
    let n = prompt.len();
    let mut logits = {
        let batch = pad_batch(model, &[prompt.to_vec()], 0, Padding::Right);
        let input = ForwardInput { key_padding: None, ..batch.input };
        let all = model.forward(&input, Some(&mut cache));
        let v = all.dims()[2];
        all.narrow(1, n - 1, 1).reshape([v]).into_data().try_to_vec::<f32>().expect("f32 tensor")
    };
    for step in 0..cfg.max_new_tokens {
        let next = pick(&logits, cfg, &mut rng);
        if cfg.eos_ids.contains(&next) {
            break;
        }
        out.push(next);
        if stop(&out) || step + 1 == cfg.max_new_tokens || n + out.len() >= model.max_positions() {
            break;
        }
        let input = ForwardInput {
            ids: Tensor::<2, Int>::from_data(TensorData::new(vec![next as i64], [1, 1]), &device),
            positions: Tensor::<2, Int>::from_data(TensorData::new(vec![(n + out.len() - 1) as i64], [1, 1]), &device),
            key_padding: None,
        };
        let l = model.forward(&input, Some(&mut cache));
        let v = l.dims()[2];
        logits = l.reshape([v]).into_data().try_to_vec::<f32>().expect("f32 tensor");
    }
    out
}

/// Log-probability of every token of each continuation after `prompt` (the prompt is encoded
/// once; its cache is shared by all continuations, which run as one right-padded batch).
pub fn continuation_logprobs(model: &Llama, prompt: &[u32], continuations: &[Vec<u32>]) -> Vec<Vec<f32>> {
    if continuations.is_empty() {
        return Vec::new();
    }
    let lp = continuation_logprob_tensor(model, prompt, continuations);
    let width = lp.dims()[1];
    let data = lp.into_data().try_to_vec::<f32>().expect("f32 tensor");
    continuations.iter().enumerate().map(|(i, s)| data[i * width..i * width + s.len()].to_vec()).collect()
}

/// [`continuation_logprobs`] as a tensor `[continuations, longest]` (zero past each one's end),
/// differentiable when the model's parameters take gradients.
pub fn continuation_logprob_tensor(model: &Llama, prompt: &[u32], continuations: &[Vec<u32>]) -> Tensor<2> {
    let device = model.device();
    let n = prompt.len();
    let c = continuations.len();
    let width = continuations.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut cache = KvCache::default();
    let prompt_batch = pad_batch(model, &[prompt.to_vec()], 0, Padding::Right);
    let input = ForwardInput { key_padding: None, ..prompt_batch.input };
    let hidden = model.hidden(&input, Some(&mut cache));
    let last = log_softmax(model.logits(hidden.narrow(1, n - 1, 1)), 2);
    let v = last.dims()[2];
    // The first token of each continuation is scored by the prompt's last position.
    let firsts: Vec<i64> = continuations.iter().map(|s| s.first().copied().unwrap_or(0) as i64).collect();
    let first = last.reshape([1, v]).select(1, Tensor::<1, Int>::from_data(TensorData::new(firsts, [c]), &device)).reshape([c, 1]);
    let scored = if width == 1 {
        first
    } else {
        // Feed every continuation token but the last; position j scores token j + 1.
        let w = width - 1;
        let (mut ids, mut pos, mut pad, mut targets) = (Vec::with_capacity(c * w), Vec::with_capacity(c * w), Vec::with_capacity(c * (n + w)), Vec::with_capacity(c * w));
        for s in continuations {
            pad.extend(std::iter::repeat_n(false, n));
            for j in 0..w {
                let real = j < s.len();
                ids.push(if real { s[j] as i64 } else { 0 });
                pos.push((n + j) as i64);
                pad.push(!real);
                targets.push(s.get(j + 1).copied().unwrap_or(0) as i64);
            }
        }
        let input = ForwardInput {
            ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [c, w]), &device),
            positions: Tensor::<2, Int>::from_data(TensorData::new(pos, [c, w]), &device),
            key_padding: Some(Tensor::<2, Bool>::from_data(TensorData::new(pad, [c, n + w]), &device)),
        };
        let mut shared = cache.repeat_batch(c);
        let logp = log_softmax(model.forward(&input, Some(&mut shared)), 2);
        let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [c, w, 1]), &device);
        let rest = logp.gather(2, targets).reshape([c, w]);
        Tensor::cat(vec![first, rest], 1)
    };
    let mask: Vec<f32> = continuations.iter().flat_map(|s| (0..width).map(move |j| if j < s.len() { 1.0 } else { 0.0 })).collect();
    scored * Tensor::<2>::from_data(TensorData::new(mask, [c, width]), &device)
}
