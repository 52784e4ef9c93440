//! The dispatch table: which body runs each stage kind, handed its typed parameters. It sits
//! above the stage folders (they import only [`super::context`]).

use super::context::{StageContext, StageError};
use crate::plan::StageParams;

/// Run one stage into `ctx.out`.
pub fn run_stage(ctx: &StageContext<'_>) -> Result<(), StageError> {
    use crate::baselines;
    use crate::data::stages as data;
    match &ctx.stage.params {
        StageParams::Fetch(p) => Ok(data::fetch(ctx, p)?),
        StageParams::Data(p) => Ok(data::data(ctx, p)?),
        StageParams::Split(p) => Ok(data::split(ctx, p)?),
        StageParams::Prompts(p) => Ok(data::prompts(ctx, p)?),
        StageParams::EvalSet(p) => Ok(data::eval_set(ctx, p)?),
        StageParams::Sasrec(p) => crate::sasrec::stage(ctx, p),
        StageParams::Baselines(p) => baselines::baselines(ctx, p),
        StageParams::Train(p) => crate::train::train_stage(ctx, p),
        StageParams::Import(p) => crate::train::import_stage(ctx, p),
        StageParams::Merge(p) => crate::merge::stage::run(ctx, p),
        StageParams::Evaluate(p) => crate::eval::stage::evaluate(ctx, p),
        StageParams::Report(p) => Ok(crate::results::report(ctx, p)?),
    }
}
