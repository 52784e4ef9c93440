//! Recipes: parse, validate (structure against the generated schema, then semantics), resolve.
//!
//! `load` is the only entry point the rest of the tool uses: it returns a typed [`Recipe`] only
//! when the file has no problem at all, and otherwise every problem at once as [`Diagnostics`].

pub mod cluster;
pub mod diagnostic;
pub mod doc;
pub mod merge;
pub mod resolve;
pub mod same_cocktail;
pub mod sasrec;
pub mod schema;
mod semantic;
pub mod sweep;
pub mod types;
pub mod validate;

use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use resolve::ResolvedRecipe;
pub use types::Recipe;

use doc::Node;

/// A recipe that passed every check, with what is needed to resolve it.
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    /// The path as given by the user.
    pub path: PathBuf,
    /// Directory relative paths in the recipe are resolved against.
    pub base_dir: PathBuf,
    pub source: String,
    pub recipe: Recipe,
    /// Warnings `validate` found (the recipe is valid; they are worth reading).
    pub warnings: Vec<Diagnostic>,
}

impl LoadedRecipe {
    /// The warnings, ready to render like errors; `None` when there are none.
    pub fn warnings_report(&self) -> Option<Diagnostics> {
        (!self.warnings.is_empty()).then(|| Diagnostics { file: self.path.display().to_string(), source: self.source.clone(), items: self.warnings.clone() })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read recipe {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(Box<Diagnostics>),
}

/// Read, parse and check a recipe file.
pub fn load(path: &Path) -> Result<LoadedRecipe, RecipeError> {
    let bytes = std::fs::read(path).map_err(|source| RecipeError::Io { path: path.to_path_buf(), source })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
    check_bytes(&path.display().to_string(), &bytes, &base_dir)
}

/// Check recipe text; `file` names it in messages, `base_dir` anchors its relative paths.
pub fn check_bytes(file: &str, bytes: &[u8], base_dir: &Path) -> Result<LoadedRecipe, RecipeError> {
    let (source, mut items) = match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), Vec::new()),
        Err(e) => {
            let source = String::from_utf8_lossy(bytes).into_owned();
            let at = source_offset_of_invalid(bytes, e.valid_up_to());
            let d = Diagnostic::new("not-utf8", "", "the recipe is not valid UTF-8 text").at(Some(at..at + 1));
            (source, vec![d])
        }
    };
    let invalid = |source: String, items: Vec<Diagnostic>| RecipeError::Invalid(Box::new(Diagnostics { file: file.to_string(), source, items }));
    if !items.is_empty() {
        return Err(invalid(source, items));
    }
    let (table, errors) = toml::de::DeTable::parse_recoverable(&source);
    if !errors.is_empty() {
        for e in errors {
            let msg = e.message().trim().to_string();
            items.push(Diagnostic::new("syntax", "", format!("invalid TOML: {msg}")).at(e.span()));
        }
        return Err(invalid(source, items));
    }
    let doc = Node::from_table(table.span(), table.get_ref());
    let schema = schema::recipe_schema();
    let mut validator = validate::Validator::new(&schema);
    let repaired = validator.validate_document(&doc);
    items.extend(validator.diagnostics);
    let recipe = repaired.and_then(|json| match serde_json::from_value::<Recipe>(json) {
        Ok(r) => Some(r),
        Err(e) => {
            // The schema and the serde types come from the same definitions; reaching this
            // means they disagree somewhere. Still a clean, located error rather than a panic.
            items.push(Diagnostic::new("invalid", "", format!("invalid recipe: {e}")).at(Some(0..0)));
            None
        }
    });
    if let Some(recipe) = &recipe {
        for d in semantic::check(recipe, base_dir) {
            items.push(locate(&doc, d));
        }
    }
    match recipe {
        Some(recipe) if items.iter().all(|d| !d.is_error()) => {
            Ok(LoadedRecipe { path: PathBuf::from(file), base_dir: base_dir.to_path_buf(), source, recipe, warnings: items })
        }
        _ => Err(invalid(source, items)),
    }
}

fn source_offset_of_invalid(bytes: &[u8], valid_up_to: usize) -> usize {
    // Offsets in the lossy string equal byte offsets up to the first invalid byte.
    valid_up_to.min(bytes.len())
}

/// Attach the source span of a semantic problem found on the typed recipe.
fn locate(doc: &Node, d: semantic::Located) -> Diagnostic {
    let (span, _found) = doc.lookup(&d.path);
    let at = if d.on_key { span.key.unwrap_or(span.value) } else { span.value };
    let mut diag = d.diagnostic;
    diag.path = doc::path_string(&d.path);
    diag.at(Some(at))
}

