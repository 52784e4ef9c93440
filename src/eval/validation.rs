//! Labelled validation users: users of a domain split at their validation position (never the
//! test one), rendered exactly as the evaluation renders its test users, and their mean
//! reciprocal rank under the current weights. The entropy merge chooses its learning rate on
//! them; training can choose its checkpoint on them (`select_by = "mrr"`).

use crate::data::domain::DomainSplit;
use crate::data::params::RenderParams;
use crate::data::samples::Renderer;
use crate::data::stages::history_budget;
use crate::exec::context::{StageContext, StageError};
use crate::model::CausalLm;
use crate::model::tokenizer::TextTokenizer;
use crate::prompt::{PromptTemplate, Prompter};
use crate::rng::Rng;

use super::TestUser;
use super::metrics::reciprocal_rank;
use super::params::EvalSettings;
use super::stage::evaluate_users;

/// Up to `size` users of `split` at their validation position, rendered with `render` (template,
/// K, history token budget, and the no-history prior prompt of `calibrated` scoring), in the
/// order of a draw seeded by `render.seed` and `draw` (labels separating independent draws).
pub fn validation_users(ctx: &StageContext<'_>, render: &RenderParams, split: &DomainSplit, size: usize, draw: &[&str]) -> Result<Vec<TestUser>, StageError> {
    let tmpl = PromptTemplate::load(&render.template.path).map_err(|e| StageError::Failed(e.to_string()))?;
    let budget = history_budget(ctx, render)?;
    let r = Renderer::new(split, &tmpl, &render.template.separator, render.k, render.seed).with_budget(budget.as_ref()).with_prior();
    let mut users: Vec<usize> = (0..split.users.len()).collect();
    Rng::derive(render.seed, draw).shuffle(&mut users);
    let mut out = Vec::new();
    for u in users {
        if out.len() >= size {
            break;
        }
        let pos = split.positions(u).valid;
        let Some(sample) = r.render(u, pos)? else { continue };
        let target = split.sequences[u][pos];
        out.push(TestUser {
            user: split.users[u].clone(),
            target: split.items[target as usize].clone(),
            target_title: split.titles[target as usize].clone(),
            items: sample.candidates.iter().map(|&c| split.items[c as usize].clone()).collect(),
            titles: sample.candidates.iter().map(|&c| split.titles[c as usize].clone()).collect(),
            target_slot: sample.candidates.iter().position(|&c| c == target).unwrap_or(0),
            instruction: sample.rendered.instruction,
            instruction_prior: sample.prior_instruction,
        });
    }
    Ok(out)
}

/// Mean reciprocal rank of `users`' targets under the model's current weights, evaluated exactly
/// as the evaluate stage evaluates (`evaluation`: protocol, scoring rule with the prior prompts of
/// `calibrated`, generation and grounding for `generate`); a target not ranked counts 0.
pub fn mean_reciprocal_rank(model: &dyn CausalLm, tok: &TextTokenizer, prompter: &Prompter, users: &[TestUser], evaluation: &EvalSettings) -> Result<f64, StageError> {
    let results = evaluate_users(model, tok, prompter, users, evaluation, &mut |_| {})?;
    Ok(results.iter().map(|r| r.rank.map_or(0.0, reciprocal_rank)).sum::<f64>() / results.len().max(1) as f64)
}
