//! ResolvedRecipe -> Plan.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::{CODE_SALT, Plan, ResultRow, Stage, StageKind};
use crate::recipe::resolve::{AdapterRole, MergeConfig, ResolvedRecipe, Source};
use crate::recipe::types::Scoring;

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
    fn add(&mut self, kind: StageKind, id: String, inputs: Vec<String>, params: Json) -> String {
        let input_keys: Vec<&str> = inputs.iter().map(|i| self.key_of(i)).collect();
        let key = stage_key(kind, &params, &input_keys);
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

/// The content key of a stage: hash(salt, kind, params, input keys).
pub fn stage_key(kind: StageKind, params: &Json, input_keys: &[&str]) -> String {
    let material = json!({ "salt": CODE_SALT, "kind": kind.name(), "params": params, "inputs": input_keys });
    hash_hex(&serde_json::to_vec(&material).expect("plain JSON"))
}

/// Parameters of the `fetch:<asset>` stage of a known asset.
pub fn fetch_params(asset: &crate::assets::Asset) -> Json {
    json!({ "asset": asset.name, "requirement": asset.requirement(), "files": asset.files })
}

/// Compile the plan. Reads local files (models, datasets, templates, adapters) to hash them.
pub fn compile(r: &ResolvedRecipe) -> Result<Plan, PlanError> {
    let mut b = Builder { stages: Vec::new(), by_key: BTreeMap::new() };
    let seed = r.experiment.seed;

    // Assets and local sources. A local source has no stage; its content hash enters the keys.
    let source_ref = |b: &mut Builder, src: &Source| -> Result<(Vec<String>, Json), PlanError> {
        Ok(match src {
            Source::Asset { name, requirement } => {
                let params = match crate::assets::find(name) {
                    Some(a) => fetch_params(a),
                    None => json!({ "asset": name, "requirement": requirement, "files": [] }),
                };
                let id = b.add(StageKind::Fetch, format!("fetch:{name}"), vec![], params);
                (vec![id], json!({ "asset": name }))
            }
            Source::Path { path } => (vec![], json!({ "path": path, "content": content_hash(path)? })),
        })
    };

    let (backbone_inputs, backbone_id) = source_ref(&mut b, &r.backbone.source)?;
    let backbone = json!({ "source": backbone_id, "dtype": r.backbone.dtype });

    let mut dataset_ids = BTreeMap::new();
    for (name, d) in &r.datasets {
        let (inputs, src) = source_ref(&mut b, &d.source)?;
        let mut params = serde_json::to_value(d).expect("plain data");
        params["source"] = src;
        dataset_ids.insert(name.clone(), b.add(StageKind::Data, format!("data:{name}"), inputs, params));
    }

    let mut split_ids = BTreeMap::new();
    for (name, d) in &r.domains {
        let params = json!({ "domain": d, "data": r.data, "seed": seed });
        split_ids.insert(name.clone(), b.add(StageKind::Split, format!("split:{name}"), vec![dataset_ids[&d.dataset].clone()], params));
    }

    let mut template_ids = BTreeMap::new();
    for (name, t) in &r.templates {
        template_ids.insert(name.clone(), json!({ "separator": t.separator, "content": content_hash(&t.path)? }));
    }

    // Prompts ask for the top K with K the largest evaluation cut-off: it is part of their text.
    let prompt_k = r.evaluation.k.iter().copied().max().unwrap_or(1);
    // A history token budget counts tokens with the backbone's tokenizer: the stages that render
    // prompts then read the backbone (its tokenizer only) and its identity enters their keys.
    let (tokenizer_inputs, tokenizer) = match r.data.history_token_budget {
        Some(_) => (backbone_inputs.clone(), backbone.clone()),
        None => (Vec::new(), Json::Null),
    };

    // Adapters: prompts -> train, or import for pretrained ones.
    let mut adapter_ids = BTreeMap::new();
    let mut prompt_ids = BTreeMap::new();
    for a in &r.adapters {
        let id = match &a.pretrained {
            Some(dir) => b.add(StageKind::Import, format!("import:{}", a.name), backbone_inputs.clone(), json!({ "adapter": a.name, "path": dir, "content": content_hash(dir)?, "backbone": backbone })),
            None => {
                let mut inputs: Vec<String> = a.domains.iter().map(|d| split_ids[d].clone()).collect();
                inputs.extend(tokenizer_inputs.clone());
                let mut params = json!({
                    "adapter": a.name, "role": a.role, "domains": a.domains, "template": template_ids[&a.template],
                    "samples_per_user": a.samples_per_user, "max_samples": a.max_samples, "mixture": a.mixture,
                    "max_valid_samples": a.max_valid_samples, "seed": seed, "k": prompt_k, "tokenizer": tokenizer,
                });
                // Only when set: the stages of recipes without it keep their keys (and caches).
                if let Some(n) = a.max_users {
                    params["max_users"] = json!(n);
                }
                let prompts = b.add(StageKind::Prompts, format!("prompts:{}", a.name), inputs, params);
                prompt_ids.insert(a.name.clone(), prompts.clone());
                let mut inputs = backbone_inputs.clone();
                inputs.push(prompts);
                let params = json!({ "backbone": backbone, "system_prompt": r.backbone.system_prompt, "chat_template": r.backbone.chat_template, "lora": a.lora, "training": a.training, "seed": seed });
                b.add(StageKind::Train, format!("train:{}", a.name), inputs, params)
            }
        };
        adapter_ids.insert(a.name.clone(), id);
    }

    // Evaluation settings: users, candidate lists and prompts, fixed once for every arm.
    let ev = &r.evaluation;
    // Unlabeled adaptation prompts that the adaptive entropy arms take from every setting: the
    // largest size asked for, of users disjoint from the test users and of the test users.
    let adaptation_size = |disjoint: bool| {
        r.arms
            .iter()
            .filter(|a| a.merge.is_adaptive())
            .filter_map(|a| match &a.merge {
                MergeConfig::Entropy { adaptation, .. } if adaptation.disjoint_from_test == disjoint => Some(adaptation.size),
                _ => None,
            })
            .max()
    };
    let adaptation = json!({ "disjoint": adaptation_size(true), "from_test": adaptation_size(false) });
    let mut eval_set_ids = BTreeMap::new();
    for s in &ev.settings {
        let mut inputs = vec![split_ids[&s.domain].clone()];
        // Warm and cold are defined by the ingredient's training samples. (A pretrained
        // ingredient's training users are unknown: then every test user counts as unseen.)
        if let Some(p) = s.ingredient.as_ref().and_then(|ing| prompt_ids.get(ing)) {
            inputs.push(p.clone());
        }
        inputs.extend(tokenizer_inputs.clone());
        let params = json!({ "setting": s, "template": template_ids[&ev.template], "data": r.data, "seed": seed, "k": prompt_k, "adaptation": adaptation, "tokenizer": tokenizer });
        eval_set_ids.insert(s.name.clone(), b.add(StageKind::EvalSet, format!("eval-set:{}", s.name), inputs, params));
    }

    let eval_params = json!({
        "backbone": backbone, "system_prompt": r.backbone.system_prompt, "chat_template": r.backbone.chat_template,
        "protocol": ev.protocol, "scoring": ev.scoring, "k": ev.k, "metrics": ev.metrics,
        "max_new_tokens": ev.max_new_tokens, "fuzzy_match": ev.fuzzy_match, "seed": seed,
    });
    let mut rows = Vec::new();
    let evaluate = |b: &mut Builder, label: &str, setting: &str, model_inputs: Vec<String>, rows: &mut Vec<ResultRow>| {
        let mut inputs = backbone_inputs.clone();
        inputs.extend(model_inputs);
        inputs.push(eval_set_ids[setting].clone());
        let id = b.add(StageKind::Evaluate, format!("evaluate:{label}:{setting}"), inputs, eval_params.clone());
        rows.push(ResultRow { arm: label.to_string(), setting: setting.to_string(), stage: id });
    };

    for s in &ev.settings {
        if !ev.baselines.is_empty() {
            let params = json!({ "baselines": ev.baselines, "k": ev.k, "metrics": ev.metrics, "seed": seed });
            let id = b.add(StageKind::Baselines, format!("baselines:{}", s.name), vec![eval_set_ids[&s.name].clone(), split_ids[&s.domain].clone()], params);
            rows.push(ResultRow { arm: "baselines".into(), setting: s.name.clone(), stage: id });
        }
        if ev.backbone {
            evaluate(&mut b, "backbone", &s.name, vec![], &mut rows);
        }
    }

    // Merge stages whose coefficients are learned: the report tabulates and plots them.
    let mut learned_merges: Vec<String> = Vec::new();
    for arm in &r.arms {
        let adapters: Vec<String> = arm.adapters.iter().map(|a| adapter_ids[a].clone()).collect();
        let adaptive = arm.merge.is_adaptive();
        let entropy = matches!(arm.merge, MergeConfig::Entropy { .. });
        let params = |setting: Option<&str>| {
            let mut p = json!({ "adapters": arm.adapters, "merge": arm.merge, "rank": arm.rank, "setting": setting, "backbone": backbone });
            // An entropy merge also reads two evaluation settings: mean scoring (candidate entropy
            // and the validation MRR) and the answer length it generates. Keyed only when they
            // differ from the defaults, so that other recipes keep their keys.
            if entropy && ev.scoring == Some(Scoring::Mean) {
                p["mean_scores"] = json!(true);
            }
            if let Some(n) = ev.max_new_tokens.filter(|_| entropy) {
                p["max_new_tokens"] = json!(n);
            }
            p
        };
        let shared_merge = (!adaptive).then(|| {
            let mut inputs = adapters.clone();
            let mut p = params(None);
            if entropy {
                // Domain-level adaptation: unlabeled prompts of the arm's target domain (its
                // ingredient's), rendered with the evaluation template.
                let domain = arm
                    .adapters
                    .iter()
                    .filter_map(|a| r.adapter(a))
                    .find(|a| a.role == AdapterRole::Ingredient)
                    .map(|a| a.domains[0].clone())
                    .unwrap_or_else(|| ev.settings[0].domain.clone());
                inputs.splice(0..0, backbone_inputs.clone());
                inputs.push(split_ids[&domain].clone());
                p["adaptation_domain"] = json!(domain);
                p["template"] = template_ids[&ev.template].clone();
            }
            b.add(StageKind::Merge, format!("merge:{}", arm.name), inputs, p)
        });
        if let Some(id) = shared_merge.as_ref().filter(|_| entropy) {
            learned_merges.push(id.clone());
        }
        for s in &ev.settings {
            let merge = match &shared_merge {
                Some(id) => id.clone(),
                None => {
                    let mut inputs = backbone_inputs.clone();
                    inputs.extend(adapters.clone());
                    inputs.push(eval_set_ids[&s.name].clone());
                    // The domain's split: labelled validation samples to choose the learning rate.
                    inputs.push(split_ids[&s.domain].clone());
                    let id = b.add(StageKind::Merge, format!("merge:{}:{}", arm.name, s.name), inputs, params(Some(&s.name)));
                    if entropy {
                        learned_merges.push(id.clone());
                    }
                    id
                }
            };
            evaluate(&mut b, &arm.name, &s.name, vec![merge], &mut rows);
        }
    }

    let eval_stages: Vec<String> = {
        let mut v: Vec<String> = rows.iter().map(|r| r.stage.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let report_params = json!({ "rows": rows, "k": ev.k, "metrics": ev.metrics, "recipe_hash": r.recipe_hash });
    let mut report_inputs = eval_stages;
    report_inputs.extend(learned_merges);
    b.add(StageKind::Report, "report".into(), report_inputs, report_params);
    Ok(Plan { experiment: r.experiment.name.clone(), recipe_hash: r.recipe_hash.clone(), stages: b.stages, rows })
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
