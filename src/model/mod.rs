//! The LLM core: Llama-family decoder in burn, weights (HF safetensors, GGUF), tokenizer, chat
//! template, LoRA adapters (PEFT format), generation and candidate scoring.

pub mod attention;
pub mod causal_lm;
pub mod chat;
pub mod commands;
pub mod config;
pub mod generate;
pub mod gguf;
pub mod llama;
pub mod load;
pub mod lora;
pub mod peft;
pub mod precision;
pub mod tiny;
pub mod tokenizer;
pub mod weights;

use std::path::PathBuf;

pub use config::ModelConfig;
pub use causal_lm::{CausalLm, ForwardInput, KvCache};
pub use llama::Llama;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("weights: {0}")]
    Weights(String),
    #[error("adapter {path}: {message}")]
    Adapter { path: PathBuf, message: String },
    /// A problem with what the user gave (a file, a prompt, an option).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

impl ModelError {
    /// Problems with what the user gave (paths, files, formats), as opposed to runtime failures.
    pub fn is_input_problem(&self) -> bool {
        !matches!(self, ModelError::Other(_))
    }
}
