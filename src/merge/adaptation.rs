//! The entropy merge as a plan stage: its unlabeled adaptation prompts (a setting's adaptation
//! set, or prompts of the whole target domain), the choice of the coefficient learning rate on
//! labelled validation samples (never test), the learning itself, and its logs.

use std::collections::BTreeMap;

use polars::prelude::Column;
use serde::Serialize;

use super::entropy::{self, AdaptPrompt, EntropySettings, StepRow};
use super::learnable::Learnable;
use super::Coefficients;
use super::params::EntropyParams;
use crate::data::domain::DomainSplit;
use crate::eval::TestUser;
use crate::eval::validation::{mean_reciprocal_rank, validation_users};
use crate::eval::params::EvalSettings;
use crate::model::CausalLm;
use crate::model::tokenizer::TextTokenizer;
use crate::table;
use crate::exec::backbone::{self, StageModel};
use crate::exec::context::{StageContext, StageError};
use crate::model::peft::PeftAdapter;
use crate::plan::Role;
use crate::prompt::Prompter;
use crate::recipe::merge::MergeConfig;
use crate::recipe::types::{AdaptationSource, Scoring};

fn fail(m: String) -> StageError {
    StageError::Failed(m)
}

/// The setting's unlabeled adaptation prompts of `kind` (`disjoint` or `from_test`): the first
/// `size` rows of its eval set's `adaptation.parquet`, with their candidate lists.
fn from_eval_set(sm: &StageModel, dir: &std::path::Path, kind: &str, size: usize) -> Result<Vec<AdaptPrompt>, StageError> {
    let prompts = table::read_parquet(&dir.join("adaptation.parquet"))?;
    let cands = table::read_parquet(&dir.join("adaptation_candidates.parquet"))?;
    let (pkind, user, instr) = (table::strs(&prompts, "kind")?, table::strs(&prompts, "user")?, table::strs(&prompts, "instruction")?);
    let (ckind, cuser, title) = (table::strs(&cands, "kind")?, table::strs(&cands, "user")?, table::strs(&cands, "title")?);
    let mut titles: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for k in 0..cuser.len() {
        if ckind[k] == kind {
            titles.entry(cuser[k].as_str()).or_default().push(title[k].as_str());
        }
    }
    let tok = &sm.text.tokenizer;
    let mut out = Vec::new();
    for k in (0..user.len()).filter(|&k| pkind[k] == kind).take(size) {
        let candidates = titles.get(user[k].as_str()).map(|t| t.iter().map(|t| sm.prompter.title_ids(tok, t)).collect::<Result<Vec<_>, _>>()).transpose()?.unwrap_or_default();
        out.push(AdaptPrompt { prompt: sm.prompter.prompt_ids(tok, &instr[k])?, candidates });
    }
    Ok(out)
}

/// Users of the domain split at their validation position, rendered as the evaluation renders
/// them, for a seeded choice of up to `size` users (`label` separating independent draws).
fn from_split(ctx: &StageContext<'_>, e: &EntropyParams, split: &DomainSplit, size: usize, label: &str) -> Result<Vec<TestUser>, StageError> {
    validation_users(ctx, &e.render, split, size, &["entropy", label, &e.draw])
}

/// A user's prompt as an unlabeled adaptation prompt: its token ids and its candidates' titles.
fn adapt_prompt(sm: &StageModel, u: &TestUser) -> Result<AdaptPrompt, StageError> {
    let tok = &sm.text.tokenizer;
    let candidates = u.titles.iter().map(|t| sm.prompter.title_ids(tok, t)).collect::<Result<Vec<_>, _>>()?;
    Ok(AdaptPrompt { prompt: sm.prompter.prompt_ids(tok, &u.instruction)?, candidates })
}

/// Mean reciprocal rank of the validation users under the coefficients `l`.
fn validation_mrr(model: &mut dyn CausalLm, tok: &TextTokenizer, prompter: &Prompter, adapters: &[PeftAdapter], l: &Learnable, valid: &[TestUser], evaluation: &EvalSettings) -> Result<f64, StageError> {
    entropy::attach_weighted(model, adapters, &l.weights(), false);
    mean_reciprocal_rank(model, tok, prompter, valid, evaluation)
}

/// Whose unlabeled prompts an entropy merge adapts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Population {
    /// The evaluated setting's eligible users who are not evaluated.
    Disjoint,
    /// The evaluated users themselves (prompts only, never targets): test-time adaptation.
    Transductive,
    /// Users of the whole target domain (one merge for every setting).
    Domain,
}

impl Population {
    pub fn of(source: AdaptationSource, disjoint_from_test: bool) -> Population {
        match (source, disjoint_from_test) {
            (AdaptationSource::Domain, _) => Population::Domain,
            (AdaptationSource::Setting, true) => Population::Disjoint,
            (AdaptationSource::Setting, false) => Population::Transductive,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Population::Disjoint => "the setting's users who are not evaluated",
            Population::Transductive => "the evaluated users' own prompts, transductively",
            Population::Domain => "users of the whole domain",
        }
    }
}

#[derive(Serialize)]
struct EntropySummary {
    adaptation_prompts: usize,
    source: AdaptationSource,
    population: Population,
    lr: f64,
    lr_grid: Vec<(f64, Option<f64>)>,
    validation_prompts: usize,
    objective_before: f64,
    objective_after: f64,
    steps: usize,
}

/// Validation users the learning rate is chosen on, at least (fewer only where the domain has fewer).
const MIN_VALIDATION_USERS: usize = 200;

/// Learn the coefficients of an `entropy` arm (writes `entropy_log.parquet` and `entropy.json`).
pub fn learn(ctx: &StageContext<'_>, names: &[String], adapters: &[PeftAdapter], config: &MergeConfig, e: &EntropyParams) -> Result<Coefficients, StageError> {
    let MergeConfig::Entropy { granularity, parameterization, temperature, init, lr, lr_grid, epochs, objective, first_k_tokens, answer_titles, adaptation, .. } = config else {
        return Err(fail("the entropy learner got another merge method".into()));
    };
    let device = ctx.runtime.device.clone().autodiff();
    let mut sm = backbone::load(ctx, &e.backbone, &e.format, &device)?;
    let size = adaptation.size as usize;
    let split = match ctx.optional_input(Role::Split) {
        Some(dir) => Some(DomainSplit::read(dir)?.0),
        None => None,
    };
    let population = Population::of(adaptation.source, adaptation.disjoint_from_test);
    let prompts: Vec<AdaptPrompt> = match (population, ctx.optional_input(Role::EvalSet), &split) {
        (Population::Disjoint, Some(dir), _) => from_eval_set(&sm, dir, "disjoint", size)?,
        (Population::Transductive, Some(dir), _) => from_eval_set(&sm, dir, "from_test", size)?,
        (Population::Domain, _, Some(split)) => from_split(ctx, e, split, size, "adaptation")?.iter().map(|u| adapt_prompt(&sm, u)).collect::<Result<_, _>>()?,
        _ => return Err(fail(format!("stage `{}` has neither an eval-set nor a split input to adapt on", ctx.stage.id))),
    };
    if prompts.is_empty() || (population == Population::Disjoint && prompts.len() < size) {
        // Never filled up from another population: a setting's arm adapts on that setting's users.
        return Err(fail(format!(
            "stage `{}`: {} of the {size} adaptation prompts asked for: the setting has only that many eligible users who are not evaluated. \
             Lower `adaptation.size` or the setting's `max_users`, or adapt transductively on the test users' own prompts (unlabeled) with `adaptation.disjoint_from_test = false`",
            ctx.stage.id,
            prompts.len()
        )));
    }
    (ctx.log)(&format!("{}: adapting on {} unlabeled prompts ({})", ctx.stage.id, prompts.len(), population.describe()));
    let mut s = EntropySettings {
        granularity: *granularity,
        parameterization: *parameterization,
        temperature: *temperature,
        init: init.clone(),
        lr: *lr,
        epochs: *epochs,
        objective: *objective,
        first_k_tokens: *first_k_tokens as usize,
        mean_scores: e.evaluation.protocol.scoring() == Some(Scoring::Mean),
        separator: e.evaluation.separator.clone(),
        max_new_tokens: e.answer_tokens as usize,
        answer_titles: answer_titles.map(|n| n as usize),
    };
    // The learning rate: chosen on labelled validation samples when a grid is given. Adapting is
    // deterministic, so the run at the chosen rate is kept rather than repeated.
    let lrs: Vec<f64> = if lr_grid.len() > 1 { lr_grid.clone() } else { vec![*lr] };
    let total = prompts.len() as u64 * *epochs as u64 * lrs.len() as u64;
    let pb = ctx.progress.add(indicatif::ProgressBar::new(total));
    pb.set_style(indicatif::ProgressStyle::with_template("  {prefix} {bar:24} {pos}/{len} prompts [{elapsed_precise}<{eta_precise}] {msg}").expect("static template"));
    pb.set_prefix(ctx.stage.id.clone());
    let valid = if lrs.len() > 1 {
        let split = split.as_ref().ok_or_else(|| fail(format!("stage `{}` needs its domain's split to choose the learning rate", ctx.stage.id)))?;
        from_split(ctx, e, split, size.max(MIN_VALIDATION_USERS), "lr-validation")?
    } else {
        Vec::new()
    };
    let model = &mut sm.text.backbone.model;
    let started = std::time::Instant::now();
    let measured = entropy::initial_objective(model, &sm.text.tokenizer, adapters, &prompts, &s);
    let before = measured.mean;
    let shape = measured.answers.map(|a| format!("; {a}")).unwrap_or_default();
    (ctx.log)(&format!("{}: initial objective {before:.4} ({:.0}s{shape})", ctx.stage.id, started.elapsed().as_secs_f64()));
    let mut grid_scores = Vec::new();
    let mut best: Option<(entropy::Adapted, f64, f64)> = None;
    if lrs.len() > 1 {
        // Rate 0, the initial coefficients unadapted, is always a candidate, and wins ties: the
        // adaptation must earn its place on validation.
        let initial = Learnable::new(entropy::covered_modules(model, adapters), adapters.len(), s.granularity, s.parameterization, s.temperature, &s.init);
        let mrr = validation_mrr(model, &sm.text.tokenizer, &sm.prompter, adapters, &initial, &valid, &e.evaluation)?;
        (ctx.log)(&format!("{}: no adaptation (lr 0): validation MRR {mrr:.4} on {} users", ctx.stage.id, valid.len()));
        grid_scores.push((0.0, Some(mrr)));
        best = Some((entropy::Adapted { learnable: initial, history: Vec::new(), objective_before: before, objective_after: f64::NAN }, 0.0, mrr));
    }
    for (i, &candidate) in lrs.iter().enumerate() {
        s.lr = candidate;
        let offset = i as u64 * prompts.len() as u64 * *epochs as u64;
        let mut progress = |r: &StepRow| {
            pb.set_position(offset + r.step);
            pb.set_message(format!("lr {candidate}: entropy {:.4}", r.objective));
        };
        let started = std::time::Instant::now();
        let a = entropy::adapt_from(model, &sm.text.tokenizer, adapters, &prompts, &s, before, &mut progress);
        if lrs.len() == 1 {
            (ctx.log)(&format!("{}: lr {candidate}: {} steps ({:.0}s)", ctx.stage.id, a.history.len(), started.elapsed().as_secs_f64()));
            grid_scores.push((candidate, None));
            best = Some((a, candidate, f64::NAN));
            break;
        }
        let mrr = validation_mrr(model, &sm.text.tokenizer, &sm.prompter, adapters, &a.learnable, &valid, &e.evaluation)?;
        (ctx.log)(&format!("{}: lr {candidate}: validation MRR {mrr:.4} ({:.0}s)", ctx.stage.id, started.elapsed().as_secs_f64()));
        grid_scores.push((candidate, Some(mrr)));
        if best.as_ref().is_none_or(|(_, _, b)| mrr > *b) {
            best = Some((a, candidate, mrr));
        }
    }
    pb.finish_and_clear();
    let (mut adapted, chosen, _) = best.expect("at least one learning rate");
    s.lr = chosen;
    let started = std::time::Instant::now();
    let after = entropy::mean_objective(model, &sm.text.tokenizer, adapters, &adapted.learnable, &prompts, &s);
    adapted.objective_after = after.mean;
    let valid_n = valid.len();
    let shape = after.answers.map(|a| format!("; {a}")).unwrap_or_default();
    (ctx.log)(&format!("{}: mean entropy {:.4} -> {:.4} on {} prompts (lr {}; objective after in {:.0}s{shape})", ctx.stage.id, adapted.objective_before, adapted.objective_after, prompts.len(), s.lr, started.elapsed().as_secs_f64()));
    let h = &adapted.history;
    let mut df = table::frame(vec![
        Column::new("epoch".into(), h.iter().map(|r| r.epoch).collect::<Vec<_>>()),
        Column::new("step".into(), h.iter().map(|r| r.step).collect::<Vec<_>>()),
        Column::new("objective".into(), h.iter().map(|r| r.objective).collect::<Vec<_>>()),
    ])?;
    table::write_parquet(&mut df, &ctx.out.join("entropy_log.parquet"))?;
    let summary = EntropySummary {
        adaptation_prompts: prompts.len(),
        source: adaptation.source,
        population,
        lr: s.lr,
        lr_grid: grid_scores,
        validation_prompts: valid_n,
        objective_before: adapted.objective_before,
        objective_after: adapted.objective_after,
        steps: h.len(),
    };
    table::write_json(&ctx.out.join("entropy.json"), &summary)?;
    Ok(Coefficients { adapters: names.to_vec(), values: adapted.learnable.weights() })
}
