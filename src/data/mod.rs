//! Recommendation data: assets, loaders into canonical tables, cleaning, domains and splits,
//! candidate lists, sample selection, evaluation sets and rendered prompts.
//!
//! Canonical tables (every loader yields them, as polars DataFrames):
//! - interactions: `user` (str), `item` (str), `timestamp` (i64, null when the format has none),
//!   `rating` (f64, nullable), `order` (u64: the row's position in its file);
//! - items: `item` (str), `title` (str), `genres` (str, nullable: values joined by `|`), then
//!   format-specific text fields (`year`, `author`, ...). A domain filter tests any of these fields;
//!   multi-valued fields hold their values joined by [`MULTI_SEP`].

pub mod candidates;
pub mod conventional;
pub mod domain;
pub mod fetch;
pub mod inspect;
pub mod leakage;
pub mod loaders;
pub mod params;
pub mod process;
pub mod samples;
pub mod stages;

use std::path::PathBuf;

/// Separator of values in multi-valued item fields (`genres`).
pub const MULTI_SEP: char = '|';

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{context} {}: {source}", path.display())]
    Io { context: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{file}:{line}: {reason} (the dataset is `strict`: malformed rows are fatal)")]
    Malformed { file: String, line: u64, reason: String },
    #[error("{0}")]
    Missing(String),
    #[error("dataset has no timestamps ({format}); set `order = \"file\"` to order interactions by their position in the file")]
    NoTimestamps { format: String },
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Template(#[from] crate::prompt::TemplateError),
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// Problems of the input (recipe, dataset files), as opposed to failures of the machine.
    pub fn is_input_problem(&self) -> bool {
        match self {
            DataError::Malformed { .. } | DataError::Missing(_) | DataError::NoTimestamps { .. } | DataError::Invalid(_) | DataError::Template(_) => true,
            DataError::Table(e) => e.is_input_problem(),
            DataError::Io { .. } | DataError::Fetch(_) => false,
        }
    }

    pub fn table(context: impl Into<String>) -> impl FnOnce(polars::error::PolarsError) -> DataError {
        let wrap = crate::table::polars_err(context);
        move |source| DataError::Table(wrap(source))
    }
}

impl From<DataError> for crate::exec::context::StageError {
    fn from(e: DataError) -> Self {
        let input = e.is_input_problem();
        crate::exec::context::StageError::domain(e, input)
    }
}
