//! Uncertainty of the reported means: a seeded percentile bootstrap over users.
//!
//! Every arm of a setting ranks the same users on the same candidate lists, so each setting draws
//! ONE set of resamples (users drawn with replacement, `Rng::derive(seed, ["bootstrap",
//! setting])`) and every arm's interval uses it: intervals of one setting are computed on the same
//! resampled populations, and a rerun gives the same bounds bit for bit.

use std::collections::HashMap;

use crate::rng::Rng;

/// The coverage of the reported intervals.
pub const LEVEL: f64 = 0.95;

/// `resamples` draws of `n` user indices with replacement, for one setting.
pub fn resamples(seed: u64, setting: &str, n: usize, resamples: usize) -> Vec<Vec<usize>> {
    let mut rng = Rng::derive(seed, &["bootstrap", setting]);
    (0..resamples).map(|_| (0..n).map(|_| rng.below(n.max(1) as u64) as usize).collect()).collect()
}

/// A report's resample sets, each drawn once per (setting, number of users) and reused by every
/// interval and paired test of that setting.
pub struct Resamples {
    seed: u64,
    count: usize,
    drawn: HashMap<(String, usize), Vec<Vec<usize>>>,
}

impl Resamples {
    pub fn new(seed: u64, count: usize) -> Self {
        Resamples { seed, count, drawn: HashMap::new() }
    }

    /// The resamples of `n` users of `setting`.
    pub fn of(&mut self, setting: &str, n: usize) -> &[Vec<usize>] {
        let (seed, count) = (self.seed, self.count);
        self.drawn.entry((setting.to_string(), n)).or_insert_with(|| resamples(seed, setting, n, count))
    }
}

/// The percentile interval (LEVEL) of the mean of `values` over the resamples `draws`
/// (`None` without users or resamples).
pub fn mean_interval(values: &[f64], draws: &[Vec<usize>]) -> Option<(f64, f64)> {
    if values.is_empty() || draws.is_empty() {
        return None;
    }
    let mut means: Vec<f64> = draws.iter().map(|d| d.iter().map(|&i| values[i]).sum::<f64>() / d.len() as f64).collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - LEVEL) / 2.0;
    Some((quantile(&means, tail), quantile(&means, 1.0 - tail)))
}

/// Linear-interpolation quantile of sorted values (type 7, as numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_cover_the_mean_and_are_seeded() {
        let values: Vec<f64> = (0..40).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
        let draws = resamples(42, "cold", values.len(), 2000);
        let (lo, hi) = mean_interval(&values, &draws).unwrap();
        // Mean 0.25; the binomial standard error is sqrt(0.25 * 0.75 / 40) = 0.068.
        assert!(lo < 0.25 && 0.25 < hi, "{lo} {hi}");
        assert!((hi - lo - 2.0 * 1.96 * 0.0685).abs() < 0.04, "{lo} {hi}");
        assert_eq!(resamples(42, "cold", 40, 3), resamples(42, "cold", 40, 3));
        assert_ne!(resamples(42, "cold", 40, 3), resamples(42, "warm", 40, 3));
        // Constant values: a degenerate interval.
        assert_eq!(mean_interval(&[0.5; 7], &resamples(1, "s", 7, 50)), Some((0.5, 0.5)));
        assert_eq!(mean_interval(&[], &draws), None);
        assert_eq!(quantile(&[0.0, 1.0, 2.0, 3.0], 0.5), 1.5);
    }
}
