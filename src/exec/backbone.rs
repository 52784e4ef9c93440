//! The backbone as model stages load it: from the file their parameters name (a fetched asset or
//! a local path), with its tokenizer and the prompt encoding of their parameters.

use super::context::{StageContext, StageError};
use crate::model::load::{BackboneRef, TextModel, load_text_model_as};
use crate::plan::Role;
use crate::prompt::{PromptFormat, Prompter};
use crate::backend::{DeviceSpec, Runtime};
use crate::recipe::types::Dtype;

/// Refuse a backbone dtype the runtime cannot compute in (or only very slowly).
pub fn check_dtype(dtype: Dtype, runtime: &Runtime) -> Result<(), StageError> {
    let refuse = |why: &str| Err(StageError::Failed(format!("`[backbone] dtype = \"{}\"` {why} (this run: {})", crate::recipe::types::serde_name(&dtype), runtime.describe())));
    match dtype {
        Dtype::F32 => Ok(()),
        Dtype::Auto => refuse("should have been resolved when the plan was compiled"),
        Dtype::F16 if runtime.device_spec == DeviceSpec::Cpu => refuse("is for CUDA devices: use `bf16` on a CPU"),
        _ => Ok(()),
    }
}

/// A loaded backbone and the prompt encoding every model stage shares.
pub struct StageModel {
    /// The model and tokenizer (its chat template moved into `prompter`).
    pub text: TextModel,
    pub prompter: Prompter,
}

/// Load `backbone` on `device` (the runtime's, or its autodiff version for training).
pub fn load(ctx: &StageContext<'_>, backbone: &BackboneRef, format: &PromptFormat, device: &burn::tensor::Device) -> Result<StageModel, StageError> {
    let path = ctx.source_file(&backbone.source, Role::Backbone)?;
    check_dtype(backbone.dtype, ctx.runtime)?;
    let mut text = load_text_model_as(&path, device, backbone.dtype)?;
    let prompter = Prompter::new(format, text.chat.take());
    Ok(StageModel { text, prompter })
}
