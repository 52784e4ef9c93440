//! Report assembly on synthetic stage outputs (written by the real evaluate writer): the long
//! table, its CSV and the markdown summary are locked by snapshots; failed and skipped arms are
//! listed; the table reads back from a run directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::Column;

use super::{Results, gather};
use crate::table;
use crate::eval::TestUser;
use crate::eval::params::EvalSettings;
use crate::eval::UserResult;
use crate::eval::stage::write_outputs;
use super::params::{ReportParams, ResultRow, RowSource};
use crate::exec::context::{InputStatus, MissingInput};
use crate::recipe::resolve::ResolvedProtocol;
use crate::recipe::types::{Baseline, Metric, Scoring};

const KS: [u32; 2] = [1, 3];
const METRICS: [Metric; 3] = [Metric::Hr, Metric::Ndcg, Metric::Mrr];

/// An evaluate stage's output where the users' targets sit at `ranks`.
fn evaluate_dir(root: &Path, id: &str, ranks: &[usize]) -> PathBuf {
    let dir = root.join(id.replace(':', "_"));
    std::fs::create_dir_all(&dir).unwrap();
    let users: Vec<TestUser> = (0..ranks.len())
        .map(|u| TestUser { user: format!("u{u}"), target: "a".into(), target_title: "A".into(), instruction: String::new(), instruction_prior: None, items: ["a", "b", "c", "d"].map(String::from).to_vec(), titles: ["A", "B", "C", "D"].map(String::from).to_vec(), target_slot: 0 })
        .collect();
    let results: Vec<UserResult> = ranks
        .iter()
        .enumerate()
        .map(|(u, &r)| {
            let mut ranked: Vec<usize> = (1..4).collect();
            ranked.insert(r - 1, 0);
            UserResult { user: format!("u{u}"), target: "a".into(), target_title: "A".into(), rank: Some(r), ranked, scores: Some(vec![0.0; 4]), generated: None, generated_items: 4, generated_tokens: 0, valid_items: 4 }
        })
        .collect();
    let p = EvalSettings { protocol: ResolvedProtocol::Likelihood { scoring: Scoring::Sum }, ks: KS.to_vec(), metrics: METRICS.to_vec(), seed: 42, separator: "||".into() };
    write_outputs(&dir, &users, &results, &p, 1.0).unwrap();
    dir
}

/// A baselines stage's output (format of `data::baselines`), random and popularity.
fn baselines_dir(root: &Path, id: &str, users: u64) -> PathBuf {
    let dir = root.join(id.replace(':', "_"));
    std::fs::create_dir_all(&dir).unwrap();
    let rows: [(&str, &str, Option<u32>, f64); 10] = [
        ("random", "hr", Some(1), 0.25),
        ("random", "hr", Some(3), 0.75),
        ("random", "ndcg", Some(1), 0.25),
        ("random", "ndcg", Some(3), 0.5077),
        ("random", "mrr", None, 0.5208),
        ("popularity", "hr", Some(1), 0.5),
        ("popularity", "hr", Some(3), 1.0),
        ("popularity", "ndcg", Some(1), 0.5),
        ("popularity", "ndcg", Some(3), 0.75),
        ("popularity", "mrr", None, 0.625),
    ];
    let mut m = table::frame(vec![
        Column::new("baseline".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
        Column::new("metric".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        Column::new("k".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
        Column::new("value".into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
    ])
    .unwrap();
    table::write_parquet(&mut m, &dir.join("metrics.parquet")).unwrap();
    // Per-user ranks (random: the expected rank; popularity: 1 and 2 alternately).
    let n = users as usize;
    let mut ranks = table::frame(vec![
        Column::new("baseline".into(), (0..2 * n).map(|i| if i < n { "random" } else { "popularity" }).collect::<Vec<_>>()),
        Column::new("user".into(), (0..2 * n).map(|i| format!("u{}", i % n)).collect::<Vec<_>>()),
        Column::new("rank".into(), (0..2 * n).map(|i| if i < n { 2.5 } else { 1.0 + (i % 2) as f64 }).collect::<Vec<_>>()),
    ])
    .unwrap();
    table::write_parquet(&mut ranks, &dir.join("ranks.parquet")).unwrap();
    table::write_json(&dir.join("baselines.json"), &serde_json::json!({ "users": users })).unwrap();
    dir
}

fn row(arm: &str, setting: &str) -> ResultRow {
    let (stage, source) = if arm == "baselines" { (format!("baselines:{setting}"), RowSource::Baselines) } else { (format!("evaluate:{arm}:{setting}"), RowSource::Model) };
    ResultRow { arm: arm.into(), setting: setting.into(), stage, source }
}

/// The report's parameters for `rows` (seed 42, the test's K and metrics).
fn report_params(experiment: &str, rows: &[ResultRow], baselines: Vec<Baseline>, bootstrap: u32, comparisons: &[[&str; 2]]) -> ReportParams {
    ReportParams {
        experiment: experiment.into(),
        recipe_hash: "0123456789abcdef".into(),
        seed: 42,
        rows: rows.to_vec(),
        learned: Vec::new(),
        settings: Vec::new(),
        ks: KS.to_vec(),
        metrics: METRICS.to_vec(),
        protocol: crate::recipe::types::Protocol::Likelihood,
        baselines,
        bootstrap,
        comparisons: comparisons.iter().map(|[a, b]| [a.to_string(), b.to_string()]).collect(),
        candidates: 4,
        negatives: crate::recipe::types::NegativeSampling::Uniform,
        statistics: super::compare::METHOD,
    }
}

fn synthetic(root: &Path) -> Results {
    let rows = [row("baselines", "warm"), row("backbone", "warm"), row("baselines", "cold"), row("backbone", "cold"), row("ingredient", "warm"), row("fixed", "warm"), row("ingredient", "cold"), row("fixed", "cold")];
    let mut dirs = BTreeMap::new();
    dirs.insert("baselines:warm".to_string(), baselines_dir(root, "baselines:warm", 4));
    dirs.insert("baselines:cold".to_string(), baselines_dir(root, "baselines:cold", 2));
    dirs.insert("evaluate:backbone:warm".to_string(), evaluate_dir(root, "evaluate:backbone:warm", &[4, 2, 1, 3]));
    dirs.insert("evaluate:backbone:cold".to_string(), evaluate_dir(root, "evaluate:backbone:cold", &[2, 2]));
    dirs.insert("evaluate:ingredient:warm".to_string(), evaluate_dir(root, "evaluate:ingredient:warm", &[1, 1, 2, 4]));
    dirs.insert("evaluate:ingredient:cold".to_string(), evaluate_dir(root, "evaluate:ingredient:cold", &[1, 3]));
    let failed = BTreeMap::from([
        ("evaluate:fixed:warm".to_string(), MissingInput { status: InputStatus::Failed, reason: "failed: out of memory".into() }),
        ("evaluate:fixed:cold".to_string(), MissingInput { status: InputStatus::Skipped, reason: "skipped: `merge:fixed` failed: weights do not match".into() }),
    ]);
    let e = report_params("synthetic", &rows, vec![Baseline::Random, Baseline::Popularity], 200, &[["ingredient", "backbone"], ["popularity", "backbone"]]);
    gather(&e, &dirs, &failed).unwrap()
}

#[test]
fn report_table_csv_and_summary() {
    let root = std::env::temp_dir().join(format!("rc-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let r = synthetic(&root);
    // 2 settings x (2 references + 3 LLM arms) x 5 metric columns.
    assert_eq!(r.records.len(), 2 * 5 * 5);
    let get = |arm: &str, setting: &str, m: &str, k: Option<u32>| r.records.iter().find(|x| x.arm == arm && x.setting == setting && x.metric == m && x.k == k).unwrap();
    // Hand-computed: ranks 4, 2, 1, 3 -> HR@1 1/4, HR@3 3/4, MRR (1/4 + 1/2 + 1 + 1/3) / 4.
    assert_eq!(get("backbone", "warm", "hr", Some(1)).value, Some(0.25));
    assert_eq!(get("backbone", "warm", "hr", Some(3)).value, Some(0.75));
    assert!((get("backbone", "warm", "mrr", None).value.unwrap() - (0.25 + 0.5 + 1.0 + 1.0 / 3.0) / 4.0).abs() < 1e-12);
    assert_eq!(get("popularity", "cold", "hr", Some(1)).protocol, "reference");
    let failed = get("fixed", "warm", "ndcg", Some(3));
    assert_eq!((failed.value, failed.users, failed.status.as_str()), (None, None, "failed"));
    assert_eq!(get("fixed", "cold", "mrr", None).status, "skipped");
    assert_eq!(r.failures.len(), 2);
    insta::assert_snapshot!("results_csv", r.csv().unwrap());
    insta::assert_snapshot!("summary_md", super::markdown(&r));
    let svg = super::svg_plot(&r, "hr");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<rect x=").count(), 4 * 4 + 5, "4 groups (2 settings x 2 K) x 4 arms with values, 5 legend entries");
    assert!(svg.contains(">fixed (no result)</text>"));
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn tables_round_trip_through_a_run_directory() {
    let root = std::env::temp_dir().join(format!("rc-report-rt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let r = synthetic(&root.join("stages"));
    let run = root.join("run");
    std::fs::create_dir_all(&run).unwrap();
    assert!(Results::read(&run).unwrap_err().is_input_problem(), "no table yet");
    r.write(&run).unwrap();
    let back = Results::read(&run).unwrap();
    assert_eq!(back, r);
    assert_eq!(std::fs::read_to_string(run.join("summary.md")).unwrap(), super::markdown(&r));
    for f in ["results.parquet", "results.csv", "report.json", "plot_hr.svg", "plot_ndcg.svg", "plot_mrr.svg"] {
        assert!(run.join(f).is_file(), "{f}");
    }
    std::fs::remove_dir_all(&root).ok();
}

/// The bold rule and the comparisons on a clear case: over 30 users, one arm ranks every target
/// first and the other ranks it third; a tie (same ranks) is never bold.
#[test]
fn comparisons_and_bold_follow_paired_tests() {
    let root = std::env::temp_dir().join(format!("rc-report-cmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut dirs = BTreeMap::new();
    dirs.insert("evaluate:good:s".to_string(), evaluate_dir(&root, "evaluate:good:s", &[1; 30]));
    dirs.insert("evaluate:poor:s".to_string(), evaluate_dir(&root, "evaluate:poor:s", &[3; 30]));
    dirs.insert("evaluate:same:s".to_string(), evaluate_dir(&root, "evaluate:same:s", &[3; 30]));
    let rows = [row("good", "s"), row("poor", "s"), row("same", "s")];
    let e = report_params("cmp", &rows, Vec::new(), 500, &[["good", "poor"], ["same", "poor"]]);
    let r = gather(&e, &dirs, &BTreeMap::new()).unwrap();
    let c = |a: &str, m: &str, k: Option<u32>| r.comparisons.iter().find(|c| c.arm_a == a && c.metric == m && c.k == k).unwrap();
    // HR@1: 30 discordant users, all for `good`: exact McNemar p = 2 / 2^30.
    let hr1 = c("good", "hr", Some(1));
    assert_eq!((hr1.mean_diff, hr1.test.as_str(), hr1.users), (1.0, "mcnemar_exact", 30));
    assert!((hr1.p_value - 2.0 / 2f64.powi(30)).abs() < 1e-15);
    // HR@3: both hit: no discordant user.
    assert_eq!(c("good", "hr", Some(3)).p_value, 1.0);
    // MRR: 30 equal differences of 2/3: the sign-flip test's random flips never reach them.
    let mrr = c("good", "mrr", None);
    assert_eq!(mrr.test, "sign_flip");
    assert!((mrr.mean_diff - 2.0 / 3.0).abs() < 1e-12 && mrr.p_value < 0.01 && mrr.p_holm < 0.05, "{mrr:?}");
    assert_eq!((mrr.ci_low, mrr.ci_high), (Some(2.0 / 3.0), Some(2.0 / 3.0)));
    assert_eq!(c("same", "mrr", None).p_value, 1.0);
    // The sign-flip budget is sized to the family: 2 pairs x 5 cells = 10 comparisons, 9
    // distinct tests (HR@3 is all hits for the three arms: good-poor and same-poor compare the
    // same values there, one test).
    assert_eq!((r.comparisons.len(), r.distinct_tests, r.flip_budget), (10, 9, 3600));
    // Bold: `good` in the HR@1, NDCG and MRR columns; nothing in HR@3, where all tie.
    let bold: Vec<(&str, Option<u32>)> = r.best.iter().map(|b| (b.metric.as_str(), b.k)).collect();
    assert_eq!(bold, [("hr", Some(1)), ("ndcg", Some(1)), ("ndcg", Some(3)), ("mrr", None)]);
    assert!(r.best.iter().all(|b| b.arm == "good"));
    let md = super::markdown(&r);
    assert!(md.contains("| good | 30 | **1.000 ±0.00** | 1.000 ±0.00 |"), "{md}");
    std::fs::remove_dir_all(&root).ok();
}

/// Two arms with the same predictions compared with a third get the same p-values, wherever they
/// sit in the family: the random sign flips are drawn for the data, not for the position.
#[test]
fn identical_arms_get_identical_p_values() {
    let root = std::env::temp_dir().join(format!("rc-report-twins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // 40 users, a weak difference, so that the sign-flip tests run on random flips.
    let twin: Vec<usize> = (0..40).map(|u| [1, 2, 3, 4, 2][u % 5]).collect();
    let other: Vec<usize> = (0..40).map(|u| [2, 1, 4, 3, 3, 1, 2][u % 7]).collect();
    let mut dirs = BTreeMap::new();
    for (arm, ranks) in [("twin_a", &twin), ("twin_b", &twin), ("other", &other), ("poor", &vec![4; 40])] {
        let id = format!("evaluate:{arm}:s");
        dirs.insert(id.clone(), evaluate_dir(&root, &id, ranks));
    }
    let rows = [row("twin_a", "s"), row("twin_b", "s"), row("other", "s"), row("poor", "s")];
    let e = report_params("twins", &rows, Vec::new(), 500, &[["twin_a", "other"], ["poor", "other"], ["other", "twin_b"]]);
    let r = gather(&e, &dirs, &BTreeMap::new()).unwrap();
    let p = |a: &str, m: &str, k: Option<u32>| r.comparisons.iter().find(|c| c.arm_a == a && c.metric == m && c.k == k).unwrap().p_value;
    for (m, k) in [("mrr", None), ("ndcg", Some(1)), ("ndcg", Some(3)), ("hr", Some(3))] {
        let (a, b) = (p("twin_a", m, k), p("other", m, k));
        assert_eq!(a, b, "{m}@{k:?}");
        assert!(a > 0.0 && a < 1.0, "{m}@{k:?}: {a}");
    }
    // twin_a - other and other - twin_b are one test per cell: 15 comparisons, 10 distinct tests,
    // and Holm's family is the 10.
    assert_eq!((r.comparisons.len(), r.distinct_tests, r.flip_budget), (15, 10, 4000));
    let ps: Vec<f64> = r.comparisons.iter().map(|c| c.p_value).collect();
    let holm_of_10 = super::compare::holm(&ps[..10]);
    for (i, c) in r.comparisons.iter().enumerate() {
        assert_eq!(c.p_holm, holm_of_10[i % 10], "{c:?}");
    }
    assert!(super::markdown(&r).contains("the run's 10 distinct tests (its 15 comparisons, those on the same paired values counted once;"));
    std::fs::remove_dir_all(&root).ok();
}
