//! Linear layers with LoRA adapters: `y = x W0 (+ b) + sum_i s_i (x A_i) B_i`.
//!
//! W0 is frozen. Each adapter keeps its own factors (A: [in, r], B: [r, out] here, i.e. PEFT's
//! `lora_A` [r, in] and `lora_B` [out, r] transposed) and its own scale `s_i`, which already
//! includes the merge weight `w_i` and `alpha_i / r_i`. Several weighted adapters applied at once
//! is exactly the merged adapter `W0 + sum_i w_i s_i B_i A_i`, without materializing dense deltas.

use burn::module::{Module, Param};
use burn::tensor::{Device, FloatDType, Tensor, TensorData};

use super::precision::{is_f32, linear, linear_folded};

/// Which projection of a decoder layer a linear layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Proj {
    pub const ALL: [Proj; 7] = [Proj::Q, Proj::K, Proj::V, Proj::O, Proj::Gate, Proj::Up, Proj::Down];

    /// HF / PEFT module name (`q_proj`, ...).
    pub fn hf_name(self) -> &'static str {
        match self {
            Proj::Q => "q_proj",
            Proj::K => "k_proj",
            Proj::V => "v_proj",
            Proj::O => "o_proj",
            Proj::Gate => "gate_proj",
            Proj::Up => "up_proj",
            Proj::Down => "down_proj",
        }
    }

    /// HF parent module (`self_attn` or `mlp`).
    pub fn hf_parent(self) -> &'static str {
        match self {
            Proj::Q | Proj::K | Proj::V | Proj::O => "self_attn",
            Proj::Gate | Proj::Up | Proj::Down => "mlp",
        }
    }

    pub fn from_hf_name(name: &str) -> Option<Proj> {
        Proj::ALL.into_iter().find(|p| p.hf_name() == name)
    }
}

/// One adapter's factors on one linear layer.
#[derive(Module, Debug)]
pub struct LoraFactors {
    /// [in, r]
    pub a: Param<Tensor<2>>,
    /// [r, out]
    pub b: Param<Tensor<2>>,
    /// Effective scale: merge weight x alpha / r (or alpha / sqrt(r) with rsLoRA).
    pub scale: f64,
    /// Dropout probability on the adapter's input, as PEFT's `lora_dropout` (active only when
    /// training on an autodiff device; inference is unaffected). Masks: [`crate::dropout`].
    pub dropout: f64,
}

impl LoraFactors {
    /// Factors `a` [in, r] and `b` [r, out]; `dropout` in [0, 1).
    pub fn new(a: Param<Tensor<2>>, b: Param<Tensor<2>>, scale: f64, dropout: f64) -> Self {
        assert!((0.0..1.0).contains(&dropout), "LoRA dropout {dropout} outside [0, 1)");
        Self { a, b, scale, dropout }
    }
}

#[derive(Module, Debug)]
pub struct LoraLinear {
    /// Frozen base weight, [in, out].
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub adapters: Vec<LoraFactors>,
}

/// A row-major host matrix in HF layout ([out, in]) into a frozen burn weight ([in, out]).
pub fn frozen_from_hf(rows: usize, cols: usize, data: &[f32], device: &Device) -> Param<Tensor<2>> {
    let t = transpose(rows, cols, data);
    Param::from_tensor(Tensor::<2>::from_data(TensorData::new(t, [cols, rows]), device)).set_require_grad(false)
}

/// Row-major [rows, cols] -> row-major [cols, rows] (built optimized in the host crate).
pub use reccocktail_host::transpose;

impl LoraLinear {
    pub fn frozen(weight: Param<Tensor<2>>, bias: Option<Param<Tensor<1>>>) -> Self {
        Self { weight, bias, adapters: Vec::new() }
    }

    pub fn d_in(&self) -> usize {
        self.weight.shape().dims::<2>()[0]
    }

    pub fn d_out(&self) -> usize {
        self.weight.shape().dims::<2>()[1]
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let w = self.weight.val();
        // With half-precision base weights the fp32 adapters' products are folded into single
        // GEMMs too; in full precision they stay batched (folding them gained nothing measurable:
        // BENCHMARKS.md).
        let mixed = !is_f32(&w);
        let product = |x: Tensor<D>, m: Tensor<2>| if mixed { linear_folded(x, m) } else { x.matmul(m.unsqueeze()) };
        let mut y = linear(x.clone(), w);
        if let Some(b) = &self.bias {
            y = y + b.val().unsqueeze();
        }
        for f in &self.adapters {
            // s (x A) B, with dropout's 1 / (1 - p) and the scale s applied to the rank-r product.
            let (x, keep) = crate::dropout::zero_out(x.clone(), f.dropout);
            let xa = product(x, f.a.val()).mul_scalar(f.scale * keep);
            y = y + product(xa, f.b.val());
        }
        y
    }

    /// The dense weight with every adapter folded in: W0 + sum_i s_i A_i B_i ([in, out]), in
    /// fp32 whatever the base weight's dtype.
    pub fn folded_weight(&self) -> Tensor<2> {
        let mut w = self.weight.val().cast(FloatDType::F32);
        for f in &self.adapters {
            w = w + f.a.val().matmul(f.b.val()).mul_scalar(f.scale);
        }
        w
    }

    /// Whether the frozen weight is stored in fp32 (folding adapters into a bf16 weight would
    /// round their small deltas away: keep them unfolded then).
    pub fn is_f32(&self) -> bool {
        is_f32(&self.weight.val())
    }

    /// Store the frozen weight (and bias) in `dtype`; the adapters are untouched.
    pub fn cast_frozen(&mut self, dtype: FloatDType) {
        self.weight = Param::from_tensor(self.weight.val().cast(dtype)).set_require_grad(false);
    }

    /// Fold every adapter into the (still frozen) base weight and drop them.
    pub fn fold(&mut self) {
        let w = self.folded_weight();
        self.weight = Param::from_tensor(w).set_require_grad(false);
        self.adapters.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(device: &Device, dropout: f64) -> LoraLinear {
        let w = frozen_from_hf(3, 4, &(0..12).map(|i| i as f32 * 0.1).collect::<Vec<_>>(), device);
        let a = Param::from_tensor(Tensor::<2>::from_data(TensorData::new(vec![0.5f32; 8], [4, 2]), device));
        let b = Param::from_tensor(Tensor::<2>::from_data(TensorData::new(vec![0.25f32; 6], [2, 3]), device));
        let mut l = LoraLinear::frozen(w, None);
        l.adapters.push(LoraFactors::new(a, b, 2.0, dropout));
        l
    }

    #[test]
    fn forward_is_base_plus_scaled_low_rank_and_fold_agrees() {
        let device = crate::backend::select(crate::recipe::types::BackendChoice::Auto, crate::backend::DeviceSpec::Cpu, None).unwrap().device;
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -1.0, 2.0, 0.5], [1, 4]), &device);
        let mut l = layer(&device, 0.0);
        let y: Vec<f32> = l.forward(x.clone()).into_data().try_to_vec().unwrap();
        // x W0: W0 (HF [3, 4]) rows are 0.1 * (0..4), (4..8), (8..12).
        let base = [0.1 * (0.0 - 1.0 + 4.0 + 1.5), 0.1 * (4.0 - 5.0 + 12.0 + 3.5), 0.1 * (8.0 - 9.0 + 20.0 + 5.5)];
        // s (x A) B = 2 * (0.5 * 2.5 per rank) * 0.25 * 2 ranks = 1.25.
        for (got, want) in y.iter().zip(base.iter().map(|b| b + 1.25)) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        l.fold();
        let folded: Vec<f32> = l.forward(x).into_data().try_to_vec().unwrap();
        assert!(y.iter().zip(&folded).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn dropout_only_acts_when_training() {
        let device = crate::backend::select(crate::recipe::types::BackendChoice::Auto, crate::backend::DeviceSpec::Cpu, None).unwrap().device;
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32; 4 * 64], [64, 4]), &device);
        let l = layer(&device, 0.5);
        let eval: Vec<f32> = l.forward(x.clone()).into_data().try_to_vec().unwrap();
        let no_drop: Vec<f32> = layer(&device, 0.0).forward(x.clone()).into_data().try_to_vec().unwrap();
        assert_eq!(eval, no_drop, "inference ignores dropout");
        // Training: each input element dropped by the seeded mask, the kept ones scaled by 2. With
        // x = 1, A = 0.5, B = 0.25, s = 2, a row's adapter term is its number of kept inputs (4
        // without dropout), on top of x W0 = (0.6, 2.2, 3.8).
        let ad = device.clone().autodiff();
        let x_ad = Tensor::<2>::from_data(TensorData::new(vec![1.0f32; 4 * 64], [64, 4]), &ad);
        crate::dropout::seed(11);
        let train: Vec<f32> = l.forward(x_ad).into_data().try_to_vec().unwrap();
        let dropped = crate::dropout::dropped(64 * 4, 0.5, 11, 0);
        for (r, row) in train.chunks(3).enumerate() {
            let kept = dropped[r * 4..r * 4 + 4].iter().filter(|&&d| !d).count() as f32;
            for (got, base) in row.iter().zip([0.6f32, 2.2, 3.8]) {
                assert!((got - base - kept).abs() < 1e-5, "row {r}: {got} vs {base} + {kept}");
            }
        }
        assert!(dropped.iter().any(|&d| d) && dropped.iter().any(|&d| !d));
    }
}
