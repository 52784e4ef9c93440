//! The `generate` protocol (the paper's): the model writes its top-K list greedily; the text is
//! split into items and each item is grounded to a candidate title.
//!
//! - Items: the text split on the template's separator (`||`) and on line breaks (a list written
//!   one title per line is the commonest deviation), each trimmed; empty pieces are dropped.
//! - Exact grounding: a piece equal to a candidate title after trimming both.
//! - Fuzzy grounding (`fuzzy_match = true`), for pieces without an exact match: both sides
//!   normalized (list markers such as `1.` or `-` dropped from the piece; lowercase; years such as
//!   `(1995)` dropped unless nothing else is left; punctuation to spaces; the articles a/an/the dropped; spaces collapsed); an
//!   equal normalized title wins, else the candidate with the highest normalized Levenshtein
//!   similarity if it is at least [`FUZZY_THRESHOLD`]. Ties go to the earlier slot.
//! - The ranked list is the grounded candidates in generated order, each once (a repeated
//!   candidate keeps its first position). The target's rank is its position there, or none (a
//!   miss: 0 for HR, NDCG and MRR).
//! - Valid ratio of a user: distinct grounded candidates / generated items (0 when nothing was
//!   generated); duplicates and hallucinated items lower it.

use super::{EvalError, Ranker, RankingProtocol, TestUser, UserResult};
use crate::model::CausalLm;
use crate::model::generate::{GenerationConfig, generate};

/// The protocol with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generate {
    pub max_new_tokens: usize,
    pub fuzzy_match: bool,
    /// The evaluation template's item separator.
    pub separator: String,
    pub seed: u64,
}

impl RankingProtocol for Generate {
    fn rank(&self, r: &Ranker<'_>, prompt: &[u32], u: &TestUser) -> Result<UserResult, EvalError> {
        let max = r.model.max_positions();
        if prompt.len() >= max {
            return Err(EvalError::TooLong { user: u.user.clone(), tokens: prompt.len() + 1, max });
        }
        let ids = generate_list(r.model, prompt, self.max_new_tokens, r.tok.eos_ids(), self.seed);
        let text = r.tok.decode(&ids, true).map_err(|e| EvalError::Tokenizer(e.to_string()))?;
        let g = ground(&text, &self.separator, &u.titles, self.fuzzy_match);
        Ok(UserResult { rank: g.rank_of(u.target_slot), generated_items: g.generated, generated_tokens: ids.len(), valid_items: g.valid(), ranked: g.ranked, generated: Some(text), ..UserResult::unranked(u) })
    }
}

/// Smallest normalized Levenshtein similarity a fuzzy match accepts.
pub const FUZZY_THRESHOLD: f64 = 0.8;

/// How one generated text maps onto the candidate list.
#[derive(Debug, Clone, PartialEq)]
pub struct Grounding {
    /// Non-empty generated items.
    pub generated: usize,
    /// Candidate slots in generated order, each once.
    pub ranked: Vec<usize>,
}

impl Grounding {
    /// 1-based position of candidate `slot` in the ranked list.
    pub fn rank_of(&self, slot: usize) -> Option<usize> {
        self.ranked.iter().position(|&s| s == slot).map(|p| p + 1)
    }

    pub fn valid(&self) -> usize {
        self.ranked.len()
    }

    pub fn valid_ratio(&self) -> f64 {
        if self.generated == 0 { 0.0 } else { self.valid() as f64 / self.generated as f64 }
    }
}

/// The generated items of `text`: split on `separator` and line breaks, trimmed, non-empty.
pub fn split_items<'t>(text: &'t str, separator: &str) -> Vec<&'t str> {
    let pieces: Vec<&str> = if separator.is_empty() { text.lines().collect() } else { text.split(separator).flat_map(str::lines).collect() };
    pieces.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

/// Drop a leading list marker: `1.`, `2)`, `-`, `*`, `•`.
fn strip_marker(piece: &str) -> &str {
    let p = piece.trim_start();
    for m in ["-", "*", "•"] {
        if let Some(rest) = p.strip_prefix(m)
            && rest.starts_with(char::is_whitespace)
        {
            return rest.trim_start();
        }
    }
    let digits = p.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && digits <= 3 {
        let rest = &p[digits..];
        if let Some(after) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(')'))
            && after.starts_with(char::is_whitespace)
        {
            return after.trim_start();
        }
    }
    p
}

/// The normalized form used by fuzzy grounding (see the module documentation).
pub fn normalize(title: &str) -> String {
    let lower = title.to_lowercase();
    let spaced: String = lower.chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
    let is_year = |w: &str| w.len() == 4 && w.chars().all(|c| c.is_ascii_digit()) && (w.starts_with("18") || w.starts_with("19") || w.starts_with("20"));
    let words: Vec<&str> = spaced.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect();
    let without_years: Vec<&str> = words.iter().copied().filter(|w| !is_year(w)).collect();
    // A title made of years only ("1984") keeps them.
    if without_years.is_empty() { words.join(" ") } else { without_years.join(" ") }
}

/// Ground the generated `text` to the candidate `titles` (slot order).
pub fn ground(text: &str, separator: &str, titles: &[String], fuzzy: bool) -> Grounding {
    let trimmed: Vec<&str> = titles.iter().map(|t| t.trim()).collect();
    let normalized: Vec<String> = if fuzzy { titles.iter().map(|t| normalize(t)).collect() } else { Vec::new() };
    let items = split_items(text, separator);
    let mut ranked = Vec::new();
    for piece in &items {
        let slot = trimmed.iter().position(|t| t == piece).or_else(|| if fuzzy { fuzzy_slot(piece, &normalized) } else { None });
        if let Some(s) = slot
            && !ranked.contains(&s)
        {
            ranked.push(s);
        }
    }
    Grounding { generated: items.len(), ranked }
}

fn fuzzy_slot(piece: &str, normalized: &[String]) -> Option<usize> {
    let n = normalize(strip_marker(piece));
    if n.is_empty() {
        return None;
    }
    if let Some(s) = normalized.iter().position(|t| *t == n) {
        return Some(s);
    }
    let mut best: Option<(usize, f64)> = None;
    for (s, t) in normalized.iter().enumerate() {
        let sim = strsim::normalized_levenshtein(&n, t);
        if sim >= FUZZY_THRESHOLD && best.is_none_or(|(_, b)| sim > b) {
            best = Some((s, sim));
        }
    }
    best.map(|(s, _)| s)
}

/// Greedy generation after `prompt` until an end-of-sequence id or `max_new_tokens`.
pub fn generate_list(model: &dyn CausalLm, prompt: &[u32], max_new_tokens: usize, eos_ids: &[u32], seed: u64) -> Vec<u32> {
    let cfg = GenerationConfig { max_new_tokens, temperature: 0.0, top_p: 1.0, seed, eos_ids: eos_ids.to_vec() };
    generate(model, prompt, &cfg, &mut |_| false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn titles() -> Vec<String> {
        ["Toy Story (1995)", "Heat (1995)", "Matrix, The (1999)", "Babe (1995)", "Casino (1995)"].map(String::from).to_vec()
    }

    #[test]
    fn exact_grounding_with_trimming_and_separator() {
        let g = ground(" Heat (1995) || Casino (1995)||Toy Story (1995) ", "||", &titles(), false);
        assert_eq!(g, Grounding { generated: 3, ranked: vec![1, 4, 0] });
        assert_eq!(g.rank_of(4), Some(2));
        assert_eq!(g.rank_of(3), None);
        assert_eq!(g.valid_ratio(), 1.0);
    }

    #[test]
    fn hallucinations_duplicates_and_lines() {
        // A hallucinated title, a duplicate, an empty piece, one title per line.
        let g = ground("Heat (1995) || Jaws (1975)\nHeat (1995) ||  || Babe (1995)", "||", &titles(), false);
        assert_eq!(g.generated, 4);
        assert_eq!(g.ranked, [1, 3]);
        assert_eq!(g.valid_ratio(), 0.5);
        assert_eq!(g.rank_of(3), Some(2));
        let none = ground("", "||", &titles(), false);
        assert_eq!((none.generated, none.valid_ratio(), none.rank_of(0)), (0, 0.0, None));
    }

    #[test]
    fn fuzzy_grounding_normalizes_and_tolerates_typos() {
        let t = titles();
        // Without fuzzy matching none of these is a candidate.
        let text = "1. the matrix || toy story || Casnio (1995) || Babel";
        assert_eq!(ground(text, "||", &t, false).ranked, Vec::<usize>::new());
        let g = ground(text, "||", &t, true);
        // "the matrix" -> "matrix" = "Matrix, The (1999)"; "toy story" exact after normalizing;
        // "casnio" ~ "casino" (similarity 0.67 < 0.8: rejected); "babel" ~ "babe" (0.8: accepted).
        assert_eq!(strsim::normalized_levenshtein("casnio", "casino"), 1.0 - 2.0 / 6.0);
        assert_eq!(g.ranked, [2, 0, 3]);
        assert_eq!(g.generated, 4);
        assert_eq!(g.valid_ratio(), 0.75);
        assert_eq!(normalize("Matrix, The (1999)"), "matrix");
        assert_eq!(normalize("  A Bug's Life  (1998)"), "bug s life");
        assert_eq!(strip_marker("12) Heat"), "Heat");
        assert_eq!(strip_marker("1984 (1984)"), "1984 (1984)");
        assert_eq!(normalize("1984 (1984)"), "1984 1984");
    }

    #[test]
    fn fuzzy_ties_go_to_the_earlier_slot() {
        let t: Vec<String> = ["Heat 1", "Heat 2"].map(String::from).to_vec();
        assert_eq!(ground("Heat 3", "||", &t, true).ranked, [0]);
    }
}
