//! Prompt encoding: a rendered (instruction, response) pair wrapped in the backbone's chat template
//! and turned into token ids, the same way for training, scoring and generation.

use serde::Serialize;

use crate::model::chat::{ChatMessage, ChatTemplate};
use crate::model::tokenizer::TextTokenizer;
use crate::recipe::resolve::DEFAULT_SYSTEM_PROMPT;

/// How a backbone is prompted: part of the parameters (and keys) of every stage that encodes
/// prompts for a model (train, evaluate, entropy merges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptFormat {
    pub system_prompt: String,
    /// Wrap the instruction in the model's own chat template (when it has one).
    pub chat_template: bool,
}

impl Default for PromptFormat {
    fn default() -> Self {
        PromptFormat { system_prompt: DEFAULT_SYSTEM_PROMPT.into(), chat_template: true }
    }
}

/// A prompt that cannot be encoded (chat template, tokenizer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(pub String);

/// Turns a rendered (instruction, response) pair into token ids: the instruction wrapped in the
/// backbone's chat template (system prompt, user turn, assistant opening), the response as the
/// assistant's turn up to and including its end-of-turn marker.
#[derive(Debug)]
pub struct Prompter {
    chat: Option<ChatTemplate>,
    system_prompt: String,
}

impl Prompter {
    /// `chat` (the model's own template) is used only when `format.chat_template` is set.
    pub fn new(format: &PromptFormat, chat: Option<ChatTemplate>) -> Self {
        Self { chat: chat.filter(|_| format.chat_template), system_prompt: format.system_prompt.clone() }
    }

    /// The encoding a recipe gets by default (the model's chat template, the default system
    /// prompt): what benchmarks outside a recipe use.
    pub fn with_defaults(chat: Option<ChatTemplate>) -> Self {
        Self::new(&PromptFormat::default(), chat)
    }

    fn messages(&self, instruction: &str) -> Vec<ChatMessage> {
        let mut m = Vec::new();
        if !self.system_prompt.is_empty() {
            m.push(ChatMessage::system(self.system_prompt.clone()));
        }
        m.push(ChatMessage::user(instruction.trim()));
        m
    }

    /// The prompt text (what precedes the model's answer).
    pub fn prompt_text(&self, instruction: &str) -> Result<String, EncodeError> {
        match &self.chat {
            Some(chat) => chat.render(&self.messages(instruction), true).map_err(|e| EncodeError(format!("chat template: {e}"))),
            None => {
                let sys = if self.system_prompt.is_empty() { String::new() } else { format!("{}\n\n", self.system_prompt) };
                Ok(format!("{sys}{}\n", instruction.trim()))
            }
        }
    }

    /// The answer text as the model should produce it after [`Self::prompt_text`], including
    /// the chat template's end-of-turn text.
    pub fn response_text(&self, instruction: &str, response: &str) -> Result<String, EncodeError> {
        let response = response.trim();
        match &self.chat {
            Some(chat) => {
                let prompt = self.prompt_text(instruction)?;
                let mut msgs = self.messages(instruction);
                msgs.push(ChatMessage::assistant(response));
                let full = chat.render(&msgs, false).map_err(|e| EncodeError(format!("chat template: {e}")))?;
                full.strip_prefix(prompt.as_str()).map(str::to_string).ok_or_else(|| {
                    EncodeError("the chat template renders the conversation with an answer differently from its prompt; cannot separate the response".into())
                })
            }
            None => Ok(format!("{response}\n")),
        }
    }

    /// Prompt ids (with bos where the tokenizer adds one and no chat template does).
    pub fn prompt_ids(&self, tok: &TextTokenizer, instruction: &str) -> Result<Vec<u32>, EncodeError> {
        let text = self.prompt_text(instruction)?;
        let mut ids = tok.encode(&text, false).map_err(tok_err)?;
        if self.chat.is_none()
            && let Some(b) = tok.bos_id() {
            ids.insert(0, b);
        }
        if ids.is_empty() {
            return Err(EncodeError("a prompt encodes to no tokens".into()));
        }
        Ok(ids)
    }

    /// Response ids (the answer and its end-of-turn), to follow [`Self::prompt_ids`].
    pub fn response_ids(&self, tok: &TextTokenizer, instruction: &str, response: &str) -> Result<Vec<u32>, EncodeError> {
        let mut ids = tok.encode(&self.response_text(instruction, response)?, false).map_err(tok_err)?;
        if self.chat.is_none()
            && let Some(&e) = tok.eos_ids().first() {
            ids.push(e);
        }
        Ok(ids)
    }

    /// Ids of an item title as the start of the answer (what candidate scoring compares).
    pub fn title_ids(&self, tok: &TextTokenizer, title: &str) -> Result<Vec<u32>, EncodeError> {
        tok.encode(title.trim(), false).map_err(tok_err)
    }
}

fn tok_err(e: crate::model::tokenizer::TokenizerError) -> EncodeError {
    EncodeError(format!("tokenizer: {e}"))
}
