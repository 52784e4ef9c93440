//! ResolvedRecipe -> Plan. The only place that reads the resolved recipe for execution: every
//! stage gets a typed parameter struct built here, and reads nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{CODE_SALT, Input, Plan, ResultRow, Role, RowSource, Stage, StageKind, StageParams};
use crate::assets::{FetchParams, SourceRef};
use crate::sasrec::params::SasrecParams;
use crate::data::params::{AdaptationRequest, BaselinesParams, DataParams, EvalSetParams, HistoryBudgetParams, LeakageParams, PromptsParams, RenderParams, SplitParams};
use crate::eval::params::{EvalParams, EvalSettings};
use crate::merge::params::{EntropyParams, MergeParams};
use crate::model::load::BackboneRef;
use crate::prompt::{PromptFormat, TemplateRef};
use crate::recipe::merge::MergeConfig;
use crate::recipe::resolve::{AdapterRole, ResolvedRecipe, Source};
use crate::recipe::types::SelectBy;
use crate::results::params::{LearnedMerge, ReportParams};
use crate::train::params::{ImportParams, MrrSelection, TrainParams};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read {path} to identify it: {source}")]
    Io { path: String, source: std::io::Error },
}

struct Builder {
    stages: Vec<Stage>,
    /// key -> index in `stages`, to merge identical work.
    by_key: BTreeMap<String, usize>,
}

impl Builder {
    /// Add a stage (or find the identical one); returns the id to refer to it by.
    fn add(&mut self, id: String, inputs: Vec<Input>, params: StageParams) -> String {
        let input_keys: Vec<&str> = inputs.iter().map(|i| self.key_of(&i.stage)).collect();
        let kind = params.kind();
        let key = stage_key(kind, &params.to_json(), &input_keys);
        if let Some(&i) = self.by_key.get(&key) {
            let existing = &mut self.stages[i];
            if existing.id != id && !existing.aliases.contains(&id) {
                existing.aliases.push(id);
            }
            return existing.id.clone();
        }
        self.by_key.insert(key.clone(), self.stages.len());
        self.stages.push(Stage { id: id.clone(), kind, key, inputs, aliases: Vec::new(), params });
        id
    }

    fn key_of(&self, id: &str) -> &str {
        &self.stages.iter().find(|s| s.id == id).expect("inputs are added before their users").key
    }
}

fn input(role: Role, stage: &str) -> Input {
    Input { role, stage: stage.to_string() }
}

/// The content key of a stage: hash(salt, kind, params, input keys).
pub fn stage_key(kind: StageKind, params: &serde_json::Value, input_keys: &[&str]) -> String {
    let material = json!({ "salt": CODE_SALT, "kind": kind.name(), "params": params, "inputs": input_keys });
    hash_hex(&serde_json::to_vec(&material).expect("plain JSON"))
}

/// The key of the `fetch` stage of a known asset (what `reccocktail fetch` fills).
pub fn fetch_key(asset: &crate::assets::Asset) -> String {
    stage_key(StageKind::Fetch, &StageParams::Fetch(FetchParams::of(asset)).to_json(), &[])
}

/// Compile the plan. Reads local files (models, datasets, templates, adapters) to hash them.
pub fn compile(r: &ResolvedRecipe) -> Result<Plan, PlanError> {
    let mut b = Builder { stages: Vec::new(), by_key: BTreeMap::new() };
    let seed = r.experiment.seed;

    // Assets and local sources. A local source has no stage; its content hash enters the keys.
    let source_ref = |b: &mut Builder, src: &Source, role: Role| -> Result<(Vec<Input>, SourceRef), PlanError> {
        Ok(match src {
            Source::Asset { name, requirement } => {
                let params = match crate::assets::find(name) {
                    Some(a) => FetchParams::of(a),
                    None => FetchParams { asset: name.clone(), requirement: requirement.clone(), files: Vec::new(), parts: Vec::new(), sha256: None },
                };
                let id = b.add(format!("fetch:{name}"), vec![], StageParams::Fetch(params));
                (vec![input(role, &id)], SourceRef::Asset { asset: name.clone() })
            }
            Source::Path { path } => (vec![], SourceRef::Path { path: path.clone(), content: content_hash(path)? }),
        })
    };

    let (backbone_inputs, backbone_source) = source_ref(&mut b, &r.backbone.source, Role::Backbone)?;
    // `auto` is decided here, for this machine: the stage keys carry the dtype that runs.
    let dtype = crate::model::precision::resolve(r.backbone.dtype, r.experiment.backend, &r.experiment.device);
    let precision = crate::model::precision::Precision::new(dtype, r.backbone.attention);
    let backbone = BackboneRef::new(backbone_source.clone(), precision);
    let format = PromptFormat { system_prompt: r.backbone.system_prompt.clone(), chat_template: r.backbone.chat_template };

    let mut dataset_ids = BTreeMap::new();
    for (name, d) in &r.datasets {
        let (inputs, source) = source_ref(&mut b, &d.source, Role::Asset)?;
        let params = DataParams { source, spec: d.spec.clone() };
        dataset_ids.insert(name.clone(), b.add(format!("data:{name}"), inputs, StageParams::Data(params)));
    }

    let mut split_ids = BTreeMap::new();
    for (name, d) in &r.domains {
        let params = SplitParams { domain: name.clone(), spec: d.clone(), data: r.data.clone() };
        split_ids.insert(name.clone(), b.add(format!("split:{name}"), vec![input(Role::Data, &dataset_ids[&d.dataset])], StageParams::Split(params)));
    }

    let mut templates = BTreeMap::new();
    for (name, t) in &r.templates {
        templates.insert(name.clone(), TemplateRef { path: t.path.clone(), content: content_hash(&t.path)?, separator: t.separator.clone() });
    }

    let ev = &r.evaluation;
    // A history token budget counts tokens with the backbone's tokenizer: the stages that render
    // prompts then read the backbone (its tokenizer only).
    let history_budget = r.data.history_token_budget.map(|tokens| HistoryBudgetParams { tokens, tokenizer: backbone_source.clone() });
    let tokenizer_inputs: Vec<Input> = if history_budget.is_some() { backbone_inputs.clone() } else { Vec::new() };
    let render = |template: &str| RenderParams { template: templates[template].clone(), k: ev.prompt_k(), seed, history_budget: history_budget.clone() };

    let separator = templates[&ev.template].separator.clone();
    let eval_settings = EvalSettings { protocol: ev.protocol.clone(), ks: ev.k.clone(), metrics: ev.metrics.clone(), seed, separator: separator.clone() };

    // Adapters: prompts -> train, or import for pretrained ones.
    let mut adapter_ids = BTreeMap::new();
    let mut prompt_ids = BTreeMap::new();
    for a in &r.adapters {
        let id = match &a.pretrained {
            Some(dir) => {
                let params = ImportParams { adapter: a.name.clone(), path: dir.clone(), content: content_hash(dir)?, backbone: backbone.clone() };
                b.add(format!("import:{}", a.name), backbone_inputs.clone(), StageParams::Import(params))
            }
            None => {
                let mut inputs: Vec<Input> = a.domains.iter().map(|d| input(Role::Split, &split_ids[d])).collect();
                inputs.extend(tokenizer_inputs.clone());
                let params = PromptsParams {
                    adapter: a.name.clone(),
                    role: a.role,
                    domains: a.domains.clone(),
                    render: render(&a.template),
                    samples_per_user: a.samples_per_user,
                    max_samples: a.max_samples,
                    max_users: a.max_users,
                    mixture: a.mixture.clone(),
                    max_valid_samples: a.max_valid_samples,
                };
                let prompts = b.add(format!("prompts:{}", a.name), inputs, StageParams::Prompts(params));
                prompt_ids.insert(a.name.clone(), prompts.clone());
                let mut inputs = backbone_inputs.clone();
                inputs.push(input(Role::Prompts, &prompts));
                // Checkpoints chosen by validation MRR: users of the adapter's domains, ranked
                // as the evaluation ranks its test users.
                let selection = a.training.select_users.filter(|_| a.training.select_by == SelectBy::Mrr).map(|users| {
                    inputs.extend(a.domains.iter().map(|d| input(Role::Split, &split_ids[d])));
                    inputs.extend(tokenizer_inputs.clone());
                    MrrSelection { render: render(&ev.template), evaluation: eval_settings.clone(), users }
                });
                let params = TrainParams { adapter: a.name.clone(), backbone: backbone.clone(), format: format.clone(), lora: a.lora.clone(), training: a.training.clone(), seed, dropout_masks: crate::dropout::MASKS_KEY, selection };
                b.add(format!("train:{}", a.name), inputs, StageParams::Train(params))
            }
        };
        adapter_ids.insert(a.name.clone(), id);
    }

    // Evaluation settings: users, candidate lists and prompts, fixed once for every arm.
    // Unlabeled adaptation prompts that the adaptive entropy arms take from every setting: the
    // largest size asked for, of users disjoint from the test users and of the test users.
    let adaptation_size = |disjoint: bool| {
        r.arms
            .iter()
            .filter(|a| a.merge.is_adaptive())
            .filter_map(|a| match &a.merge {
                MergeConfig::Entropy { adaptation, .. } if adaptation.disjoint_from_test == disjoint => Some(adaptation.size as usize),
                _ => None,
            })
            .max()
    };
    let adaptation = AdaptationRequest { disjoint: adaptation_size(true), from_test: adaptation_size(false) };
    let mut eval_set_ids = BTreeMap::new();
    for s in &ev.settings {
        let mut inputs = vec![input(Role::Split, &split_ids[&s.domain])];
        // Warm and cold are defined by the ingredient's training samples. (A pretrained
        // ingredient's training users are unknown: then every test user counts as unseen.)
        if let Some(p) = s.ingredient.as_ref().and_then(|ing| prompt_ids.get(ing)) {
            inputs.push(input(Role::Prompts, p));
        }
        inputs.extend(tokenizer_inputs.clone());
        inputs.extend(prompt_ids.values().map(|p| input(Role::Training, p)));
        let leakage = LeakageParams {
            policy: ev.leakage,
            adapters: prompt_ids.keys().cloned().collect(),
            datasets: r.domains.iter().map(|(n, d)| (n.clone(), d.dataset.clone())).collect(),
        };
        let params = EvalSetParams { setting: s.clone(), render: render(&ev.template), adaptation, leakage };
        eval_set_ids.insert(s.name.clone(), b.add(format!("eval-set:{}", s.name), inputs, StageParams::EvalSet(params)));
    }

    let eval_params = EvalParams { backbone: backbone.clone(), format: format.clone(), settings: eval_settings.clone() };
    let mut rows = Vec::new();
    let evaluate = |b: &mut Builder, label: &str, setting: &str, merge: Option<&str>, rows: &mut Vec<ResultRow>| {
        let mut inputs = backbone_inputs.clone();
        inputs.extend(merge.map(|m| input(Role::Merge, m)));
        inputs.push(input(Role::EvalSet, &eval_set_ids[setting]));
        let id = b.add(format!("evaluate:{label}:{setting}"), inputs, StageParams::Evaluate(eval_params.clone()));
        rows.push(ResultRow { arm: label.to_string(), setting: setting.to_string(), stage: id, source: RowSource::Model });
    };

    // SASRec: one network per evaluated domain, shared by that domain's settings.
    let mut sasrec_ids: BTreeMap<String, String> = BTreeMap::new();
    if let Some(sr) = &ev.sasrec {
        for s in &ev.settings {
            if !sasrec_ids.contains_key(&s.domain) {
                let params = SasrecParams { sasrec: sr.clone(), seed, dropout_masks: crate::dropout::MASKS_KEY };
                let id = b.add(format!("sasrec:{}", s.domain), vec![input(Role::Split, &split_ids[&s.domain])], StageParams::Sasrec(params));
                sasrec_ids.insert(s.domain.clone(), id);
            }
        }
    }
    for s in &ev.settings {
        if !ev.baselines.is_empty() {
            let params = BaselinesParams { baselines: ev.baselines.clone(), ks: ev.k.clone(), metrics: ev.metrics.clone() };
            let mut inputs = vec![input(Role::EvalSet, &eval_set_ids[&s.name]), input(Role::Split, &split_ids[&s.domain])];
            inputs.extend(sasrec_ids.get(&s.domain).map(|id| input(Role::Recommender, id)));
            let id = b.add(format!("baselines:{}", s.name), inputs, StageParams::Baselines(params));
            rows.push(ResultRow { arm: "baselines".into(), setting: s.name.clone(), stage: id, source: RowSource::Baselines });
        }
        if ev.backbone {
            evaluate(&mut b, "backbone", &s.name, None, &mut rows);
        }
    }

    // Merge stages whose coefficients are learned: the report tabulates and plots them.
    let mut learned: Vec<LearnedMerge> = Vec::new();
    for arm in &r.arms {
        let adapters: Vec<Input> = arm.adapters.iter().map(|a| input(Role::Adapter, &adapter_ids[a])).collect();
        let entropy = matches!(arm.merge, MergeConfig::Entropy { .. });
        let params = |id: &str| MergeParams {
            adapters: arm.adapters.clone(),
            merge: arm.merge.clone(),
            rank: arm.rank,
            entropy: entropy.then(|| EntropyParams {
                backbone: backbone.clone(),
                format: format.clone(),
                render: render(&ev.template),
                evaluation: eval_params.settings.clone(),
                answer_tokens: ev.entropy_answer_tokens(&arm.merge),
                draw: id.to_string(),
            }),
        };
        let mut add_merge = |b: &mut Builder, id: String, mut inputs: Vec<Input>| {
            if entropy {
                inputs.splice(0..0, backbone_inputs.clone());
            }
            let got = b.add(id.clone(), inputs, StageParams::Merge(params(&id)));
            if entropy && got == id {
                learned.push(LearnedMerge { stage: got.clone(), merge: got.strip_prefix("merge:").unwrap_or(&got).to_string(), arm: arm.name.clone() });
            }
            got
        };
        let shared_merge = (!arm.merge.is_adaptive()).then(|| {
            let mut inputs = adapters.clone();
            if entropy {
                // Domain-level adaptation: unlabeled prompts of the arm's target domain (its
                // ingredient's), rendered as the evaluation renders them.
                let domain = arm
                    .adapters
                    .iter()
                    .filter_map(|a| r.adapter(a))
                    .find(|a| a.role == AdapterRole::Ingredient)
                    .map(|a| a.domains[0].clone())
                    .unwrap_or_else(|| ev.settings[0].domain.clone());
                inputs.push(input(Role::Split, &split_ids[&domain]));
            }
            add_merge(&mut b, format!("merge:{}", arm.name), inputs)
        });
        for s in &ev.settings {
            let merge = match &shared_merge {
                Some(id) => id.clone(),
                None => {
                    let mut inputs = adapters.clone();
                    inputs.push(input(Role::EvalSet, &eval_set_ids[&s.name]));
                    // The domain's split: labelled validation samples to choose the learning rate.
                    inputs.push(input(Role::Split, &split_ids[&s.domain]));
                    add_merge(&mut b, format!("merge:{}:{}", arm.name, s.name), inputs)
                }
            };
            evaluate(&mut b, &arm.name, &s.name, Some(&merge), &mut rows);
        }
    }

    let mut report_inputs: Vec<Input> = Vec::new();
    for row in &rows {
        if !report_inputs.iter().any(|i| i.stage == row.stage) {
            report_inputs.push(input(Role::Evaluation, &row.stage));
        }
    }
    report_inputs.sort_by(|a, b| a.stage.cmp(&b.stage));
    report_inputs.extend(learned.iter().map(|m| input(Role::LearnedMerge, &m.stage)));
    // The evaluation sets, for their leak checks (in the order of `settings`).
    report_inputs.extend(eval_set_ids.values().map(|id| input(Role::EvalSet, id)));
    let report = ReportParams {
        settings: eval_set_ids.keys().cloned().collect(),
        experiment: r.experiment.name.clone(),
        recipe_hash: r.recipe_hash.clone(),
        seed,
        rows: rows.clone(),
        learned,
        ks: ev.k.clone(),
        metrics: ev.metrics.clone(),
        protocol: ev.protocol.kind(),
        baselines: ev.baselines.clone(),
        bootstrap: ev.bootstrap,
        comparisons: ev.compare.clone(),
        candidates: r.data.candidates,
        negatives: r.data.negatives,
        statistics: crate::results::compare::METHOD,
    };
    b.add("report".into(), report_inputs, StageParams::Report(report));
    Ok(Plan { experiment: r.experiment.name.clone(), recipe_hash: r.recipe_hash.clone(), stages: b.stages, rows, precision })
}

fn hash_hex(bytes: &[u8]) -> String {
    crate::recipe::resolve::short_hash(bytes)
}

/// SHA-256 over a file, or over every file of a directory (relative names and contents, sorted).
pub fn content_hash(path: &Path) -> Result<String, PlanError> {
    let io = |e| PlanError::Io { path: path.display().to_string(), source: e };
    let mut files = Vec::new();
    collect_files(path, path, &mut files).map_err(io)?;
    files.sort();
    let mut h = Sha256::new();
    for rel in files {
        let full = if rel.as_os_str().is_empty() { path.to_path_buf() } else { path.join(&rel) };
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        let mut f = std::fs::File::open(&full).map_err(io)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

fn collect_files(root: &Path, at: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(at)?;
    if meta.is_file() {
        out.push(at.strip_prefix(root).unwrap_or(at).to_path_buf());
    } else if meta.is_dir() {
        for e in std::fs::read_dir(at)? {
            collect_files(root, &e?.path(), out)?;
        }
    }
    Ok(())
}
