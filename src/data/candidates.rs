//! Candidate lists: the target plus N-1 negatives, sampled uniformly or by popularity (training
//! interaction count + 1), never an item of the user's sequence, never two items with the same
//! title (so a title names one candidate), then shuffled. Every list comes from its own seeded
//! stream (seed, user, position), so it is the same wherever it is built.

use std::collections::HashSet;

use super::domain::DomainSplit;
use crate::rng::Rng;
use crate::recipe::types::NegativeSampling;

pub struct CandidateSampler<'a> {
    split: &'a DomainSplit,
    /// Cumulative weights for popularity sampling.
    cumulative: Option<Vec<f64>>,
    seed: u64,
}

impl<'a> CandidateSampler<'a> {
    pub fn new(split: &'a DomainSplit, seed: u64) -> Self {
        let cumulative = (split.settings.negatives == NegativeSampling::Popularity).then(|| {
            let mut acc = 0.0;
            split.train_counts().iter().map(|&c| {
                acc += c as f64 + 1.0;
                acc
            }).collect()
        });
        Self { split, cumulative, seed }
    }

    fn draw(&self, rng: &mut Rng) -> u32 {
        match &self.cumulative {
            None => rng.below(self.split.items.len() as u64) as u32,
            Some(c) => {
                let x = rng.unit() * c.last().copied().unwrap_or(0.0);
                c.partition_point(|&v| v <= x).min(c.len() - 1) as u32
            }
        }
    }

    /// The shuffled candidate list of `user`'s sample at `position`, or `None` when the domain has
    /// too few items outside the user's sequence.
    pub fn candidates(&self, user: usize, position: usize) -> Option<Vec<u32>> {
        let s = self.split;
        let n = s.settings.candidates as usize;
        let target = s.sequences[user][position];
        let mut rng = Rng::derive(self.seed, &["candidates", &s.users[user], &position.to_string()]);
        let mut taken: HashSet<&str> = s.sequences[user].iter().map(|&i| s.titles[i as usize].as_str()).collect();
        let mut list = vec![target];
        let mut attempts = 0usize;
        while list.len() < n && attempts < 64 * n {
            attempts += 1;
            let i = self.draw(&mut rng);
            if taken.insert(s.titles[i as usize].as_str()) {
                list.push(i);
            }
        }
        if list.len() < n {
            // Dense exclusions: sample from the eligible items directly.
            let mut eligible: Vec<u32> = (0..s.items.len() as u32).filter(|&i| !taken.contains(s.titles[i as usize].as_str())).collect();
            let mut seen_titles = HashSet::new();
            eligible.retain(|&i| seen_titles.insert(s.titles[i as usize].as_str()));
            if eligible.len() < n - list.len() {
                return None;
            }
            let weights = |i: u32| self.cumulative.as_ref().map(|c| c[i as usize] - if i == 0 { 0.0 } else { c[i as usize - 1] }).unwrap_or(1.0);
            while list.len() < n {
                let total: f64 = eligible.iter().map(|&i| weights(i)).sum();
                let mut x = rng.unit() * total;
                let mut pick = eligible.len() - 1;
                for (k, &i) in eligible.iter().enumerate() {
                    x -= weights(i);
                    if x < 0.0 {
                        pick = k;
                        break;
                    }
                }
                list.push(eligible.swap_remove(pick));
            }
        }
        rng.shuffle(&mut list);
        Some(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::domain::SplitSettings;

    fn split(n_items: usize, negatives: NegativeSampling, candidates: u32) -> DomainSplit {
        let items: Vec<String> = (0..n_items).map(|i| format!("i{i}")).collect();
        DomainSplit {
            settings: SplitSettings { label: "d".into(), max_history: 10, candidates, negatives, max_train_per_user: None, min_sequence: 3 },
            titles: items.iter().map(|i| format!("T {i}")).collect(),
            items,
            users: vec!["u0".into(), "u1".into()],
            sequences: vec![vec![0, 1, 2, 3], vec![3, 4, 5]],
            timestamps: vec![vec![None; 4], vec![None; 3]],
        }
    }

    #[test]
    fn lists_hold_the_target_once_and_no_history() {
        for neg in [NegativeSampling::Uniform, NegativeSampling::Popularity] {
            let s = split(50, neg, 10);
            let c = CandidateSampler::new(&s, 42);
            for (u, pos) in [(0, 3), (1, 2), (0, 2)] {
                let list = c.candidates(u, pos).unwrap();
                assert_eq!(list.len(), 10);
                let target = s.sequences[u][pos];
                assert_eq!(list.iter().filter(|&&i| i == target).count(), 1);
                assert!(list.iter().all(|i| *i == target || !s.sequences[u].contains(i)));
                let distinct: HashSet<_> = list.iter().collect();
                assert_eq!(distinct.len(), 10);
                assert_eq!(c.candidates(u, pos).unwrap(), list, "same seed, same list");
            }
            assert_ne!(CandidateSampler::new(&s, 7).candidates(0, 3), c.candidates(0, 3));
        }
    }

    #[test]
    fn dense_exclusions_fall_back_or_give_up() {
        // 8 items, user 0 has 4: exactly 4 negatives are available for 5 candidates.
        let s = split(8, NegativeSampling::Uniform, 5);
        let list = CandidateSampler::new(&s, 1).candidates(0, 3).unwrap();
        let mut sorted = list.clone();
        sorted.sort();
        assert_eq!(sorted, [3, 4, 5, 6, 7]);
        let s = split(8, NegativeSampling::Popularity, 6);
        assert_eq!(CandidateSampler::new(&s, 1).candidates(0, 3), None);
    }
}
