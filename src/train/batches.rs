//! Training samples as token ids, cut to the maximum length, and grouped into batches.
//!
//! A sample is `prompt ++ response`; the loss covers the response tokens only (each predicted
//! from the tokens before it), so the prompt's tokens are context, never targets.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::rng::Rng;
use crate::model::ForwardInput;
use crate::recipe::types::{Batching, Side};

/// One encoded sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Tokens before this index are prompt; from it on, response (the loss targets).
    pub response_start: usize,
    /// End (exclusive) of the answer proper: the response without its end-of-turn tokens
    /// (`<|im_end|>`, the newline, eos), which validation does not count.
    pub answer_end: usize,
}

impl Encoded {
    /// Join prompt and response, cutting to `max_len`: the prompt loses tokens on `side` first;
    /// a response longer than `max_len - 1` keeps its beginning. `None` if nothing is left to learn.
    pub fn new(prompt: &[u32], response: &[u32], max_len: usize, side: Side) -> Option<Encoded> {
        if response.is_empty() || max_len < 2 {
            return None;
        }
        let response = &response[..response.len().min(max_len - 1)];
        let room = max_len - response.len();
        let prompt: &[u32] = if prompt.len() <= room {
            prompt
        } else {
            match side {
                Side::Left => &prompt[prompt.len() - room..],
                Side::Right => &prompt[..room],
            }
        };
        if prompt.is_empty() {
            return None;
        }
        let mut ids = prompt.to_vec();
        ids.extend_from_slice(response);
        let answer_end = ids.len();
        Some(Encoded { ids, response_start: prompt.len(), answer_end })
    }

    /// The answer is the first `n` response tokens (at least one, at most the response).
    pub fn with_answer_len(mut self, n: usize) -> Encoded {
        self.answer_end = (self.response_start + n.max(1)).min(self.ids.len());
        self
    }

    /// The sample cut after its answer: the loss targets are the answer's tokens alone (a causal
    /// model's earlier positions do not see what was cut).
    pub fn answer_only(&self) -> Encoded {
        Encoded { ids: self.ids[..self.answer_end].to_vec(), response_start: self.response_start, answer_end: self.answer_end }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of loss targets.
    pub fn targets(&self) -> usize {
        self.ids.len() - self.response_start
    }
}

/// The batches of one epoch: indices into the samples. Deterministic in (seed, epoch).
pub fn epoch_batches(samples: &[Encoded], batch_size: usize, batching: Batching, seed: u64, epoch: u32) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    let mut rng = Rng::derive(seed, &["train-order", &epoch.to_string()]);
    rng.shuffle(&mut order);
    let batch_size = batch_size.max(1);
    match batching {
        Batching::None => order.chunks(batch_size).map(<[usize]>::to_vec).collect(),
        Batching::Length | Batching::Pack => {
            // (`pack` is refused before training starts; see `trainer::check_settings`.)
            // Sort by length inside windows of many batches, cut, then shuffle the batches: little
            // padding, and the order of lengths is still random.
            let window = batch_size * 16;
            let mut batches: Vec<Vec<usize>> = Vec::new();
            for w in order.chunks(window) {
                let mut w = w.to_vec();
                w.sort_by_key(|&i| (samples[i].len(), i));
                batches.extend(w.chunks(batch_size).map(<[usize]>::to_vec));
            }
            rng.shuffle(&mut batches);
            batches
        }
    }
}

/// A batch ready for the model: right-padded ids, and which flattened positions predict which
/// response token.
pub struct TrainBatch {
    pub input: ForwardInput,
    /// Flattened (row * width + column) positions whose next token is a response token.
    pub positions: Tensor<1, Int>,
    /// The token each of those positions must predict, [n, 1].
    pub targets: Tensor<2, Int>,
    pub n_targets: usize,
    /// Real (non-padding) tokens in the batch.
    pub tokens: usize,
    pub width: usize,
}

impl TrainBatch {
    /// `samples` become rows, right-padded with `pad_id`.
    pub fn new(samples: &[&Encoded], pad_id: u32, device: &Device) -> TrainBatch {
        let b = samples.len();
        let width = samples.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
        let (mut ids, mut pos, mut pad) = (Vec::with_capacity(b * width), Vec::with_capacity(b * width), Vec::with_capacity(b * width));
        let (mut flat, mut targets) = (Vec::new(), Vec::new());
        for (row, s) in samples.iter().enumerate() {
            for j in 0..width {
                let real = j < s.len();
                ids.push(if real { s.ids[j] as i64 } else { pad_id as i64 });
                pos.push(if real { j as i64 } else { 0 });
                pad.push(!real);
            }
            for j in s.response_start..s.len() {
                flat.push((row * width + j - 1) as i64);
                targets.push(s.ids[j] as i64);
            }
        }
        let n = flat.len();
        TrainBatch {
            input: ForwardInput {
                ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [b, width]), device),
                positions: Tensor::<2, Int>::from_data(TensorData::new(pos, [b, width]), device),
                key_padding: Some(Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, width]), device)),
                visibility: None,
            },
            positions: Tensor::<1, Int>::from_data(TensorData::new(flat, [n]), device),
            targets: Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), device),
            n_targets: n,
            tokens: samples.iter().map(|s| s.len()).sum(),
            width,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_response() {
        let e = Encoded::new(&[1, 2, 3, 4, 5], &[8, 9], 5, Side::Left).unwrap();
        assert_eq!(e.ids, vec![3, 4, 5, 8, 9]);
        assert_eq!(e.response_start, 3);
        let e = Encoded::new(&[1, 2, 3, 4, 5], &[8, 9], 5, Side::Right).unwrap();
        assert_eq!(e.ids, vec![1, 2, 3, 8, 9]);
        let e = Encoded::new(&[1, 2], &[7, 8, 9, 10], 3, Side::Left).unwrap();
        assert_eq!(e.ids, vec![2, 7, 8]);
        assert_eq!(e.targets(), 2);
        assert!(Encoded::new(&[1], &[], 8, Side::Left).is_none());
    }

    #[test]
    fn batches_cover_every_sample_once_and_are_deterministic() {
        let samples: Vec<Encoded> = (0..37).map(|i| Encoded::new(&[1, 1], &vec![1; 1 + (i * 7) % 11], 64, crate::recipe::types::Side::Left).unwrap()).collect();
        for batching in [Batching::None, Batching::Length] {
            let a = epoch_batches(&samples, 4, batching, 9, 0);
            assert_eq!(a, epoch_batches(&samples, 4, batching, 9, 0));
            assert_ne!(a, epoch_batches(&samples, 4, batching, 9, 1));
            let mut all: Vec<usize> = a.iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..37).collect::<Vec<_>>());
        }
        // Length bucketing pads less than data order.
        let waste = |batches: &[Vec<usize>]| -> usize {
            batches.iter().map(|b| b.iter().map(|&i| samples[i].len()).max().unwrap() * b.len() - b.iter().map(|&i| samples[i].len()).sum::<usize>()).sum()
        };
        assert!(waste(&epoch_batches(&samples, 4, Batching::Length, 9, 0)) < waste(&epoch_batches(&samples, 4, Batching::None, 9, 0)));
    }
}
