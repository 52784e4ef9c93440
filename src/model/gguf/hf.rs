//! A llama-architecture GGUF file as an HF checkpoint: tensors renamed to HF names and
//! dequantized to f32, llama.cpp's rotary permutation of q/k undone, `config.json`,
//! `tokenizer.json`, `tokenizer_config.json` (with the chat template) and
//! `generation_config.json` rebuilt from the metadata; and writing all that as an HF directory.
//!
//! llama.cpp's converter stores `q_proj` / `k_proj` rows permuted for its rotary kernel:
//! `w.reshape(n_head, 2, head_dim / 2, in).swapaxes(1, 2).reshape(out, in)` (with `n_head_kv` for
//! k), i.e. GGUF row `h·hd + 2i + j` is HF row `h·hd + j·hd/2 + i`. [`unpermute_rows`] maps it back,
//! as transformers' GGUF loader does. Qwen2 files are not permuted.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, View};
use serde_json::{json, Map, Value as Json};

use super::{GgufError, GgufFile, GgufValue};
use crate::model::tokenizer::{GgufTokenizerSpec, TextTokenizer, TokenizerError};

/// An HF checkpoint in memory: `config.json`, f32 tensors with HF names and shapes, tokenizer.
#[derive(Debug, Clone)]
pub struct HfCheckpoint {
    pub config: Json,
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Empty when the source has no tokenizer (a weights-only HF directory): then no tokenizer
    /// files are written.
    pub tokenizer_json: String,
    pub tokenizer_config: Json,
    /// `generation_config.json`: bos, eos (a list when the model also has an end-of-turn token),
    /// pad, greedy.
    pub generation_config: Json,
}

impl HfCheckpoint {
    /// The tokenizer, with bos and the end-of-sequence ids (eos and end-of-turn) set.
    pub fn tokenizer(&self) -> Result<TextTokenizer, TokenizerError> {
        let mut tok = TextTokenizer::from_json_str(&self.tokenizer_json)?;
        let id = |v: &Json| v.as_u64().map(|n| n as u32);
        let bos = self.config.get("bos_token_id").and_then(id);
        let eos = match self.generation_config.get("eos_token_id").or_else(|| self.config.get("eos_token_id")) {
            Some(Json::Array(a)) => a.iter().filter_map(id).collect(),
            Some(v) => id(v).into_iter().collect(),
            None => Vec::new(),
        };
        tok.set_special_ids(bos, eos);
        Ok(tok)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arch {
    Llama,
    Qwen2,
}

/// The HF name of a GGUF tensor (None: not a weight HF keeps, e.g. `rope_freqs.weight`).
fn hf_name(name: &str) -> Option<String> {
    let top = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let hf = match part {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Undo llama.cpp's rotary permutation of the rows of a q or k projection (weight or bias), for
/// `n_head` heads; `data` is row-major with `rows` rows.
pub fn unpermute_rows(data: &[f32], rows: usize, n_head: usize) -> Result<Vec<f32>, String> {
    if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2) {
        return Err(format!("{rows} rows cannot be split into {n_head} heads of even size"));
    }
    let cols = data.len() / rows;
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = h * hd + 2 * i + j;
                let dst = h * hd + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// The inverse of [`unpermute_rows`]: what llama.cpp's converter does (used by tests).
pub fn permute_rows(data: &[f32], rows: usize, n_head: usize) -> Vec<f32> {
    let cols = data.len() / rows;
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let (gguf, hf) = (h * hd + 2 * i + j, h * hd + j * half + i);
                out[gguf * cols..(gguf + 1) * cols].copy_from_slice(&data[hf * cols..(hf + 1) * cols]);
            }
        }
    }
    out
}

struct Meta<'a> {
    file: &'a GgufFile,
    arch: &'a str,
}

impl Meta<'_> {
    fn err(&self, key: &str, message: &str) -> GgufError {
        GgufError::Metadata { path: self.file.path.clone(), key: key.to_string(), message: message.to_string() }
    }
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }
    fn get(&self, k: &str) -> Option<&GgufValue> {
        self.file.get(&self.key(k))
    }
    fn uint(&self, k: &str) -> Result<Option<u64>, GgufError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.err(&self.key(k), &format!("must be a non-negative integer, found {v:?}"))),
        }
    }
    fn req(&self, k: &str) -> Result<u64, GgufError> {
        self.uint(k)?.ok_or_else(|| self.err(&self.key(k), "missing"))
    }
    fn float(&self, k: &str) -> Result<Option<f64>, GgufError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.err(&self.key(k), &format!("must be a number, found {v:?}"))),
        }
    }
}

/// f32 rounding of metadata floats written as f64 JSON (1e-5 instead of 9.999999747378752e-06).
fn clean_f32(x: f64) -> Json {
    let short: f64 = format!("{}", x as f32).parse().unwrap_or(x);
    json!(short)
}

/// Llama-3 rope scaling recovered from llama.cpp's `rope_freqs.weight` (the per-frequency factors
/// its converter precomputes), by matching the standard (low 1, high 4, original 8192) schedule.
fn llama3_scaling_from_freqs(freqs: &[f32], head_dim: usize, theta: f64) -> Option<Json> {
    let (low, high, orig) = (1.0f64, 4.0f64, 8192.0f64);
    let factor = f64::from(freqs.iter().copied().fold(f32::MIN, f32::max));
    if freqs.len() != head_dim / 2 || factor <= 1.0 {
        return None;
    }
    let expected = (0..head_dim / 2).map(|i| {
        let freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        if wavelen < orig / high {
            1.0
        } else if wavelen > orig / low {
            factor
        } else {
            let smooth = (orig / wavelen - low) / (high - low);
            1.0 / ((1.0 - smooth) / factor + smooth)
        }
    });
    let matches = expected.zip(freqs).all(|(e, &g)| (e - f64::from(g)).abs() <= 1e-3 * e.abs().max(1.0));
    matches.then(|| {
        json!({"rope_type": "llama3", "factor": clean_f32(factor), "low_freq_factor": low, "high_freq_factor": high,
               "original_max_position_embeddings": orig as u64})
    })
}

/// The HF `config.json` for a GGUF file.
fn hf_config(file: &GgufFile, arch: Arch, arch_name: &str, spec: &GgufTokenizerSpec, rope_freqs: Option<&[f32]>) -> Result<Json, GgufError> {
    let m = Meta { file, arch: arch_name };
    let hidden = m.req("embedding_length")?;
    let heads = m.req("attention.head_count")?;
    let kv_heads = m.uint("attention.head_count_kv")?.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(m.err(&m.key("attention.head_count_kv"), &format!("{heads} heads cannot share {kv_heads} key/value heads")));
    }
    let head_dim = match m.uint("attention.key_length")? {
        Some(k) => k,
        None => m.uint("rope.dimension_count")?.unwrap_or(hidden / heads),
    };
    let theta = m.float("rope.freq_base")?.unwrap_or(10_000.0);
    let embd = file.tensor("token_embd.weight").ok_or_else(|| GgufError::Tensor {
        path: file.path.clone(),
        tensor: "token_embd.weight".into(),
        message: "missing".into(),
    })?;
    let vocab = m.uint("vocab_size")?.unwrap_or_else(|| embd.dims.get(1).copied().unwrap_or(spec.tokens.len() as u64));
    let tied = file.tensor("output.weight").is_none();
    let (arch_class, model_type) = match arch {
        Arch::Llama => ("LlamaForCausalLM", "llama"),
        Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
    };
    let mut c = Map::new();
    c.insert("architectures".into(), json!([arch_class]));
    c.insert("model_type".into(), json!(model_type));
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("intermediate_size".into(), json!(m.req("feed_forward_length")?));
    c.insert("num_hidden_layers".into(), json!(m.req("block_count")?));
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    c.insert("head_dim".into(), json!(head_dim));
    c.insert("hidden_act".into(), json!("silu"));
    c.insert("rms_norm_eps".into(), m.float("attention.layer_norm_rms_epsilon")?.map_or(json!(1e-6), clean_f32));
    c.insert("rope_theta".into(), clean_f32(theta));
    c.insert("max_position_embeddings".into(), json!(m.uint("context_length")?.unwrap_or(2048)));
    c.insert("vocab_size".into(), json!(vocab));
    c.insert("tie_word_embeddings".into(), json!(tied));
    if let Some(b) = spec.bos {
        c.insert("bos_token_id".into(), json!(b));
    }
    if let Some(e) = spec.eos {
        c.insert("eos_token_id".into(), json!(e));
    }
    match arch {
        Arch::Llama => {
            c.insert("attention_bias".into(), json!(file.tensor("blk.0.attn_q.bias").is_some()));
            c.insert("mlp_bias".into(), json!(false));
        }
        Arch::Qwen2 => {
            c.insert("use_sliding_window".into(), json!(false));
        }
    }
    let scaling_type = m.get("rope.scaling.type").and_then(GgufValue::as_str).unwrap_or("none");
    let rope_scaling = match scaling_type {
        "none" => None,
        "linear" | "yarn" => {
            let factor = m.float("rope.scaling.factor")?.ok_or_else(|| m.err(&m.key("rope.scaling.factor"), "missing"))?;
            let mut s = json!({"rope_type": scaling_type, "factor": clean_f32(factor)});
            if let Some(orig) = m.uint("rope.scaling.original_context_length")? {
                s["original_max_position_embeddings"] = json!(orig);
            }
            Some(s)
        }
        other => return Err(m.err(&m.key("rope.scaling.type"), &format!("rope scaling `{other}` is not supported (supported: none, linear, yarn)"))),
    };
    let rope_scaling = match (rope_scaling, rope_freqs) {
        (s, None) => s,
        (None, Some(f)) => Some(llama3_scaling_from_freqs(f, head_dim as usize, theta).ok_or_else(|| GgufError::Tensor {
            path: file.path.clone(),
            tensor: "rope_freqs.weight".into(),
            message: "per-frequency rope factors that do not follow the Llama-3 schedule are not supported".into(),
        })?),
        (Some(_), Some(_)) => {
            return Err(m.err(&m.key("rope.scaling.type"), "both rope scaling metadata and a rope_freqs tensor: not supported"));
        }
    };
    if let Some(s) = rope_scaling {
        c.insert("rope_scaling".into(), s);
    }
    c.insert("torch_dtype".into(), json!("float32"));
    Ok(Json::Object(c))
}

/// Read a GGUF file as an HF checkpoint (every tensor dequantized to f32).
pub fn gguf_to_hf(path: &Path) -> Result<HfCheckpoint, GgufError> {
    let file = GgufFile::open(path)?;
    let arch_name = file.architecture().unwrap_or("(none)").to_string();
    let arch = match arch_name.as_str() {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        _ => return Err(GgufError::UnsupportedArchitecture { path: path.to_path_buf(), arch: arch_name }),
    };
    let tok_err = |e: crate::model::tokenizer::TokenizerError| GgufError::Tokenizer { path: path.to_path_buf(), message: e.to_string() };
    let spec = GgufTokenizerSpec::from_metadata(&file.metadata).map_err(tok_err)?;
    let tokenizer = TextTokenizer::from_gguf_metadata(&file.metadata).map_err(tok_err)?;
    let tokenizer_json = tokenizer.to_json_string().map_err(tok_err)?;

    // Every tensor must be one HF knows: fail on anything else before dequantizing.
    let mut unknown: Vec<&str> = file.tensors.iter().map(|t| t.name.as_str()).filter(|n| hf_name(n).is_none() && *n != "rope_freqs.weight").collect();
    if !unknown.is_empty() {
        unknown.truncate(5);
        return Err(GgufError::Tensor {
            path: path.to_path_buf(),
            tensor: unknown.join("`, `"),
            message: format!("no HF equivalent for this tensor in a `{arch_name}` model"),
        });
    }
    let rope_freqs = match file.tensor("rope_freqs.weight") {
        Some(_) => Some(file.tensor_f32("rope_freqs.weight")?.1),
        None => None,
    };
    let config = hf_config(&file, arch, &arch_name, &spec, rope_freqs.as_deref())?;
    let heads = config["num_attention_heads"].as_u64().unwrap_or(0) as usize;
    let kv_heads = config["num_key_value_heads"].as_u64().unwrap_or(0) as usize;

    let mut tensors = Vec::with_capacity(file.tensors.len());
    for (name, shape, data) in file.all_tensors_f32()? {
        if name == "rope_freqs.weight" {
            continue;
        }
        let hf = hf_name(&name).expect("checked above");
        let n_head = match (arch, name.rsplit('.').nth(1)) {
            (Arch::Llama, Some("attn_q")) => Some(heads),
            (Arch::Llama, Some("attn_k")) => Some(kv_heads),
            _ => None,
        };
        let data = match n_head {
            Some(n) => unpermute_rows(&data, shape[0], n).map_err(|message| GgufError::Tensor { path: path.to_path_buf(), tensor: name.clone(), message })?,
            None => data,
        };
        tensors.push((hf, shape, data));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));

    let chat_template = file.get("tokenizer.chat_template").and_then(GgufValue::as_str);
    let ctx = config["max_position_embeddings"].as_u64();
    let tokenizer_config = spec.tokenizer_config(chat_template, ctx);
    let mut generation_config = Map::new();
    if let Some(b) = spec.bos {
        generation_config.insert("bos_token_id".into(), json!(b));
    }
    let eos: Vec<u32> = spec.eos.into_iter().chain(spec.eot.filter(|&t| Some(t) != spec.eos)).collect();
    let eos = match eos.as_slice() {
        [] => None,
        [one] => Some(json!(one)),
        many => Some(json!(many)),
    };
    if let Some(e) = eos {
        generation_config.insert("eos_token_id".into(), e);
    }
    if let Some(p) = spec.pad {
        generation_config.insert("pad_token_id".into(), json!(p));
    }
    generation_config.insert("do_sample".into(), json!(false));
    let generation_config = Json::Object(generation_config);
    Ok(HfCheckpoint { config, tensors, tokenizer_json, tokenizer_config, generation_config })
}

/// An f32 tensor for the safetensors writer; its bytes are made one tensor at a time.
struct F32View<'a> {
    shape: &'a [usize],
    data: &'a [f32],
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let mut bytes = Vec::with_capacity(self.data.len() * 4);
        for x in self.data {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        Cow::Owned(bytes)
    }
    fn data_len(&self) -> usize {
        self.data.len() * 4
    }
}

fn write_json(path: &Path, value: &Json) -> Result<(), GgufError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| GgufError::Write { path: path.to_path_buf(), message: e.to_string() })?;
    std::fs::write(path, text + "\n").map_err(|e| GgufError::Write { path: path.to_path_buf(), message: e.to_string() })
}

/// Write an HF model directory: `config.json`, `model.safetensors` (f32; no `lm_head` when tied),
/// `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`.
pub fn write_hf_dir(ckpt: &HfCheckpoint, out: &Path) -> Result<(), GgufError> {
    let werr = |path: PathBuf| move |e: std::io::Error| GgufError::Write { path, message: e.to_string() };
    std::fs::create_dir_all(out).map_err(werr(out.to_path_buf()))?;
    let tied = ckpt.config.get("tie_word_embeddings").and_then(Json::as_bool).unwrap_or(false);
    let views: Vec<(&str, F32View<'_>)> = ckpt
        .tensors
        .iter()
        .filter(|(name, _, _)| !(tied && name == "lm_head.weight"))
        .map(|(name, shape, data)| (name.as_str(), F32View { shape, data }))
        .collect();
    for (name, v) in &views {
        if v.shape.iter().product::<usize>() != v.data.len() {
            return Err(GgufError::Write {
                path: out.join("model.safetensors"),
                message: format!("tensor `{name}` has shape {:?} but {} values", v.shape, v.data.len()),
            });
        }
    }
    let st_path = out.join("model.safetensors");
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize_to_file(views, Some(meta), &st_path).map_err(|e| GgufError::Write { path: st_path.clone(), message: e.to_string() })?;
    write_json(&out.join("config.json"), &ckpt.config)?;
    // The safetensors writer goes through a private temporary file (mode 0600): give the weights
    // the permissions an ordinary file gets here, like the JSON files beside them.
    let perms = std::fs::metadata(out.join("config.json")).map_err(werr(out.join("config.json")))?.permissions();
    std::fs::set_permissions(&st_path, perms).map_err(werr(st_path.clone()))?;
    if !ckpt.tokenizer_json.is_empty() {
        let tok_path = out.join("tokenizer.json");
        std::fs::write(&tok_path, &ckpt.tokenizer_json).map_err(werr(tok_path.clone()))?;
        write_json(&out.join("tokenizer_config.json"), &ckpt.tokenizer_config)?;
    }
    write_json(&out.join("generation_config.json"), &ckpt.generation_config)
}

/// `reccocktail convert GGUF OUT_DIR`: a GGUF file as an HF model directory.
pub fn convert(gguf: &Path, out: &Path) -> Result<(), GgufError> {
    let ckpt = gguf_to_hf(gguf)?;
    write_hf_dir(&ckpt, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hf() {
        assert_eq!(hf_name("token_embd.weight").unwrap(), "model.embed_tokens.weight");
        assert_eq!(hf_name("blk.12.attn_output.weight").unwrap(), "model.layers.12.self_attn.o_proj.weight");
        assert_eq!(hf_name("blk.0.ffn_norm.weight").unwrap(), "model.layers.0.post_attention_layernorm.weight");
        assert_eq!(hf_name("blk.3.attn_q.bias").unwrap(), "model.layers.3.self_attn.q_proj.bias");
        assert_eq!(hf_name("output.weight").unwrap(), "lm_head.weight");
        assert!(hf_name("rope_freqs.weight").is_none());
        assert!(hf_name("blk.x.attn_q.weight").is_none());
        assert!(hf_name("blk.0.ffn_gate_exps.weight").is_none());
    }

    #[test]
    fn permutation_round_trips_and_matches_the_reference_formula() {
        // 2 heads of dim 4, 3 columns: value = row * 10 + col.
        let (rows, cols, n_head) = (8, 3, 2);
        let hf: Vec<f32> = (0..rows * cols).map(|k| ((k / cols) * 10 + k % cols) as f32).collect();
        let gguf = permute_rows(&hf, rows, n_head);
        // reshape(n_head, 2, hd/2, cols).swapaxes(1, 2): gguf row order per head = 0, 2, 1, 3.
        let order: Vec<usize> = (0..rows).map(|r| gguf[r * cols] as usize / 10).collect();
        assert_eq!(order, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(unpermute_rows(&gguf, rows, n_head).unwrap(), hf);
        assert!(unpermute_rows(&gguf, rows, 3).is_err());
    }

    #[test]
    fn llama3_rope_freqs_are_recognized() {
        let (hd, theta) = (64usize, 500_000.0f64);
        let freqs: Vec<f32> = (0..hd / 2)
            .map(|i| {
                let f = 1.0 / theta.powf((2 * i) as f64 / hd as f64);
                let w = 2.0 * std::f64::consts::PI / f;
                if w < 2048.0 {
                    1.0
                } else if w > 8192.0 {
                    32.0
                } else {
                    let s = (8192.0 / w - 1.0) / 3.0;
                    (1.0 / ((1.0 - s) / 32.0 + s)) as f32
                }
            })
            .collect();
        let s = llama3_scaling_from_freqs(&freqs, hd, theta).unwrap();
        assert_eq!(s["rope_type"], "llama3");
        assert_eq!(s["factor"], 32.0);
        let mut off = freqs.clone();
        off[5] *= 1.5;
        assert!(llama3_scaling_from_freqs(&off, hd, theta).is_none());
    }
}
