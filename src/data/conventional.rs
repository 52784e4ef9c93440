//! Conventional sequential recommenders as reference rows: fitted on the domain's training part
//! of every user's sequence (each item before the validation one; never a validation or test
//! item) and scored on an evaluation set's fixed candidate lists.
//!
//! - `markov`: first-order transitions. A candidate scores the number of training transitions
//!   from the user's last history item to it; ties (and users whose last item has no transition)
//!   fall back to popularity, the candidate's training count.
//! - `itemknn`: item-item cosine over training co-occurrence (an item is the set of users with it
//!   in their training part: cos(i, j) = |U_i ∩ U_j| / sqrt(|U_i| |U_j|)); a candidate scores the
//!   sum of its cosines with every item of the user's history, ties by popularity.

use std::collections::HashMap;

use super::domain::DomainSplit;

/// The training part of a user's sequence.
fn train_part(s: &[u32]) -> &[u32] {
    &s[..s.len().saturating_sub(2)]
}

/// Training counts and transitions of a split.
pub struct Fitted {
    popularity: Vec<f64>,
    transitions: HashMap<(u32, u32), f64>,
    /// Per item, the users with it in their training part (ascending, each once).
    users_of: Vec<Vec<u32>>,
    users: usize,
}

impl Fitted {
    pub fn new(split: &DomainSplit) -> Fitted {
        let n = split.items.len();
        let mut popularity = vec![0.0; n];
        let mut transitions: HashMap<(u32, u32), f64> = HashMap::new();
        let mut users_of: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (u, s) in split.sequences.iter().enumerate() {
            let t = train_part(s);
            for (k, &i) in t.iter().enumerate() {
                popularity[i as usize] += 1.0;
                // Users are visited in ascending order: a repeat of the same user is the last entry.
                if users_of[i as usize].last() != Some(&(u as u32)) {
                    users_of[i as usize].push(u as u32);
                }
                if k > 0 {
                    *transitions.entry((t[k - 1], i)).or_default() += 1.0;
                }
            }
        }
        Fitted { popularity, transitions, users_of, users: split.sequences.len() }
    }

    /// Markov scores of `candidates` after `history` (oldest first): transitions from the last
    /// item, popularity breaking ties below one transition.
    pub fn markov(&self, history: &[u32], candidates: &[u32]) -> Vec<f64> {
        let top = self.popularity.iter().copied().fold(0.0, f64::max) + 1.0;
        candidates
            .iter()
            .map(|&c| {
                let t = history.last().and_then(|&h| self.transitions.get(&(h, c))).copied().unwrap_or(0.0);
                t * top + self.popularity[c as usize]
            })
            .collect()
    }

    /// Item-kNN scores of `candidates` against the whole `history`, popularity breaking ties.
    ///
    /// `sum_h cos(h, c) = sum_{u in U_c} w_u / sqrt|U_c|` with `w_u = sum_{h: u in U_h} 1 / sqrt|U_h|`
    /// (over history occurrences): one pass over the history's users, one over each candidate's,
    /// instead of a set intersection per (history item, candidate) pair.
    pub fn itemknn(&self, history: &[u32], candidates: &[u32]) -> Vec<f64> {
        let top = self.popularity.iter().copied().fold(0.0, f64::max) + 1.0;
        let mut w = vec![0.0f64; self.users];
        for &h in history {
            let us = &self.users_of[h as usize];
            let inv = 1.0 / (us.len() as f64).sqrt();
            for &u in us {
                w[u as usize] += inv;
            }
        }
        candidates
            .iter()
            .map(|&c| {
                let us = &self.users_of[c as usize];
                let mut sim = 0.0;
                if !us.is_empty() {
                    sim = us.iter().map(|&u| w[u as usize]).sum::<f64>() / (us.len() as f64).sqrt();
                    // An item is not its own neighbour: drop cos(c, c) = 1 per occurrence of c.
                    sim -= history.iter().filter(|&&h| h == c).count() as f64;
                }
                // Similarities are sums of fractions: popularity only separates equal ones.
                sim + self.popularity[c as usize] / (top * 1e6)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::data::domain::SplitSettings;

    fn split(sequences: Vec<Vec<u32>>) -> DomainSplit {
        let n = 1 + sequences.iter().flatten().copied().max().unwrap_or(0) as usize;
        DomainSplit {
            settings: SplitSettings { label: "x".into(), max_history: 5, candidates: 3, negatives: crate::recipe::types::NegativeSampling::Uniform, max_train_per_user: None, min_sequence: 3 },
            items: (0..n).map(|i| format!("i{i}")).collect(),
            titles: (0..n).map(|i| format!("T{i}")).collect(),
            users: (0..sequences.len()).map(|u| format!("u{u}")).collect(),
            timestamps: sequences.iter().map(|s| vec![None; s.len()]).collect(),
            sequences,
        }
    }

    #[test]
    fn markov_counts_training_transitions_only() {
        // Training parts: [0, 1, 2], [0, 1], [3, 0, 2]; the last two items of each are held out
        // (the 9s and 8s never count).
        let s = split(vec![vec![0, 1, 2, 9, 9], vec![0, 1, 8, 8], vec![3, 0, 2, 9, 8]]);
        let f = Fitted::new(&s);
        // Popularity: 0 x3, 1 x2, 2 x2, 3 x1; top = 4. Transitions from 0: to 1 twice, to 2 once.
        assert_eq!(f.markov(&[5, 0], &[1, 2, 3]), vec![2.0 * 4.0 + 2.0, 4.0 + 2.0, 1.0]);
        // No transition from 9 (held out): popularity alone.
        assert_eq!(f.markov(&[9], &[1, 3, 0]), vec![2.0, 1.0, 3.0]);
    }

    #[test]
    fn itemknn_sums_cosines_over_the_history() {
        // Training users of items: 0 -> {u0, u1, u2}, 1 -> {u0, u1}, 2 -> {u0, u2}, 3 -> {u2}.
        let s = split(vec![vec![0, 1, 2, 9, 9], vec![0, 1, 8, 8], vec![3, 0, 2, 9, 8]]);
        let f = Fitted::new(&s);
        let cos = |a: f64, b: f64, both: f64| both / (a * b).sqrt();
        let got = f.itemknn(&[0, 3], &[1, 2]);
        // 1: cos(0,1) = 2/sqrt(6), cos(3,1) = 0; 2: cos(0,2) = 2/sqrt(6), cos(3,2) = 1/sqrt(2).
        let want = [cos(3.0, 2.0, 2.0), cos(3.0, 2.0, 2.0) + cos(1.0, 2.0, 1.0)];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        assert!(got[1] > got[0]);
    }

    #[test]
    fn itemknn_equals_the_pairwise_cosine_sum() {
        // Random sequences (repeats included); brute force: sum over history occurrences h != c of
        // |U_h ∩ U_c| / sqrt(|U_h| |U_c|).
        let mut rng = crate::rng::Rng::new(5);
        let seqs: Vec<Vec<u32>> = (0..30).map(|_| (0..3 + rng.below(8)).map(|_| rng.below(15) as u32).collect()).collect();
        let f = Fitted::new(&split(seqs.clone()));
        let users = |i: u32| -> HashSet<usize> { seqs.iter().enumerate().filter(|(_, s)| train_part(s).contains(&i)).map(|(u, _)| u).collect() };
        let history = [1u32, 4, 4, 7, 2];
        let candidates: Vec<u32> = (0..15).collect();
        let got = f.itemknn(&history, &candidates);
        for (&c, g) in candidates.iter().zip(&got) {
            let uc = users(c);
            let want: f64 = history
                .iter()
                .filter(|&&h| h != c)
                .map(|&h| {
                    let uh = users(h);
                    if uc.is_empty() || uh.is_empty() { 0.0 } else { uh.intersection(&uc).count() as f64 / ((uh.len() * uc.len()) as f64).sqrt() }
                })
                .sum();
            assert!((g - want).abs() < 1e-6, "item {c}: {g} vs {want}");
        }
    }
}
