//! What each stage kind does. Stage kinds whose implementation has not landed yet fail with a
//! clear `not implemented` error naming the stage, so a run stops there cleanly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::backend::Runtime;
use crate::plan::{Plan, Stage, StageKind};
use crate::recipe::ResolvedRecipe;

/// Everything a stage may read and where it writes.
pub struct StageContext<'a> {
    pub resolved: &'a ResolvedRecipe,
    pub plan: &'a Plan,
    pub stage: &'a Stage,
    /// Artifact directory of each input stage, by stage id.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Fresh temporary directory: the stage's whole output goes here.
    pub out: &'a Path,
    /// Persistent across attempts (checkpoints); removed when the stage completes.
    pub scratch: PathBuf,
    /// The run directory (tables and summaries meant for the researcher).
    pub run_dir: &'a Path,
    pub runtime: &'a Runtime,
    /// Log a line (kept out of the way of the progress bar, and in `run.log`).
    pub log: &'a dyn Fn(&str),
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("not implemented: {kind} stages (`{id}`) are not available in this version of reccocktail")]
    NotImplemented { kind: &'static str, id: String },
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
}

/// Run one stage into `ctx.out`.
pub fn run_stage(ctx: &StageContext<'_>) -> Result<(), StageError> {
    let not_yet = || Err(StageError::NotImplemented { kind: ctx.stage.kind.name(), id: ctx.stage.id.clone() });
    use crate::data::{baselines, stages as data};
    match ctx.stage.kind {
        StageKind::Fetch => Ok(data::fetch(ctx)?),
        StageKind::Data => Ok(data::data(ctx)?),
        StageKind::Split => Ok(data::split(ctx)?),
        StageKind::Prompts => Ok(data::prompts(ctx)?),
        StageKind::EvalSet => Ok(data::eval_set(ctx)?),
        StageKind::Baselines => Ok(baselines::baselines(ctx)?),
        StageKind::Merge => crate::merge::stage::run(ctx),
        StageKind::Train | StageKind::Import | StageKind::Evaluate | StageKind::Report => not_yet(),
    }
}
