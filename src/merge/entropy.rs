//! Entropy-guided adaptive merging (being written in another branch).
use super::Coefficients; use crate::exec::{StageContext, StageError}; use crate::model::peft::PeftAdapter; use crate::recipe::resolve::MergeConfig;
pub fn learn(ctx: &StageContext<'_>, adapters: &[PeftAdapter], config: &MergeConfig) -> Result<Coefficients, StageError> {
    let _ = (adapters, config);
    Err(StageError::NotImplemented { kind: "entropy merge", id: ctx.stage.id.clone() })
}
