//! Top-level errors and their exit codes: 0 ok, 2 invalid input (recipe, files, options),
//! 1 runtime failure.

use crate::backend::BackendError;
use crate::data::inspect::InspectError;
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
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Inspect(#[from] crate::data::inspect::InspectError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Model(crate::model::ModelError),
    #[error(transparent)]
    Gguf(crate::model::gguf::GgufError),
    #[error(transparent)]
    Results(#[from] crate::results::ResultsError),
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
    #[error(transparent)]
    Slurm(#[from] crate::slurm::SlurmError),
    #[error(transparent)]
    Gc(#[from] crate::exec::gc::GcError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Recipe(_) | Error::Resolve(_) | Error::Plan(_) | Error::Backend(_) | Error::Usage(_) => 2,
            Error::Run(RunError::UnknownStage(_) | RunError::InputNotCached { .. }) => 2,
            Error::Slurm(crate::slurm::SlurmError::Record { .. }) => 2,
            Error::Gc(crate::exec::gc::GcError::Plan(_)) => 2,
            Error::Data(e) | Error::Inspect(InspectError::Data(e)) if e.is_input_problem() => 2,
            Error::Run(RunError::Stage { source, .. }) | Error::Inspect(InspectError::Run(RunError::Stage { source, .. })) if source.is_input_problem() => 2,
            Error::Run(RunError::Failed { failures, .. }) if failures.iter().all(|f| f.error.is_input_problem()) => 2,
            Error::Results(e) if e.is_input_problem() => 2,
            Error::Model(e) if e.is_input_problem() => 2,
            Error::Gguf(e) if e.is_input_problem() => 2,
            Error::Merge(e) if e.is_input_problem() => 2,
            Error::Run(_) | Error::Io { .. } | Error::Data(_) | Error::Inspect(_) | Error::Model(_) | Error::Gguf(_) | Error::Results(_) | Error::Merge(_) | Error::Slurm(_) | Error::Gc(_) => 1,
        }
    }
}
