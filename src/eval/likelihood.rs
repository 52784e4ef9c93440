//! The `likelihood` protocol: each candidate title is scored as the start of the model's answer
//! after the user's prompt; candidates are ranked by score.
//!
//! Scores (log-probabilities summed in f64 from the model's f32 values):
//! - `sum`: log p(title | prompt) = Σ over the title's tokens of log p(token | prompt, earlier tokens);
//! - `mean`: the sum divided by the title's token count (length-normalized);
//! - `calibrated`: log p(title | prompt) − log p(title | prior prompt), where the prior prompt is
//!   the same template rendered with an empty history (`instruction_prior` of the evaluation set):
//!   it removes what the model would say about the title without knowing the user (famous or short
//!   titles).
//!
//! A title that encodes to no tokens cannot be named: it scores −∞ (ranked after every real
//! score, ties by slot as always).

use std::path::Path;

use super::metrics::{rank_of, ranking};
use super::{EvalError, Ranker, RankingProtocol, TestUser, UserResult};
use crate::model::CausalLm;
use crate::model::generate::continuation_logprobs;
use crate::recipe::types::Scoring;

/// The protocol with its scoring rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Likelihood {
    pub scoring: Scoring,
}

impl RankingProtocol for Likelihood {
    fn check_set(&self, users: &[TestUser], path: &Path) -> Result<(), EvalError> {
        if self.scoring == Scoring::Calibrated && users.iter().any(|u| u.instruction_prior.is_none()) {
            return Err(EvalError::NoPrior { path: path.display().to_string() });
        }
        Ok(())
    }

    fn rank(&self, r: &Ranker<'_>, prompt: &[u32], u: &TestUser) -> Result<UserResult, EvalError> {
        let titles = u.titles.iter().map(|t| r.prompter.title_ids(r.tok, t)).collect::<Result<Vec<_>, _>>()?;
        let longest = titles.iter().map(Vec::len).max().unwrap_or(0);
        let prior = match self.scoring {
            Scoring::Calibrated => {
                let text = u.instruction_prior.as_deref().ok_or_else(|| EvalError::NoPrior { path: "(this stage's eval-set input)".into() })?;
                Some(r.prompter.prompt_ids(r.tok, text)?)
            }
            _ => None,
        };
        let max = r.model.max_positions();
        let need = prompt.len().max(prior.as_ref().map_or(0, Vec::len)) + longest;
        if need > max {
            return Err(EvalError::TooLong { user: u.user.clone(), tokens: need, max });
        }
        let scores = score_candidates(r.model, prompt, prior.as_deref(), &titles, self.scoring);
        let n = scores.len();
        Ok(UserResult { rank: Some(rank_of(&scores, u.target_slot)), ranked: ranking(&scores), scores: Some(scores), generated_items: n, valid_items: n, ..UserResult::unranked(u) })
    }

    fn scoring(&self) -> Option<Scoring> {
        Some(self.scoring)
    }
}

/// Scores from per-token log-probabilities. `prior`: the same titles' log-probabilities after
/// the prior prompt, which `calibrated` subtracts (the evaluate stage always supplies it).
pub fn scores_from_logprobs(scoring: Scoring, logprobs: &[Vec<f32>], prior: Option<&[Vec<f32>]>) -> Vec<f64> {
    let sum = |lp: &[f32]| lp.iter().map(|&x| x as f64).sum::<f64>();
    logprobs
        .iter()
        .enumerate()
        .map(|(i, lp)| {
            if lp.is_empty() {
                return f64::NEG_INFINITY;
            }
            match scoring {
                Scoring::Sum => sum(lp),
                Scoring::Mean => sum(lp) / lp.len() as f64,
                Scoring::Calibrated => sum(lp) - prior.map_or(0.0, |p| sum(&p[i])),
            }
        })
        .collect()
}

/// Score every candidate (`titles`: token ids of each title) after `prompt`. `prior_prompt` is
/// required for `calibrated` (an empty prior is treated as absent and subtracts nothing).
pub fn score_candidates(model: &dyn CausalLm, prompt: &[u32], prior_prompt: Option<&[u32]>, titles: &[Vec<u32>], scoring: Scoring) -> Vec<f64> {
    let lp = continuation_logprobs(model, prompt, titles);
    let prior = match (scoring, prior_prompt) {
        (Scoring::Calibrated, Some(p)) if !p.is_empty() => Some(continuation_logprobs(model, p, titles)),
        _ => None,
    };
    scores_from_logprobs(scoring, &lp, prior.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_variants_on_given_logprobs() {
        let lp = vec![vec![-1.0f32, -2.0], vec![-0.5], vec![]];
        let prior = vec![vec![-3.0f32, -0.5], vec![-0.25], vec![]];
        assert_eq!(scores_from_logprobs(Scoring::Sum, &lp, None), [-3.0, -0.5, f64::NEG_INFINITY]);
        assert_eq!(scores_from_logprobs(Scoring::Mean, &lp, None), [-1.5, -0.5, f64::NEG_INFINITY]);
        assert_eq!(scores_from_logprobs(Scoring::Calibrated, &lp, Some(&prior)), [0.5, -0.25, f64::NEG_INFINITY]);
    }
}
