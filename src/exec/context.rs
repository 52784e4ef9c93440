//! What a stage body gets from the executor, and the error it returns: the bottom of the stage
//! machinery. A stage reads its typed parameters (`stage.params`, built by the plan and hashed
//! into its key) and the artifact directories of its inputs, found by role; it never sees the
//! recipe, so everything it reads is in its key by construction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::assets::SourceRef;
use crate::backend::Runtime;
use crate::plan::{Role, Stage};

/// Why an input of a stage has no artifact. Only a `report` stage ever runs with such inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputStatus {
    /// The stage ran and failed.
    Failed,
    /// The stage did not run: a stage it needs failed.
    Skipped,
    /// The stage did not run: `--cached-only` and it was not cached.
    NotRun,
}

impl InputStatus {
    pub fn name(self) -> &'static str {
        match self {
            InputStatus::Failed => "failed",
            InputStatus::Skipped => "skipped",
            InputStatus::NotRun => "not_run",
        }
    }
}

/// A missing input: its status and the reason, naming the failed stage at the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingInput {
    pub status: InputStatus,
    pub reason: String,
}

/// Everything a stage may read and where it writes.
pub struct StageContext<'a> {
    pub stage: &'a Stage,
    /// Artifact directory of each input stage, by stage id (completed inputs only).
    pub inputs: BTreeMap<String, PathBuf>,
    /// Inputs that failed or were not run. Only a `report` stage ever runs with some (its output
    /// is then not cached); for every other stage this is empty.
    pub failed_inputs: &'a BTreeMap<String, MissingInput>,
    /// Fresh temporary directory: the stage's whole output goes here.
    pub out: &'a Path,
    /// Persistent across attempts (checkpoints); removed when the stage completes.
    pub scratch: PathBuf,
    /// The run directory (tables and summaries meant for the researcher).
    pub run_dir: &'a Path,
    pub runtime: &'a Runtime,
    /// Log a line (kept out of the way of the progress bar, and in `run.log`).
    pub log: &'a dyn Fn(&str),
    /// Where a long stage adds its own progress bar (hidden when stderr is not a terminal).
    pub progress: &'a indicatif::MultiProgress,
}

impl StageContext<'_> {
    /// The completed inputs of `role`, in the order the plan lists them, as (stage id, directory).
    pub fn inputs_of(&self, role: Role) -> Vec<(&str, &Path)> {
        self.stage.inputs.iter().filter(|i| i.role == role).filter_map(|i| self.inputs.get(&i.stage).map(|d| (i.stage.as_str(), d.as_path()))).collect()
    }

    /// The one input of `role`, if the stage has it.
    pub fn optional_input(&self, role: Role) -> Option<&Path> {
        self.inputs_of(role).first().map(|(_, d)| *d)
    }

    /// The one input of `role`; an error when the plan gave the stage none.
    pub fn input(&self, role: Role) -> Result<&Path, StageError> {
        self.optional_input(role).ok_or_else(|| StageError::Failed(format!("stage `{}` has no {} input", self.stage.id, role.name())))
    }

    /// Where a dataset source lives: its local path, or the directory its fetched asset (the
    /// input of `role`) was extracted into.
    pub fn source_dir(&self, source: &SourceRef, role: Role) -> Result<PathBuf, StageError> {
        match source {
            SourceRef::Path { path, .. } => Ok(path.to_path_buf()),
            SourceRef::Asset { .. } => Ok(self.input(role)?.to_path_buf()),
        }
    }

    /// Where a model file lives: its local path, or the asset's main file (its first, or the
    /// joined one) in the directory its `fetch` input (of `role`) extracted it into, flat.
    pub fn source_file(&self, source: &SourceRef, role: Role) -> Result<PathBuf, StageError> {
        match source {
            SourceRef::Path { path, .. } => Ok(path.to_path_buf()),
            SourceRef::Asset { asset } => {
                let known = crate::assets::find(asset).ok_or_else(|| StageError::Failed(format!("unknown asset `{asset}`")))?;
                let file = known.main_file().ok_or_else(|| StageError::Failed(format!("asset `{asset}` lists no file")))?;
                Ok(self.input(role)?.join(file))
            }
        }
    }
}

/// A stage's failure. Domain errors (data, model, evaluation, ...) convert into it where they are
/// defined, so the executor needs to know none of them.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{source}")]
    Domain {
        source: Box<dyn std::error::Error + Send + Sync>,
        /// The user's input (a dataset, a file) is at fault rather than the machine: exit code 2.
        input_problem: bool,
    },
}

impl StageError {
    pub fn domain(source: impl std::error::Error + Send + Sync + 'static, input_problem: bool) -> Self {
        StageError::Domain { source: Box::new(source), input_problem }
    }

    pub fn is_input_problem(&self) -> bool {
        matches!(self, StageError::Domain { input_problem: true, .. })
    }
}

// Errors of the ground-level modules (which know nothing of stages).
impl From<crate::model::ModelError> for StageError {
    fn from(e: crate::model::ModelError) -> Self {
        StageError::domain(e, false)
    }
}

impl From<crate::prompt::EncodeError> for StageError {
    fn from(e: crate::prompt::EncodeError) -> Self {
        StageError::Failed(e.0)
    }
}

impl From<crate::table::TableError> for StageError {
    fn from(e: crate::table::TableError) -> Self {
        let input = e.is_input_problem();
        StageError::domain(e, input)
    }
}
