//! The markdown summary: one table per setting, arms as rows, metric@K as columns, values to
//! three decimals, the best LLM arm's value of each column in bold (the references `random` and
//! `popularity` are never bold), then the failed or skipped arms with why.

use super::{Record, Results};
use crate::eval::metrics::label;

/// Arms that are not LLM arms.
pub const REFERENCES: [&str; 5] = ["random", "popularity", "markov", "itemknn", "sasrec"];

pub(super) fn first_seen<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

pub fn markdown(r: &Results) -> String {
    let mut s = format!("# Results: `{}` (recipe {}, seed {})\n", r.experiment, r.recipe_hash, r.seed);
    if let Some(x) = r.records.iter().find(|x| x.candidates.is_some()) {
        let negatives = x.negatives.as_deref().unwrap_or("?");
        s.push_str(&format!(
            "\nCandidates: {} per user, the target and {} {negatives}-sampled negatives (never an item of the user's own sequence).\n",
            x.candidates.unwrap_or(0),
            x.candidates.unwrap_or(1).saturating_sub(1)
        ));
    }
    for setting in first_seen(r.records.iter().map(|x| x.setting.as_str())) {
        let rows: Vec<&Record> = r.records.iter().filter(|x| x.setting == setting).collect();
        let columns = first_seen(rows.iter().map(|x| (x.metric.as_str(), x.k)));
        let arms = first_seen(rows.iter().map(|x| x.arm.as_str()));
        let cell = |arm: &str, (m, k): (&str, Option<u32>)| rows.iter().find(|x| x.arm == arm && x.metric == m && x.k == k).copied();
        s.push_str(&format!("\n## Setting `{setting}`\n\n| arm | users |"));
        for &(m, k) in &columns {
            s.push_str(&format!(" {} |", label(m, k)));
        }
        s.push_str("\n|---|---:|");
        s.push_str(&"---:|".repeat(columns.len()));
        s.push('\n');
        let best: Vec<Option<f64>> = columns
            .iter()
            .map(|&c| arms.iter().filter(|a| !REFERENCES.contains(*a)).filter_map(|a| cell(a, c).and_then(|x| x.value)).filter(|v| !v.is_nan()).reduce(f64::max))
            .collect();
        for arm in &arms {
            let users = rows.iter().find(|x| x.arm == *arm).and_then(|x| x.users).map_or("—".to_string(), |u| u.to_string());
            // An entropy arm's row says whose prompts it adapted on (see "Entropy merges").
            let adapted = r.adaptations.iter().find(|a| a.arm == *arm && (a.merge == format!("{arm}:{setting}") || a.merge == *arm)).map_or(String::new(), |a| format!(" [{}]", a.population));
            s.push_str(&format!("| {arm}{adapted} | {users} |"));
            for (c, b) in columns.iter().zip(&best) {
                let text = match cell(arm, *c) {
                    Some(Record { value: Some(v), ci_low, ci_high, .. }) => {
                        // The interval as ± its half width (the exact bounds are in results.csv).
                        let half = match (ci_low, ci_high) {
                            (Some(lo), Some(hi)) => format!(" ±{:.2}", (hi - lo) / 2.0),
                            _ => String::new(),
                        };
                        let t = format!("{v:.3}{half}");
                        let significant = r.best.iter().any(|x| x.setting == setting && x.metric == c.0 && x.k == c.1 && x.arm == *arm);
                        if !REFERENCES.contains(arm) && Some(*v) == *b && significant { format!("**{t}**") } else { t }
                    }
                    Some(x) => x.status.clone(),
                    None => "—".into(),
                };
                s.push_str(&format!(" {text} |"));
            }
            s.push('\n');
        }
    }
    if r.records.iter().any(|x| REFERENCES.contains(&x.arm.as_str())) {
        s.push_str("\nBold: the best LLM arm of a column, only where a paired test over the same users separates it from the runner-up (p < 0.05, unadjusted; exact McNemar for HR, sign-flip permutation for NDCG and MRR); no bold means no arm stands out (random, popularity, markov, itemknn and sasrec are non-LLM references on the same candidate lists, never bold; random is the expected value). ±: half the width of the 95% percentile-bootstrap interval over users (results.csv has its bounds); intervals that overlap do not tell arms apart.\n");
    }
    if !r.comparisons.is_empty() {
        let marked = r.comparisons.iter().filter(|c| c.p_holm < super::compare::ALPHA).count();
        let n = r.comparisons.len();
        // Reports written before the distinct tests were counted: every comparison was one.
        let tests = if r.distinct_tests == 0 { n } else { r.distinct_tests };
        let family = if tests == n {
            format!("all {n} comparisons of the run (`comparisons.csv` has every metric and K)")
        } else {
            format!("the run's {tests} distinct tests (its {n} comparisons, those on the same paired values counted once; `comparisons.csv` has every metric and K)")
        };
        s.push_str(&format!(
            "\n## Paired comparisons\n\nEvery declared pair on the same users: mean difference A − B with its 95% paired bootstrap interval, and the p-value (exact McNemar for HR@K; sign-flip permutation for NDCG@K and MRR, exact up to 16 users with a difference, else random flips, seeded by the differences, until {} are as extreme, at most {}, so that p can reach below 0.05 / {}) adjusted by Holm over {}. {} significant at 0.05 after adjustment (marked \\*). MRR:\n\n| setting | A | B | users | A − B [95% CI] | p | p (Holm) |\n|---|---|---|---:|---|---:|---:|\n",
            super::compare::STOP_AFTER,
            r.flip_budget,
            tests,
            family,
            if marked == 0 { "None is".to_string() } else if marked == 1 { "1 is".to_string() } else { format!("{marked} are") }
        ));
        for c in r.comparisons.iter().filter(|c| c.metric == "mrr") {
            let ci = match (c.ci_low, c.ci_high) {
                (Some(lo), Some(hi)) => format!(" [{lo:+.3}, {hi:+.3}]"),
                _ => String::new(),
            };
            let mark = if c.p_holm < super::compare::ALPHA { " \\*" } else { "" };
            s.push_str(&format!("| {} | {} | {} | {} | {:+.3}{ci} | {:.3} | {:.3}{mark} |\n", c.setting, c.arm_a, c.arm_b, c.users, c.mean_diff, c.p_value, c.p_holm));
        }
    }
    if !r.settings.is_empty() {
        s.push_str("\n## Evaluation sets\n\nHistory length: items before the target (median, quartiles). Leak check: test targets (user, item) that an adapter saw in training or validation, as the target or in the history (same dataset), and target titles that are another dataset's training targets.\n\n| setting | test users | history length | targets seen in training | titles shared with another dataset |\n|---|---:|---|---:|---:|\n");
        for f in &r.settings {
            let h = &f.history_lengths;
            s.push_str(&format!("| {} | {} | {} ({}–{}) | {} | {} |\n", f.setting, f.test_users, h.median, h.q1, h.q3, f.leakage.targets_in_training, f.leakage.shared_titles));
        }
    }
    if !r.adaptations.is_empty() {
        s.push_str("\n## Entropy merges\n\nAdapted on: `disjoint` = the setting's users who are not evaluated; `transductive` = the evaluated users' own prompts (unlabeled; test-time adaptation); `domain` = users of the whole target domain. Learning rate 0 is the initial coefficients, unadapted.\n\n| merge | adapted on | prompts | entropy before → after | lr chosen | validation MRR by lr (users) |\n|---|---|---:|---|---:|---|\n");
        for a in &r.adaptations {
            let f = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.4}"));
            let grid = if a.lr_grid.iter().all(|(_, m)| m.is_none()) {
                "— (one rate)".to_string()
            } else {
                let cells: Vec<String> = a.lr_grid.iter().map(|(lr, m)| format!("{lr}: {}", f(*m))).collect();
                format!("{} ({})", cells.join(", "), a.validation_users)
            };
            s.push_str(&format!("| {} | {} | {} | {} → {} | {} | {grid} |\n", a.merge, a.population, a.prompts, f(a.entropy_before), f(a.entropy_after), a.lr));
        }
    }
    if !r.failures.is_empty() {
        s.push_str("\n## Arms without results\n\n");
        for f in &r.failures {
            s.push_str(&format!("- `{}` on `{}` (stage `{}`): {}\n", f.arm, f.setting, f.stage, f.reason.replace('\n', " ")));
        }
    }
    s
}
