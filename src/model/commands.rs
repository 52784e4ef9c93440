//! Bodies of the model subcommands (`generate`), kept out of the thin CLI layer.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::chat::ChatMessage;
use super::generate::{self, GenerationConfig};
use super::load::load_text_model;
use super::peft::PeftAdapter;
use super::ModelError;
use crate::backend::Runtime;

/// An adapter argument: `DIR` or `DIR:WEIGHT` (weight 1 by default).
pub fn parse_adapter_arg(s: &str) -> Result<(PathBuf, f64), String> {
    if let Some((dir, w)) = s.rsplit_once(':')
        && let Ok(w) = w.parse::<f64>() {
        if !w.is_finite() {
            return Err(format!("adapter weight in `{s}` is not finite"));
        }
        return Ok((PathBuf::from(dir), w));
    }
    Ok((PathBuf::from(s), 1.0))
}

pub struct GenerateArgs<'a> {
    pub model: &'a Path,
    pub adapters: &'a [(PathBuf, f64)],
    pub chat: bool,
    pub prompt: &'a str,
    pub config: GenerationConfig,
    pub stop: &'a [String],
}

#[derive(Debug, Serialize)]
pub struct Generated {
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
}

pub fn generate_text(args: &GenerateArgs<'_>, runtime: &Runtime) -> Result<Generated, ModelError> {
    let mut m = load_text_model(args.model, &runtime.device)?;
    let model_name = args.model.display().to_string();
    for (dir, w) in args.adapters {
        let adapter = PeftAdapter::load(dir, &m.backbone.model)?;
        for warning in super::peft::base_model_mismatches(&[dir.display().to_string()], std::slice::from_ref(&adapter), Some(&model_name)) {
            eprintln!("warning: {warning}");
        }
        adapter.attach(&mut m.backbone.model, *w);
    }
    let tok_err = |e: super::tokenizer::TokenizerError| ModelError::Other(e.to_string());
    let prompt_ids = if args.chat {
        let chat = m.chat.as_ref().ok_or_else(|| ModelError::Invalid(format!("{} has no chat template; drop --chat", args.model.display())))?;
        let text = chat.render(&[ChatMessage::user(args.prompt)], true).map_err(|e| ModelError::Other(e.to_string()))?;
        m.tokenizer.encode(&text, false).map_err(tok_err)?
    } else {
        m.tokenizer.encode(args.prompt, true).map_err(tok_err)?
    };
    if prompt_ids.is_empty() {
        return Err(ModelError::Invalid("the prompt encodes to no tokens".into()));
    }
    let mut config = args.config.clone();
    if config.eos_ids.is_empty() {
        config.eos_ids = m.tokenizer.eos_ids().to_vec();
    }
    let tokenizer = &m.tokenizer;
    let mut stop = |ids: &[u32]| !args.stop.is_empty() && tokenizer.decode(ids, true).is_ok_and(|t| args.stop.iter().any(|s| t.contains(s.as_str())));
    let mut ids = generate::generate(&m.backbone.model, &prompt_ids, &config, &mut stop);
    let mut text = tokenizer.decode(&ids, true).map_err(tok_err)?;
    if let Some(cut) = args.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(cut);
        // Keep the ids consistent with the text: drop tokens past the stop string.
        while !ids.is_empty() && tokenizer.decode(&ids[..ids.len() - 1], true).is_ok_and(|t| t.len() >= cut) {
            ids.pop();
        }
    }
    Ok(Generated { prompt_ids, ids, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_args() {
        assert_eq!(parse_adapter_arg("out/a").unwrap(), (PathBuf::from("out/a"), 1.0));
        assert_eq!(parse_adapter_arg("out/a:0.5").unwrap(), (PathBuf::from("out/a"), 0.5));
        assert_eq!(parse_adapter_arg("c:/x:-1").unwrap(), (PathBuf::from("c:/x"), -1.0));
        assert!(parse_adapter_arg("a:inf").is_err());
    }
}
