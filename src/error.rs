//! Top-level errors and their exit codes: 0 ok, 2 invalid input (recipe, files, options),
//! 1 runtime failure.

use crate::backend::BackendError;
use crate::exec::RunError;
use crate::plan::PlanError;
use crate::recipe::RecipeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("{0}")]
    Resolve(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Recipe(_) | Error::Resolve(_) | Error::Plan(_) | Error::Backend(_) | Error::Usage(_) => 2,
            Error::Run(RunError::UnknownStage(_)) => 2,
            Error::Run(_) | Error::Io { .. } => 1,
        }
    }
}
