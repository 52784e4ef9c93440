//! Prompts: recipe templates rendered into (instruction, response) pairs.

pub mod encode;
pub mod template;

pub use encode::{EncodeError, PromptFormat, Prompter};
pub use template::{PromptContext, PromptTemplate, Rendered, TemplateError, TemplateRef};
