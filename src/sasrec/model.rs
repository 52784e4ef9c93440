//! The SASRec network (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018).
//!
//! Items are numbered from 1 (0 pads a sequence on the left). Per position t of a sequence of
//! length L: `x_t = sqrt(d) * M[s_t] + P[t]` (learned positional embeddings), dropout, zeroed at
//! padding; then `blocks` pre-norm blocks, each
//!
//! ```text
//! x = x + Dropout(CausalAttention(LN1(x)))      (heads of width d / heads, dropout on weights)
//! x = x + Dropout(W2 Dropout(ReLU(W1 LN2(x)) ))  then zeroed at padding
//! ```
//!
//! and a final LayerNorm. The score of item i after position t is `F_t · M[i]` (the item
//! embedding is shared between input and output, as in the paper). Training is the paper's
//! binary cross-entropy: at each non-padding position the next item against one sampled negative.
//!
//! Parameter names (`item_emb.weight`, `blocks.0.attn_norm.gamma`, ...) are what
//! `model.safetensors` holds; the PyTorch fixture generator (`scripts/fixtures/make_sasrec_fixture.py`)
//! writes the same names (linear weights as [in, out]).

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{log_sigmoid, relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::dropout::dropout;
use crate::rng::Rng;

/// The network's shape.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    /// Items, not counting the padding row.
    pub items: usize,
    pub hidden: usize,
    pub blocks: usize,
    pub heads: usize,
    pub max_len: usize,
    pub dropout: f64,
}

#[derive(Module, Debug)]
pub struct Block {
    pub attn_norm: LayerNorm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub out: Linear,
    pub ffn_norm: LayerNorm,
    pub ffn1: Linear,
    pub ffn2: Linear,
    /// Dropout probability ([`crate::dropout`]: the same masks on every machine).
    pub dropout: f64,
    pub heads: usize,
}

#[derive(Module, Debug)]
pub struct SasRec {
    /// [items + 1, hidden]; row 0 is padding.
    pub item_emb: Embedding,
    /// [max_len + 1, hidden]; row 0 is padding (positions count from 1).
    pub pos_emb: Embedding,
    pub blocks: Vec<Block>,
    pub last_norm: LayerNorm,
    pub dropout: f64,
    pub hidden: usize,
}

/// Xavier-normal weights of shape `[rows, cols]` (fan in + fan out = rows + cols), seeded.
fn xavier(rows: usize, cols: usize, rng: &mut Rng, device: &Device) -> Param<Tensor<2>> {
    let std = (2.0 / (rows + cols) as f64).sqrt();
    let data: Vec<f32> = (0..rows * cols).map(|_| (rng.normal() * std) as f32).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(data, [rows, cols]), device))
}

fn linear(d_in: usize, d_out: usize, rng: &mut Rng, device: &Device) -> Linear {
    let mut l = LinearConfig::new(d_in, d_out).init(device);
    l.weight = xavier(d_in, d_out, rng, device);
    l.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    l
}

fn embedding(rows: usize, d: usize, rng: &mut Rng, device: &Device) -> Embedding {
    let mut e = EmbeddingConfig::new(rows, d).init(device);
    let std = (2.0 / (rows + d) as f64).sqrt();
    // The padding row starts (and, since padding positions are zeroed, stays) at zero.
    let data: Vec<f32> = (0..rows * d).map(|k| if k < d { 0.0 } else { (rng.normal() * std) as f32 }).collect();
    e.weight = Param::from_tensor(Tensor::from_data(TensorData::new(data, [rows, d]), device));
    e
}

impl SasRec {
    /// A freshly initialized network (Xavier-normal matrices, zero biases, unit LayerNorms).
    pub fn init(shape: &Shape, seed: u64, device: &Device) -> SasRec {
        let mut rng = Rng::derive(seed, &["sasrec", "init"]);
        let d = shape.hidden;
        let norm = || LayerNormConfig::new(d).with_epsilon(1e-8).init(device);
        let blocks = (0..shape.blocks)
            .map(|_| Block {
                attn_norm: norm(),
                q: linear(d, d, &mut rng, device),
                k: linear(d, d, &mut rng, device),
                v: linear(d, d, &mut rng, device),
                out: linear(d, d, &mut rng, device),
                ffn_norm: norm(),
                ffn1: linear(d, d, &mut rng, device),
                ffn2: linear(d, d, &mut rng, device),
                dropout: shape.dropout,
                heads: shape.heads,
            })
            .collect();
        SasRec {
            item_emb: embedding(shape.items + 1, d, &mut rng, device),
            pos_emb: embedding(shape.max_len + 1, d, &mut rng, device),
            blocks,
            last_norm: norm(),
            dropout: shape.dropout,
            hidden: d,
        }
    }

    /// Hidden states `[batch, len, hidden]` of left-padded item sequences `seqs` (`[batch, len]`,
    /// 0 = padding): position t sees positions <= t only.
    pub fn features(&self, seqs: &[i64], batch: usize, len: usize) -> Tensor<3> {
        let device = self.item_emb.weight.device();
        let d = self.hidden;
        let ids = Tensor::<2, Int>::from_data(TensorData::new(seqs.to_vec(), [batch, len]), &device);
        let positions: Vec<i64> = seqs.iter().enumerate().map(|(k, &s)| if s == 0 { 0 } else { (k % len) as i64 + 1 }).collect();
        let pos = Tensor::<2, Int>::from_data(TensorData::new(positions, [batch, len]), &device);
        let keep: Vec<f32> = seqs.iter().map(|&s| if s == 0 { 0.0 } else { 1.0 }).collect();
        let keep = Tensor::<3>::from_data(TensorData::new(keep, [batch, len, 1]), &device);
        // Causal mask: a large negative above the diagonal.
        let causal: Vec<f32> = (0..len * len).map(|k| if k % len > k / len { -1e9 } else { 0.0 }).collect();
        let causal = Tensor::<4>::from_data(TensorData::new(causal, [1, 1, len, len]), &device);

        let mut x = self.item_emb.forward(ids).mul_scalar((d as f64).sqrt()) + self.pos_emb.forward(pos);
        x = dropout(x, self.dropout) * keep.clone();
        for b in &self.blocks {
            let (h, dh) = (b.heads, d / b.heads);
            let y = b.attn_norm.forward(x.clone());
            let split = |t: Tensor<3>| t.reshape([batch, len, h, dh]).swap_dims(1, 2);
            let (q, k, v) = (split(b.q.forward(y.clone())), split(b.k.forward(y.clone())), split(b.v.forward(y)));
            let weights = softmax(q.matmul(k.swap_dims(2, 3)).div_scalar((dh as f64).sqrt()) + causal.clone(), 3);
            let attended = dropout(weights, b.dropout).matmul(v).swap_dims(1, 2).reshape([batch, len, d]);
            x = x + dropout(b.out.forward(attended), b.dropout);
            let y = b.ffn_norm.forward(x.clone());
            let f = b.ffn2.forward(dropout(relu(b.ffn1.forward(y)), b.dropout));
            x = (x + dropout(f, b.dropout)) * keep.clone();
        }
        self.last_norm.forward(x)
    }

    /// Scores `[batch, per]` of `candidates` (`[batch, per]`, item numbers from 1) after the last
    /// position of each sequence.
    pub fn score_last(&self, seqs: &[i64], batch: usize, len: usize, candidates: &[i64], per: usize) -> Tensor<2> {
        let device = self.item_emb.weight.device();
        let last = self.features(seqs, batch, len).slice([0..batch, len - 1..len]).reshape([batch, self.hidden, 1]);
        let cands = Tensor::<2, Int>::from_data(TensorData::new(candidates.to_vec(), [batch, per]), &device);
        self.item_emb.forward(cands).matmul(last).reshape([batch, per])
    }

    /// The paper's loss: mean over non-padding positions of `-log σ(F_t·M[pos_t]) - log(1 -
    /// σ(F_t·M[neg_t]))`, for inputs `seqs`, next items `pos` (0 where nothing is predicted) and
    /// sampled negatives `neg`, all `[batch, len]`.
    pub fn loss(&self, seqs: &[i64], pos: &[i64], neg: &[i64], batch: usize, len: usize) -> Tensor<1> {
        let device = self.item_emb.weight.device();
        let feats = self.features(seqs, batch, len);
        let ids = |v: &[i64]| Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [batch, len]), &device);
        let logit = |v: &[i64]| (feats.clone() * self.item_emb.forward(ids(v))).sum_dim(2);
        let mask: Vec<f32> = pos.iter().map(|&p| if p == 0 { 0.0 } else { 1.0 }).collect();
        let count = mask.iter().sum::<f32>().max(1.0);
        let mask = Tensor::<3>::from_data(TensorData::new(mask, [batch, len, 1]), &device);
        let terms = log_sigmoid(logit(pos)) + log_sigmoid(logit(neg).neg());
        (terms * mask).sum().neg().div_scalar(count as f64)
    }
}
