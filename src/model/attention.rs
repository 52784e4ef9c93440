//! Scaled dot-product attention: softmax(q k^T * scale + mask) v over [batch, heads, queries, dim].
//!
//! Two ways, the same function up to float rounding:
//! - [`AttentionKernel::Ops`]: built from tensor ops, on every backend. Under autodiff every
//!   [b, h, t, s] intermediate (scores, masked scores, softmax) is kept for the backward: 58 MB
//!   each per layer at batch 8 x 448 tokens, most of a training step's memory, and exp of the
//!   masked entries runs through the math library's underflow path.
//! - [`AttentionKernel::Fused`]: libtorch's fused CPU kernel (the flash-attention forward and its
//!   backward, as `torch.nn.functional.scaled_dot_product_attention` runs them on a CPU), which
//!   keeps only q, k, v, the output and one log-sum-exp per row for the backward. Used in fp32
//!   and bf16 on the libtorch CPU device ([`super::precision::attention_kernel`]); where the
//!   tensors live elsewhere (flex, CUDA) it falls back to the ops.
//!
//! Masked keys get an additive -1e30 in the fused kernel, as the ops fill them with `f32::MIN`: a
//! row whose keys are all masked (left padding) averages its values in both, never NaN.

use burn::tensor::{Bool, FloatDType, Tensor};

/// How attention is computed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    Ops,
    /// The fused kernel, its matrix products in `dtype` (softmax and accumulation in fp32).
    Fused { dtype: FloatDType },
}

/// softmax(q k^T * scale, masked) v. `q` [b, h, t, d], `k` and `v` [b, h, s, d] (key/value heads
/// already repeated to `h`), `mask` [b, 1, t, s], true where a key is hidden. Returns [b, h, t, d]
/// in `q`'s dtype.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Tensor<4, Bool>, scale: f64, kernel: AttentionKernel) -> Tensor<4> {
    if let AttentionKernel::Fused { dtype } = kernel {
        #[cfg(feature = "tch")]
        if let Some(out) = fused::attention(&q, &k, &v, &mask, scale, dtype) {
            return out;
        }
        #[cfg(not(feature = "tch"))]
        let _ = dtype;
    }
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
    let scores = scores.mask_fill(mask, f32::MIN);
    burn::tensor::activation::softmax(scores, 3).matmul(v)
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated upstream but is the libtorch route in burn 0.22
mod fused {
    use burn::tensor::{Bool, FloatDType, Tensor};
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind};
    use burn_autodiff::Autodiff;
    use burn_backend::BackendTypes;
    use burn_tch::{LibTorch, TchTensor};

    /// The fused kernel where the tensors are libtorch CPU tensors (with or without autodiff);
    /// `None` elsewhere.
    pub fn attention(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, mask: &Tensor<4, Bool>, scale: f64, dtype: FloatDType) -> Option<Tensor<4>> {
        let kind = to_kind(dtype)?;
        if let Some(out) = tracked::<NoCheckpointing>(q, k, v, mask, scale, kind) {
            return Some(out);
        }
        if let Some(out) = tracked::<BalancedCheckpointing>(q, k, v, mask, scale, kind) {
            return Some(out);
        }
        let prim = |t: &Tensor<4>| t.clone().try_into_primitive::<LibTorch>().ok();
        let (qp, kp, vp) = (prim(q)?, prim(k)?, prim(v)?);
        let mp = mask.clone().try_into_primitive::<LibTorch>().ok()?;
        if !cpu(&qp.tensor) {
            return None;
        }
        let inputs = Inputs::new(&qp.tensor, &kp.tensor, &vp.tensor, &mp.tensor, kind);
        let (out, _) = inputs.forward(scale);
        Some(Tensor::from_primitive::<LibTorch>(TchTensor::new(out.to_kind(qp.tensor.kind()))))
    }

    fn to_kind(dtype: FloatDType) -> Option<tch::Kind> {
        match dtype {
            FloatDType::F32 => Some(tch::Kind::Float),
            FloatDType::BF16 => Some(tch::Kind::BFloat16),
            _ => None,
        }
    }

    fn cpu(t: &tch::Tensor) -> bool {
        t.device() == tch::Device::Cpu
    }

    /// The kernel's inputs in its dtype, contiguous, with the mask made additive.
    struct Inputs {
        q: tch::Tensor,
        k: tch::Tensor,
        v: tch::Tensor,
        mask: tch::Tensor,
    }

    impl Inputs {
        fn new(q: &tch::Tensor, k: &tch::Tensor, v: &tch::Tensor, hidden: &tch::Tensor, kind: tch::Kind) -> Inputs {
            let prep = |t: &tch::Tensor| t.to_kind(kind).contiguous();
            let heads = q.size()[1];
            let size = hidden.size();
            let mask = tch::Tensor::zeros(&size, (kind, q.device())).masked_fill(hidden, -1e30).expand([size[0], heads, size[2], size[3]], false);
            Inputs { q: prep(q), k: prep(k), v: prep(v), mask }
        }

        /// (output, log-sum-exp per row).
        fn forward(&self, scale: f64) -> (tch::Tensor, tch::Tensor) {
            tch::Tensor::internal_scaled_dot_product_flash_attention_for_cpu(&self.q, &self.k, &self.v, 0.0, false, Some(&self.mask), scale)
        }
    }

    impl Clone for Inputs {
        fn clone(&self) -> Inputs {
            Inputs { q: self.q.shallow_clone(), k: self.k.shallow_clone(), v: self.v.shallow_clone(), mask: self.mask.shallow_clone() }
        }
    }

    impl std::fmt::Debug for Inputs {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "attention inputs {:?}", self.q.size())
        }
    }

    /// What the backward needs: the inputs, the output, the log-sum-exps, the scale and the
    /// dtype the gradients go back in.
    #[derive(Debug)]
    struct Saved {
        inputs: Inputs,
        out: tch::Tensor,
        lse: tch::Tensor,
        scale: f64,
        grad_kind: tch::Kind,
    }

    impl Clone for Saved {
        fn clone(&self) -> Saved {
            Saved { inputs: self.inputs.clone(), out: self.out.shallow_clone(), lse: self.lse.shallow_clone(), scale: self.scale, grad_kind: self.grad_kind }
        }
    }

    #[derive(Debug)]
    struct FusedAttention;

    impl Backward<LibTorch, 3> for FusedAttention {
        type State = Saved;

        fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let grad = grads.consume::<LibTorch>(&ops.node);
            let s = ops.state;
            let i = &s.inputs;
            let g = grad.tensor.to_kind(i.q.kind()).contiguous();
            let (dq, dk, dv) = tch::Tensor::internal_scaled_dot_product_flash_attention_for_cpu_backward(&g, &i.q, &i.k, &i.v, &s.out, &s.lse, 0.0, false, Some(&i.mask), s.scale);
            let [pq, pk, pv] = ops.parents;
            for (parent, d) in [(pq, dq), (pk, dk), (pv, dv)] {
                if let Some(node) = parent {
                    grads.register::<LibTorch>(node.id, TchTensor::new(d.to_kind(s.grad_kind)));
                }
            }
        }
    }

    type Tracked<C> = <Autodiff<LibTorch, C> as BackendTypes>::FloatTensorPrimitive;

    /// The fused kernel as one differentiable op, where the tensors are tracked libtorch CPU
    /// tensors under checkpoint strategy `C`.
    fn tracked<C: CheckpointStrategy>(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, mask: &Tensor<4, Bool>, scale: f64, kind: tch::Kind) -> Option<Tensor<4>>
    where
        burn::tensor::DispatchTensor: burn::backend::DispatchKindConversion<Autodiff<LibTorch, C>>,
    {
        let prim = |t: &Tensor<4>| -> Option<Tracked<C>> { t.clone().try_into_primitive::<Autodiff<LibTorch, C>>().ok() };
        let (qa, ka, va) = (prim(q)?, prim(k)?, prim(v)?);
        let mp = mask.clone().try_into_primitive::<Autodiff<LibTorch, C>>().ok()?;
        if !cpu(&qa.primitive().tensor) {
            return None;
        }
        let grad_kind = qa.primitive().tensor.kind();
        let inputs = Inputs::new(&qa.primitive().tensor, &ka.primitive().tensor, &va.primitive().tensor, &mp.tensor, kind);
        let (out, lse) = inputs.forward(scale);
        let result = TchTensor::new(out.to_kind(grad_kind));
        let output = match FusedAttention.prepare::<C>([qa.node(), ka.node(), va.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(Saved { inputs, out, lse, scale, grad_kind }, result),
            OpsKind::UnTracked(prep) => prep.finish(result),
        };
        Some(Tensor::from_primitive::<Autodiff<LibTorch, C>>(output))
    }
}

#[cfg(all(test, feature = "tch"))]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn seeded(shape: [usize; 4], salt: u64, device: &Device) -> Tensor<4> {
        let n: usize = shape.iter().product();
        let mut rng = crate::rng::Rng::new(salt);
        let data: Vec<f32> = (0..n).map(|_| rng.unit() as f32 * 2.0 - 1.0).collect();
        Tensor::from_data(TensorData::new(data, shape), device)
    }

    /// Causal, with the first row of sequence 0 left-padded twice (its first query sees only
    /// hidden keys) and a KV-cache-like offset of one past key.
    fn mask(device: &Device) -> Tensor<4, Bool> {
        let (t, s) = (4, 5);
        let mut hidden = vec![false; 2 * t * s];
        for b in 0..2 {
            for i in 0..t {
                for j in 0..s {
                    hidden[(b * t + i) * s + j] = j > i + 1 || (b == 0 && j < 2);
                }
            }
        }
        Tensor::from_data(TensorData::new(hidden, [2, 1, t, s]), device)
    }

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// Output and the gradients of sum(out * w) with respect to q, k and v. `w` is zero on the
    /// row whose keys are all hidden: as a padding position's in a loss, its output is
    /// arbitrary (the ops and the kernel both average its values, but differentiate that average
    /// differently).
    fn run(kernel: AttentionKernel, device: &Device) -> Vec<Vec<f32>> {
        let q = seeded([2, 3, 4, 8], 1, device).require_grad();
        let k = seeded([2, 3, 5, 8], 2, device).require_grad();
        let v = seeded([2, 3, 5, 8], 3, device).require_grad();
        let mut keep = vec![1f32; 2 * 3 * 4 * 8];
        for h in 0..3 {
            keep[h * 4 * 8..h * 4 * 8 + 8].fill(0.0);
        }
        let w = seeded([2, 3, 4, 8], 4, device) * Tensor::from_data(TensorData::new(keep, [2, 3, 4, 8]), device);
        let out = attention(q.clone(), k.clone(), v.clone(), mask(device), 0.35, kernel);
        let grads = (out.clone() * w).sum().backward();
        let g = |t: &Tensor<4>| values(t.grad(&grads).expect("tracked"));
        vec![values(out), g(&q), g(&k), g(&v)]
    }

    #[test]
    fn fused_kernel_matches_the_ops_forward_and_backward() {
        let rt = crate::backend::select(crate::recipe::types::BackendChoice::Tch, crate::backend::DeviceSpec::Cpu, Some(1)).unwrap();
        let ad = rt.device.clone().autodiff();
        let ops = run(AttentionKernel::Ops, &ad);
        assert!(ops.iter().flatten().all(|v| v.is_finite()));
        let f32_fused = run(AttentionKernel::Fused { dtype: FloatDType::F32 }, &ad);
        let bf16_fused = run(AttentionKernel::Fused { dtype: FloatDType::BF16 }, &ad);
        for (i, what) in ["output", "dq", "dk", "dv"].iter().enumerate() {
            let d = max_diff(&ops[i], &f32_fused[i]);
            assert!(d < 1e-5, "{what}: fused fp32 differs by {d}");
            let d = max_diff(&ops[i], &bf16_fused[i]);
            assert!(d < 3e-2 && d > 0.0, "{what}: fused bf16 differs by {d}");
        }
        // Under checkpointing, and without autodiff (the forward only), the same values.
        let ck = run(AttentionKernel::Fused { dtype: FloatDType::F32 }, &ad.clone().gradient_checkpointing());
        assert_eq!(ck, f32_fused);
        let plain = |kernel| values(attention(seeded([2, 3, 4, 8], 1, &rt.device), seeded([2, 3, 5, 8], 2, &rt.device), seeded([2, 3, 5, 8], 3, &rt.device), mask(&rt.device), 0.35, kernel));
        assert_eq!(plain(AttentionKernel::Fused { dtype: FloatDType::F32 }), f32_fused[0]);
        assert!(max_diff(&plain(AttentionKernel::Ops), &ops[0]) < 1e-6);
    }
}
