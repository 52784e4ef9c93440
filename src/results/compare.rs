//! Paired comparisons between arms: every arm ranks the same users on the same candidate lists,
//! so a difference is measured user by user.
//!
//! For each declared pair (arm A, arm B), setting, metric and K, over the users both evaluated:
//! - the mean difference A - B with a 95% paired percentile-bootstrap interval (the setting's
//!   resamples of [`super::stats`]);
//! - a two-sided p-value: for HR@K (0/1 per user) the exact McNemar test, a sign test on the
//!   discordant users; for NDCG@K and MRR the paired sign-flip (permutation) test of the mean
//!   difference, exact up to 16 non-zero differences, else with the setting's seeded random flips
//!   (`resamples` of them, p = (1 + #{|mean*| >= |mean|}) / (1 + resamples));
//! - the Holm-adjusted p-value over the whole family of one run (every pair x setting x metric x K).

use serde::{Deserialize, Serialize};

use super::stats;
use crate::rng::Rng;

/// One comparison row (`comparisons.parquet` / `.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub setting: String,
    pub metric: String,
    pub k: Option<u32>,
    pub arm_a: String,
    pub arm_b: String,
    pub users: u64,
    pub mean_diff: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// `mcnemar_exact` or `sign_flip`.
    pub test: String,
    pub p_value: f64,
    pub p_holm: f64,
}

/// The significance level of the marks in the summary.
pub const ALPHA: f64 = 0.05;

/// Compare per-user values `a` and `b` (same users, same order) of one metric.
pub fn paired(a: &[f64], b: &[f64], binary: bool, draws: &[Vec<usize>], rng: &mut Rng, flips: usize) -> (f64, Option<(f64, f64)>, &'static str, f64) {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mean = if d.is_empty() { 0.0 } else { d.iter().sum::<f64>() / d.len() as f64 };
    let ci = stats::mean_interval(&d, draws);
    if binary {
        let n10 = a.iter().zip(b).filter(|(x, y)| **x > **y).count();
        let n01 = a.iter().zip(b).filter(|(x, y)| **x < **y).count();
        (mean, ci, "mcnemar_exact", sign_test(n10, n01))
    } else {
        (mean, ci, "sign_flip", sign_flip(&d, rng, flips))
    }
}

/// Two-sided exact sign test of `n10` successes against `n01` (p = 1 without discordant pairs).
pub fn sign_test(n10: usize, n01: usize) -> f64 {
    let n = n10 + n01;
    if n == 0 {
        return 1.0;
    }
    // P(X <= min) under Binomial(n, 1/2), by log-space terms.
    let m = n10.min(n01);
    let ln_choose = |n: usize, k: usize| -> f64 { (1..=k).map(|i| ((n - k + i) as f64).ln() - (i as f64).ln()).sum() };
    let tail: f64 = (0..=m).map(|k| (ln_choose(n, k) - n as f64 * std::f64::consts::LN_2).exp()).sum();
    (2.0 * tail).min(1.0)
}

/// Two-sided paired sign-flip test of the mean of `d`.
pub fn sign_flip(d: &[f64], rng: &mut Rng, flips: usize) -> f64 {
    let nz: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
    if nz.is_empty() {
        return 1.0;
    }
    let observed = nz.iter().sum::<f64>().abs();
    // A tolerance for sums that equal the observed one up to rounding.
    let tol = 1e-12 * nz.iter().map(|x| x.abs()).sum::<f64>().max(1.0);
    if nz.len() <= 16 {
        let total = 1usize << nz.len();
        let extreme = (0..total).filter(|mask| nz.iter().enumerate().map(|(i, x)| if mask >> i & 1 == 1 { -x } else { *x }).sum::<f64>().abs() >= observed - tol).count();
        return extreme as f64 / total as f64;
    }
    let extreme = (0..flips).filter(|_| nz.iter().map(|x| if rng.below(2) == 1 { -x } else { *x }).sum::<f64>().abs() >= observed - tol).count();
    (1 + extreme) as f64 / (1 + flips) as f64
}

/// Holm's step-down adjustment of `p` (same order).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]).then(i.cmp(&j)));
    let mut out = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_test_matches_the_binomial() {
        // 8 vs 2 discordant: 2 * P(X <= 2 | n = 10) = 2 * 56 / 1024.
        assert!((sign_test(8, 2) - 112.0 / 1024.0).abs() < 1e-12);
        assert_eq!(sign_test(0, 0), 1.0);
        assert_eq!(sign_test(3, 3), 1.0);
        assert!((sign_test(0, 5) - 2.0 / 32.0).abs() < 1e-12);
    }

    #[test]
    fn sign_flip_is_exact_for_few_users_and_seeded_beyond() {
        let mut rng = Rng::new(1);
        // Four positive differences: only the all-positive and all-negative flips are as extreme.
        assert!((sign_flip(&[1.0, 0.5, 0.25, 0.25], &mut rng, 0) - 2.0 / 16.0).abs() < 1e-12);
        assert_eq!(sign_flip(&[0.0, 0.0], &mut rng, 10), 1.0);
        let d: Vec<f64> = (0..40).map(|i| if i % 3 == 0 { -0.2 } else { 0.3 }).collect();
        let p1 = sign_flip(&d, &mut Rng::new(7), 2000);
        assert_eq!(p1, sign_flip(&d, &mut Rng::new(7), 2000));
        assert!(p1 < 0.01, "{p1}");
    }

    #[test]
    fn holm_steps_down_and_stays_monotone() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.5]);
        assert_eq!(adj, vec![0.04, 0.09, 0.09, 0.5]);
        assert_eq!(holm(&[]), Vec::<f64>::new());
    }
}
