//! Recipe -> ResolvedRecipe: defaults applied, inheritance of `[lora]` / `[training]` resolved,
//! references made explicit, paths anchored, sweeps expanded into arms.
//!
//! Everything downstream (the plan, the stages) reads only the resolved form, so a default lives
//! in exactly one place: here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};


pub use super::merge::{MergeConfig, ResolvedAdaptation, merge_config};
use super::sweep;
use super::types::*;
use super::LoadedRecipe;
use crate::assets::LocalPath;

/// The adapter name of the base spirit in arms.
pub const BASE_SPIRIT: &str = "base_spirit";
/// Names that cannot be used for ingredients or arms: they label other rows of the results.
pub const RESERVED_NAMES: &[&str] = &[BASE_SPIRIT, "backbone", "random", "popularity", "markov", "itemknn", "sasrec"];

pub const DEFAULT_SEED: u64 = 42;
pub const DEFAULT_CANDIDATES: u32 = 10;
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful recommendation assistant.";
pub use crate::prompt::template::DEFAULT_SEPARATOR;
/// `scoring` of the `likelihood` protocol.
pub const DEFAULT_SCORING: Scoring = Scoring::Sum;
/// Resamples behind each reported interval (`evaluation.bootstrap`).
pub const DEFAULT_BOOTSTRAP: u32 = 1000;
/// `max_new_tokens` of the `generate` protocol.
pub const DEFAULT_MAX_NEW_TOKENS: u32 = 64;
/// The answer length an entropy merge generates (`token_entropy`) when neither the merge nor a
/// `generate` evaluation sets one.
pub const DEFAULT_ENTROPY_ANSWER_TOKENS: u32 = 48;

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedRecipe {
    /// Hash of this resolved recipe (formatting and comments of the TOML do not change it).
    pub recipe_hash: String,
    pub experiment: ResolvedExperiment,
    pub backbone: ResolvedBackbone,
    pub datasets: BTreeMap<String, ResolvedDataset>,
    pub domains: BTreeMap<String, ResolvedDomain>,
    pub data: ResolvedData,
    pub templates: BTreeMap<String, ResolvedTemplate>,
    pub adapters: Vec<ResolvedAdapter>,
    pub arms: Vec<ResolvedArm>,
    pub evaluation: ResolvedEvaluation,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedExperiment {
    pub name: String,
    pub description: Option<String>,
    pub seed: u64,
    pub device: String,
    pub backend: BackendChoice,
    pub threads: Option<u32>,
}

/// Where a model or dataset comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Asset { name: String, requirement: String },
    Path { path: LocalPath },
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedBackbone {
    pub source: Source,
    pub dtype: Dtype,
    /// Attention's products' dtype as the recipe asks ([`Backbone::attention`]; with `dtype = "auto"`
    /// the plan decides whether bf16 applies).
    pub attention: AttentionDtype,
    pub system_prompt: String,
    pub chat_template: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedDataset {
    pub source: Source,
    #[serde(flatten)]
    pub spec: DatasetSpec,
}

/// How a dataset is read and cleaned (every default applied): what its `data` stage reads besides
/// where the files are.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetSpec {
    pub format: DatasetFormat,
    pub columns: Option<CsvColumns>,
    pub order: Order,
    pub strict: bool,
    pub min_rating: Option<f64>,
    pub k_core: Option<u32>,
    pub dedup: bool,
    pub min_history: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedDomain {
    pub dataset: String,
    pub filter: Option<ItemFilter>,
    pub label: String,
    /// Absent (and so not in the recipe hash) when every user is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<ResolvedPartition>,
}

/// A user partition with its seed resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedPartition {
    pub parts: u32,
    pub part: u32,
    pub seed: u64,
}

impl ResolvedPartition {
    /// Whether `user` falls into the kept part.
    pub fn keeps(&self, user: &str) -> bool {
        crate::rng::Rng::derive(self.seed, &["user-partition", user]).below(self.parts as u64) == self.part as u64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedData {
    pub split: SplitStrategy,
    pub max_history: u32,
    pub history_token_budget: Option<u32>,
    pub candidates: u32,
    pub negatives: NegativeSampling,
    pub max_train_per_user: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedTemplate {
    pub path: LocalPath,
    pub separator: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterRole {
    BaseSpirit,
    Ingredient,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedAdapter {
    pub name: String,
    pub role: AdapterRole,
    pub domains: Vec<String>,
    pub template: String,
    pub samples_per_user: Option<u32>,
    pub max_samples: Option<u32>,
    /// Absent from the serialized form when unset, so that recipes without it keep their hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_users: Option<u32>,
    /// Normalized mixture weights, one per domain in `domains` order (base spirit only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixture: Option<Vec<f64>>,
    pub max_valid_samples: u32,
    pub pretrained: Option<LocalPath>,
    pub lora: LoraConfig,
    pub training: TrainingConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoraConfig {
    pub rank: u32,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<LoraTarget>,
    pub rslora: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingConfig {
    pub lr: f64,
    pub epochs: u32,
    pub max_steps: Option<u64>,
    pub batch_size: u32,
    pub grad_accum: u32,
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub max_seq_len: u32,
    pub truncation: Side,
    pub batching: Batching,
    pub eval_every: u64,
    pub checkpoint_every: u64,
    pub early_stopping_patience: Option<u32>,
    pub max_grad_norm: f64,
    /// Left out of the stage keys at its default (`loss`), so that keys stay as they were.
    #[serde(skip_serializing_if = "SelectBy::is_loss")]
    pub select_by: SelectBy,
    /// Validation users of `select_by = "mrr"` (`None` with `loss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select_users: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedArm {
    pub name: String,
    /// The declared arm a swept arm came from (its own name otherwise).
    pub base_name: String,
    pub sweep_point: Option<BTreeMap<String, Json>>,
    pub adapters: Vec<String>,
    pub merge: MergeConfig,
    pub rank: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ResolvedEvaluation {
    pub protocol: ResolvedProtocol,
    pub template: String,
    pub k: Vec<u32>,
    pub metrics: Vec<Metric>,
    pub backbone: bool,
    pub baselines: Vec<Baseline>,
    /// SASRec's settings, when `baselines` lists it.
    pub sasrec: Option<super::sasrec::ResolvedSasrec>,
    pub leakage: Leakage,
    pub bootstrap: u32,
    /// The paired comparisons, `[arm_a, arm_b]` (swept names expanded).
    pub compare: Vec<[String; 2]>,
    pub settings: Vec<ResolvedSetting>,
}

/// The evaluation protocol with every setting resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResolvedProtocol {
    Likelihood { scoring: Scoring },
    Generate { max_new_tokens: u32, fuzzy_match: bool },
}

impl ResolvedProtocol {
    pub fn kind(&self) -> Protocol {
        match self {
            ResolvedProtocol::Likelihood { .. } => Protocol::Likelihood,
            ResolvedProtocol::Generate { .. } => Protocol::Generate,
        }
    }

    /// The likelihood protocol's scoring rule (`None` under `generate`).
    pub fn scoring(&self) -> Option<Scoring> {
        match self {
            ResolvedProtocol::Likelihood { scoring } => Some(*scoring),
            ResolvedProtocol::Generate { .. } => None,
        }
    }

    /// The generate protocol's answer length (`None` under `likelihood`).
    pub fn max_new_tokens(&self) -> Option<u32> {
        match self {
            ResolvedProtocol::Generate { max_new_tokens, .. } => Some(*max_new_tokens),
            ResolvedProtocol::Likelihood { .. } => None,
        }
    }
}

/// The resolved evaluation serializes in the flat layout it had before protocols were tagged
/// (`protocol`, `scoring`, ..., `max_new_tokens`, `fuzzy_match`), so that the recipe hash of an
/// unchanged recipe, a column of every results table, stays what it was.
impl Serialize for ResolvedEvaluation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Flat<'a> {
            protocol: Protocol,
            scoring: Option<Scoring>,
            template: &'a str,
            k: &'a [u32],
            metrics: &'a [Metric],
            backbone: bool,
            baselines: &'a [Baseline],
            #[serde(skip_serializing_if = "Option::is_none")]
            sasrec: Option<&'a super::sasrec::ResolvedSasrec>,
            max_new_tokens: Option<u32>,
            fuzzy_match: bool,
            leakage: Leakage,
            bootstrap: u32,
            compare: &'a [[String; 2]],
            settings: &'a [ResolvedSetting],
        }
        let fuzzy_match = matches!(self.protocol, ResolvedProtocol::Generate { fuzzy_match: true, .. });
        Flat {
            protocol: self.protocol.kind(),
            scoring: self.protocol.scoring(),
            template: &self.template,
            k: &self.k,
            metrics: &self.metrics,
            backbone: self.backbone,
            baselines: &self.baselines,
            sasrec: self.sasrec.as_ref(),
            max_new_tokens: self.protocol.max_new_tokens(),
            fuzzy_match,
            leakage: self.leakage,
            bootstrap: self.bootstrap,
            compare: &self.compare,
            settings: &self.settings,
        }
        .serialize(s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedSetting {
    pub name: String,
    pub domain: String,
    pub users: UserSelection,
    pub ingredient: Option<String>,
    pub max_history: Option<u32>,
    pub max_users: Option<u32>,
}

/// The adapters an arm merges (the declared list, or base spirit + the only ingredient).
pub fn arm_adapters(r: &Recipe, arm: &Arm) -> Result<Vec<String>, String> {
    if let Some(list) = &arm.adapters {
        return Ok(list.clone());
    }
    let mut out = Vec::new();
    if r.base_spirit.is_some() {
        out.push(BASE_SPIRIT.to_string());
    }
    match r.ingredients.len() {
        0 => {}
        1 => out.extend(r.ingredients.keys().cloned()),
        n => return Err(format!("arm `{}` does not say which adapters it merges, and there are {n} ingredients", arm.name)),
    }
    if out.is_empty() {
        return Err(format!("arm `{}` has no adapters to merge", arm.name));
    }
    Ok(out)
}

pub fn candidates(r: &Recipe) -> u32 {
    r.data.candidates.unwrap_or(DEFAULT_CANDIDATES)
}

/// The ingredient whose training data defines a setting's warm and cold users.
pub fn setting_ingredient(r: &Recipe, s: &Setting) -> Result<Option<String>, String> {
    if let Some(i) = &s.ingredient {
        return Ok(Some(i.clone()));
    }
    let on_domain: Vec<&String> = r.ingredients.iter().filter(|(_, a)| a.domains.contains(&s.domain)).map(|(n, _)| n).collect();
    match (on_domain.as_slice(), s.users) {
        ([one], _) => Ok(Some((*one).clone())),
        ([], UserSelection::ShortHistory | UserSelection::All) => Ok(None),
        ([], _) => Err(format!("no ingredient is trained on domain `{}`, so its warm and cold users are undefined", s.domain)),
        (many, _) => Err(format!("{} ingredients are trained on domain `{}`; say which defines this setting", many.len(), s.domain)),
    }
}

fn pick<T: Clone>(specific: Option<&T>, general: Option<&T>, default: T) -> T {
    specific.or(general).cloned().unwrap_or(default)
}

fn lora_config(own: Option<&LoraSpec>, all: &LoraSpec) -> LoraConfig {
    let o = own.cloned().unwrap_or_default();
    LoraConfig {
        rank: pick(o.rank.as_ref(), all.rank.as_ref(), 16),
        alpha: pick(o.alpha.as_ref(), all.alpha.as_ref(), 32.0),
        dropout: pick(o.dropout.as_ref(), all.dropout.as_ref(), 0.05),
        targets: pick(
            o.targets.as_ref(),
            all.targets.as_ref(),
            vec![LoraTarget::QProj, LoraTarget::KProj, LoraTarget::VProj, LoraTarget::OProj, LoraTarget::GateProj, LoraTarget::UpProj, LoraTarget::DownProj],
        ),
        rslora: pick(o.rslora.as_ref(), all.rslora.as_ref(), false),
    }
}

fn training_config(own: Option<&TrainingSpec>, all: &TrainingSpec) -> TrainingConfig {
    let o = own.cloned().unwrap_or_default();
    let select_by = pick(o.select_by.as_ref(), all.select_by.as_ref(), SelectBy::Loss);
    TrainingConfig {
        lr: pick(o.lr.as_ref(), all.lr.as_ref(), 2e-4),
        epochs: pick(o.epochs.as_ref(), all.epochs.as_ref(), 1),
        max_steps: o.max_steps.or(all.max_steps),
        batch_size: pick(o.batch_size.as_ref(), all.batch_size.as_ref(), 4),
        grad_accum: pick(o.grad_accum.as_ref(), all.grad_accum.as_ref(), 1),
        warmup_ratio: pick(o.warmup_ratio.as_ref(), all.warmup_ratio.as_ref(), 0.05),
        schedule: pick(o.schedule.as_ref(), all.schedule.as_ref(), Schedule::Cosine),
        weight_decay: pick(o.weight_decay.as_ref(), all.weight_decay.as_ref(), 0.0),
        betas: pick(o.betas.as_ref(), all.betas.as_ref(), [0.9, 0.999]),
        max_seq_len: pick(o.max_seq_len.as_ref(), all.max_seq_len.as_ref(), 512),
        truncation: pick(o.truncation.as_ref(), all.truncation.as_ref(), Side::Left),
        batching: pick(o.batching.as_ref(), all.batching.as_ref(), Batching::Length),
        eval_every: pick(o.eval_every.as_ref(), all.eval_every.as_ref(), 50),
        checkpoint_every: pick(o.checkpoint_every.as_ref(), all.checkpoint_every.as_ref(), 50),
        early_stopping_patience: o.early_stopping_patience.or(all.early_stopping_patience),
        max_grad_norm: pick(o.max_grad_norm.as_ref(), all.max_grad_norm.as_ref(), 1.0),
        select_by,
        select_users: (select_by == SelectBy::Mrr).then(|| pick(o.select_users.as_ref(), all.select_users.as_ref(), 200)),
    }
}

fn source(asset: &Option<String>, path: &Option<PathBuf>, base: &Path) -> Source {
    match (asset, path) {
        (Some(name), _) => Source::Asset {
            name: name.clone(),
            requirement: crate::assets::find(name).map(|a| a.requirement()).unwrap_or_default(),
        },
        (None, Some(p)) => Source::Path { path: LocalPath::new(base, p) },
        (None, None) => unreachable!("validated: asset or path"),
    }
}

/// The paired comparisons of a recipe: the declared pairs (a swept arm's base name standing for
/// each of its points), or the default: every cocktail against each one-adapter arm, then every
/// arm against the raw backbone when it is evaluated.
fn comparisons(ev: &Evaluation, arms: &[ResolvedArm]) -> Vec<[String; 2]> {
    let expand = |name: &str| -> Vec<String> {
        let points: Vec<String> = arms.iter().filter(|a| a.base_name == name && a.name != name).map(|a| a.name.clone()).collect();
        if points.is_empty() { vec![name.to_string()] } else { points }
    };
    let mut out: Vec<[String; 2]> = Vec::new();
    let mut push = |a: String, b: String| {
        if a != b && !out.iter().any(|p| p[0] == a && p[1] == b) {
            out.push([a, b]);
        }
    };
    match &ev.compare {
        Some(pairs) => {
            for [a, b] in pairs {
                for x in expand(a) {
                    for y in expand(b) {
                        push(x.clone(), y);
                    }
                }
            }
        }
        None => {
            let single = |a: &ResolvedArm| a.merge.adapters_used(a.adapters.len()) <= 1;
            for c in arms.iter().filter(|a| !single(a)) {
                for s in arms.iter().filter(|a| single(a)) {
                    push(c.name.clone(), s.name.clone());
                }
            }
            if ev.backbone.unwrap_or(true) {
                for a in arms {
                    push(a.name.clone(), "backbone".into());
                }
            }
        }
    }
    out
}

impl ResolvedEvaluation {
    /// The scoring rule candidates are ranked by (`likelihood`), and the one an entropy merge's
    /// `sequence_entropy` uses under `generate` (the default).
    pub fn scoring_rule(&self) -> Scoring {
        self.protocol.scoring().unwrap_or(DEFAULT_SCORING)
    }

    /// The K every prompt asks for: the largest evaluation cut-off.
    pub fn prompt_k(&self) -> u32 {
        self.k.iter().copied().max().unwrap_or(1)
    }

    /// The answer length of an entropy merge: its own `answer_tokens`, else the evaluation's
    /// `max_new_tokens` under `generate`, else the default.
    pub fn entropy_answer_tokens(&self, merge: &MergeConfig) -> u32 {
        let own = match merge {
            MergeConfig::Entropy { answer_tokens, .. } => *answer_tokens,
            _ => None,
        };
        own.or(self.protocol.max_new_tokens()).unwrap_or(DEFAULT_ENTROPY_ANSWER_TOKENS)
    }
}

impl ResolvedRecipe {
    /// Resolve a validated recipe. Fails only on problems `validate` already reports.
    pub fn from_loaded(loaded: &LoadedRecipe) -> Result<ResolvedRecipe, String> {
        let r = &loaded.recipe;
        let base = &loaded.base_dir;
        let e = &r.experiment;
        let seed = e.seed.unwrap_or(DEFAULT_SEED);
        let experiment = ResolvedExperiment {
            name: e.name.clone(),
            description: e.description.clone(),
            seed,
            device: e.device.clone().unwrap_or_else(|| "auto".into()),
            backend: e.backend.unwrap_or(BackendChoice::Auto),
            threads: e.threads,
        };
        let b = &r.backbone;
        let backbone = ResolvedBackbone {
            source: source(&b.asset, &b.path, base),
            dtype: b.dtype.unwrap_or(Dtype::F32),
            attention: b.attention.unwrap_or_default(),
            system_prompt: b.system_prompt.clone().unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.into()),
            chat_template: b.chat_template.unwrap_or(true),
        };
        let datasets = r
            .datasets
            .iter()
            .map(|(n, d)| {
                let rd = ResolvedDataset {
                    source: source(&d.asset, &d.path, base),
                    spec: DatasetSpec {
                        format: d.format,
                        columns: d.columns.clone(),
                        order: d.order.unwrap_or(Order::Timestamp),
                        strict: d.strict.unwrap_or(false),
                        min_rating: d.min_rating,
                        k_core: d.k_core,
                        dedup: d.dedup.unwrap_or(true),
                        min_history: d.min_history.unwrap_or(3),
                    },
                };
                (n.clone(), rd)
            })
            .collect();
        let domains = r
            .domains
            .iter()
            .map(|(n, d)| (n.clone(), ResolvedDomain {
                        dataset: d.dataset.clone(),
                        filter: d.filter.clone(),
                        label: d.label.clone().unwrap_or_else(|| n.clone()),
                        users: d.users.as_ref().map(|u| ResolvedPartition { parts: u.parts, part: u.part, seed: u.seed.unwrap_or(seed) }),
                    }))
            .collect();
        let d = &r.data;
        let data = ResolvedData {
            split: d.split.unwrap_or(SplitStrategy::LeaveOneOut),
            max_history: d.max_history.unwrap_or(10),
            history_token_budget: d.history_token_budget,
            candidates: candidates(r),
            negatives: d.negatives.unwrap_or(NegativeSampling::Uniform),
            max_train_per_user: d.max_train_per_user,
        };
        let templates = r
            .templates
            .iter()
            .map(|(n, t)| (n.clone(), ResolvedTemplate { path: LocalPath::new(base, &t.path), separator: t.separator.clone().unwrap_or_else(|| DEFAULT_SEPARATOR.into()) }))
            .collect();
        let mut adapters = Vec::new();
        let declared = r.base_spirit.iter().map(|a| (BASE_SPIRIT.to_string(), AdapterRole::BaseSpirit, a));
        let ingredients = r.ingredients.iter().map(|(n, a)| (n.clone(), AdapterRole::Ingredient, a));
        for (name, role, a) in declared.chain(ingredients) {
            adapters.push(ResolvedAdapter {
                name,
                role,
                domains: a.domains.clone(),
                template: a.template.clone(),
                samples_per_user: a.samples_per_user,
                max_samples: a.max_samples,
                max_users: a.max_users,
                mixture: a.mixture.as_ref().map(|m| {
                    let total: f64 = a.domains.iter().filter_map(|d| m.get(d)).sum();
                    a.domains.iter().map(|d| m.get(d).copied().unwrap_or(0.0) / total).collect()
                }),
                max_valid_samples: a.max_valid_samples.unwrap_or(200),
                pretrained: a.pretrained.as_ref().map(|p| LocalPath::new(base, p)),
                lora: lora_config(a.lora.as_ref(), &r.lora),
                training: training_config(a.training.as_ref(), &r.training),
            });
        }
        let mut arms = Vec::new();
        for x in sweep::expand(r)? {
            let list = arm_adapters(r, &x.arm)?;
            arms.push(ResolvedArm {
                name: x.arm.name.clone(),
                base_name: x.base_name,
                sweep_point: x.sweep_point,
                merge: merge_config(&x.arm.merge, list.len(), seed),
                adapters: list,
                rank: x.arm.rank,
            });
        }
        let ev = &r.evaluation;
        let protocol = match ev.protocol.clone().unwrap_or(ProtocolSpec::Likelihood { scoring: None }) {
            ProtocolSpec::Likelihood { scoring } => ResolvedProtocol::Likelihood { scoring: scoring.unwrap_or(DEFAULT_SCORING) },
            ProtocolSpec::Generate { max_new_tokens, fuzzy_match } => {
                ResolvedProtocol::Generate { max_new_tokens: max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS), fuzzy_match: fuzzy_match.unwrap_or(false) }
            }
        };
        let mut metrics = ev.metrics.clone().unwrap_or_else(|| {
            let mut m = vec![Metric::Hr, Metric::Ndcg, Metric::Mrr];
            if protocol.kind() == Protocol::Generate {
                m.push(Metric::ValidRatio);
            }
            m
        });
        metrics.sort();
        metrics.dedup();
        let mut k = ev.k.clone().unwrap_or_else(|| vec![1, 3, 5]);
        k.sort_unstable();
        k.dedup();
        let mut settings = Vec::new();
        for (name, s) in &ev.settings {
            settings.push(ResolvedSetting {
                name: name.clone(),
                domain: s.domain.clone(),
                users: s.users,
                ingredient: setting_ingredient(r, s)?,
                max_history: (s.users == UserSelection::ShortHistory).then(|| s.max_history.unwrap_or(3)),
                max_users: s.max_users,
            });
        }
        let baselines = ev.baselines.clone().unwrap_or_else(|| vec![Baseline::Random, Baseline::Popularity]);
        let sasrec = baselines.contains(&Baseline::Sasrec).then(|| ev.sasrec.clone().unwrap_or_default().resolve());
        let evaluation = ResolvedEvaluation {
            protocol,
            template: ev.template.clone(),
            k,
            metrics,
            backbone: ev.backbone.unwrap_or(true),
            baselines,
            sasrec,
            leakage: ev.leakage.unwrap_or(Leakage::Error),
            bootstrap: ev.bootstrap.unwrap_or(DEFAULT_BOOTSTRAP),
            compare: comparisons(ev, &arms),
            settings,
        };
        let mut resolved = ResolvedRecipe { recipe_hash: String::new(), experiment, backbone, datasets, domains, data, templates, adapters, arms, evaluation };
        resolved.recipe_hash = short_hash(&serde_json::to_vec(&resolved).expect("serializable"));
        Ok(resolved)
    }

    pub fn adapter(&self, name: &str) -> Option<&ResolvedAdapter> {
        self.adapters.iter().find(|a| a.name == name)
    }
}

/// First 16 hex digits of the SHA-256 of `bytes`.
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
