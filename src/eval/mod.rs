//! Evaluation: how a model ranks each test user's fixed candidate list, and the metrics.
//!
//! - [`likelihood`]: every candidate title scored as a continuation of the prompt (sum, mean or
//!   calibrated log-probability), ranked by score. Exact, deterministic, never off-list.
//! - [`generate`]: the paper's protocol: greedy generation of the top-K list, split on the
//!   template's separator and grounded to the candidates (exact, optionally fuzzy).
//! - [`metrics`]: HR@K, NDCG@K, MRR, valid ratio, and the documented tie-breaking.
//! - [`stage`]: the `evaluate` stage body.
//! - [`validation`]: labelled validation users ranked as test users are (learning-rate and
//!   checkpoint selection).
//!
//! Each protocol is one [`RankingProtocol`] in its own file; [`params::EvalSettings::protocol`]
//! picks the one a stage's resolved settings name.

pub mod generate;
pub mod likelihood;
pub mod metrics;
pub mod params;
pub mod stage;
pub mod validation;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;

use crate::model::CausalLm;
use crate::model::tokenizer::TextTokenizer;
use crate::prompt::Prompter;
use crate::table;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The evaluation set's artifacts are not what the evaluate stage expects.
    #[error("evaluation set {path}: {message}")]
    EvalSet { path: String, message: String },
    #[error("user `{user}`: the prompt and its longest candidate need {tokens} positions, more than the model's {max}")]
    TooLong { user: String, tokens: usize, max: usize },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("evaluation set {path} has no `instruction_prior` column, which `calibrated` scoring needs (it was written by an older reccocktail: remove that cache entry to rebuild it)")]
    NoPrior { path: String },
    #[error(transparent)]
    Encode(#[from] crate::prompt::EncodeError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
}

/// What one test user's evaluation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct UserResult {
    pub user: String,
    pub target: String,
    pub target_title: String,
    pub rank: Option<usize>,
    /// Candidate slots, best first (for `generate`: the grounded ones only).
    pub ranked: Vec<usize>,
    pub scores: Option<Vec<f64>>,
    pub generated: Option<String>,
    pub generated_items: usize,
    /// Tokens the model generated (`generate`; 0 for `likelihood`).
    pub generated_tokens: usize,
    pub valid_items: usize,
}

impl UserResult {
    /// A user not ranked yet: no rank, nothing generated.
    pub fn unranked(u: &TestUser) -> Self {
        UserResult {
            user: u.user.clone(),
            target: u.target.clone(),
            target_title: u.target_title.clone(),
            rank: None,
            ranked: Vec::new(),
            scores: None,
            generated: None,
            generated_items: 0,
            generated_tokens: 0,
            valid_items: 0,
        }
    }
}

/// The model a protocol ranks with, and how its prompts are encoded.
pub struct Ranker<'a> {
    pub model: &'a dyn CausalLm,
    pub tok: &'a TextTokenizer,
    pub prompter: &'a Prompter,
}

/// An evaluation protocol: how one user's fixed candidate list is ranked.
pub trait RankingProtocol {
    /// Refuse an evaluation set (at `path`) that lacks what this protocol needs, before any
    /// model is loaded.
    fn check_set(&self, _users: &[TestUser], _path: &Path) -> Result<(), EvalError> {
        Ok(())
    }

    /// Rank `u`'s candidates after its encoded `prompt`.
    fn rank(&self, r: &Ranker<'_>, prompt: &[u32], u: &TestUser) -> Result<UserResult, EvalError>;

    /// The scoring rule, for the protocols that score candidates (recorded in `evaluate.json`).
    fn scoring(&self) -> Option<crate::recipe::types::Scoring> {
        None
    }
}

/// One test user of an evaluation set: the prompt and the fixed candidate list.
#[derive(Debug, Clone, PartialEq)]
pub struct TestUser {
    pub user: String,
    pub target: String,
    pub target_title: String,
    pub instruction: String,
    /// The instruction with an empty history (for calibrated scoring), when the set has it.
    pub instruction_prior: Option<String>,
    /// Candidate item ids and titles in presentation (slot) order.
    pub items: Vec<String>,
    pub titles: Vec<String>,
    /// The target's slot.
    pub target_slot: usize,
}

/// The `test` rows of an `eval-set` stage's artifacts (`prompts.parquet`, `candidates.parquet`),
/// in file order, each with its candidate list in slot order.
pub fn read_test_users(dir: &Path) -> Result<Vec<TestUser>, EvalError> {
    let bad = |message: String| EvalError::EvalSet { path: dir.display().to_string(), message };
    let prompts = table::read_parquet(&dir.join("prompts.parquet"))?;
    let has_prior = table::names(&prompts).iter().any(|n| n == "instruction_prior");
    let set = table::strs(&prompts, "set")?;
    let (user, target, target_title, instruction) =
        (table::strs(&prompts, "user")?, table::strs(&prompts, "target")?, table::strs(&prompts, "target_title")?, table::strs(&prompts, "instruction")?);
    let prior = if has_prior { table::strs(&prompts, "instruction_prior")?.into_iter().map(Some).collect() } else { vec![None; user.len()] };
    let mut users: Vec<TestUser> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, p) in prior.into_iter().enumerate() {
        if set[i] != "test" {
            continue;
        }
        if index.insert(user[i].clone(), users.len()).is_some() {
            return Err(bad(format!("user `{}` has two test prompts", user[i])));
        }
        users.push(TestUser {
            user: user[i].clone(),
            target: target[i].clone(),
            target_title: target_title[i].clone(),
            instruction: instruction[i].clone(),
            instruction_prior: p,
            items: Vec::new(),
            titles: Vec::new(),
            target_slot: usize::MAX,
        });
    }
    let c = table::read_parquet(&dir.join("candidates.parquet"))?;
    let (cset, cuser, slot, item, title, is_target) =
        (table::strs(&c, "set")?, table::strs(&c, "user")?, table::opt_i64s(&c, "slot")?, table::strs(&c, "item")?, table::strs(&c, "title")?, table::opt_i64s(&c, "is_target")?);
    let mut rows: Vec<(usize, i64, usize)> = Vec::new();
    for k in 0..cuser.len() {
        if cset[k] != "test" {
            continue;
        }
        let u = *index.get(&cuser[k]).ok_or_else(|| bad(format!("candidates of user `{}`, who has no test prompt", cuser[k])))?;
        rows.push((u, slot[k].ok_or_else(|| bad("a null slot".into()))?, k));
    }
    rows.sort_unstable();
    for (u, _, k) in rows {
        let tu = &mut users[u];
        if is_target[k] == Some(1) {
            if tu.target_slot != usize::MAX {
                return Err(bad(format!("user `{}` has two targets among the candidates", tu.user)));
            }
            tu.target_slot = tu.items.len();
        }
        tu.items.push(item[k].clone());
        tu.titles.push(title[k].clone());
    }
    if let Some(u) = users.iter().find(|u| u.target_slot == usize::MAX) {
        return Err(bad(format!("the target of user `{}` is not among the candidates", u.user)));
    }
    Ok(users)
}

impl From<EvalError> for crate::exec::context::StageError {
    fn from(e: EvalError) -> Self {
        crate::exec::context::StageError::domain(e, false)
    }
}
