//! Rendering samples (a user's sequence position) into prompts, and the tables that hold them.

use polars::prelude::{Column, DataFrame, DataType, NamedFrom, Series};

use super::candidates::CandidateSampler;
use super::domain::DomainSplit;
use super::DataError;
use crate::table;
use crate::model::tokenizer::TextTokenizer;
use crate::prompt::{PromptContext, PromptTemplate, Rendered};

/// One rendered sample.
#[derive(Debug, Clone)]
pub struct Sample {
    pub user: usize,
    pub position: usize,
    /// Candidate item numbers in presentation order (the target among them).
    pub candidates: Vec<u32>,
    pub rendered: Rendered,
    /// The instruction rendered with an empty history (the prior of calibrated scoring), when
    /// the renderer was asked for it.
    pub prior_instruction: Option<String>,
    /// History items dropped (oldest first) to fit the history token budget.
    pub budget_dropped: usize,
    /// The history items the prompt shows, oldest first (after the budget).
    pub history: Vec<u32>,
}

pub struct Renderer<'a> {
    pub split: &'a DomainSplit,
    sampler: CandidateSampler<'a>,
    template: &'a PromptTemplate,
    k: u32,
    separator: String,
    prior: bool,
    budget: Option<&'a HistoryBudget>,
}

/// `data.history_token_budget`: the history may add at most `tokens` tokens (backbone tokenizer)
/// to the rendered instruction, measured as the instruction's tokens minus those of the same
/// instruction with an empty history, so the template's own layout of the history (separators,
/// numbering) counts; the oldest items are dropped until it fits (possibly all of them).
pub struct HistoryBudget {
    pub tokenizer: TextTokenizer,
    pub tokens: u32,
}

impl HistoryBudget {
    fn count(&self, text: &str) -> Result<usize, DataError> {
        Ok(self.tokenizer.encode(text, false).map_err(|e| DataError::Invalid(format!("history token budget: {e}")))?.len())
    }
}

impl<'a> Renderer<'a> {
    pub fn new(split: &'a DomainSplit, template: &'a PromptTemplate, separator: &str, k: u32, seed: u64) -> Self {
        Self { split, sampler: CandidateSampler::new(split, seed), template, k, separator: separator.to_string(), budget: None, prior: false }
    }

    /// Also truncate histories to a token budget.
    pub fn with_budget(mut self, budget: Option<&'a HistoryBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Also render each sample's instruction with an empty history (`instruction_prior`).
    pub fn with_prior(mut self) -> Self {
        self.prior = true;
        self
    }

    /// Render `user`'s sample at `position`; `None` when no candidate list can be built.
    pub fn render(&self, user: usize, position: usize) -> Result<Option<Sample>, DataError> {
        let s = self.split;
        let Some(candidates) = self.sampler.candidates(user, position) else {
            return Ok(None);
        };
        let title = |i: &u32| s.titles[*i as usize].clone();
        let mut ctx = PromptContext {
            history: s.history(user, position).iter().map(title).collect(),
            candidates: candidates.iter().map(title).collect(),
            target: title(&s.sequences[user][position]),
            k: self.k,
            domain: s.settings.label.clone(),
            separator: self.separator.clone(),
        };
        let mut rendered = self.template.render(&ctx)?;
        let mut budget_dropped = 0;
        if let Some(b) = self.budget {
            let base = b.count(&self.template.render(&PromptContext { history: Vec::new(), ..ctx.clone() })?.instruction)?;
            while !ctx.history.is_empty() && b.count(&rendered.instruction)?.saturating_sub(base) > b.tokens as usize {
                ctx.history.remove(0);
                budget_dropped += 1;
                rendered = self.template.render(&ctx)?;
            }
        }
        let prior_instruction = if self.prior { Some(self.template.render(&PromptContext { history: Vec::new(), ..ctx })?.instruction) } else { None };
        let history = s.history(user, position)[budget_dropped..].to_vec();
        Ok(Some(Sample { user, position, candidates, rendered, prior_instruction, budget_dropped, history }))
    }
}

/// Rows of rendered samples, possibly from several domains, tagged with a `set` name.
#[derive(Default)]
pub struct SampleTable {
    set: Vec<String>,
    domain: Vec<String>,
    user: Vec<String>,
    position: Vec<u32>,
    history: Vec<u32>,
    history_items: Vec<Series>,
    target: Vec<String>,
    target_title: Vec<String>,
    instruction: Vec<String>,
    response: Vec<String>,
    instruction_prior: Vec<String>,
    // Candidates, long format.
    c_set: Vec<String>,
    c_user: Vec<String>,
    c_slot: Vec<u32>,
    c_item: Vec<String>,
    c_title: Vec<String>,
    c_target: Vec<bool>,
}

impl SampleTable {
    pub fn push(&mut self, set: &str, domain: &str, split: &DomainSplit, s: &Sample) {
        let target = split.sequences[s.user][s.position];
        let user = &split.users[s.user];
        self.set.push(set.into());
        self.domain.push(domain.to_string());
        self.user.push(user.clone());
        self.position.push(s.position as u32);
        self.history.push(s.position as u32);
        self.history_items.push(Series::new("".into(), s.history.iter().map(|&i| split.items[i as usize].clone()).collect::<Vec<_>>()));
        self.target.push(split.items[target as usize].clone());
        self.target_title.push(split.titles[target as usize].clone());
        self.instruction.push(s.rendered.instruction.clone());
        self.response.push(s.rendered.response.clone());
        if let Some(p) = &s.prior_instruction {
            self.instruction_prior.push(p.clone());
        }
        for (slot, &c) in s.candidates.iter().enumerate() {
            self.c_set.push(set.into());
            self.c_user.push(user.clone());
            self.c_slot.push(slot as u32);
            self.c_item.push(split.items[c as usize].clone());
            self.c_title.push(split.titles[c as usize].clone());
            self.c_target.push(c == target);
        }
    }

    pub fn len(&self) -> usize {
        self.user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }

    /// Reorder the sample rows by `order` (indices into the current rows).
    pub fn permute(&mut self, order: &[usize]) {
        fn p<T: Clone>(v: &mut Vec<T>, order: &[usize]) {
            *v = order.iter().map(|&i| v[i].clone()).collect();
        }
        p(&mut self.set, order);
        p(&mut self.domain, order);
        p(&mut self.user, order);
        p(&mut self.position, order);
        p(&mut self.history, order);
        p(&mut self.history_items, order);
        p(&mut self.target, order);
        p(&mut self.target_title, order);
        p(&mut self.instruction, order);
        p(&mut self.response, order);
        if !self.instruction_prior.is_empty() {
            p(&mut self.instruction_prior, order);
        }
    }

    /// `set, domain, user, position, history` (untruncated history length), `target`,
    /// `target_title`, `instruction`, `response`, and `instruction_prior` (the instruction with an
    /// empty history) when every sample has one.
    pub fn samples_frame(&self) -> Result<DataFrame, DataError> {
        let mut columns = vec![
            Column::new("set".into(), self.set.clone()),
            Column::new("domain".into(), self.domain.clone()),
            Column::new("user".into(), self.user.clone()),
            Column::new("position".into(), self.position.clone()),
            Column::new("history".into(), self.history.clone()),
            Column::from(Series::new("".into(), self.history_items.clone()).cast(&DataType::List(Box::new(DataType::String))).map_err(table::polars_err("history_items column"))?.with_name("history_items".into())),
            Column::new("target".into(), self.target.clone()),
            Column::new("target_title".into(), self.target_title.clone()),
            Column::new("instruction".into(), self.instruction.clone()),
            Column::new("response".into(), self.response.clone()),
        ];
        if !self.is_empty() && self.instruction_prior.len() == self.len() {
            columns.push(Column::new("instruction_prior".into(), self.instruction_prior.clone()));
        }
        Ok(table::frame(columns)?)
    }

    /// `set, user, slot, item, title, is_target`: every candidate list, in presentation order.
    pub fn candidates_frame(&self) -> Result<DataFrame, DataError> {
        Ok(table::frame(vec![
            Column::new("set".into(), self.c_set.clone()),
            Column::new("user".into(), self.c_user.clone()),
            Column::new("slot".into(), self.c_slot.clone()),
            Column::new("item".into(), self.c_item.clone()),
            Column::new("title".into(), self.c_title.clone()),
            Column::new("is_target".into(), self.c_target.clone()),
        ])?)
    }

    /// Unlabeled rows (adaptation): `kind` (the set name), `domain, user, position, instruction`,
    /// in row order. No target, no response.
    pub fn unlabeled_frame(&self) -> Result<DataFrame, DataError> {
        unlabeled(self.samples_frame()?, &["set", "domain", "user", "position", "instruction"])
    }

    /// The candidate lists of unlabeled rows: `kind, user, slot, item, title` (which is the
    /// target is not said).
    pub fn unlabeled_candidates_frame(&self) -> Result<DataFrame, DataError> {
        unlabeled(self.candidates_frame()?, &["set", "user", "slot", "item", "title"])
    }

    /// The first row's rendered prompt, for summaries.
    pub fn example(&self) -> Option<Rendered> {
        self.instruction.first().map(|i| Rendered { instruction: i.clone(), response: self.response[0].clone() })
    }
}

/// The `keep` columns of a labelled frame, `set` renamed `kind`.
fn unlabeled(df: DataFrame, keep: &[&str]) -> Result<DataFrame, DataError> {
    let mut df = df.select(keep.iter().copied()).map_err(DataError::table("selecting unlabeled columns"))?;
    df.rename("set", "kind".into()).map_err(DataError::table("renaming `set`"))?;
    Ok(df)
}
