//! The data stages' bodies: `fetch`, `data`, `split`, `prompts`, `eval-set`. Each reads its typed
//! parameters (`params.rs`) and the artifact directories of its inputs, and writes parquet tables
//! plus a small JSON summary.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use polars::prelude::Column;
use serde::{Deserialize, Serialize};

use super::domain::DomainSplit;
use super::loaders::{self, LoadOptions, LoadReport};
use super::process::{self, Log, Step};
use crate::rng::{Rng, sample_keep_order};
use super::samples::{HistoryBudget, Renderer, Sample, SampleTable};
use super::params::{DataParams, EvalSetParams, PromptsParams, RenderParams, SplitParams};
use super::leakage::{self, LeakReport, TestTarget};
use super::{DataError, fetch};
use crate::table;
use crate::assets::FetchParams;
use crate::exec::context::StageContext;
use crate::plan::Role;
use crate::prompt::PromptTemplate;
use crate::recipe::resolve::ResolvedSetting;
use crate::recipe::types::{Leakage, UserSelection};

/// The directory of the stage's one input of `role`.
fn input<'a>(ctx: &'a StageContext<'_>, role: Role) -> Result<&'a Path, DataError> {
    ctx.optional_input(role).ok_or_else(|| DataError::Invalid(format!("stage `{}` has no {} input", ctx.stage.id, role.name())))
}

pub fn fetch(ctx: &StageContext<'_>, p: &FetchParams) -> Result<(), DataError> {
    let name = &p.asset;
    let asset = crate::assets::find(name).ok_or_else(|| DataError::Invalid(format!("unknown asset `{name}`")))?;
    let m = fetch::fetch(asset, &ctx.scratch, ctx.out)?;
    (ctx.log)(&format!("fetched {}", m.describe()));
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

pub fn data(ctx: &StageContext<'_>, p: &DataParams) -> Result<(), DataError> {
    let (name, d) = (&ctx.stage.id, &p.spec);
    let path = match &p.source {
        crate::assets::SourceRef::Path { path, .. } => path.to_path_buf(),
        crate::assets::SourceRef::Asset { .. } => input(ctx, Role::Asset)?.to_path_buf(),
    };
    let format = d.format.name();
    let loaded = loaders::load(d.format, &path, &LoadOptions { strict: d.strict, columns: d.columns.as_ref() })?;
    if loaded.report.malformed() > 0 {
        (ctx.log)(&format!("{name}: {} malformed rows skipped (see report.json)", loaded.report.malformed()));
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
    Ok(table::write_json(&ctx.out.join("report.json"), &report)?)
}

pub fn split(ctx: &StageContext<'_>, p: &SplitParams) -> Result<(), DataError> {
    let name = p.domain.as_str();
    let data_dir = input(ctx, Role::Data)?;
    let report: DataReport = table::read_json(&data_dir.join("report.json"))?;
    let (split, summary) = DomainSplit::build(data_dir, name, &p.spec, &p.data, report.min_history)?;
    if split.users.is_empty() {
        return Err(DataError::Invalid(format!("domain `{name}` has no user with at least {} interactions after filtering", split.settings.min_sequence)));
    }
    split.write(ctx.out, &summary)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DomainPrompts {
    pub domain: String,
    pub train: usize,
    pub valid: usize,
    pub users_seen: usize,
    /// Samples dropped because the domain has too few items outside the user's sequence.
    pub no_candidates: usize,
    /// With a mixture: the domain's share of the total, and how many samples it lacked to fill it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<usize>,
}

/// Per-domain sample counts of a mixture: `total` (or, when `None`, the largest total every domain
/// can fill) split by the normalized `weights` with largest-remainder rounding (ties: earlier
/// domain first). Shares may exceed `available` only when `total` is given.
pub fn mixture_quotas(weights: &[f64], available: &[usize], total: Option<u32>) -> Vec<usize> {
    let apportion = |t: usize| -> Vec<usize> {
        let exact: Vec<f64> = weights.iter().map(|w| w * t as f64).collect();
        let mut q: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
        let mut order: Vec<usize> = (0..q.len()).collect();
        order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
        for &d in order.iter().take(t.saturating_sub(q.iter().sum())) {
            q[d] += 1;
        }
        q
    };
    if let Some(t) = total {
        return apportion(t as usize);
    }
    let feasible = |q: &[usize]| q.iter().zip(available).all(|(q, a)| q <= a);
    let mut t = weights.iter().zip(available).filter(|(w, _)| **w > 0.0).map(|(w, a)| (*a as f64 / w).floor() as usize).min().unwrap_or(0);
    // Rounding can push one share past what its domain has: step down until every share fits.
    while t > 0 && !feasible(&apportion(t)) {
        t -= 1;
    }
    apportion(t)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromptsSummary {
    pub adapter: String,
    pub k: u32,
    pub train: usize,
    pub valid: usize,
    pub domains: Vec<DomainPrompts>,
    /// With `history_token_budget`: samples whose history lost items to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_truncated: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<crate::prompt::Rendered>,
}

/// The history token budget of `render` with the backbone's tokenizer (read from the stage's
/// backbone: the fetched asset or the recipe's path; only the tokenizer is loaded).
pub fn history_budget(ctx: &StageContext<'_>, render: &RenderParams) -> Result<Option<HistoryBudget>, DataError> {
    let Some(b) = &render.history_budget else { return Ok(None) };
    let tokens = b.tokens;
    let path = ctx.source_file(&b.tokenizer, Role::Backbone).map_err(|e| DataError::Invalid(format!("history_token_budget needs the backbone's tokenizer: {e}")))?;
    let tokenizer = crate::model::load::load_tokenizer(&path).map_err(|e| DataError::Invalid(format!("history_token_budget needs the backbone's tokenizer: {e}")))?;
    Ok(Some(HistoryBudget { tokenizer, tokens }))
}

pub fn prompts(ctx: &StageContext<'_>, a: &PromptsParams) -> Result<(), DataError> {
    let name = a.adapter.as_str();
    let tmpl = PromptTemplate::load(&a.render.template.path)?;
    let sep = a.render.template.separator.as_str();
    let (seed, k) = (a.render.seed, a.render.k);
    let (mut train, mut valid) = (SampleTable::default(), SampleTable::default());
    let (mut seen_d, mut seen_u, mut item_d, mut item_i) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let budget = history_budget(ctx, &a.render)?;
    let mut budget_truncated = 0;
    let mut domains = Vec::new();
    let mut splits = Vec::new();
    let split_dirs = ctx.inputs_of(Role::Split);
    if split_dirs.len() != a.domains.len() {
        return Err(DataError::Invalid(format!("stage `{}` has {} split inputs for {} domains", ctx.stage.id, split_dirs.len(), a.domains.len())));
    }
    for ((_, dir), domain) in split_dirs.into_iter().zip(&a.domains) {
        let (split, _) = DomainSplit::read(dir)?;
        let cap = a.samples_per_user.map(|c| c as usize).unwrap_or(usize::MAX);
        let users = adapter_users(&split, a.max_users, &mut Rng::derive(seed, &["train-users", name, domain]));
        let pool: Vec<(usize, usize)> = users.iter().flat_map(|&u| split.positions(u).train.into_iter().take(cap).map(move |p| (u, p))).collect();
        splits.push((domain, split, pool, users));
    }
    // Samples per domain: its share of the mixture, or everything up to `max_samples` each.
    let quotas: Vec<Option<usize>> = match &a.mixture {
        Some(w) => mixture_quotas(w, &splits.iter().map(|s| s.2.len()).collect::<Vec<_>>(), a.max_samples).into_iter().map(Some).collect(),
        None => vec![a.max_samples.map(|m| m as usize); splits.len()],
    };
    for ((domain, split, pool, adapter_users), quota) in splits.into_iter().zip(quotas) {
        let r = Renderer::new(&split, &tmpl, sep, k, a.render.seed).with_budget(budget.as_ref());
        let shortfall = a.mixture.as_ref().and(quota).map(|q| q.saturating_sub(pool.len()));
        if let Some(n) = shortfall.filter(|n| *n > 0) {
            (ctx.log)(&format!("adapter `{name}`: domain `{domain}` has {} training samples, {n} short of its mixture share", pool.len()));
        }
        let chosen = sample_keep_order(pool, quota.map(|q| q as u32), &mut Rng::derive(seed, &["train-samples", name, domain]));
        let valid_chosen: Vec<(usize, usize)> = adapter_users.iter().map(|&u| (u, split.positions(u).valid)).collect();
        let valid_chosen = sample_keep_order(valid_chosen, Some(a.max_valid_samples), &mut Rng::derive(seed, &["valid-samples", name, domain]));
        let mut dp = DomainPrompts { domain: domain.clone(), quota: a.mixture.as_ref().and(quota), shortfall, ..Default::default() };
        let (mut users, mut items) = (HashSet::new(), HashSet::new());
        for (u, p) in chosen {
            match r.render(u, p)? {
                Some(s) => {
                    budget_truncated += usize::from(s.budget_dropped > 0);
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
                    budget_truncated += usize::from(s.budget_dropped > 0);
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
    let budget_truncated = budget.is_some().then_some(budget_truncated);
    let summary = PromptsSummary { adapter: name.into(), k, train: train.len(), valid: valid.len(), domains, budget_truncated, example: train.example() };
    Ok(table::write_json(&ctx.out.join("prompts.json"), &summary)?)
}

/// The users (indices, ascending) whose histories an adapter may sample in one domain: every user,
/// or `max_users` of those with a training position, stratified by sequence length (a seeded
/// systematic sample over the users sorted by length, ties in seeded order), so that the users
/// left out, who become the cold ones, have the same length distribution as those kept, rather
/// than mostly the shortest sequences.
fn adapter_users(split: &DomainSplit, max_users: Option<u32>, rng: &mut Rng) -> Vec<usize> {
    match max_users {
        None => (0..split.users.len()).collect(),
        Some(n) => {
            let mut with_train: Vec<usize> = (0..split.users.len()).filter(|&u| !split.positions(u).train.is_empty()).collect();
            let n = n as usize;
            if n >= with_train.len() {
                return with_train;
            }
            rng.shuffle(&mut with_train);
            with_train.sort_by_key(|&u| split.sequences[u].len());
            let step = with_train.len() as f64 / n as f64;
            let offset = rng.below(1 << 20) as f64 / (1u64 << 20) as f64 * step;
            let mut chosen: Vec<usize> = (0..n).map(|i| with_train[((offset + i as f64 * step) as usize).min(with_train.len() - 1)]).collect();
            chosen.sort_unstable();
            chosen
        }
    }
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
    /// Unlabeled adaptation prompts for the adaptive entropy arms (`adaptation.parquet`).
    pub adaptation: AdaptationSets,
    pub no_candidates: usize,
    pub mean_history: f64,
    /// The test users' history lengths (items before the target, before any truncation).
    #[serde(default)]
    pub history_lengths: LengthStats,
    /// The leak check of the test targets against every adapter's samples.
    #[serde(default)]
    pub leakage: LeakReport,
    /// With `history_token_budget`: test prompts whose history lost items to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_truncated: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<crate::prompt::Rendered>,
}

/// The two kinds of adaptation prompts: of users not evaluated (`disjoint_from_test = true`) and
/// of the test users themselves (`false`; prompts only, never their targets). `None`: no arm asks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdaptationSets {
    pub disjoint: Option<AdaptationSet>,
    pub from_test: Option<AdaptationSet>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdaptationSet {
    /// The largest `adaptation.size` the arms ask for.
    pub requested: usize,
    /// Prompts written; an arm of size n uses the first n of its kind.
    pub prompts: usize,
    /// `requested - prompts`: the setting has no more users to give (disjoint: eligible users who
    /// are not evaluated; from the test users: test users).
    pub shortfall: usize,
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
                UserSelection::All => true,
            }
        })
        .collect()
}

pub fn eval_set(ctx: &StageContext<'_>, p: &EvalSetParams) -> Result<(), DataError> {
    let s = &p.setting;
    let (split, _) = DomainSplit::read(input(ctx, Role::Split)?)?;
    let seen = match ctx.optional_input(Role::Prompts) {
        Some(dir) => Some(seen(dir, &s.domain)?),
        None => None,
    };
    let seed = p.render.seed;
    let mut order = eligible(&split, s, seen.as_ref());
    let eligible_n = order.len();
    let selection = crate::recipe::types::serde_name(&s.users);
    let tag = format!("{:?}", s.max_history);
    Rng::derive(seed, &["eval-users", &s.domain, &selection, &tag]).shuffle(&mut order);
    let n_test = s.max_users.map(|m| m as usize).unwrap_or(usize::MAX).min(order.len());
    let rest = order.split_off(n_test);

    let tmpl = PromptTemplate::load(&p.render.template.path)?;
    let k = p.render.k;
    let budget = history_budget(ctx, &p.render)?;
    // Each prompt also without its history: the prior that `calibrated` scoring subtracts.
    let r = Renderer::new(&split, &tmpl, &p.render.template.separator, k, p.render.seed).with_budget(budget.as_ref()).with_prior();
    let mut no_candidates = 0;
    // Test users, rendered in their (seeded) selection order, written in user order.
    let mut tests: Vec<Sample> = Vec::new();
    for &u in &order {
        match r.render(u, split.positions(u).test)? {
            Some(sample) => tests.push(sample),
            None => no_candidates += 1,
        }
    }
    let mut rows = SampleTable::default();
    let mut by_user: Vec<&Sample> = tests.iter().collect();
    by_user.sort_by_key(|t| t.user);
    for t in &by_user {
        rows.push("test", &s.domain, &split, t);
    }
    let hist: usize = tests.iter().map(|t| t.position).sum();

    // The leak check: were these test targets shown to any adapter in training?
    let targets: Vec<TestTarget<'_>> = tests
        .iter()
        .map(|t| {
            let item = split.sequences[t.user][t.position] as usize;
            TestTarget { user: &split.users[t.user], item: &split.items[item], title: &split.titles[item] }
        })
        .collect();
    let training: Vec<std::path::PathBuf> = ctx.inputs_of(Role::Training).into_iter().map(|(_, d)| d.to_path_buf()).collect();
    let leakage = leakage::check(&p.leakage, &s.domain, &targets, &training)?;
    let leak_line = format!("setting `{}`: leak check: {}", s.name, leakage.describe(tests.len()));
    match p.leakage.policy {
        Leakage::Error if leakage.targets_in_training > 0 => {
            return Err(DataError::Invalid(format!(
                "{leak_line}. The evaluation would score items the model was trained on. Give the base spirit's domains and the target domain disjoint users \
                 (`users = {{ parts = 2, part = 0 }}` on one, `part = 1` on the other), or set `evaluation.leakage = \"warn\"` to evaluate anyway"
            )));
        }
        Leakage::Error | Leakage::Warn if leakage.targets_in_training > 0 || leakage.shared_titles > 0 => (ctx.log)(&format!("warning: {leak_line}")),
        _ => (ctx.log)(&leak_line),
    }

    // Adaptation prompts. Disjoint: the setting's eligible users not evaluated, in their seeded
    // order, and never users outside the setting's selection (a cold setting's arm must not adapt
    // on warm users). From the test users: the first ones of the selection.
    let mut adapt = SampleTable::default();
    let mut sets = AdaptationSets::default();
    if let Some(want) = p.adaptation.disjoint {
        let mut set = AdaptationSet { requested: want, ..Default::default() };
        for &u in &rest {
            if set.prompts == want {
                break;
            }
            if let Some(sample) = r.render(u, split.positions(u).test)? {
                adapt.push("disjoint", &s.domain, &split, &sample);
                set.prompts += 1;
            }
        }
        set.shortfall = want - set.prompts;
        sets.disjoint = Some(set);
    }
    if let Some(want) = p.adaptation.from_test {
        let taken = want.min(tests.len());
        for t in &tests[..taken] {
            adapt.push("from_test", &s.domain, &split, t);
        }
        sets.from_test = Some(AdaptationSet { requested: want, prompts: taken, shortfall: want - taken });
    }
    for (kind, set) in [("disjoint", &sets.disjoint), ("from_test", &sets.from_test)] {
        if let Some(set) = set.as_ref().filter(|x| x.shortfall > 0) {
            (ctx.log)(&format!("setting `{}`: {} of {} {kind} adaptation prompts (the setting has no more users)", s.name, set.prompts, set.requested));
        }
    }

    table::write_parquet(&mut rows.samples_frame()?, &ctx.out.join("prompts.parquet"))?;
    table::write_parquet(&mut rows.candidates_frame()?, &ctx.out.join("candidates.parquet"))?;
    table::write_parquet(&mut adapt.unlabeled_frame()?, &ctx.out.join("adaptation.parquet"))?;
    table::write_parquet(&mut adapt.unlabeled_candidates_frame()?, &ctx.out.join("adaptation_candidates.parquet"))?;
    let n = tests.len();
    let summary = EvalSetSummary {
        setting: s.name.clone(),
        domain: s.domain.clone(),
        users: s.users,
        ingredient: s.ingredient.clone(),
        k,
        candidates: split.settings.candidates,
        domain_users: split.users.len(),
        eligible: eligible_n,
        test: n,
        adaptation: sets,
        no_candidates,
        mean_history: if n == 0 { 0.0 } else { hist as f64 / n as f64 },
        budget_truncated: budget.is_some().then(|| tests.iter().filter(|t| t.budget_dropped > 0).count()),
        leakage,
        history_lengths: LengthStats::of(tests.iter().map(|t| t.position).collect()),
        example: rows.example(),
    };
    table::write_json(&ctx.out.join("eval_set.json"), &summary)?;
    (ctx.log)(&format!("setting `{}`: {} of {} users eligible, {} evaluated", s.name, eligible_n, split.users.len(), summary.test));
    Ok(())
}

/// Quartiles of a list of lengths (nearest rank); all zero when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthStats {
    pub min: usize,
    pub q1: usize,
    pub median: usize,
    pub q3: usize,
    pub max: usize,
}

impl LengthStats {
    pub fn of(mut v: Vec<usize>) -> LengthStats {
        if v.is_empty() {
            return LengthStats::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        LengthStats { min: v[0], q1: at(0.25), median: at(0.5), q3: at(0.75), max: v[v.len() - 1] }
    }

    pub fn describe(&self) -> String {
        format!("median {} (quartiles {}–{}, range {}–{})", self.median, self.q1, self.q3, self.min, self.max)
    }
}

/// The per-item training counts of a split, by item id (popularity).
pub fn popularity(split: &DomainSplit) -> HashMap<String, u64> {
    split.items.iter().cloned().zip(split.train_counts()).collect()
}

#[cfg(test)]
mod tests {
    use super::{LengthStats, mixture_quotas};

    #[test]
    fn length_quartiles_by_nearest_rank() {
        let s = LengthStats::of(vec![9, 1, 3, 7, 5, 2, 8, 4]);
        assert_eq!(s, LengthStats { min: 1, q1: 2, median: 4, q3: 7, max: 9 });
        assert_eq!(LengthStats::of(vec![3]), LengthStats { min: 3, q1: 3, median: 3, q3: 3, max: 3 });
        assert_eq!(LengthStats::of(Vec::new()), LengthStats::default());
    }

    #[test]
    fn mixture_shares_of_a_total_use_largest_remainders() {
        assert_eq!(mixture_quotas(&[0.5, 0.3, 0.2], &[100, 100, 100], Some(10)), [5, 3, 2]);
        // 7 x (0.5, 0.3, 0.2) = 3.5, 2.1, 1.4: the remaining one goes to the largest fraction.
        assert_eq!(mixture_quotas(&[0.5, 0.3, 0.2], &[100, 100, 100], Some(7)), [4, 2, 1]);
        // Equal fractions: the earlier domain first.
        assert_eq!(mixture_quotas(&[0.5, 0.5], &[100, 100], Some(3)), [2, 1]);
        // A given total may ask more than a domain has (the stage records the shortfall).
        assert_eq!(mixture_quotas(&[0.5, 0.5], &[3, 100], Some(10)), [5, 5]);
    }

    #[test]
    fn mixture_without_a_total_takes_the_most_every_domain_can_fill() {
        // 0.25 of the total from a domain of 10 items: at most 40 in all.
        assert_eq!(mixture_quotas(&[0.75, 0.25], &[100, 10], None), [30, 10]);
        assert_eq!(mixture_quotas(&[0.75, 0.25], &[20, 100], None), [20, 6]);
        for (w, a) in [(vec![1.0 / 3.0; 3], vec![7, 9, 8]), (vec![0.6, 0.4], vec![5, 5]), (vec![0.1, 0.9], vec![0, 50])] {
            let q = mixture_quotas(&w, &a, None);
            assert!(q.iter().zip(&a).all(|(q, a)| q <= a), "{w:?} {a:?} -> {q:?}");
        }
        assert_eq!(mixture_quotas(&[1.0 / 3.0; 3], &[7, 9, 8], None), [7, 7, 7]);
        assert_eq!(mixture_quotas(&[0.1, 0.9], &[0, 50], None), [0, 0]);
    }
}
