//! Recipe problems with source spans, rendered like compiler diagnostics.

use std::fmt;
use std::ops::Range;

/// Whether a diagnostic rejects the recipe (`error`) or only informs (`warning`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

/// One problem in a recipe: where (byte span, key path) and what (message, optional help).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Short kebab-case category, stable for tests and tooling.
    pub code: &'static str,
    pub message: String,
    /// Dotted key path of the offending value (`arms[1].merge.lambda`); empty for the document.
    pub path: String,
    #[serde(skip)]
    pub span: Option<Range<usize>>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: &'static str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, code, message: message.into(), path: path.into(), span: None, help: None }
    }
    /// The same diagnostic as a warning: reported, but the recipe stays valid.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
    pub fn at(mut self, span: Option<Range<usize>>) -> Self {
        self.span = span;
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    pub fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// Every problem found in one recipe file (errors, and warnings), with the text needed to render them.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    /// The file name as the user gave it.
    pub file: String,
    pub source: String,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn errors(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.source, offset)
    }

    /// The items sorted by position (problems without a span last), stable otherwise.
    pub fn sorted(&self) -> Vec<&Diagnostic> {
        let mut items: Vec<&Diagnostic> = self.items.iter().collect();
        items.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
        items
    }

    /// Machine-readable form: one object per problem with file, line and column.
    pub fn to_json(&self) -> serde_json::Value {
        let items: Vec<serde_json::Value> = self
            .sorted()
            .into_iter()
            .map(|d| {
                let (line, col) = d.span.as_ref().map_or((0, 0), |s| self.line_col(s.start));
                serde_json::json!({
                    "file": self.file, "line": line, "column": col, "path": d.path, "severity": d.severity,
                    "code": d.code, "message": d.message, "help": d.help,
                })
            })
            .collect();
        serde_json::Value::Array(items)
    }
}

pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<&str> = self.source.split('\n').collect();
        for d in self.sorted() {
            let level = if d.is_error() { "error" } else { "warning" };
            writeln!(f, "{level}[{}]: {}", d.code, d.message)?;
            match &d.span {
                Some(span) => {
                    let (line, col) = self.line_col(span.start);
                    writeln!(f, "  --> {}:{}:{}", self.file, line, col)?;
                    if let Some(text) = lines.get(line - 1) {
                        let text = text.trim_end_matches('\r');
                        // Control characters (binary input) would garble the terminal: show them
                        // as one replacement character each, which keeps the caret aligned.
                        let shown: String = text.chars().take(160).map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect();
                        let gutter = line.to_string();
                        let pad = " ".repeat(gutter.len());
                        // Underline the span, clipped to this line.
                        let line_chars = text.chars().count();
                        let end_offset = span.end.min(self.source.len()).max(span.start);
                        let (end_line, end_col) = self.line_col(end_offset);
                        let last = if end_line == line { end_col } else { line_chars + 1 };
                        let width = last.saturating_sub(col).max(1).min(160usize.saturating_sub(col - 1).max(1));
                        writeln!(f, "{pad} |")?;
                        writeln!(f, "{gutter} | {shown}")?;
                        writeln!(f, "{pad} | {}{}", " ".repeat(col - 1), "^".repeat(width))?;
                    }
                }
                None => writeln!(f, "  --> {}", self.file)?,
            }
            if !d.path.is_empty() {
                writeln!(f, "   = at: {}", d.path)?;
            }
            if let Some(help) = &d.help {
                writeln!(f, "   = help: {help}")?;
            }
            writeln!(f)?;
        }
        let (errors, warnings) = (self.errors(), self.items.len() - self.errors());
        let s = |n: usize| if n == 1 { "" } else { "s" };
        match (errors, warnings) {
            (e, 0) => write!(f, "{}: {e} problem{} found", self.file, s(e)),
            (0, w) => write!(f, "{}: {w} warning{}", self.file, s(w)),
            (e, w) => write!(f, "{}: {e} problem{} found ({w} warning{} too)", self.file, s(e), s(w)),
        }
    }
}

/// The closest candidate to `word`, if close enough to be a plausible typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lower = word.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::normalized_damerau_levenshtein(&lower, &c.to_lowercase())
            .max(strsim::jaro_winkler(&lower, &c.to_lowercase()) - 0.1);
        if score >= 0.7 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let s = "a = 1\nbé = 2\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 6), (2, 1));
        assert_eq!(line_col(s, 10), (2, 4));
        assert_eq!(line_col(s, 1000), (3, 1));
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("rnak", ["rank", "alpha"]).as_deref(), Some("did you mean `rank`?"));
        assert_eq!(did_you_mean("task_arithmatic", ["fixed", "task_arithmetic"]).as_deref(),
            Some("did you mean `task_arithmetic`?"));
        assert_eq!(did_you_mean("zzzz", ["rank", "alpha"]), None);
    }
}
