//! Paired comparisons between arms: every arm ranks the same users on the same candidate lists,
//! so a difference is measured user by user.
//!
//! For each declared pair (arm A, arm B), setting, metric and K, over the users both evaluated:
//! - the mean difference A - B with a 95% paired percentile-bootstrap interval (the setting's
//!   resamples of [`super::stats`]);
//! - a two-sided p-value: for HR@K (0/1 per user) the exact McNemar test, a sign test on the
//!   discordant users; for NDCG@K and MRR the paired sign-flip (permutation) test of the mean
//!   difference, exact up to 16 non-zero differences, else with random flips seeded by the run's
//!   seed and the differences themselves (so the same paired data gets the same p wherever it
//!   appears, whichever arm is A, and whatever else the family holds): drawn until
//!   [`STOP_AFTER`] of them are as extreme as the observed mean (p = STOP_AFTER / flips drawn,
//!   Besag and Clifford's sequential Monte Carlo p-value) or until the budget of
//!   [`flip_budget`] is spent (p = (1 + #extreme) / (1 + budget)). The budget grows with the
//!   family, so that the smallest p a test can return survives Holm's adjustment: with a fixed
//!   1,000 flips and 252 comparisons no sign-flip test could ever be significant.
//! - the Holm-adjusted p-value over the whole family of one run (every pair x setting x metric x K),
//!   where comparisons that run the same test on the same paired values (two arms with identical
//!   outcomes against a third; A-B and B-A) are one hypothesis test, counted once
//!   ([`holm_grouped`]): they are rejected together or not at all, so counting them twice would
//!   only make every other test in the run more conservative.

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

/// What a report's key records of how its intervals and tests are computed: change it with them,
/// so that a report cached under the old method is computed again (it is seconds of work).
pub const METHOD: &str = "bootstrap percentile intervals; exact McNemar (HR), sign flips seeded by the paired differences (NDCG, MRR); Holm over distinct tests";

/// The significance level of the marks in the summary.
pub const ALPHA: f64 = 0.05;

/// A random sign-flip test stops once this many flips are as extreme as the observed mean.
pub const STOP_AFTER: usize = 20;

/// How far below Holm's first threshold (ALPHA / family) the smallest p of a random sign-flip
/// test reaches.
const RESOLUTION: f64 = 20.0;

/// The random sign flips a test of a family of `family` comparisons may draw: at least `floor`
/// (the recipe's `bootstrap`), and enough that the smallest p it can return, 1 / (1 + budget), is
/// [`RESOLUTION`] times below ALPHA / family. 1 comparison: 400; 252: 100,800.
pub fn flip_budget(family: usize, floor: usize) -> usize {
    ((RESOLUTION * family.max(1) as f64 / ALPHA).ceil() as usize).max(floor)
}

/// The mean difference A - B of per-user values `a` and `b` (same users, same order) and its
/// paired bootstrap interval over `draws`.
pub fn difference(a: &[f64], b: &[f64], draws: &[Vec<usize>]) -> (f64, Option<(f64, f64)>) {
    let d = differences(a, b);
    let mean = if d.is_empty() { 0.0 } else { d.iter().sum::<f64>() / d.len() as f64 };
    (mean, stats::mean_interval(&d, draws))
}

/// The paired test of `a` against `b` and its two-sided p: exact McNemar for a binary metric,
/// else sign flips seeded by `seed` and the differences, at most `budget` of them.
pub fn paired_test(a: &[f64], b: &[f64], binary: bool, seed: u64, budget: usize) -> (&'static str, f64) {
    if binary {
        let n10 = a.iter().zip(b).filter(|(x, y)| **x > **y).count();
        let n01 = a.iter().zip(b).filter(|(x, y)| **x < **y).count();
        ("mcnemar_exact", sign_test(n10, n01))
    } else {
        ("sign_flip", sign_flip(&differences(a, b), seed, budget))
    }
}

fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// Which test [`paired_test`] runs on `a` and `b`: its kind and the paired values, in either order
/// (both tests are two-sided and symmetric in A and B). Comparisons with one key get one p-value
/// and are one hypothesis in Holm's family ([`holm_grouped`]).
pub type TestKey = (bool, Vec<u64>, Vec<u64>);

pub fn test_key(a: &[f64], b: &[f64], binary: bool) -> TestKey {
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
    let (x, y) = (bits(a), bits(b));
    if x <= y { (binary, x, y) } else { (binary, y, x) }
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

/// Two-sided paired sign-flip test of the mean of `d`: exact up to 16 non-zero differences, else
/// sequential random flips (at most `budget`, see the module's notes), drawn from a stream of
/// `seed` and the absolute differences.
pub fn sign_flip(d: &[f64], seed: u64, budget: usize) -> f64 {
    let nz: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
    if nz.is_empty() {
        return 1.0;
    }
    let mut rng = Rng::derive_from_data(seed, &["sign-flips"], nz.iter().map(|x| x.abs().to_bits()));
    let observed = nz.iter().sum::<f64>().abs();
    // A tolerance for sums that equal the observed one up to rounding.
    let tol = 1e-12 * nz.iter().map(|x| x.abs()).sum::<f64>().max(1.0);
    let flipped_sum = |bits: &mut dyn FnMut(usize) -> bool| nz.iter().enumerate().map(|(i, x)| if bits(i) { -x } else { *x }).sum::<f64>().abs();
    if nz.len() <= 16 {
        let total = 1usize << nz.len();
        let extreme = (0..total).filter(|mask| flipped_sum(&mut |i| mask >> i & 1 == 1) >= observed - tol).count();
        return extreme as f64 / total as f64;
    }
    let mut extreme = 0;
    for drawn in 1..=budget {
        // One random bit per user, 64 users per draw of the generator.
        let mut word = 0u64;
        let mut bits = |i: usize| {
            if i.is_multiple_of(64) {
                word = rng.next_u64();
            }
            word >> (i % 64) & 1 == 1
        };
        if flipped_sum(&mut bits) >= observed - tol {
            extreme += 1;
            if extreme == STOP_AFTER {
                return STOP_AFTER as f64 / drawn as f64;
            }
        }
    }
    (1 + extreme) as f64 / (1 + budget) as f64
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

/// Holm over distinct tests: `group[i]` names the test comparison `i` runs (comparisons of one
/// group have the same p), each group counts once in the family, and every member gets its
/// group's adjusted p. Groups are numbered from 0 without gaps.
pub fn holm_grouped(p: &[f64], group: &[usize]) -> Vec<f64> {
    assert_eq!(p.len(), group.len(), "holm_grouped: one group per p-value");
    let n = group.iter().max().map_or(0, |g| g + 1);
    let mut first = vec![f64::NAN; n];
    for (&pi, &g) in p.iter().zip(group) {
        if first[g].is_nan() {
            first[g] = pi;
        }
        debug_assert_eq!(first[g], pi, "one group, one p-value");
    }
    let adjusted = holm(&first);
    group.iter().map(|&g| adjusted[g]).collect()
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
        // Four positive differences: only the all-positive and all-negative flips are as extreme.
        assert!((sign_flip(&[1.0, 0.5, 0.25, 0.25], 1, 0) - 2.0 / 16.0).abs() < 1e-12);
        assert_eq!(sign_flip(&[0.0, 0.0], 1, 10), 1.0);
        let d: Vec<f64> = (0..40).map(|i| if i % 3 == 0 { -0.2 } else { 0.3 }).collect();
        let p1 = sign_flip(&d, 7, 2000);
        assert_eq!(p1, sign_flip(&d, 7, 2000));
        assert!(p1 < 0.01, "{p1}");
    }

    #[test]
    fn the_same_paired_data_gets_the_same_p_whichever_arm_is_a() {
        // A weak effect, so the random flips decide p: 60 users.
        let d: Vec<f64> = (0..60).map(|i| [0.4, -0.3, 0.1, -0.15, 0.05][i % 5]).collect();
        let p = sign_flip(&d, 42, 100_000);
        assert!(p > 0.05 && p < 1.0, "{p}");
        let negated: Vec<f64> = d.iter().map(|x| -x).collect();
        assert_eq!(sign_flip(&negated, 42, 100_000), p);
        // Users with no difference do not change the data the flips are drawn for.
        let padded: Vec<f64> = d.iter().flat_map(|x| [*x, 0.0]).collect();
        assert_eq!(sign_flip(&padded, 42, 100_000), p);
        // Another seed draws other flips: p moves within the sequential estimate's spread.
        let other = sign_flip(&d, 43, 100_000);
        assert_ne!(other, p);
        assert!((other / p).ln().abs() < 2f64.ln(), "{other} vs {p}");
    }

    #[test]
    fn sign_flip_stops_early_when_not_extreme_and_reaches_below_the_holm_threshold() {
        // No effect: half the users +1, half -1, mean 0: every flip is as extreme; stops after 20.
        let d: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        assert_eq!(sign_flip(&d, 3, 100_000), 1.0);
        // A strong effect over 100 users: no flip of 100,800 reaches it, so p is the floor, and it
        // survives Holm over 252 comparisons; a budget of 1,000 never could.
        let d: Vec<f64> = (0..100).map(|i| if i % 4 == 0 { -0.1 } else { 0.3 }).collect();
        let budget = flip_budget(252, 1000);
        assert_eq!(budget, 100_800);
        let p = sign_flip(&d, 3, budget);
        assert_eq!(p, 1.0 / 100_801.0);
        assert!(p * 252.0 < ALPHA);
        assert!(sign_flip(&d, 3, 1000) * 252.0 > ALPHA);
        // A moderate effect: mean 0.025, standard error sqrt(0.1575 / 200) = 0.0281, z = 0.89,
        // whose normal two-sided p is 0.373; estimated from 20 extreme flips, within a factor 2.
        let d: Vec<f64> = (0..200).map(|i| [0.5, -0.5, 0.3, -0.2][i % 4]).collect();
        let p = sign_flip(&d, 5, 100_000);
        assert!((p / 0.373).ln().abs() < 2f64.ln(), "{p}");
        assert_eq!(flip_budget(1, 1000), 1000);
        assert_eq!(flip_budget(1, 100), 400);
    }

    #[test]
    fn holm_steps_down_and_stays_monotone() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.5]);
        assert_eq!(adj, vec![0.04, 0.09, 0.09, 0.5]);
        assert_eq!(holm(&[]), Vec::<f64>::new());
    }

    #[test]
    fn a_test_repeated_counts_once_in_holm() {
        // The first two comparisons are one test: a family of two, not three.
        assert_eq!(holm_grouped(&[0.01, 0.01, 0.04], &[0, 0, 1]), vec![0.02, 0.02, 0.04]);
        assert_eq!(holm(&[0.01, 0.01, 0.04]), vec![0.03, 0.03, 0.04]);
        // Every group distinct: plain Holm.
        assert_eq!(holm_grouped(&[0.01, 0.04, 0.03, 0.5], &[0, 1, 2, 3]), holm(&[0.01, 0.04, 0.03, 0.5]));
        assert_eq!(holm_grouped(&[], &[]), Vec::<f64>::new());
    }
}
