//! LoRA adapters in PEFT's format: `adapter_config.json` + `adapter_model.safetensors`, keys
//! `base_model.model.model.layers.N.<parent>.<proj>.lora_A.weight` ([r, in]) and `lora_B.weight`
//! ([out, r]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use serde_json::{Value as Json, json};

use super::causal_lm::CausalLm;
use super::lora::{LoraFactors, Proj, transpose};
use super::weights::{HostTensor, StateDict, read_safetensors};
use super::ModelError;

/// The parts of `adapter_config.json` that define the math.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftConfig {
    pub r: usize,
    pub alpha: f64,
    pub use_rslora: bool,
    pub targets: Vec<Proj>,
    /// Per-module rank / alpha overrides, keyed by a module-name suffix (PEFT's patterns).
    pub rank_pattern: BTreeMap<String, usize>,
    pub alpha_pattern: BTreeMap<String, f64>,
    pub base_model: Option<String>,
}

/// One module's factors in PEFT layout.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    /// [r, in]
    pub a: HostTensor,
    /// [out, r]
    pub b: HostTensor,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeftAdapter {
    pub config: PeftConfig,
    pub modules: BTreeMap<(usize, Proj), LoraPair>,
}

/// The module's name in the model (`model.layers.N.self_attn.q_proj`), as PEFT's patterns see it.
pub fn module_name(layer: usize, proj: Proj) -> String {
    format!("model.layers.{layer}.{}.{}", proj.hf_parent(), proj.hf_name())
}

impl PeftConfig {
    /// Scale s = alpha / r (alpha / sqrt(r) with rsLoRA) of one module, patterns applied.
    pub fn scale(&self, layer: usize, proj: Proj) -> f64 {
        let name = module_name(layer, proj);
        let matches = |pat: &String| name == *pat || name.ends_with(&format!(".{pat}")) || pat == proj.hf_name();
        let r = self.rank_pattern.iter().find(|(p, _)| matches(p)).map_or(self.r, |(_, r)| *r);
        let alpha = self.alpha_pattern.iter().find(|(p, _)| matches(p)).map_or(self.alpha, |(_, a)| *a);
        if self.use_rslora { alpha / (r as f64).sqrt() } else { alpha / r as f64 }
    }

    pub fn to_json(&self) -> Json {
        json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": 0.0,
            "use_rslora": self.use_rslora,
            "target_modules": self.targets.iter().map(|p| p.hf_name()).collect::<Vec<_>>(),
            "rank_pattern": self.rank_pattern,
            "alpha_pattern": self.alpha_pattern,
            "bias": "none",
            "fan_in_fan_out": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "use_dora": false,
            "modules_to_save": null,
            "layers_to_transform": null,
            "base_model_name_or_path": self.base_model,
        })
    }

    fn from_json(v: &Json, path: &Path) -> Result<PeftConfig, ModelError> {
        let err = |m: String| ModelError::Adapter { path: path.to_path_buf(), message: m };
        if let Some(t) = v.get("peft_type").and_then(Json::as_str)
            && t != "LORA" {
            return Err(err(format!("peft_type `{t}` is not LORA")));
        }
        if v.get("use_dora").and_then(Json::as_bool) == Some(true) {
            return Err(err("DoRA adapters are not supported".into()));
        }
        if v.get("fan_in_fan_out").and_then(Json::as_bool) == Some(true) {
            return Err(err("fan_in_fan_out adapters (GPT-2 Conv1D) are not supported".into()));
        }
        let r = v.get("r").and_then(Json::as_u64).filter(|r| *r > 0).ok_or_else(|| err("`r` must be a positive integer".into()))? as usize;
        let alpha = v.get("lora_alpha").and_then(Json::as_f64).ok_or_else(|| err("`lora_alpha` is missing".into()))?;
        let targets = match v.get("target_modules") {
            Some(Json::Array(a)) => a
                .iter()
                .map(|t| t.as_str().and_then(Proj::from_hf_name).ok_or_else(|| err(format!("target module {t} is not one of q,k,v,o,gate,up,down _proj"))))
                .collect::<Result<Vec<_>, _>>()?,
            Some(Json::String(s)) if s == "all-linear" => Proj::ALL.to_vec(),
            other => return Err(err(format!("unsupported target_modules {other:?}"))),
        };
        let pattern = |key: &str| -> BTreeMap<String, Json> { v.get(key).and_then(Json::as_object).map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default() };
        Ok(PeftConfig {
            r,
            alpha,
            use_rslora: v.get("use_rslora").and_then(Json::as_bool).unwrap_or(false),
            targets,
            rank_pattern: pattern("rank_pattern").into_iter().filter_map(|(k, v)| Some((k, v.as_u64()? as usize))).collect(),
            alpha_pattern: pattern("alpha_pattern").into_iter().filter_map(|(k, v)| Some((k, v.as_f64()?))).collect(),
            base_model: v.get("base_model_name_or_path").and_then(Json::as_str).map(str::to_string),
        })
    }
}

/// Parse `base_model.model.model.layers.N.<parent>.<proj>.lora_{A,B}[.default].weight`.
fn parse_key(key: &str) -> Option<(usize, Proj, bool)> {
    let rest = key.strip_prefix("base_model.model.")?;
    let rest = rest.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let parts: Vec<&str> = rest.split('.').collect();
    let (parent, proj, which) = (parts.first()?, parts.get(1)?, parts.get(2)?);
    let proj = Proj::from_hf_name(proj).filter(|p| p.hf_parent() == *parent)?;
    let tail = &parts[3..];
    if !(tail == ["weight"] || tail == ["default", "weight"]) {
        return None;
    }
    match *which {
        "lora_A" => Some((layer, proj, true)),
        "lora_B" => Some((layer, proj, false)),
        _ => None,
    }
}

impl PeftAdapter {
    /// Read and check an adapter directory against a model's shapes.
    pub fn load(dir: &Path, model: &dyn CausalLm) -> Result<PeftAdapter, ModelError> {
        let adapter = Self::read(dir)?;
        let err = |m: String| ModelError::Adapter { path: dir.to_path_buf(), message: m };
        let shapes: BTreeMap<(usize, Proj), (usize, usize)> = model.projections().into_iter().map(|(l, p, lin)| ((l, p), (lin.d_in(), lin.d_out()))).collect();
        for (&(layer, proj), pair) in &adapter.modules {
            let name = module_name(layer, proj);
            let &(d_in, d_out) = shapes.get(&(layer, proj)).ok_or_else(|| err(format!("`{name}` does not exist in the base model")))?;
            if pair.a.shape[1] != d_in || pair.b.shape[0] != d_out {
                return Err(err(format!("`{name}`: lora_A {:?} and lora_B {:?} do not fit a [{d_out}, {d_in}] layer (expected A [r, {d_in}], B [{d_out}, r])", pair.a.shape, pair.b.shape)));
            }
        }
        Ok(adapter)
    }

    /// Read an adapter directory without a model: the config, and every module's factors checked
    /// for consistency with each other (A [r, in] and B [out, r] of one rank); shapes against a
    /// base model are checked by [`Self::load`].
    pub fn read(dir: &Path) -> Result<PeftAdapter, ModelError> {
        let err = |m: String| ModelError::Adapter { path: dir.to_path_buf(), message: m };
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|source| ModelError::Io { path: cfg_path.clone(), source })?;
        let v: Json = serde_json::from_str(&text).map_err(|e| err(format!("adapter_config.json: {e}")))?;
        let config = PeftConfig::from_json(&v, dir)?;
        let mut sd = StateDict::new();
        let weights = [dir.join("adapter_model.safetensors")];
        if !weights[0].is_file() {
            return Err(err("adapter_model.safetensors is missing".into()));
        }
        read_safetensors(&weights[0], &mut sd)?;
        let mut halves: BTreeMap<(usize, Proj), (Option<HostTensor>, Option<HostTensor>)> = BTreeMap::new();
        for (key, t) in sd {
            let (layer, proj, is_a) = parse_key(&key).ok_or_else(|| err(format!("unexpected tensor `{key}`")))?;
            let e = halves.entry((layer, proj)).or_default();
            if is_a { e.0 = Some(t) } else { e.1 = Some(t) }
        }
        let mut modules = BTreeMap::new();
        for ((layer, proj), (a, b)) in halves {
            let name = module_name(layer, proj);
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                (None, _) => return Err(err(format!("`{name}` has lora_B but no lora_A"))),
                (_, None) => return Err(err(format!("`{name}` has lora_A but no lora_B"))),
            };
            let ok = a.shape.len() == 2 && b.shape.len() == 2 && a.shape[0] == b.shape[1] && a.shape[0] > 0;
            if !ok {
                return Err(err(format!("`{name}`: lora_A {:?} and lora_B {:?} are not A [r, in] and B [out, r] of one rank", a.shape, b.shape)));
            }
            for (half, t) in [("lora_A", &a), ("lora_B", &b)] {
                if let Some(bad) = t.data.iter().find(|x| !x.is_finite()) {
                    return Err(err(format!("`{name}`: {half} holds a non-finite value ({bad}); a diverged training or a corrupted file")));
                }
            }
            modules.insert((layer, proj), LoraPair { a, b });
        }
        if modules.is_empty() {
            return Err(err("no LoRA tensors".into()));
        }
        let all_zero = modules.values().all(|m| m.a.data.iter().all(|x| *x == 0.0) && m.b.data.iter().all(|x| *x == 0.0));
        if all_zero {
            return Err(err("every lora_A and lora_B is zero: this adapter cannot have been trained or initialized".into()));
        }
        Ok(PeftAdapter { config, modules })
    }

    /// Write `adapter_config.json` and `adapter_model.safetensors` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let io = |p: PathBuf| move |source| ModelError::Io { path: p, source };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for ((layer, proj), pair) in &self.modules {
            let base = format!("base_model.model.{}", module_name(*layer, *proj));
            for (suffix, t) in [("lora_A", &pair.a), ("lora_B", &pair.b)] {
                let bytes = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
                tensors.push((format!("{base}.{suffix}.weight"), t.shape.clone(), bytes));
            }
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).expect("consistent sizes")))
            .collect();
        let path = dir.join("adapter_model.safetensors");
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(views, Some(meta), &path).map_err(|e| ModelError::Adapter { path: path.clone(), message: e.to_string() })?;
        let text = serde_json::to_string_pretty(&self.config.to_json()).expect("json");
        std::fs::write(dir.join("adapter_config.json"), text + "\n").map_err(io(dir.join("adapter_config.json")))
    }

    /// Add this adapter to the model's layers with merge weight `weight`: every covered module
    /// gains `weight * s * B A`.
    pub fn attach(&self, model: &mut dyn CausalLm, weight: f64) {
        let device = model.device();
        for (layer, proj, lin) in model.projections_mut() {
            let Some(pair) = self.modules.get(&(layer, proj)) else { continue };
            let (r, d_in) = (pair.a.shape[0], pair.a.shape[1]);
            let d_out = pair.b.shape[0];
            let a = Tensor::<2>::from_data(TensorData::new(transpose(r, d_in, &pair.a.data), [d_in, r]), &device);
            let b = Tensor::<2>::from_data(TensorData::new(transpose(d_out, r, &pair.b.data), [r, d_out]), &device);
            let (a, b) = (Param::from_tensor(a).set_require_grad(false), Param::from_tensor(b).set_require_grad(false));
            lin.adapters.push(LoraFactors::new(a, b, weight * self.config.scale(layer, proj), 0.0));
        }
    }
}

/// A base model's identity, for telling adapters of different models apart: the last component of
/// a path or hub id, lowercased, without its file extension and a trailing quantization tag
/// (`SmolLM2-135M-Instruct.Q4_1.gguf`, `/cache/HuggingFaceTB/SmolLM2-135M-Instruct/` and
/// `HuggingFaceTB/SmolLM2-135M-Instruct` are one model). A heuristic: names can only disagree
/// where both are known.
pub fn model_identity(name_or_path: &str) -> String {
    let last = name_or_path.trim_end_matches(['/', '\\']).rsplit(['/', '\\']).next().unwrap_or_default().to_lowercase();
    let mut id = last.as_str();
    for ext in [".gguf", ".safetensors", ".bin"] {
        id = id.strip_suffix(ext).unwrap_or(id);
    }
    // llama.cpp quantization tags: `.Q4_1`, `-Q4_K_M`, `.f16`, `.bf16`, `-IQ3_XS` ...
    if let Some(cut) = id.rfind(['.', '-']) {
        let tag = &id[cut + 1..];
        let quant = ["f16", "bf16", "f32"].contains(&tag) || ((tag.starts_with('q') || tag.starts_with("iq")) && tag.chars().any(|c| c.is_ascii_digit()) && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if quant {
            id = &id[..cut];
        }
    }
    id.to_string()
}

/// Disagreements about the base model: between the adapters (named `names`) whose
/// `base_model_name_or_path` is known, and with `base` (the model they are merged for or applied
/// to) when given. Empty when everything known agrees.
pub fn base_model_mismatches(names: &[String], adapters: &[PeftAdapter], base: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let known: Vec<(&String, &str)> = names.iter().zip(adapters).filter_map(|(n, a)| Some((n, a.config.base_model.as_deref()?))).collect();
    if let Some(&(first, first_base)) = known.first() {
        for &(name, b) in &known[1..] {
            if model_identity(b) != model_identity(first_base) {
                out.push(format!("adapter `{name}` was trained on `{b}`, adapter `{first}` on `{first_base}`"));
            }
        }
    }
    if let Some(base) = base {
        for &(name, b) in &known {
            if model_identity(b) != model_identity(base) {
                out.push(format!("adapter `{name}` was trained on `{b}`, not on the base model `{base}`"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_identities_ignore_paths_extensions_and_quantization() {
        let smol = model_identity("HuggingFaceTB/SmolLM2-135M-Instruct");
        assert_eq!(smol, "smollm2-135m-instruct");
        for same in ["/x/.cache/ab12/SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct/", "smollm2-135m-instruct-Q4_K_M.gguf", "SmolLM2-135M-Instruct.f16.gguf"] {
            assert_eq!(model_identity(same), smol, "{same}");
        }
        assert_ne!(model_identity("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf"), smol);
        assert_eq!(model_identity("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf"), "qwen2.5-0.5b-instruct");
        // A name that merely ends in a version is not a quantization tag.
        assert_eq!(model_identity("tiny-model-v2"), "tiny-model-v2");
    }

    #[test]
    fn parses_peft_keys() {
        assert_eq!(parse_key("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"), Some((3, Proj::Q, true)));
        assert_eq!(parse_key("base_model.model.model.layers.0.mlp.down_proj.lora_B.default.weight"), Some((0, Proj::Down, false)));
        assert_eq!(parse_key("base_model.model.model.layers.0.self_attn.down_proj.lora_B.weight"), None);
        assert_eq!(parse_key("base_model.model.lm_head.lora_A.weight"), None);
    }

    #[test]
    fn scales_follow_patterns_and_rslora() {
        let mut c = PeftConfig { r: 8, alpha: 16.0, use_rslora: false, targets: Proj::ALL.to_vec(), rank_pattern: BTreeMap::new(), alpha_pattern: BTreeMap::new(), base_model: None };
        assert_eq!(c.scale(0, Proj::Q), 2.0);
        c.rank_pattern.insert("model.layers.1.self_attn.q_proj".into(), 4);
        assert_eq!(c.scale(1, Proj::Q), 4.0);
        assert_eq!(c.scale(0, Proj::Q), 2.0);
        c.use_rslora = true;
        assert!((c.scale(0, Proj::Q) - 16.0 / 8f64.sqrt()).abs() < 1e-12);
    }
}
