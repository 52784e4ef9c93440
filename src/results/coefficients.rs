//! Learned merge coefficients, gathered by the report from the adaptive (entropy) merge stages:
//! one long table (merge, arm, layer, module, adapter, value) written as parquet and csv, and a
//! per-layer line chart like the paper's Figure 4 — one panel per learned merge, one line per
//! adapter (the mean over the layer's modules), the module values as dots around it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use polars::prelude::Column;
use serde::{Deserialize, Serialize};

use super::ResultsError;
use super::params::LearnedMerge;
use crate::table;

const PALETTE: [&str; 6] = ["#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2"];

/// One learned coefficient.
#[derive(Debug, Clone, PartialEq)]
pub struct Coefficient {
    /// The merge stage's name without `merge:` (`entropy`, or `entropy:cold` for a per-setting one).
    pub merge: String,
    pub arm: String,
    pub layer: u32,
    pub module: String,
    pub adapter: String,
    pub value: f64,
}

/// The learned merges whose artifacts are among `dirs`, with their directories, in stage-id order.
fn present<'a>(learned: &'a [LearnedMerge], dirs: &'a BTreeMap<String, PathBuf>) -> Vec<(&'a LearnedMerge, &'a PathBuf)> {
    let mut out: Vec<(&LearnedMerge, &PathBuf)> = learned.iter().filter_map(|m| Some((m, dirs.get(&m.stage)?))).collect();
    out.sort_by(|a, b| a.0.stage.cmp(&b.0.stage));
    out
}

/// The coefficients of the learned merges (in stage-id order) whose artifacts are among `dirs`
/// (stage id -> output directory; a merge that failed has none).
pub fn gather(learned: &[LearnedMerge], dirs: &BTreeMap<String, PathBuf>) -> Result<Vec<Coefficient>, ResultsError> {
    let mut out = Vec::new();
    for (m, dir) in present(learned, dirs) {
        let bad = |e: crate::table::TableError| ResultsError::Input { stage: m.stage.clone(), message: e.to_string() };
        let df = table::read_parquet(&dir.join("coefficients.parquet")).map_err(bad)?;
        let (module, adapter) = (table::strs(&df, "module").map_err(bad)?, table::strs(&df, "adapter").map_err(bad)?);
        let (layer, value) = (table::opt_i64s(&df, "layer").map_err(bad)?, table::opt_f64s(&df, "value").map_err(bad)?);
        for i in 0..module.len() {
            out.push(Coefficient {
                merge: m.merge.clone(),
                arm: m.arm.clone(),
                layer: layer[i].unwrap_or(0) as u32,
                module: module[i].clone(),
                adapter: adapter[i].clone(),
                value: value[i].unwrap_or(f64::NAN),
            });
        }
    }
    Ok(out)
}

/// What one entropy merge adapted on and how it chose its learning rate (its `entropy.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adaptation {
    /// The merge's name in the coefficient table.
    pub merge: String,
    pub arm: String,
    /// `disjoint`, `transductive` or `domain` (see `merge::adaptation::Population`).
    pub population: String,
    pub prompts: u64,
    /// The learning rate kept (0: no adaptation won on validation).
    pub lr: f64,
    /// Every candidate rate with its validation MRR (none without a grid).
    pub lr_grid: Vec<(f64, Option<f64>)>,
    pub validation_users: u64,
    pub entropy_before: Option<f64>,
    pub entropy_after: Option<f64>,
}

/// The adaptation records of the learned merges in `dirs` (by stage id), in stage order.
pub fn adaptations(learned: &[LearnedMerge], dirs: &BTreeMap<String, PathBuf>) -> Result<Vec<Adaptation>, ResultsError> {
    let mut out = Vec::new();
    for (m, dir) in present(learned, dirs) {
        let j: serde_json::Value = table::read_json(&dir.join("entropy.json")).map_err(|e| ResultsError::Input { stage: m.stage.clone(), message: e.to_string() })?;
        out.push(Adaptation {
            merge: m.merge.clone(),
            arm: m.arm.clone(),
            population: j["population"].as_str().unwrap_or("unrecorded").to_string(),
            prompts: j["adaptation_prompts"].as_u64().unwrap_or(0),
            lr: j["lr"].as_f64().unwrap_or(f64::NAN),
            lr_grid: serde_json::from_value(j["lr_grid"].clone()).unwrap_or_default(),
            validation_users: j["validation_prompts"].as_u64().unwrap_or(0),
            entropy_before: j["objective_before"].as_f64(),
            entropy_after: j["objective_after"].as_f64(),
        });
    }
    Ok(out)
}

/// Write `coefficients.parquet`, `coefficients.csv` and `plot_coefficients.svg` to `dir`; nothing
/// when there are no learned coefficients.
pub fn write(rows: &[Coefficient], dir: &Path) -> Result<(), ResultsError> {
    if rows.is_empty() {
        return Ok(());
    }
    let s = |f: fn(&Coefficient) -> &str| rows.iter().map(|x| f(x).to_string()).collect::<Vec<_>>();
    let mut df = table::frame(vec![
        Column::new("merge".into(), s(|x| x.merge.as_str())),
        Column::new("arm".into(), s(|x| x.arm.as_str())),
        Column::new("layer".into(), rows.iter().map(|x| x.layer).collect::<Vec<_>>()),
        Column::new("module".into(), s(|x| x.module.as_str())),
        Column::new("adapter".into(), s(|x| x.adapter.as_str())),
        Column::new("value".into(), rows.iter().map(|x| x.value).collect::<Vec<_>>()),
    ])?;
    table::write_parquet(&mut df, &dir.join("coefficients.parquet"))?;
    let io = |path: PathBuf| move |source| ResultsError::Io { path, source };
    table::write_csv(&mut df, &dir.join("coefficients.csv"))?;
    std::fs::write(dir.join("plot_coefficients.svg"), svg(rows)).map_err(io(dir.join("plot_coefficients.svg")))?;
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// First-appearance order of the values `f` picks.
fn distinct<'a>(rows: &'a [Coefficient], f: fn(&'a Coefficient) -> &'a str) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for r in rows {
        if !out.contains(&f(r)) {
            out.push(f(r));
        }
    }
    out
}

/// The chart: one panel per merge, layers on x, coefficient on y (0 to at least 1).
pub fn svg(rows: &[Coefficient]) -> String {
    let merges = distinct(rows, |r| r.merge.as_str());
    let adapters = distinct(rows, |r| r.adapter.as_str());
    let layers = rows.iter().map(|r| r.layer).max().map_or(1, |l| l + 1);
    let top = rows.iter().map(|r| r.value).filter(|v| v.is_finite()).fold(1.0f64, f64::max);
    let ymax = (top * 10.0).ceil() / 10.0;
    let (left, right, panel_w, panel_h, head, foot) = (56.0, 150.0, 520.0, 200.0, 40.0, 44.0);
    let (w, h) = (left + panel_w + right, merges.len() as f64 * (head + panel_h + foot));
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (pi, merge) in merges.iter().enumerate() {
        let y0 = pi as f64 * (head + panel_h + foot) + head;
        let x = |layer: f64| left + panel_w * if layers > 1 { layer / (layers - 1) as f64 } else { 0.5 };
        let y = |v: f64| y0 + panel_h * (1.0 - v / ymax);
        let _ = writeln!(s, r#"<text x="{left:.0}" y="{:.1}" font-size="14">learned coefficients per layer: {}</text>"#, y0 - 14.0, esc(merge));
        for t in 0..=4 {
            let v = ymax * t as f64 / 4.0;
            let _ = writeln!(s, r##"<line x1="{left:.0}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{:.0}" y="{:.1}" text-anchor="end">{v:.2}</text>"##, left + panel_w, y(v), y(v), left - 6.0, y(v) + 4.0);
        }
        let step = (layers as usize).div_ceil(10).max(1);
        for l in (0..layers as usize).step_by(step) {
            let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{l}</text>"#, x(l as f64), y0 + panel_h + 16.0);
        }
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">layer</text>"#, left + panel_w / 2.0, y0 + panel_h + 32.0);
        for (ai, adapter) in adapters.iter().enumerate() {
            let color = PALETTE[ai % PALETTE.len()];
            let mine: Vec<&Coefficient> = rows.iter().filter(|r| r.merge == *merge && r.adapter == *adapter && r.value.is_finite()).collect();
            let mut points = Vec::new();
            for l in 0..layers {
                let vals: Vec<f64> = mine.iter().filter(|r| r.layer == l).map(|r| r.value).collect();
                if vals.is_empty() {
                    continue;
                }
                for v in &vals {
                    let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="1.5" fill="{color}" fill-opacity="0.35"/>"#, x(l as f64), y(*v));
                }
                points.push(format!("{:.1},{:.1}", x(l as f64), y(vals.iter().sum::<f64>() / vals.len() as f64)));
            }
            let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"><title>{}</title></polyline>"#, points.join(" "), esc(adapter));
            let ly = y0 + 4.0 + ai as f64 * 18.0;
            let _ = writeln!(s, r#"<rect x="{:.1}" y="{ly:.1}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"#, left + panel_w + 16.0, left + panel_w + 34.0, ly + 10.0, esc(adapter));
        }
        let _ = writeln!(s, r##"<line x1="{left:.0}" x2="{left:.0}" y1="{y0:.0}" y2="{:.0}" stroke="#333"/><line x1="{left:.0}" x2="{:.1}" y1="{:.0}" y2="{:.0}" stroke="#333"/>"##, y0 + panel_h, left + panel_w, y0 + panel_h, y0 + panel_h);
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(merge: &str, layer: u32, module: &str, adapter: &str, value: f64) -> Coefficient {
        Coefficient { merge: merge.into(), arm: "entropy".into(), layer, module: module.into(), adapter: adapter.into(), value }
    }

    #[test]
    fn one_panel_per_merge_one_line_per_adapter_one_dot_per_value() {
        let mut rows = Vec::new();
        for merge in ["entropy:warm", "entropy:cold"] {
            for layer in 0..3 {
                for module in ["q_proj", "v_proj"] {
                    rows.push(row(merge, layer, module, "base", 0.6));
                    rows.push(row(merge, layer, module, "drama", 0.4));
                }
            }
        }
        let svg = svg(&rows);
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("<circle").count(), rows.len());
        assert!(svg.contains("entropy:warm") && svg.contains("entropy:cold"));
        // Each line has one point per layer, at the mean of the layer's modules.
        let first = svg.lines().find(|l| l.starts_with("<polyline")).unwrap();
        assert_eq!(first.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split(' ').count(), 3);
    }

    #[test]
    fn tables_round_trip_and_nothing_is_written_without_coefficients() {
        let root = std::env::temp_dir().join(format!("rc-coefficients-{}", std::process::id()));
        let (dir, merge_dir) = (root.join("run"), root.join("merge"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&merge_dir).unwrap();
        write(&[], &dir).unwrap();
        assert!(!dir.join("coefficients.parquet").exists());
        let rows = vec![row("entropy", 0, "q_proj", "base", 0.25), row("entropy", 1, "q_proj", "base", 0.75)];
        write(&rows, &dir).unwrap();
        std::fs::copy(dir.join("coefficients.parquet"), merge_dir.join("coefficients.parquet")).unwrap();
        let dirs = BTreeMap::from([("merge:entropy".to_string(), merge_dir.clone()), ("evaluate:x".to_string(), PathBuf::from("/nonexistent"))]);
        let learned = [LearnedMerge { stage: "merge:entropy".into(), merge: "entropy".into(), arm: "entropy".into() }];
        let back = gather(&learned, &dirs).unwrap();
        assert_eq!(back, rows);
        let csv = std::fs::read_to_string(dir.join("coefficients.csv")).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(csv.starts_with("merge,arm,layer,module,adapter,value\n"));
    }
}
