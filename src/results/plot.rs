//! Grouped bar charts as hand-written SVG: one chart per metric, one group of bars per setting
//! (and K), one bar per arm (legend on the right). Arms without a value get no bar and are
//! marked "(no result)" in the legend. A bar with an interval gets a 95% error bar.

use std::fmt::Write;

use super::Results;
use super::summary::REFERENCES;

const PALETTE: [&str; 10] = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const REFERENCE_FILL: &str = "#c8c8c8";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SVG chart of `metric` over every arm and setting of `r`.
pub fn svg_plot(r: &Results, metric: &str) -> String {
    let rows: Vec<_> = r.records.iter().filter(|x| x.metric == metric).collect();
    let mut groups: Vec<(&str, Option<u32>)> = Vec::new();
    let mut arms: Vec<&str> = Vec::new();
    for x in &rows {
        if !groups.contains(&(x.setting.as_str(), x.k)) {
            groups.push((x.setting.as_str(), x.k));
        }
        if !arms.contains(&x.arm.as_str()) {
            arms.push(&x.arm);
        }
    }
    let value = |g: (&str, Option<u32>), arm: &str| rows.iter().find(|x| x.setting == g.0 && x.k == g.1 && x.arm == arm).and_then(|x| x.value).filter(|v| v.is_finite());
    let interval = |g: (&str, Option<u32>), arm: &str| rows.iter().find(|x| x.setting == g.0 && x.k == g.1 && x.arm == arm).and_then(|x| Some((x.ci_low?, x.ci_high?))).filter(|(l, h)| l.is_finite() && h.is_finite());
    let top = rows.iter().flat_map(|x| [x.value, x.ci_high]).flatten().filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    // Axis top: the next multiple of 0.1 above the largest value (at least 0.1).
    let ymax = ((top * 10.0).ceil() / 10.0).max(0.1);
    let (bar, gap, left, right, top_m, bottom, plot_h) = (14.0, 18.0, 56.0, 190.0, 40.0, 56.0, 240.0);
    let group_w = bar * arms.len().max(1) as f64 + gap;
    let plot_w = group_w * groups.len().max(1) as f64;
    let (w, h) = (left + plot_w + right, top_m + plot_h + bottom);
    let y = |v: f64| top_m + plot_h * (1.0 - v / ymax);
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{left:.0}" y="22" font-size="14">{} by arm and setting ({}, recipe {})</text>"#, esc(metric), esc(&r.experiment), esc(&r.recipe_hash));
    for t in 0..=5 {
        let v = ymax * t as f64 / 5.0;
        let _ = writeln!(s, r##"<line x1="{left:.0}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{:.0}" y="{:.1}" text-anchor="end">{v:.2}</text>"##, left + plot_w, y(v), y(v), left - 6.0, y(v) + 4.0);
    }
    for (gi, g) in groups.iter().enumerate() {
        let x0 = left + gi as f64 * group_w + gap / 2.0;
        for (ai, arm) in arms.iter().enumerate() {
            if let Some(v) = value(*g, arm) {
                let fill = if REFERENCES.contains(arm) { REFERENCE_FILL } else { PALETTE[ai % PALETTE.len()] };
                let _ = writeln!(s, r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{} / {}: {v:.3}</title></rect>"#, x0 + ai as f64 * bar, y(v), bar - 2.0, top_m + plot_h - y(v), esc(arm), esc(g.0));
                if let Some((lo, hi)) = interval(*g, arm) {
                    let cx = x0 + ai as f64 * bar + (bar - 2.0) / 2.0;
                    let _ = writeln!(s, r##"<path d="M{cx:.1} {:.1}V{:.1}M{:.1} {:.1}H{:.1}M{:.1} {:.1}H{:.1}" stroke="#333" fill="none"><title>95% interval {lo:.3}–{hi:.3}</title></path>"##, y(lo), y(hi), cx - 3.0, y(lo), cx + 3.0, cx - 3.0, y(hi), cx + 3.0);
                }
            }
        }
        let label = match g.1 {
            Some(k) => format!("{} @{k}", g.0),
            None => g.0.to_string(),
        };
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, x0 + (group_w - gap) / 2.0, top_m + plot_h + 18.0, esc(&label));
    }
    let _ = writeln!(s, r##"<line x1="{left:.0}" x2="{left:.0}" y1="{top_m:.0}" y2="{:.0}" stroke="#333"/><line x1="{left:.0}" x2="{:.1}" y1="{:.0}" y2="{:.0}" stroke="#333"/>"##, top_m + plot_h, left + plot_w, top_m + plot_h, top_m + plot_h);
    for (ai, arm) in arms.iter().enumerate() {
        let fill = if REFERENCES.contains(arm) { REFERENCE_FILL } else { PALETTE[ai % PALETTE.len()] };
        let ly = top_m + 4.0 + ai as f64 * 18.0;
        let missing = if groups.iter().all(|g| value(*g, arm).is_none()) { " (no result)" } else { "" };
        let _ = writeln!(s, r#"<rect x="{:.1}" y="{ly:.1}" width="12" height="12" fill="{fill}"/><text x="{:.1}" y="{:.1}">{}{missing}</text>"#, left + plot_w + 16.0, left + plot_w + 34.0, ly + 10.0, esc(arm));
    }
    s.push_str("</svg>\n");
    s
}
