//! A Llama-family causal decoder in burn: RMSNorm, rotary embeddings (HF's rotate-half layout),
//! grouped-query attention with causal and padding masks and a KV cache, SwiGLU MLP, tied or
//! untied LM head. Weight names mirror HF (`model.layers.N.self_attn.q_proj.weight`).

use burn::module::{Module, Param};
use burn::tensor::activation::silu;
use burn::tensor::{Bool, Device, Tensor, TensorData};

use super::attention::{AttentionKernel, attention};
use super::causal_lm::{CausalLm, ForwardInput, KvCache};
use super::config::ModelConfig;
use super::lora::{LoraLinear, Proj};
use crate::recipe::types::AttentionDtype;

#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let var = x.clone().square().mean_dim(D - 1);
        let normed = x * (var + self.eps).sqrt().recip();
        normed * self.weight.val().unsqueeze()
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: LoraLinear,
    pub k_proj: LoraLinear,
    pub v_proj: LoraLinear,
    pub o_proj: LoraLinear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: LoraLinear,
    pub up_proj: LoraLinear,
    pub down_proj: LoraLinear,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let g = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(g * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

#[derive(Module, Debug)]
pub struct Llama {
    /// [vocab, hidden]
    pub embed_tokens: Param<Tensor<2>>,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// [hidden, vocab]; for tied embeddings a transposed copy of `embed_tokens`.
    pub lm_head: Param<Tensor<2>>,
    /// Rotary tables, [max_positions, head_dim].
    pub rope_cos: Param<Tensor<2>>,
    pub rope_sin: Param<Tensor<2>>,
    /// Attention's products' dtype where the frozen weights are bf16 ([`super::precision::attention_kernel`]).
    #[module(skip)]
    pub attention: AttentionDtype,
}

/// Rotary tables [max_pos, head_dim] in HF's layout (frequencies repeated over both halves).
pub fn rope_tables(cfg: &ModelConfig, max_pos: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let inv: Vec<f32> = cfg.rope_inv_freq().into_iter().map(|f| f as f32).collect();
    let half = inv.len();
    let mut cos = Vec::with_capacity(max_pos * 2 * half);
    let mut sin = Vec::with_capacity(max_pos * 2 * half);
    for p in 0..max_pos {
        for _half in 0..2 {
            for f in &inv {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
    }
    let shape = [max_pos, 2 * half];
    (Tensor::from_data(TensorData::new(cos, shape), device), Tensor::from_data(TensorData::new(sin, shape), device))
}

fn rotate_half(x: Tensor<4>) -> Tensor<4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

impl Attention {
    fn forward(&self, x: Tensor<3>, cos: Tensor<4>, sin: Tensor<4>, mask: Tensor<4, Bool>, cache: Option<&mut (Tensor<4>, Tensor<4>)>, kernel: AttentionKernel) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self.q_proj.forward(x.clone()).reshape([b, t, h, hd]).swap_dims(1, 2);
        let k = self.k_proj.forward(x.clone()).reshape([b, t, kvh, hd]).swap_dims(1, 2);
        let v = self.v_proj.forward(x).reshape([b, t, kvh, hd]).swap_dims(1, 2);
        let q = q.clone() * cos.clone() + rotate_half(q) * sin.clone();
        let k = k.clone() * cos + rotate_half(k) * sin;
        let (k, v) = match cache {
            Some(entry) => {
                let k = Tensor::cat(vec![entry.0.clone(), k], 2);
                let v = Tensor::cat(vec![entry.1.clone(), v], 2);
                *entry = (k.clone(), v.clone());
                (k, v)
            }
            None => (k, v),
        };
        let rep = h / kvh;
        let (k, v) = if rep == 1 { (k, v) } else { (repeat_kv(k, rep), repeat_kv(v, rep)) };
        let out = attention(q, k, v, mask, 1.0 / (hd as f64).sqrt(), kernel);
        self.o_proj.forward(out.swap_dims(1, 2).reshape([b, t, h * hd]))
    }
}

/// [b, kvh, t, hd] -> [b, kvh * rep, t, hd], each kv head repeated `rep` times in place.
fn repeat_kv(x: Tensor<4>, rep: usize) -> Tensor<4> {
    let [b, kvh, t, hd] = x.dims();
    x.unsqueeze_dim::<5>(2).repeat_dim(2, rep).reshape([b, kvh * rep, t, hd])
}

impl CausalLm for Llama {
    fn device(&self) -> Device {
        self.embed_tokens.val().device()
    }

    fn max_positions(&self) -> usize {
        self.rope_cos.shape().dims::<2>()[0]
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn hidden(&self, input: &ForwardInput, mut cache: Option<&mut KvCache>) -> Tensor<3> {
        let [b, t] = input.ids.dims();
        let device = self.device();
        let past = cache.as_ref().map_or(0, |c| c.len());
        let hidden = self.embed_tokens.val().shape().dims::<2>()[1];
        let mut x = self.embed_tokens.val().select(0, input.ids.clone().reshape([b * t])).reshape([b, t, hidden]);
        let flat_pos = input.positions.clone().reshape([b * t]);
        let hd = self.rope_cos.shape().dims::<2>()[1];
        let cos = self.rope_cos.val().select(0, flat_pos.clone()).reshape([b, 1, t, hd]);
        let sin = self.rope_sin.val().select(0, flat_pos).reshape([b, 1, t, hd]);
        // Causal mask over (new queries, past + new keys): true (hidden) where key j > past + i.
        let visible = match &input.visibility {
            Some(v) => v.clone(),
            None => Tensor::<2, Bool>::tril_mask([t, past + t], past as i64, &device),
        };
        let mut mask = visible.unsqueeze::<4>().expand([b, 1, t, past + t]);
        if let Some(pad) = &input.key_padding {
            mask = mask.bool_or(pad.clone().reshape([b, 1, 1, past + t]).expand([b, 1, t, past + t]));
        }
        if let Some(c) = cache.as_deref_mut()
            && c.layers.is_empty() {
            let empty = Tensor::<4>::zeros([b, self.layers[0].self_attn.num_kv_heads, 0, hd], &device);
            c.layers = vec![(empty.clone(), empty); self.layers.len()];
        }
        let kernel = super::precision::attention_kernel(self.lm_head.val().dtype(), self.attention);
        for (i, layer) in self.layers.iter().enumerate() {
            let entry = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let h = layer.self_attn.forward(layer.input_layernorm.forward(x.clone()), cos.clone(), sin.clone(), mask.clone(), entry, kernel);
            x = x + h;
            let h = layer.mlp.forward(layer.post_attention_layernorm.forward(x.clone()));
            x = x + h;
        }
        self.norm.forward(x)
    }

    fn output_projection(&self) -> Tensor<2> {
        self.lm_head.val()
    }

    fn cast_frozen(&mut self, dtype: burn::tensor::FloatDType) {
        self.lm_head = Param::from_tensor(self.lm_head.val().cast(dtype)).set_require_grad(false);
        for (_, _, lin) in self.projections_mut() {
            lin.cast_frozen(dtype);
        }
    }

    fn set_attention(&mut self, attention: AttentionDtype) {
        self.attention = attention;
    }

    fn without_autodiff(&self) -> Box<dyn CausalLm> {
        Box::new(self.valid())
    }

    fn projections_mut(&mut self) -> Vec<(usize, Proj, &mut LoraLinear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            let a = &mut l.self_attn;
            out.push((i, Proj::Q, &mut a.q_proj));
            out.push((i, Proj::K, &mut a.k_proj));
            out.push((i, Proj::V, &mut a.v_proj));
            out.push((i, Proj::O, &mut a.o_proj));
            let m = &mut l.mlp;
            out.push((i, Proj::Gate, &mut m.gate_proj));
            out.push((i, Proj::Up, &mut m.up_proj));
            out.push((i, Proj::Down, &mut m.down_proj));
        }
        out
    }

    fn projections(&self) -> Vec<(usize, Proj, &LoraLinear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let a = &l.self_attn;
            out.extend([(i, Proj::Q, &a.q_proj), (i, Proj::K, &a.k_proj), (i, Proj::V, &a.v_proj), (i, Proj::O, &a.o_proj)]);
            let m = &l.mlp;
            out.extend([(i, Proj::Gate, &m.gate_proj), (i, Proj::Up, &m.up_proj), (i, Proj::Down, &m.down_proj)]);
        }
        out
    }
}
