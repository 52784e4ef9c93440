//! Host-side weights: HF safetensors directories (single or sharded; f32, f16, bf16) into a
//! name -> tensor map, and that map into a [`Llama`] with every tensor checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype as StDtype, SafeTensors};

use super::config::ModelConfig;
use super::llama::{Attention, DecoderLayer, Llama, Mlp, RmsNorm, rope_tables};
use super::lora::{LoraLinear, frozen_from_hf};
use super::ModelError;

/// A tensor on the host, row-major, HF layout.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub type StateDict = BTreeMap<String, HostTensor>;

/// Longest position the rotary tables cover.
const MAX_ROPE_POSITIONS: usize = 32_768;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io { path: path.to_path_buf(), source }
}

/// Read every tensor of one safetensors file as f32.
pub fn read_safetensors(path: &Path, into: &mut StateDict) -> Result<(), ModelError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Weights(format!("{}: {e}", path.display())))?;
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            StDtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            StDtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            StDtype::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => return Err(ModelError::Weights(format!("{}: tensor `{name}` has dtype {other:?} (supported: F32, F16, BF16)", path.display()))),
        };
        into.insert(name.to_string(), HostTensor { shape: view.shape().to_vec(), data });
    }
    Ok(())
}

/// The safetensors files of an HF model directory (`model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`).
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| ModelError::Weights(format!("{} has neither model.safetensors nor model.safetensors.index.json", dir.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Weights(format!("{}: {e}", index.display())))?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| ModelError::Weights(format!("{}: no `weight_map`", index.display())))?;
    let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Every expected tensor and its HF shape.
pub fn expected_shapes(cfg: &ModelConfig) -> BTreeMap<String, Vec<usize>> {
    let (d, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q, kv) = (cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim);
    let mut m = BTreeMap::new();
    m.insert("model.embed_tokens.weight".to_string(), vec![v, d]);
    m.insert("model.norm.weight".to_string(), vec![d]);
    if !cfg.tie_word_embeddings {
        m.insert("lm_head.weight".to_string(), vec![v, d]);
    }
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        let mut lin = |name: &str, out: usize, inp: usize, bias: bool| {
            m.insert(format!("{p}.{name}.weight"), vec![out, inp]);
            if bias {
                m.insert(format!("{p}.{name}.bias"), vec![out]);
            }
        };
        lin("self_attn.q_proj", q, d, cfg.qkv_bias);
        lin("self_attn.k_proj", kv, d, cfg.qkv_bias);
        lin("self_attn.v_proj", kv, d, cfg.qkv_bias);
        lin("self_attn.o_proj", d, q, cfg.o_bias);
        lin("mlp.gate_proj", i, d, cfg.mlp_bias);
        lin("mlp.up_proj", i, d, cfg.mlp_bias);
        lin("mlp.down_proj", d, i, cfg.mlp_bias);
        m.insert(format!("{p}.input_layernorm.weight"), vec![d]);
        m.insert(format!("{p}.post_attention_layernorm.weight"), vec![d]);
    }
    m
}

/// Check names and shapes: every expected tensor present with its shape, nothing unexpected.
pub fn check_state_dict(cfg: &ModelConfig, sd: &StateDict) -> Result<(), ModelError> {
    let expected = expected_shapes(cfg);
    let mut problems = Vec::new();
    for (name, shape) in &expected {
        match sd.get(name) {
            None => problems.push(format!("missing tensor `{name}` (expected shape {shape:?})")),
            Some(t) if &t.shape != shape => problems.push(format!("tensor `{name}` has shape {:?}, expected {shape:?}", t.shape)),
            Some(_) => {}
        }
    }
    for name in sd.keys() {
        let ignorable = name.ends_with("rotary_emb.inv_freq") || (cfg.tie_word_embeddings && name == "lm_head.weight");
        if !expected.contains_key(name) && !ignorable {
            problems.push(format!("unexpected tensor `{name}`"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let n = problems.len();
    problems.truncate(8);
    let more = if n > 8 { format!(" (and {} more)", n - 8) } else { String::new() };
    Err(ModelError::Weights(format!("{}{more}", problems.join("; "))))
}

fn vec1(t: &HostTensor, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::<1>::from_data(TensorData::new(t.data.clone(), [t.data.len()]), device)).set_require_grad(false)
}

/// Build the model from a checked state dict.
pub fn build(cfg: &ModelConfig, mut sd: StateDict, device: &Device) -> Result<Llama, ModelError> {
    check_state_dict(cfg, &sd)?;
    let mut take = |name: &str| sd.remove(name).expect("checked");
    let linear = |take: &mut dyn FnMut(&str) -> HostTensor, name: &str, bias: bool| {
        let w = take(&format!("{name}.weight"));
        let b = bias.then(|| vec1(&take(&format!("{name}.bias")), device));
        LoraLinear::frozen(frozen_from_hf(w.shape[0], w.shape[1], &w.data, device), b)
    };
    let norm = |t: HostTensor| RmsNorm { weight: vec1(&t, device), eps: cfg.rms_norm_eps };
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        let self_attn = Attention {
            q_proj: linear(&mut take, &format!("{p}.self_attn.q_proj"), cfg.qkv_bias),
            k_proj: linear(&mut take, &format!("{p}.self_attn.k_proj"), cfg.qkv_bias),
            v_proj: linear(&mut take, &format!("{p}.self_attn.v_proj"), cfg.qkv_bias),
            o_proj: linear(&mut take, &format!("{p}.self_attn.o_proj"), cfg.o_bias),
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        };
        let mlp = Mlp {
            gate_proj: linear(&mut take, &format!("{p}.mlp.gate_proj"), cfg.mlp_bias),
            up_proj: linear(&mut take, &format!("{p}.mlp.up_proj"), cfg.mlp_bias),
            down_proj: linear(&mut take, &format!("{p}.mlp.down_proj"), cfg.mlp_bias),
        };
        layers.push(DecoderLayer {
            input_layernorm: norm(take(&format!("{p}.input_layernorm.weight"))),
            self_attn,
            post_attention_layernorm: norm(take(&format!("{p}.post_attention_layernorm.weight"))),
            mlp,
        });
    }
    let embed = take("model.embed_tokens.weight");
    let head = if cfg.tie_word_embeddings { embed.clone() } else { take("lm_head.weight") };
    let final_norm = norm(take("model.norm.weight"));
    let (v, d) = (embed.shape[0], embed.shape[1]);
    let embed_tokens = Param::from_tensor(Tensor::<2>::from_data(TensorData::new(embed.data, [v, d]), device)).set_require_grad(false);
    let lm_head = frozen_from_hf(head.shape[0], head.shape[1], &head.data, device);
    let (cos, sin) = rope_tables(cfg, cfg.max_position_embeddings.min(MAX_ROPE_POSITIONS), device);
    Ok(Llama {
        embed_tokens,
        layers,
        norm: final_norm,
        lm_head,
        rope_cos: Param::from_tensor(cos).set_require_grad(false),
        rope_sin: Param::from_tensor(sin).set_require_grad(false),
        attention: Default::default(),
    })
}
