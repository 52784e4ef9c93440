//! Prompt templates: one minijinja file with an `instruction` block and a `response` block.
//!
//! Rendering is strict: a variable the template uses but the context lacks is an error that
//! names the template file and line, caught by `validate` before anything expensive runs.

use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// A template as stages' parameters name it: its file, the hash of its content (editing the file
/// changes the keys of the stages that render it) and its item separator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateRef {
    pub path: crate::assets::LocalPath,
    pub content: String,
    pub separator: String,
}

/// A template's item separator unless the recipe sets one (`[templates.NAME] separator`).
pub const DEFAULT_SEPARATOR: &str = "||";

/// Blocks every prompt template must define.
pub const BLOCKS: [&str; 2] = ["instruction", "response"];

/// The variables a template may use.
#[derive(Debug, Clone, Serialize)]
pub struct PromptContext {
    /// History item titles, oldest first.
    pub history: Vec<String>,
    /// Candidate titles, in presentation order.
    pub candidates: Vec<String>,
    /// The target item's title (for the response).
    pub target: String,
    /// Number of items to recommend.
    pub k: u32,
    /// Human name of the domain ("movies", "books").
    pub domain: String,
    /// Item separator (`||`).
    pub separator: String,
}

impl PromptContext {
    /// A small context with every variable set, used to check templates.
    pub fn sample() -> Self {
        Self {
            history: vec!["Toy Story (1995)".into(), "Heat (1995)".into()],
            candidates: vec!["Casino (1995)".into(), "Babe (1995)".into(), "Heat (1995)".into()],
            target: "Casino (1995)".into(),
            k: 2,
            domain: "movies".into(),
            separator: DEFAULT_SEPARATOR.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("template {path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Render { path: PathBuf, line: Option<usize>, message: String },
}

#[derive(Debug)]
pub struct PromptTemplate {
    path: PathBuf,
    env: Environment<'static>,
}

/// One rendered training or evaluation example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Rendered {
    pub instruction: String,
    pub response: String,
}

impl PromptTemplate {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let source = std::fs::read_to_string(path).map_err(|source| TemplateError::Io { path: path.to_path_buf(), source })?;
        Self::from_source(path, source)
    }

    pub fn from_source(path: &Path, source: String) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().expect("default delimiters");
        env.set_syntax(syntax);
        let name = path.display().to_string();
        env.add_template_owned(name, source).map_err(|e| render_error(path, &e))?;
        Ok(Self { path: path.to_path_buf(), env })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn render(&self, ctx: &PromptContext) -> Result<Rendered, TemplateError> {
        let err = |e: minijinja::Error| render_error(&self.path, &e);
        let tmpl = self.env.get_template(&self.path.display().to_string()).map_err(err)?;
        let mut captured = tmpl.render_captured(minijinja::Value::from(minijinja::value::Serde(ctx))).map_err(err)?;
        let mut out = Vec::with_capacity(BLOCKS.len());
        for block in BLOCKS {
            let text = captured.with_state_mut(|s| s.render_block(block)).map_err(|e| {
                if e.kind() == minijinja::ErrorKind::UnknownBlock {
                    TemplateError::Render {
                        path: self.path.clone(),
                        line: None,
                        message: format!("missing block `{block}` (a prompt template defines `{{% block instruction %}}` and `{{% block response %}}`)"),
                    }
                } else {
                    err(e)
                }
            })?;
            out.push(text.trim().to_string());
        }
        let response = out.pop().unwrap_or_default();
        let instruction = out.pop().unwrap_or_default();
        Ok(Rendered { instruction, response })
    }
}

fn render_error(path: &Path, e: &minijinja::Error) -> TemplateError {
    let mut message = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    if e.kind() == minijinja::ErrorKind::UndefinedError {
        message = format!("{message} (variables: history, candidates, target, k, domain, separator)");
    }
    TemplateError::Render { path: path.to_path_buf(), line: e.line(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_blocks() {
        let src = "{% block instruction %}Seen: {{ history | join(' ' ~ separator ~ ' ') }}. Pick {{ k }}.{% endblock %}\n{% block response %}{{ target }}{% endblock %}";
        let t = PromptTemplate::from_source(Path::new("t.jinja"), src.into()).unwrap();
        let r = t.render(&PromptContext::sample()).unwrap();
        assert_eq!(r.instruction, "Seen: Toy Story (1995) || Heat (1995). Pick 2.");
        assert_eq!(r.response, "Casino (1995)");
    }

    /// Issue 17, item 7: each shipped template's answer has the form its question asks for.
    #[test]
    fn shipped_templates_answer_what_they_ask() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut ctx = PromptContext::sample();
        ctx.candidates = ["Casino (1995)", "Babe (1995)", "Heat (1995)", "Jaws (1975)"].map(String::from).to_vec();
        ctx.target = "Heat (1995)".into();
        ctx.k = 3;
        // One title asked, one title answered.
        for one in ["rank.jinja", "next_title.jinja"] {
            let r = PromptTemplate::load(&root.join(one)).unwrap().render(&ctx).unwrap();
            assert_eq!(r.response, "Heat (1995)", "{one}");
            assert!(!r.instruction.contains(" 3 "), "{one} asks for one title: {}", r.instruction);
        }
        // K titles asked, K answered: the target first, then other candidates in their order.
        let r = PromptTemplate::load(&root.join("rank_list.jinja")).unwrap().render(&ctx).unwrap();
        assert!(r.instruction.contains("Recommend the 3 candidates"), "{}", r.instruction);
        assert_eq!(r.response, "Heat (1995) || Casino (1995) || Babe (1995)");
        ctx.k = 1;
        assert_eq!(PromptTemplate::load(&root.join("rank_list.jinja")).unwrap().render(&ctx).unwrap().response, "Heat (1995)");
    }

    #[test]
    fn unknown_variable_names_the_line() {
        let src = "{% block instruction %}\nok\n{{ histroy }}{% endblock %}{% block response %}x{% endblock %}";
        let t = PromptTemplate::from_source(Path::new("t.jinja"), src.into()).unwrap();
        let e = t.render(&PromptContext::sample()).unwrap_err().to_string();
        assert!(e.starts_with("template t.jinja:3:"), "{e}");
    }

    #[test]
    fn missing_block_and_syntax_errors() {
        let t = PromptTemplate::from_source(Path::new("t.jinja"), "{% block instruction %}x{% endblock %}".into()).unwrap();
        assert!(t.render(&PromptContext::sample()).unwrap_err().to_string().contains("missing block `response`"));
        let e = PromptTemplate::from_source(Path::new("t.jinja"), "a\n{% if %}".into()).unwrap_err().to_string();
        assert!(e.starts_with("template t.jinja:2:"), "{e}");
    }
}
