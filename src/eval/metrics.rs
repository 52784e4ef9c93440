//! Ranking metrics with one relevant item (the target) per user, and how a target's rank is
//! read off candidate scores.
//!
//! **Ties.** Candidates with equal scores are ordered by presentation slot (the order of the
//! candidate list in the prompt), and the target never wins a tie it is not first in: its rank is
//! `1 + #(candidates with a strictly higher score) + #(candidates with an equal score in an
//! earlier slot)`. This makes every ranking a total order, deterministic, and never optimistic
//! beyond what the presentation order alone would give (a constant scorer ranks the target at its
//! slot, which is uniform because the lists are shuffled). NaN scores rank below every number.
//!
//! **Misses.** A protocol may leave the target unranked (`generate`: the model never named it).
//! An unranked target counts 0 for HR@K, NDCG@K and MRR.

use crate::recipe::types::Metric;

/// HR@K of one ranking with the target at 1-based `rank`.
pub fn hr_at(rank: usize, k: u32) -> f64 {
    if rank <= k as usize { 1.0 } else { 0.0 }
}

/// NDCG@K with one relevant item: 1 / log2(rank + 1) within the cut-off.
pub fn ndcg_at(rank: usize, k: u32) -> f64 {
    if rank <= k as usize { 1.0 / ((rank + 1) as f64).log2() } else { 0.0 }
}

pub fn reciprocal_rank(rank: usize) -> f64 {
    1.0 / rank as f64
}

/// The expected value of a metric when the target's rank is uniform over `1..=n`.
pub fn expected(n: usize, metric: impl Fn(usize) -> f64) -> f64 {
    (1..=n).map(metric).sum::<f64>() / n as f64
}

/// Total order of scores used for ranking: higher first, NaN last.
fn beats(a: f64, b: f64) -> bool {
    match (a.is_nan(), b.is_nan()) {
        (false, true) => true,
        (true, _) => false,
        (false, false) => a > b,
    }
}

/// 1-based rank of the candidate in slot `target` given every candidate's score in slot order
/// (ties: earlier slot first; see the module documentation). `target` must be a valid slot.
pub fn rank_of(scores: &[f64], target: usize) -> usize {
    let t = scores[target];
    let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    1 + scores.iter().enumerate().filter(|&(i, &s)| beats(s, t) || (same(s, t) && i < target)).count()
}

/// Slots ordered by score, best first (ties: earlier slot first), consistent with [`rank_of`].
pub fn ranking(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        if beats(scores[a], scores[b]) {
            std::cmp::Ordering::Less
        } else if beats(scores[b], scores[a]) {
            std::cmp::Ordering::Greater
        } else {
            a.cmp(&b)
        }
    });
    order
}

/// The mean over users of a function of the target's rank.
pub type MeanOverUsers<'a> = &'a dyn Fn(&dyn Fn(usize) -> f64) -> f64;

/// (metric name, k, value) rows for per-user ranks, averaged. `valid_ratio` is the protocol's
/// share of valid items (1 for anything that ranks the candidates themselves).
pub fn metric_rows(metrics: &[Metric], ks: &[u32], per_user: MeanOverUsers<'_>, valid_ratio: f64) -> Vec<(String, Option<u32>, f64)> {
    let mut out = Vec::new();
    for m in metrics {
        match m {
            Metric::Hr => ks.iter().for_each(|&k| out.push(("hr".into(), Some(k), per_user(&|r| hr_at(r, k))))),
            Metric::Ndcg => ks.iter().for_each(|&k| out.push(("ndcg".into(), Some(k), per_user(&|r| ndcg_at(r, k))))),
            Metric::Mrr => out.push(("mrr".into(), None, per_user(&reciprocal_rank))),
            Metric::ValidRatio => out.push(("valid_ratio".into(), None, valid_ratio)),
        }
    }
    out
}

/// Mean of `f(rank)` over users whose target may be unranked (`None` counts 0); 0 for no users.
pub fn mean_over(ranks: &[Option<usize>], f: &dyn Fn(usize) -> f64) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    ranks.iter().map(|r| r.map_or(0.0, f)).sum::<f64>() / ranks.len() as f64
}

/// The metric's column name in summaries: `hr@5`, `mrr`.
pub fn label(metric: &str, k: Option<u32>) -> String {
    k.map(|k| format!("{metric}@{k}")).unwrap_or_else(|| metric.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_one_ranking() {
        assert_eq!(hr_at(1, 1), 1.0);
        assert_eq!(hr_at(2, 1), 0.0);
        assert_eq!(ndcg_at(1, 3), 1.0);
        assert!((ndcg_at(3, 3) - 0.5).abs() < 1e-12);
        assert!((ndcg_at(2, 3) - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!(ndcg_at(4, 3), 0.0);
        assert_eq!(reciprocal_rank(4), 0.25);
    }

    #[test]
    fn random_expectations() {
        assert!((expected(10, |r| hr_at(r, 3)) - 0.3).abs() < 1e-12);
        assert!((expected(10, |r| ndcg_at(r, 1)) - 0.1).abs() < 1e-12);
        let h10: f64 = (1..=10).map(|r| 1.0 / r as f64).sum();
        assert!((expected(10, reciprocal_rank) - h10 / 10.0).abs() < 1e-12);
    }

    #[test]
    fn ranks_with_ties_follow_the_presentation_order() {
        // slot:        0    1    2    3    4
        let scores = [0.2, 0.9, 0.5, 0.9, 0.5];
        assert_eq!(rank_of(&scores, 1), 1, "first of the two 0.9s");
        assert_eq!(rank_of(&scores, 3), 2, "a later slot loses the tie");
        assert_eq!(rank_of(&scores, 2), 3);
        assert_eq!(rank_of(&scores, 4), 4);
        assert_eq!(rank_of(&scores, 0), 5);
        assert_eq!(ranking(&scores), [1, 3, 2, 4, 0]);
        // Constant scores: the rank is the slot.
        let flat = [1.0; 4];
        assert_eq!((0..4).map(|t| rank_of(&flat, t)).collect::<Vec<_>>(), [1, 2, 3, 4]);
        // NaN ranks last; -inf still above NaN.
        let odd = [f64::NAN, f64::NEG_INFINITY, -1.0];
        assert_eq!(rank_of(&odd, 0), 3);
        assert_eq!(rank_of(&odd, 1), 2);
        assert_eq!(ranking(&odd), [2, 1, 0]);
    }

    #[test]
    fn rank_agrees_with_the_ranking_position() {
        let scores = [3.0, -1.0, 3.0, 0.0, 3.0, -1.0, 7.5];
        let order = ranking(&scores);
        for t in 0..scores.len() {
            assert_eq!(rank_of(&scores, t), 1 + order.iter().position(|&s| s == t).unwrap());
        }
    }

    #[test]
    fn aggregates_over_users_with_misses() {
        // Hand-computed: ranks 1, 3, miss, 2.
        let ranks = [Some(1), Some(3), None, Some(2)];
        let rows = metric_rows(&[Metric::Hr, Metric::Ndcg, Metric::Mrr, Metric::ValidRatio], &[1, 3], &|f| mean_over(&ranks, f), 0.75);
        let get = |m: &str, k: Option<u32>| rows.iter().find(|r| r.0 == m && r.1 == k).unwrap().2;
        assert_eq!(get("hr", Some(1)), 0.25);
        assert_eq!(get("hr", Some(3)), 0.75);
        assert!((get("ndcg", Some(1)) - 0.25).abs() < 1e-12);
        assert!((get("ndcg", Some(3)) - (1.0 + 0.5 + 1.0 / 3f64.log2()) / 4.0).abs() < 1e-12);
        assert!((get("mrr", None) - (1.0 + 1.0 / 3.0 + 0.5) / 4.0).abs() < 1e-12);
        assert_eq!(get("valid_ratio", None), 0.75);
        assert_eq!(rows.len(), 6);
        assert_eq!(mean_over(&[], &|_| 1.0), 0.0);
        assert_eq!(label("hr", Some(5)), "hr@5");
        assert_eq!(label("mrr", None), "mrr");
    }
}
