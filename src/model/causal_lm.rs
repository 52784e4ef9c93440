//! What the rest of reccocktail needs from a decoder-only language model: one trait, so that
//! evaluation, training and merging never name an architecture (today's only implementation is
//! [`super::Llama`], which also serves Llama-shaped families through its config).

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::lora::{LoraLinear, Proj};
use super::precision::{linear, matmul_mixed};

/// A causal decoder with LoRA-adaptable linear projections.
pub trait CausalLm {
    fn device(&self) -> Device;

    /// Positions the rotary tables (or other position encoding) cover.
    fn max_positions(&self) -> usize;

    /// Decoder layers.
    fn num_layers(&self) -> usize;

    /// Hidden states after the final norm, [batch, new_len, hidden]; extends `cache` if given.
    fn hidden(&self, input: &ForwardInput, cache: Option<&mut KvCache>) -> Tensor<3>;

    /// The output projection, [hidden, vocab] (for tied embeddings a transposed copy of them).
    fn output_projection(&self) -> Tensor<2>;

    fn vocab_size(&self) -> usize {
        self.output_projection().dims()[1]
    }

    /// The same model off the autodiff graph (for generating inside a differentiated objective).
    fn without_autodiff(&self) -> Box<dyn CausalLm>;

    /// Logits over the vocabulary of `hidden` states, [batch, new_len, vocab] (fp32 whatever
    /// the head's dtype).
    fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        linear(hidden, self.output_projection())
    }

    /// Logits of hidden states picked as rows, [n, hidden] -> [n, vocab] (fp32).
    fn head(&self, rows: Tensor<2>) -> Tensor<2> {
        matmul_mixed(rows, self.output_projection())
    }

    /// Store the frozen projection and head weights in `dtype` (mixed precision; see
    /// [`super::precision`]). Embeddings, norms and adapters stay as they are.
    fn cast_frozen(&mut self, dtype: burn::tensor::FloatDType);

    /// Compute attention's products in `attention` where the frozen weights are bf16 (f32 by
    /// default; [`super::precision::attention_kernel`]).
    fn set_attention(&mut self, attention: crate::recipe::types::AttentionDtype);

    /// Logits over the vocabulary, [batch, new_len, vocab].
    fn forward(&self, input: &ForwardInput, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.logits(self.hidden(input, cache))
    }

    /// Every adaptable linear layer with its (layer index, projection).
    fn projections(&self) -> Vec<(usize, Proj, &LoraLinear)>;

    fn projections_mut(&mut self) -> Vec<(usize, Proj, &mut LoraLinear)>;
}

/// Keys and values of earlier positions, per layer: [batch, kv_heads, past, head_dim].
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub layers: Vec<(Tensor<4>, Tensor<4>)>,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same keys and values as constants: off the autodiff graph, on the plain device.
    pub fn without_autodiff(&self) -> KvCache {
        KvCache { layers: self.layers.iter().map(|(k, v)| (k.clone().without_autodiff(), v.clone().without_autodiff())).collect() }
    }
}

/// What one forward pass sees besides the token ids.
pub struct ForwardInput {
    /// [batch, new_len]
    pub ids: Tensor<2, Int>,
    /// Position of each new token, [batch, new_len] (left padding shifts them).
    pub positions: Tensor<2, Int>,
    /// True where a key (past + new, [batch, past + new_len]) is padding and must not be attended.
    pub key_padding: Option<Tensor<2, Bool>>,
    /// Which keys each new token may see, [new_len, past + new_len], true where hidden; shared by
    /// the batch and replacing the causal mask (several sequences packed into one row). `None`:
    /// causal.
    pub visibility: Option<Tensor<2, Bool>>,
}

impl ForwardInput {
    /// One unpadded sequence `ids` at positions `start..start + ids.len()`, causal: a prompt
    /// (`start` 0) or tokens that continue a cache of `start` positions.
    pub fn sequence(ids: &[u32], start: usize, device: &Device) -> ForwardInput {
        let n = ids.len();
        ForwardInput {
            ids: Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|&t| t as i64).collect(), [1, n]), device),
            positions: Tensor::<2, Int>::from_data(TensorData::new((start..start + n).map(|p| p as i64).collect(), [1, n]), device),
            key_padding: None,
            visibility: None,
        }
    }
}

