//! What each stage kind does.

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
    /// Artifact directory of each input stage, by stage id (completed inputs only).
    pub inputs: BTreeMap<String, PathBuf>,
    /// Inputs that failed or were skipped, with why. Only a `report` stage ever runs with some
    /// (its output is then not cached); for every other stage this is empty.
    pub failed_inputs: &'a BTreeMap<String, String>,
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

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{0}")]
    Failed(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    #[error(transparent)]
    Results(#[from] crate::results::ResultsError),
    #[error(transparent)]
    Merge(#[from] crate::merge::MergeError),
}

/// Run one stage into `ctx.out`.
pub fn run_stage(ctx: &StageContext<'_>) -> Result<(), StageError> {
    use crate::data::{baselines, stages as data};
    match ctx.stage.kind {
        StageKind::Fetch => Ok(data::fetch(ctx)?),
        StageKind::Data => Ok(data::data(ctx)?),
        StageKind::Split => Ok(data::split(ctx)?),
        StageKind::Prompts => Ok(data::prompts(ctx)?),
        StageKind::EvalSet => Ok(data::eval_set(ctx)?),
        StageKind::Baselines => Ok(baselines::baselines(ctx)?),
        StageKind::Train => crate::train::train_stage(ctx),
        StageKind::Import => crate::train::import_stage(ctx),
        StageKind::Evaluate => crate::eval::stage::evaluate(ctx),
        StageKind::Report => Ok(crate::results::report(ctx)?),
        StageKind::Merge => crate::merge::stage::run(ctx),
    }
}
