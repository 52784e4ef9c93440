//! Exact stacking of weighted LoRA factors, SVD truncation of the stacked result, and the dense
//! merged model.
//!
//! Stacking: for module m, adapter i contributes `A'_i = sign(c) sqrt(|c|) A_i` (rows) and
//! `B'_i = sqrt(|c|) B_i` (columns) with `c = w_{m,i} s_{m,i}`; the output's own scale is 1
//! (`lora_alpha = r`, per-module `rank_pattern` / `alpha_pattern` where ranks differ), so
//! `B' A' = sum_i w_{m,i} s_{m,i} B_i A_i` exactly (up to float rounding).
//!
//! Truncation: `ΔW = B' A'` with `B' = Ub Rb` and `A'^T = Ua Ra` (orthonormal bases from the
//! eigendecompositions of the small Gram matrices `B'^T B'`, `A' A'^T`), so `ΔW = Ub (Rb Ra^T) Ua^T`;
//! the SVD of the small `R x R` core gives ΔW's singular values and vectors without ever forming
//! the dense `out x in` matrix.

use std::collections::BTreeMap;
use std::path::Path;

use super::linalg::{Mat, matmul, matmul_tn, svd_small, sym_eigen};
use super::{Coefficients, MergeError};
use crate::model::lora::Proj;
use crate::model::peft::{LoraPair, PeftAdapter, PeftConfig, module_name};
use crate::model::weights::HostTensor;

/// The exact merge: one PEFT adapter whose delta on each module is sum_i w_{m,i} s_{m,i} B_{m,i} A_{m,i} (factors stacked along the rank axis, rank sum r_i).
///
/// Adapters with a zero coefficient on a module are left out of that module; a module where
/// every coefficient is zero is left out of the output.
pub fn combine(adapters: &[PeftAdapter], coef: &Coefficients) -> Result<PeftAdapter, MergeError> {
    let n = adapters.len();
    if coef.adapters.len() != n {
        return Err(MergeError::Invalid(format!("{} coefficient columns ({}) for {n} adapters", coef.adapters.len(), coef.adapters.join(", "))));
    }
    let union = super::adapted_modules(adapters);
    if let Some(m) = coef.values.keys().find(|m| !union.contains_key(m)) {
        return Err(MergeError::Invalid(format!("coefficients given for `{}`, which no adapter adapts", module_name(m.0, m.1))));
    }
    let mut modules = BTreeMap::new();
    for (&(layer, proj), present) in &union {
        let name = module_name(layer, proj);
        let w = coef.values.get(&(layer, proj)).ok_or_else(|| MergeError::Invalid(format!("no merge coefficients for `{name}`")))?;
        if w.len() != n || w.iter().any(|x| !x.is_finite()) {
            return Err(MergeError::Invalid(format!("coefficients of `{name}` must be {n} finite values, got {w:?}")));
        }
        let parts: Vec<(&LoraPair, f64)> = present
            .iter()
            .map(|&i| (&adapters[i].modules[&(layer, proj)], w[i] * adapters[i].config.scale(layer, proj)))
            .filter(|(_, c)| *c != 0.0)
            .collect();
        if parts.is_empty() {
            continue;
        }
        modules.insert((layer, proj), stack(&parts));
    }
    if modules.is_empty() {
        return Err(MergeError::Invalid("every merge coefficient is zero: the merge is the base model itself, there is no adapter to write".into()));
    }
    Ok(PeftAdapter { config: output_config(&modules, base_model(adapters)), modules })
}

fn base_model(adapters: &[PeftAdapter]) -> Option<String> {
    adapters.iter().find_map(|a| a.config.base_model.clone())
}

/// Stack `(pair, c)` parts: A' rows `sign(c) sqrt|c| A`, B' columns `sqrt|c| B`.
fn stack(parts: &[(&LoraPair, f64)]) -> LoraPair {
    let d_in = parts[0].0.a.shape[1];
    let d_out = parts[0].0.b.shape[0];
    let r_total: usize = parts.iter().map(|(p, _)| p.a.shape[0]).sum();
    let mut a = Vec::with_capacity(r_total * d_in);
    let mut b = vec![0.0f32; d_out * r_total];
    let mut col = 0;
    for (p, c) in parts {
        let root = c.abs().sqrt();
        let (sa, sb) = ((c.signum() * root) as f32, root as f32);
        a.extend(p.a.data.iter().map(|x| x * sa));
        let r = p.a.shape[0];
        for (row, src) in b.chunks_exact_mut(r_total).zip(p.b.data.chunks_exact(r)) {
            for (dst, x) in row[col..col + r].iter_mut().zip(src) {
                *dst = x * sb;
            }
        }
        col += r;
    }
    LoraPair { a: HostTensor { shape: vec![r_total, d_in], data: a }, b: HostTensor { shape: vec![d_out, r_total], data: b } }
}

/// A scale-1 PEFT config for these modules: `r = lora_alpha` = the most common module rank,
/// `rank_pattern` / `alpha_pattern` for the others.
pub fn output_config(modules: &BTreeMap<(usize, Proj), LoraPair>, base_model: Option<String>) -> PeftConfig {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for p in modules.values() {
        *counts.entry(p.a.shape[0]).or_default() += 1;
    }
    let r = counts.iter().max_by_key(|(r, c)| (**c, **r)).map_or(1, |(r, _)| *r);
    let mut rank_pattern = BTreeMap::new();
    let mut alpha_pattern = BTreeMap::new();
    for (&(layer, proj), p) in modules {
        let rm = p.a.shape[0];
        if rm != r {
            // `layers.N.<parent>.<proj>`: matched as a suffix of the module's name by every PEFT
            // version (older ones want a `.` before the pattern) and by `PeftConfig::scale`.
            let key = format!("layers.{layer}.{}.{}", proj.hf_parent(), proj.hf_name());
            rank_pattern.insert(key.clone(), rm);
            alpha_pattern.insert(key, rm as f64);
        }
    }
    let mut targets: Vec<Proj> = modules.keys().map(|(_, p)| *p).collect();
    targets.sort();
    targets.dedup();
    PeftConfig { r, alpha: r as f64, use_rslora: false, targets, rank_pattern, alpha_pattern, base_model }
}

/// Energy (sum of squared singular values) of a merged delta, summed over modules.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Energy {
    pub total: f64,
    pub dropped: f64,
}

impl Energy {
    pub fn add(&mut self, other: Energy) {
        self.total += other.total;
        self.dropped += other.dropped;
    }

    /// Dropped / total (0 for a zero delta).
    pub fn dropped_fraction(&self) -> f64 {
        if self.total > 0.0 { (self.dropped / self.total).clamp(0.0, 1.0) } else { 0.0 }
    }
}

/// The dense delta `scale * B A` ([out, in]) of one module.
pub fn dense(pair: &LoraPair, scale: f64) -> Mat {
    matmul(&Mat::from_host(&pair.b), &Mat::from_host(&pair.a)).scaled(scale)
}

/// The best rank-`k` approximation of a scale-1 adapter's deltas, module by module (Eckart-Young),
/// as a scale-1 adapter of rank `min(k, module rank, out, in)`.
pub fn truncate(adapter: &PeftAdapter, k: usize) -> Result<(PeftAdapter, Energy), MergeError> {
    if k == 0 {
        return Err(MergeError::Invalid("the truncation rank must be at least 1".into()));
    }
    let mut energy = Energy::default();
    let mut modules = BTreeMap::new();
    for (&(layer, proj), pair) in &adapter.modules {
        let s = adapter.config.scale(layer, proj);
        let (p, e) = truncate_pair(pair, s, k);
        energy.add(e);
        modules.insert((layer, proj), p);
    }
    Ok((PeftAdapter { config: output_config(&modules, adapter.config.base_model.clone()), modules }, energy))
}

/// Relative size below which an eigenvalue of a Gram matrix counts as zero.
const RANK_TOL: f64 = 1e-22;

/// An orthonormal basis of the column space of `x` (m x R) through its Gram matrix:
/// `x = U C` with `U = x P` (m x q) orthonormal; returns `P` (R x q) and `C` (q x R).
fn basis(x: &Mat) -> (Mat, Mat) {
    let (l, v) = sym_eigen(&matmul_tn(x, x));
    let top = l.first().copied().unwrap_or(0.0);
    let keep: Vec<usize> = (0..l.len()).filter(|&j| l[j] > top * RANK_TOL && l[j] > 0.0).collect();
    let p = Mat::from_fn(v.nrows(), keep.len(), |r, c| v[(r, keep[c])] / l[keep[c]].sqrt());
    let c = Mat::from_fn(keep.len(), v.nrows(), |r, col| v[(col, keep[r])] * l[keep[r]].sqrt());
    (p, c)
}

/// Best rank-`k` factors (scale 1) of `s B A`, from the SVD of the small core between the
/// orthonormal bases of B's columns and A's rows.
pub fn truncate_pair(pair: &LoraPair, scale: f64, k: usize) -> (LoraPair, Energy) {
    let b = Mat::from_host(&pair.b).scaled(scale);
    let a = Mat::from_host(&pair.a);
    let at = a.transpose();
    let (pb, cb) = basis(&b);
    let (pa, ca) = basis(&at);
    let core = super::linalg::matmul_nt(&cb, &ca);
    let (u, sigma, vt) = if core.nrows() == 0 || core.ncols() == 0 { (Mat::zeros(core.nrows(), 0), Vec::new(), Mat::zeros(0, core.ncols())) } else { svd_small(&core) };
    let total: f64 = sigma.iter().map(|x| x * x).sum();
    let k = k.min(b.nrows()).min(at.nrows()).min(pair.a.shape[0]).max(1);
    let kept = k.min(sigma.len());
    let dropped: f64 = sigma[kept..].iter().map(|x| x * x).sum();
    let roots: Vec<f64> = (0..k).map(|j| sigma.get(j).map_or(0.0, |s| s.sqrt())).collect();
    // B'' = B (Pb U_k sqrt(S)), A'' = (Pa V_k sqrt(S))^T A; missing components stay zero.
    let tb = Mat::from_fn(pb.nrows(), k, |r, c| if c < kept { (0..pb.ncols()).map(|j| pb[(r, j)] * u[(j, c)]).sum::<f64>() * roots[c] } else { 0.0 });
    let ta = Mat::from_fn(pa.nrows(), k, |r, c| if c < kept { (0..pa.ncols()).map(|j| pa[(r, j)] * vt[(c, j)]).sum::<f64>() * roots[c] } else { 0.0 });
    let new_b = matmul(&b, &tb);
    let new_a = matmul_tn(&ta, &a);
    (LoraPair { a: new_a.to_host(), b: new_b.to_host() }, Energy { total, dropped })
}

/// Write the dense merged model: the base model (HF directory or `.gguf`) with every adapted
/// module's weight replaced by `W0 + s B A`, as an HF safetensors directory (f32) with the base's
/// config and tokenizer.
pub fn write_dense(base: &Path, adapter: &PeftAdapter, out: &Path) -> Result<(), MergeError> {
    let mut ckpt = read_checkpoint(base)?;
    let index: BTreeMap<String, usize> = ckpt.tensors.iter().enumerate().map(|(i, (n, _, _))| (n.clone(), i)).collect();
    for (&(layer, proj), pair) in &adapter.modules {
        let name = format!("{}.weight", module_name(layer, proj));
        let &i = index.get(&name).ok_or_else(|| MergeError::Invalid(format!("the base model {} has no `{name}`", base.display())))?;
        let (_, shape, data) = &mut ckpt.tensors[i];
        let (d_out, d_in) = (pair.b.shape[0], pair.a.shape[1]);
        if shape.as_slice() != [d_out, d_in] {
            return Err(MergeError::Invalid(format!("`{name}` of the base model is {shape:?}, the adapter's delta is [{d_out}, {d_in}]")));
        }
        let delta = dense(pair, adapter.config.scale(layer, proj));
        for (r, row) in data.chunks_exact_mut(d_in).enumerate() {
            for (c, w) in row.iter_mut().enumerate() {
                *w = (*w as f64 + delta[(r, c)]) as f32;
            }
        }
    }
    if let Some(o) = ckpt.config.as_object_mut() {
        for key in ["torch_dtype", "dtype"] {
            if o.contains_key(key) {
                o.insert(key.into(), "float32".into());
            }
        }
    }
    crate::model::gguf::write_hf_dir(&ckpt, out).map_err(|e| MergeError::Write(e.to_string()))
}

/// Shapes `[out, in]` of every projection of a base model (HF directory: from `config.json`
/// alone; `.gguf`: from the converted checkpoint).
pub fn base_shapes(base: &Path) -> Result<super::Shapes, MergeError> {
    let invalid = |m: String| MergeError::Invalid(format!("{}: {m}", base.display()));
    let config = if base.is_dir() {
        let text = std::fs::read_to_string(base.join("config.json")).map_err(|e| invalid(format!("config.json: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(format!("config.json: {e}")))?;
        crate::model::ModelConfig::from_hf(&v)?
    } else {
        crate::model::ModelConfig::from_hf(&read_checkpoint(base)?.config)?
    };
    let shapes = crate::model::weights::expected_shapes(&config);
    let mut out = BTreeMap::new();
    for layer in 0..config.num_layers {
        for proj in Proj::ALL {
            if let Some(s) = shapes.get(&format!("{}.weight", module_name(layer, proj))) {
                out.insert((layer, proj), (s[0], s[1]));
            }
        }
    }
    Ok(out)
}

/// The base model as an in-memory HF checkpoint (tensors, config, tokenizer files).
fn read_checkpoint(base: &Path) -> Result<crate::model::gguf::HfCheckpoint, MergeError> {
    let invalid = |m: String| MergeError::Invalid(format!("{}: {m}", base.display()));
    let is_gguf = base.is_file() && base.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        return crate::model::gguf::gguf_to_hf(base).map_err(|e| invalid(e.to_string()));
    }
    if !base.is_dir() {
        return Err(invalid("expected an HF model directory or a .gguf file".into()));
    }
    let (config, sd) = crate::model::load::read_hf_dir(base)?;
    let read_json = |name: &str| -> Option<serde_json::Value> { std::fs::read_to_string(base.join(name)).ok().and_then(|t| serde_json::from_str(&t).ok()) };
    // A weights-only directory (no tokenizer.json) gives a weights-only merged model.
    let tokenizer_json = match std::fs::read_to_string(base.join("tokenizer.json")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(invalid(format!("tokenizer.json: {e}"))),
    };
    let generation_config = read_json("generation_config.json").unwrap_or_else(|| {
        serde_json::json!({ "bos_token_id": config.get("bos_token_id"), "eos_token_id": config.get("eos_token_id") })
    });
    Ok(crate::model::gguf::HfCheckpoint {
        tensors: sd.into_iter().map(|(n, t)| (n, t.shape, t.data)).collect(),
        tokenizer_json,
        tokenizer_config: read_json("tokenizer_config.json").unwrap_or_else(|| serde_json::json!({})),
        generation_config,
        config,
    })
}
