//! The typed parameters of the adapter stages (`train`, `import`), built by the plan.

use std::path::PathBuf;

use serde::Serialize;

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
}

/// `import:<adapter>`: a pretrained PEFT adapter, checked against the backbone and copied in.
#[derive(Debug, Clone, Serialize)]
pub struct ImportParams {
    pub adapter: String,
    pub path: PathBuf,
    /// Hash of the adapter directory's files.
    pub content: String,
    pub backbone: BackboneRef,
}
