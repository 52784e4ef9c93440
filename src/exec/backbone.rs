//! The backbone as model stages load it: from the file their parameters name (a fetched asset or
//! a local path), with its tokenizer and the prompt encoding of their parameters.

use super::context::{StageContext, StageError};
use crate::model::load::{BackboneRef, TextModel, load_text_model};
use crate::plan::Role;
use crate::prompt::{PromptFormat, Prompter};

/// A loaded backbone and the prompt encoding every model stage shares.
pub struct StageModel {
    /// The model and tokenizer (its chat template moved into `prompter`).
    pub text: TextModel,
    pub prompter: Prompter,
}

/// Load `backbone` on `device` (the runtime's, or its autodiff version for training).
pub fn load(ctx: &StageContext<'_>, backbone: &BackboneRef, format: &PromptFormat, device: &burn::tensor::Device) -> Result<StageModel, StageError> {
    let path = ctx.source_file(&backbone.source, Role::Backbone)?;
    let mut text = load_text_model(&path, device)?;
    let prompter = Prompter::new(format, text.chat.take());
    Ok(StageModel { text, prompter })
}
