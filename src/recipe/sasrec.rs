//! `[evaluation.sasrec]`: the SASRec baseline's hyper-parameters, with the paper's defaults
//! (Kang & McAuley 2018: 2 blocks, 1 head, hidden 50, dropout 0.2, Adam lr 1e-3 with beta2 0.98,
//! batch 128; max length 50 for MovieLens-100K-sized sequences, 200 for MovieLens-1M).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SasrecSpec {
    /// Embedding and hidden width. Default 50.
    #[schemars(range(min = 1, max = 4096))]
    pub hidden: Option<u32>,
    /// Self-attention blocks. Default 2.
    #[schemars(range(min = 1, max = 64))]
    pub blocks: Option<u32>,
    /// Attention heads (dividing `hidden`). Default 1.
    #[schemars(range(min = 1, max = 64))]
    pub heads: Option<u32>,
    /// Dropout on embeddings, attention weights and block outputs. Default 0.2.
    #[schemars(range(min = 0.0, max = 0.95))]
    pub dropout: Option<f64>,
    /// Adam learning rate. Default 1e-3.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub lr: Option<f64>,
    /// Most recent items a sequence keeps. Default 50 (the paper uses 200 for MovieLens-1M).
    #[schemars(range(min = 2, max = 4096))]
    pub max_len: Option<u32>,
    /// Users per training batch. Default 128.
    #[schemars(range(min = 1, max = 65536))]
    pub batch_size: Option<u32>,
    /// Most training epochs (one epoch = every user once, in a seeded order). Default 200.
    #[schemars(range(min = 1, max = 100000))]
    pub epochs: Option<u32>,
    /// Validate every this many epochs. Default 10.
    #[schemars(range(min = 1, max = 100000))]
    pub eval_every: Option<u32>,
    /// Stop after this many validations without a better validation NDCG@10; the best
    /// validation's weights are kept. Default 5.
    #[schemars(range(min = 1, max = 100000))]
    pub patience: Option<u32>,
    /// Users whose validation item is ranked at each validation (a seeded sample; all when the
    /// domain has fewer). Default 10000.
    #[schemars(range(min = 1, max = 10000000))]
    pub valid_users: Option<u32>,
}

/// Every value the SASRec stage reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedSasrec {
    pub hidden: u32,
    pub blocks: u32,
    pub heads: u32,
    pub dropout: f64,
    pub lr: f64,
    pub max_len: u32,
    pub batch_size: u32,
    pub epochs: u32,
    pub eval_every: u32,
    pub patience: u32,
    pub valid_users: u32,
}

impl SasrecSpec {
    pub fn resolve(&self) -> ResolvedSasrec {
        ResolvedSasrec {
            hidden: self.hidden.unwrap_or(50),
            blocks: self.blocks.unwrap_or(2),
            heads: self.heads.unwrap_or(1),
            dropout: self.dropout.unwrap_or(0.2),
            lr: self.lr.unwrap_or(1e-3),
            max_len: self.max_len.unwrap_or(50),
            batch_size: self.batch_size.unwrap_or(128),
            epochs: self.epochs.unwrap_or(200),
            eval_every: self.eval_every.unwrap_or(10),
            patience: self.patience.unwrap_or(5),
            valid_users: self.valid_users.unwrap_or(10000),
        }
    }
}
