//! Loading a backbone from a path: an HF model directory (config.json + safetensors) or a GGUF
//! file (converted to the same HF state dict on the fly).

use std::path::Path;

use burn::tensor::Device;

use super::config::ModelConfig;
use super::precision::Precision;
use super::llama::Llama;
use super::weights::{self, StateDict};
use super::ModelError;

/// A backbone as stages' parameters name it: where its file is and the dtype it runs in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackboneRef {
    pub source: crate::assets::SourceRef,
    pub dtype: crate::recipe::types::Dtype,
    /// Attention's products' dtype, resolved for `dtype` ([`super::precision::resolve_attention`]);
    /// keyed through `kernels`, whose text says it.
    #[serde(skip)]
    pub attention: crate::recipe::types::AttentionDtype,
    /// How the backbone computes, beyond the dtype ([`super::precision::kernels_key`]).
    pub kernels: &'static str,
}

impl BackboneRef {
    pub fn new(source: crate::assets::SourceRef, precision: Precision) -> BackboneRef {
        BackboneRef { source, dtype: precision.dtype, attention: precision.attention, kernels: super::precision::kernels_key(precision) }
    }

    /// How the stage computes with it.
    pub fn precision(&self) -> Precision {
        Precision { dtype: self.dtype, attention: self.attention }
    }
}

/// A loaded backbone: its configuration, its weights on a device, and where it came from.
#[derive(Clone)]
pub struct Backbone {
    pub config: ModelConfig,
    pub model: Llama,
    /// The HF `config.json` it was resolved from.
    pub hf_config: serde_json::Value,
}

/// Read an HF model directory's config and weights (host side).
pub fn read_hf_dir(dir: &Path) -> Result<(serde_json::Value, StateDict), ModelError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|source| ModelError::Io { path: cfg_path.clone(), source })?;
    let hf: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Config(format!("{}: {e}", cfg_path.display())))?;
    let mut sd = StateDict::new();
    for file in weights::safetensors_files(dir)? {
        weights::read_safetensors(&file, &mut sd)?;
    }
    Ok((hf, sd))
}

/// Build a backbone from an HF config and state dict.
pub fn from_parts(hf_config: serde_json::Value, sd: StateDict, device: &Device) -> Result<Backbone, ModelError> {
    let config = ModelConfig::from_hf(&hf_config)?;
    let model = weights::build(&config, sd, device)?;
    Ok(Backbone { config, model, hf_config })
}

/// Load an HF model directory.
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<Backbone, ModelError> {
    let (hf, sd) = read_hf_dir(dir)?;
    from_parts(hf, sd, device)
}

/// A backbone ready for text: model, tokenizer and (when the model has one) chat template. A clone
/// shares the weights' storage.
#[derive(Clone)]
pub struct TextModel {
    pub backbone: Backbone,
    pub tokenizer: super::tokenizer::TextTokenizer,
    pub chat: Option<super::chat::ChatTemplate>,
}

/// Only the tokenizer of an HF model directory or a `.gguf` file (its metadata; no weights read).
pub fn load_tokenizer(path: &Path) -> Result<super::tokenizer::TextTokenizer, ModelError> {
    let other = |e: &dyn std::fmt::Display| ModelError::Invalid(format!("{}: {e}", path.display()));
    if path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        let file = super::gguf::GgufFile::open(path).map_err(|e| other(&e))?;
        super::tokenizer::TextTokenizer::from_gguf_metadata(&file.metadata).map_err(|e| other(&e))
    } else if path.is_dir() {
        super::tokenizer::TextTokenizer::from_hf_dir(path).map_err(|e| other(&e))
    } else {
        Err(ModelError::Invalid(format!("{}: expected an HF model directory or a .gguf file", path.display())))
    }
}

/// Load an HF model directory or a `.gguf` file with its tokenizer and chat template.
/// [`load_text_model`], its frozen weights then stored in `precision.dtype` (mixed precision;
/// `F32`: as loaded) and attention's products computed in `precision.attention` where that dtype
/// is bf16. `Auto` must be resolved first ([`super::precision::resolve`]).
pub fn load_text_model_as(path: &Path, device: &Device, precision: Precision) -> Result<TextModel, ModelError> {
    use crate::recipe::types::Dtype;
    use super::CausalLm;
    let mut m = load_text_model(path, device)?;
    match precision.dtype {
        Dtype::F32 => {}
        Dtype::Auto => return Err(ModelError::Invalid("dtype `auto` reached the model loader unresolved".into())),
        d => m.backbone.model.cast_frozen(super::precision::float_dtype(d)),
    }
    m.backbone.model.set_attention(precision.attention);
    Ok(m)
}

pub fn load_text_model(path: &Path, device: &Device) -> Result<TextModel, ModelError> {
    let other = |e: &dyn std::fmt::Display| ModelError::Invalid(format!("{}: {e}", path.display()));
    let is_gguf = path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let (hf, sd, tokenizer, tokenizer_config) = if is_gguf {
        let ckpt = super::gguf::gguf_to_hf(path).map_err(|e| other(&e))?;
        // The checkpoint's tokenizer carries bos/eos (and end-of-turn) ids from the metadata.
        let tok = ckpt.tokenizer().map_err(|e| other(&e))?;
        let sd: StateDict = ckpt.tensors.into_iter().map(|(n, shape, data)| (n, weights::HostTensor { shape, data })).collect();
        (ckpt.config, sd, tok, Some(ckpt.tokenizer_config))
    } else if path.is_dir() {
        let (hf, sd) = read_hf_dir(path)?;
        let tok = super::tokenizer::TextTokenizer::from_hf_dir(path).map_err(|e| other(&e))?;
        let tc = std::fs::read_to_string(path.join("tokenizer_config.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        (hf, sd, tok, tc)
    } else {
        return Err(ModelError::Invalid(format!("{}: expected an HF model directory or a .gguf file", path.display())));
    };
    let chat = match &tokenizer_config {
        Some(tc) if tc.get("chat_template").is_some() => Some(super::chat::ChatTemplate::from_tokenizer_config(tc).map_err(|e| other(&e))?),
        _ => None,
    };
    let backbone = from_parts(hf, sd, device)?;
    Ok(TextModel { backbone, tokenizer, chat })
}
