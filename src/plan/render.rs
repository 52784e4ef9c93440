//! Human-readable plan listing.

use std::fmt::Write;

use super::Plan;

/// Cache status of a stage, as shown by `plan` and `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// The artifact is complete in the cache: the stage will be skipped.
    Cached,
    /// A previous attempt left checkpoints: the stage will resume.
    Partial,
    /// The stage will run.
    Missing,
}

impl Plan {
    /// One line per stage: status, key, id, inputs.
    pub fn render(&self, status: &dyn Fn(&str) -> CacheStatus) -> String {
        let mut out = String::new();
        let cached = self.stages.iter().filter(|s| status(&s.key) == CacheStatus::Cached).count();
        let all: Vec<&super::Stage> = self.stages.iter().collect();
        let needed = super::needed_ids(&all, |s| status(&s.key) == CacheStatus::Cached);
        let unneeded = self.stages.len() - needed.len();
        let tail = if unneeded == 0 { String::new() } else { format!(", {unneeded} not needed (every stage reading them is cached)") };
        let _ = writeln!(out, "plan `{}` (recipe {}): {} stages, {} cached{tail}", self.experiment, self.recipe_hash, self.stages.len(), cached);
        let width = self.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
        for s in &self.stages {
            let mark = match status(&s.key) {
                _ if !needed.contains(&s.id) => "no need",
                CacheStatus::Cached => "cached ",
                CacheStatus::Partial => "partial",
                CacheStatus::Missing => "todo   ",
            };
            let mut line = format!("  [{mark}] {}  {:<width$}", s.key, s.id);
            if !s.inputs.is_empty() {
                let _ = write!(line, "  <- {}", s.input_ids().collect::<Vec<_>>().join(", "));
            }
            if !s.aliases.is_empty() {
                let _ = write!(line, "  (also: {})", s.aliases.join(", "));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// The plan as JSON with each stage's cache status.
    pub fn to_json(&self, status: &dyn Fn(&str) -> CacheStatus) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("plain data");
        if let Some(stages) = v.get_mut("stages").and_then(|s| s.as_array_mut()) {
            for (s, stage) in stages.iter_mut().zip(&self.stages) {
                s["cache"] = serde_json::to_value(status(&stage.key)).expect("enum");
            }
        }
        v
    }
}
