//! Model configuration, resolved from an HF `config.json` (as candle-transformers does): the
//! Llama family — `LlamaForCausalLM`, `Qwen2ForCausalLM` (q/k/v bias), `MistralForCausalLM`
//! without sliding-window attention.

use serde::Serialize;
use serde_json::Value as Json;

use super::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Llama,
    Qwen2,
    Mistral,
}

/// Llama-3 style rotary frequency scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on the q, k and v projections (Qwen2; Llama's `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama's `attention_bias`).
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

fn uint(v: &Json, key: &str) -> Result<Option<usize>, ModelError> {
    match v.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(x) => x.as_u64().map(|n| Some(n as usize)).ok_or_else(|| ModelError::Config(format!("`{key}` must be a non-negative integer, found {x}"))),
    }
}

fn req(v: &Json, key: &str) -> Result<usize, ModelError> {
    uint(v, key)?.ok_or_else(|| ModelError::Config(format!("config.json lacks `{key}`")))
}

fn float(v: &Json, key: &str, default: f64) -> Result<f64, ModelError> {
    match v.get(key) {
        None | Some(Json::Null) => Ok(default),
        Some(x) => x.as_f64().ok_or_else(|| ModelError::Config(format!("`{key}` must be a number, found {x}"))),
    }
}

fn ids(v: &Json, key: &str) -> Vec<u32> {
    match v.get(key) {
        Some(Json::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_u64).map(|x| x as u32).collect(),
        _ => Vec::new(),
    }
}

impl ModelConfig {
    /// Resolve an HF `config.json`.
    pub fn from_hf(v: &Json) -> Result<ModelConfig, ModelError> {
        let archs: Vec<&str> = v.get("architectures").and_then(Json::as_array).map(|a| a.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
        let model_type = v.get("model_type").and_then(Json::as_str).unwrap_or("");
        let architecture = match (archs.first().copied(), model_type) {
            (Some("LlamaForCausalLM"), _) | (None, "llama") => Architecture::Llama,
            (Some("Qwen2ForCausalLM"), _) | (None, "qwen2") => Architecture::Qwen2,
            (Some("MistralForCausalLM"), _) | (None, "mistral") => Architecture::Mistral,
            (Some(other), _) => return Err(ModelError::Unsupported(format!("architecture `{other}` (supported: LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM)"))),
            (None, other) => return Err(ModelError::Unsupported(format!("model_type `{other}` (supported: llama, qwen2, mistral)"))),
        };
        let hidden_size = req(v, "hidden_size")?;
        let num_heads = req(v, "num_attention_heads")?;
        let num_kv_heads = uint(v, "num_key_value_heads")?.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(ModelError::Config(format!("{num_heads} attention heads cannot share {num_kv_heads} key/value heads")));
        }
        let head_dim = uint(v, "head_dim")?.unwrap_or(hidden_size / num_heads);
        if head_dim % 2 != 0 || head_dim == 0 {
            return Err(ModelError::Config(format!("head_dim {head_dim} must be even and positive")));
        }
        let sliding = match architecture {
            Architecture::Mistral => v.get("sliding_window").is_some_and(|s| !s.is_null()),
            Architecture::Qwen2 => v.get("use_sliding_window").and_then(Json::as_bool).unwrap_or(false),
            Architecture::Llama => false,
        };
        if sliding {
            return Err(ModelError::Unsupported("sliding-window attention (set `sliding_window` to null to use full attention)".into()));
        }
        // transformers 5 writes `rope_parameters` (theta inside); 4.x wrote `rope_theta` and
        // `rope_scaling`. Accept both.
        let rope_params = v.get("rope_parameters").filter(|p| p.is_object());
        let rope_theta = match rope_params.and_then(|p| p.get("rope_theta")) {
            Some(t) => t.as_f64().ok_or_else(|| ModelError::Config(format!("`rope_parameters.rope_theta` must be a number, found {t}")))?,
            None => float(v, "rope_theta", 10_000.0)?,
        };
        let rope_scaling = match rope_params.or_else(|| v.get("rope_scaling")) {
            None | Some(Json::Null) => None,
            Some(s) => {
                let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Json::as_str).unwrap_or("");
                match kind {
                    "llama3" => Some(Llama3RopeScaling {
                        factor: float(s, "factor", 8.0)?,
                        low_freq_factor: float(s, "low_freq_factor", 1.0)?,
                        high_freq_factor: float(s, "high_freq_factor", 4.0)?,
                        original_max_position_embeddings: uint(s, "original_max_position_embeddings")?.unwrap_or(8192),
                    }),
                    "default" | "" => None,
                    other => return Err(ModelError::Unsupported(format!("rope_scaling type `{other}` (supported: llama3)"))),
                }
            }
        };
        let attention_bias = v.get("attention_bias").and_then(Json::as_bool).unwrap_or(false);
        let qkv_bias = architecture == Architecture::Qwen2 || attention_bias;
        let act = v.get("hidden_act").and_then(Json::as_str).unwrap_or("silu");
        if act != "silu" {
            return Err(ModelError::Unsupported(format!("hidden_act `{act}` (supported: silu)")));
        }
        Ok(ModelConfig {
            architecture,
            vocab_size: req(v, "vocab_size")?,
            hidden_size,
            intermediate_size: req(v, "intermediate_size")?,
            num_layers: req(v, "num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: float(v, "rms_norm_eps", 1e-6)?,
            rope_theta,
            rope_scaling,
            max_position_embeddings: uint(v, "max_position_embeddings")?.unwrap_or(2048),
            tie_word_embeddings: v.get("tie_word_embeddings").and_then(Json::as_bool).unwrap_or(false),
            qkv_bias,
            o_bias: attention_bias,
            mlp_bias: v.get("mlp_bias").and_then(Json::as_bool).unwrap_or(false),
            bos_token_id: ids(v, "bos_token_id").first().copied(),
            eos_token_ids: ids(v, "eos_token_id"),
        })
    }

    /// Inverse frequencies of the rotary embedding, with Llama-3 scaling when configured.
    pub fn rope_inv_freq(&self) -> Vec<f64> {
        let half = self.head_dim / 2;
        let base: Vec<f64> = (0..half).map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / self.head_dim as f64)).collect();
        let Some(s) = &self.rope_scaling else { return base };
        let old = s.original_max_position_embeddings as f64;
        let low_wavelen = old / s.low_freq_factor;
        let high_wavelen = old / s.high_freq_factor;
        base.into_iter()
            .map(|f| {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                if wavelen < high_wavelen {
                    f
                } else if wavelen > low_wavelen {
                    f / s.factor
                } else {
                    let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * f / s.factor + smooth * f
                }
            })
            .collect()
    }
}
