//! Prompts: recipe templates rendered into (instruction, response) pairs.

pub mod template;

pub use template::{PromptContext, PromptTemplate, Rendered, TemplateError};
