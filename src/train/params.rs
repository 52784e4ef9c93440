//! The typed parameters of the adapter stages (`train`, `import`), built by the plan.

use serde::Serialize;

use crate::data::params::RenderParams;
use crate::eval::params::EvalSettings;
use crate::model::load::BackboneRef;
use crate::prompt::PromptFormat;
use crate::recipe::resolve::{LoraConfig, TrainingConfig};

/// `train:<adapter>`: a LoRA adapter trained on its `prompts` input.
#[derive(Debug, Clone, Serialize)]
pub struct TrainParams {
    pub adapter: String,
    pub backbone: BackboneRef,
    pub format: PromptFormat,
    pub lora: LoraConfig,
    pub training: TrainingConfig,
    /// Seeds initialization, data order and dropout.
    pub seed: u64,
    /// How dropout draws its masks ([`crate::dropout::MASKS_KEY`]).
    pub dropout_masks: &'static str,
    /// With `select_by = "mrr"`: the validation users ranked at each validation (the stage then
    /// has its domains' splits as inputs). Absent from the key otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<MrrSelection>,
}

/// What `select_by = "mrr"` ranks: up to `users` users of the adapter's domains at their
/// validation positions, rendered and evaluated exactly as the evaluation's test users are.
#[derive(Debug, Clone, Serialize)]
pub struct MrrSelection {
    pub render: RenderParams,
    pub evaluation: EvalSettings,
    pub users: u32,
}

/// `import:<adapter>`: a pretrained PEFT adapter, checked against the backbone and copied in.
#[derive(Debug, Clone, Serialize)]
pub struct ImportParams {
    pub adapter: String,
    pub path: crate::assets::LocalPath,
    /// Hash of the adapter directory's files.
    pub content: String,
    pub backbone: BackboneRef,
}
