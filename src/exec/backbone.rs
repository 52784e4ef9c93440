//! The backbone as model stages see it: located from the plan (a fetched asset or a local path),
//! loaded with its tokenizer, and a [`Prompter`] that turns rendered samples into token ids the
//! same way for training, scoring and generation.

use std::path::{Path, PathBuf};

use super::stages::{StageContext, StageError};
use crate::model::chat::{ChatMessage, ChatTemplate};
use crate::model::load::{TextModel, load_text_model};
use crate::model::tokenizer::TextTokenizer;
use crate::recipe::resolve::{ResolvedBackbone, Source};

/// Where the backbone of a stage lives: the recipe's local path, or the file its `fetch:` input
/// extracted (the asset's first file, extracted flat).
pub fn backbone_path(ctx: &StageContext<'_>) -> Result<PathBuf, StageError> {
    match &ctx.resolved.backbone.source {
        Source::Path { path } => Ok(path.clone()),
        Source::Asset { name, .. } => {
            let asset = crate::assets::find(name).ok_or_else(|| StageError::Failed(format!("unknown backbone asset `{name}`")))?;
            let dir = ctx
                .inputs
                .get(&format!("fetch:{name}"))
                .ok_or_else(|| StageError::Failed(format!("stage `{}` has no `fetch:{name}` input", ctx.stage.id)))?;
            // `fetch` extracts each listed file flat into its directory.
            let file = asset.files.first().and_then(|f| Path::new(f).file_name()).ok_or_else(|| StageError::Failed(format!("asset `{name}` lists no file")))?;
            Ok(dir.join(file))
        }
    }
}

/// A loaded backbone and the prompt encoding every model stage shares.
pub struct StageModel {
    /// The model and tokenizer (its chat template moved into `prompter`).
    pub text: TextModel,
    pub prompter: Prompter,
}

/// Load the stage's backbone on `device` (the runtime's, or its autodiff version for training).
pub fn load(ctx: &StageContext<'_>, device: &burn::tensor::Device) -> Result<StageModel, StageError> {
    let path = backbone_path(ctx)?;
    let mut text = load_text_model(&path, device)?;
    let prompter = Prompter::new(&ctx.resolved.backbone, text.chat.take());
    Ok(StageModel { text, prompter })
}

/// Turns a rendered (instruction, response) pair into token ids: the instruction wrapped in the
/// backbone's chat template (system prompt, user turn, assistant opening), the response as the
/// assistant's turn up to and including its end-of-turn marker.
#[derive(Debug)]
pub struct Prompter {
    chat: Option<ChatTemplate>,
    system_prompt: String,
}

impl Prompter {
    /// `chat` is used only when the recipe keeps `chat_template = true` (the default).
    pub fn new(backbone: &ResolvedBackbone, chat: Option<ChatTemplate>) -> Self {
        Self { chat: chat.filter(|_| backbone.chat_template), system_prompt: backbone.system_prompt.clone() }
    }

    /// The encoding a recipe gets by default (the model's chat template, the default system
    /// prompt): what benchmarks outside a recipe use.
    pub fn with_defaults(chat: Option<ChatTemplate>) -> Self {
        Self { chat, system_prompt: crate::recipe::resolve::DEFAULT_SYSTEM_PROMPT.into() }
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
    pub fn prompt_text(&self, instruction: &str) -> Result<String, StageError> {
        match &self.chat {
            Some(chat) => chat.render(&self.messages(instruction), true).map_err(|e| StageError::Failed(format!("chat template: {e}"))),
            None => {
                let sys = if self.system_prompt.is_empty() { String::new() } else { format!("{}\n\n", self.system_prompt) };
                Ok(format!("{sys}{}\n", instruction.trim()))
            }
        }
    }

    /// The answer text as the model should produce it after [`Self::prompt_text`], including
    /// the chat template's end-of-turn text.
    pub fn response_text(&self, instruction: &str, response: &str) -> Result<String, StageError> {
        let response = response.trim();
        match &self.chat {
            Some(chat) => {
                let prompt = self.prompt_text(instruction)?;
                let mut msgs = self.messages(instruction);
                msgs.push(ChatMessage::assistant(response));
                let full = chat.render(&msgs, false).map_err(|e| StageError::Failed(format!("chat template: {e}")))?;
                full.strip_prefix(prompt.as_str()).map(str::to_string).ok_or_else(|| {
                    StageError::Failed("the chat template renders the conversation with an answer differently from its prompt; cannot separate the response".into())
                })
            }
            None => Ok(format!("{response}\n")),
        }
    }

    /// Prompt ids (with bos where the tokenizer adds one and no chat template does).
    pub fn prompt_ids(&self, tok: &TextTokenizer, instruction: &str) -> Result<Vec<u32>, StageError> {
        let text = self.prompt_text(instruction)?;
        let mut ids = tok.encode(&text, false).map_err(tok_err)?;
        if self.chat.is_none() {
            if let Some(b) = tok.bos_id() {
                ids.insert(0, b);
            }
        }
        if ids.is_empty() {
            return Err(StageError::Failed("a prompt encodes to no tokens".into()));
        }
        Ok(ids)
    }

    /// Response ids (the answer and its end-of-turn), to follow [`Self::prompt_ids`].
    pub fn response_ids(&self, tok: &TextTokenizer, instruction: &str, response: &str) -> Result<Vec<u32>, StageError> {
        let mut ids = tok.encode(&self.response_text(instruction, response)?, false).map_err(tok_err)?;
        if self.chat.is_none() {
            if let Some(&e) = tok.eos_ids().first() {
                ids.push(e);
            }
        }
        Ok(ids)
    }

    /// Ids of an item title as the start of the answer (what candidate scoring compares).
    pub fn title_ids(&self, tok: &TextTokenizer, title: &str) -> Result<Vec<u32>, StageError> {
        tok.encode(title.trim(), false).map_err(tok_err)
    }
}

fn tok_err(e: crate::model::tokenizer::TokenizerError) -> StageError {
    StageError::Failed(format!("tokenizer: {e}"))
}

/// The directory of a stage input whose id starts with `prefix`.
pub fn input_dir<'a>(ctx: &'a StageContext<'_>, prefix: &str) -> Result<&'a Path, StageError> {
    ctx.inputs
        .iter()
        .find(|(id, _)| id.starts_with(prefix))
        .map(|(_, p)| p.as_path())
        .ok_or_else(|| StageError::Failed(format!("stage `{}` has no `{prefix}...` input", ctx.stage.id)))
}
