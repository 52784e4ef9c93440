//! Mixed precision: the frozen backbone's projection and head weights stored in bf16 (or f16),
//! their matmuls computed in that dtype (fp32 inputs cast on the way in, products cast back to
//! fp32); in bf16, as in fp32, attention runs in libtorch's fused CPU kernel, its softmax and
//! accumulation in fp32 and its two products in fp32 too unless `[backbone] attention = "bf16"`
//! asks for the frozen dtype ([`attention_kernel`]); the embeddings, norms, LoRA factors,
//! optimizer state, losses, softmaxes and every reduction that ranks candidates or sums
//! log-probabilities stay fp32.
//!
//! `dtype = "auto"` (`[backbone]`) picks bf16 where the device runs it fast: a CUDA device, or a
//! CPU whose flags name a bf16 matrix unit (`amx_bf16`, `avx512_bf16`) with the libtorch backend;
//! fp32 everywhere else. It is resolved when the plan is compiled, so the choice is part of every
//! stage key (a bf16 adapter is another artifact than an fp32 one).

use burn::tensor::{DType, FloatDType, Tensor};

use super::attention::AttentionKernel;
use crate::backend::{BackendKind, DeviceSpec};
use crate::recipe::types::{AttentionDtype, BackendChoice, Dtype};

/// How a loaded backbone computes: its frozen weights' dtype (resolved: not `auto`) and, where
/// that is bf16, attention's products' dtype. Built by [`Precision::new`], which resolves
/// `attention` once for the dtype; everything downstream (stage keys, the loader) reads it as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Precision {
    pub dtype: Dtype,
    pub attention: AttentionDtype,
}

impl Precision {
    /// `dtype` resolved; `attention` as asked, resolved for it ([`resolve_attention`]).
    pub fn new(dtype: Dtype, attention: AttentionDtype) -> Precision {
        Precision { dtype, attention: resolve_attention(dtype, attention) }
    }

    /// Everything in fp32.
    pub const F32: Precision = Precision { dtype: Dtype::F32, attention: AttentionDtype::F32 };
}

/// The tensor dtype the frozen weights are stored in.
pub fn float_dtype(d: Dtype) -> FloatDType {
    match d {
        Dtype::F16 => FloatDType::F16,
        Dtype::Bf16 => FloatDType::BF16,
        Dtype::F32 | Dtype::Auto => FloatDType::F32,
    }
}

/// The attention kernel for frozen weights stored in `frozen`: libtorch's fused kernel where it
/// has one (fp32, bf16), its products in fp32, or in bf16 when the weights are bf16 and
/// `attention` asks for it; the ops otherwise (f16).
///
/// Why fp32 products by default under bf16 weights: q, k and v leave the projections in fp32
/// anyway, and on the processors measured (AMD Zen 4, without AMX) libtorch's CPU kernel hands
/// its bf16 blocks to MKL, which converts them to fp32 there; the fp32 products trained ~9%
/// faster and score at least as fast (BENCHMARKS.md). A GPU computes attention from ops on the
/// fp32 q, k, v, i.e. in fp32, whatever `attention` says.
pub fn attention_kernel(frozen: DType, attention: AttentionDtype) -> AttentionKernel {
    match (frozen, attention) {
        (DType::BF16, AttentionDtype::Bf16) => AttentionKernel::Fused { dtype: FloatDType::BF16 },
        (DType::F32 | DType::BF16, _) => AttentionKernel::Fused { dtype: FloatDType::F32 },
        _ => AttentionKernel::Ops,
    }
}

/// `attention` as it applies to frozen weights in `dtype` (resolved): bf16 products only with
/// bf16 weights, f32 otherwise.
pub fn resolve_attention(dtype: Dtype, attention: AttentionDtype) -> AttentionDtype {
    if dtype == Dtype::Bf16 { attention } else { AttentionDtype::F32 }
}

/// What a stage key records of how the backbone computes, beyond the dtype: the attention kernel
/// where it is fused, and how an adapter's term is rounded ([`super::lora::LoraLinear::forward`]).
/// A stage computed another way is other work (its adapter, ranking or coefficients differ in
/// their last digits), so a change in how either computes must change this text. The flex backend,
/// which always builds attention from ops, shares the keys (as it shares them for its own matrix
/// products).
///
/// The texts predate `attention` and are kept for the kernels that did not change (fp32 weights,
/// bf16 weights with bf16 attention products), so that their stage keys, and the cached stages and
/// references computed under them, stay valid; bf16 weights with fp32 products have their own.
pub fn kernels_key(p: Precision) -> &'static str {
    let frozen = float_dtype(p.dtype);
    match attention_kernel(frozen.into(), p.attention) {
        AttentionKernel::Ops => EVERY_DTYPE,
        AttentionKernel::Fused { dtype } if dtype == frozen => "attention fused (libtorch CPU kernel); lora: s (x A) B, scaled at rank r",
        AttentionKernel::Fused { .. } => "attention fused (libtorch CPU kernel), its products in f32; lora: s (x A) B, scaled at rank r",
    }
}

/// The part of [`kernels_key`] that every dtype shares.
const EVERY_DTYPE: &str = "lora: s (x A) B, scaled at rank r";

/// `x @ w` for a weight `w` stored in any float dtype: `x` is cast to `w`'s dtype, the product back
/// to `x`'s (libtorch's bf16 kernels accumulate in fp32). Same dtypes: a plain matmul.
pub fn matmul_mixed<const D: usize>(x: Tensor<D>, w: Tensor<D>) -> Tensor<D> {
    let (xd, wd) = (x.dtype(), w.dtype());
    if xd == wd {
        x.matmul(w)
    } else {
        x.cast(FloatDType::from(wd)).matmul(w).cast(FloatDType::from(xd))
    }
}

/// `x @ w` for a 2-D weight `w` [in, out] and `x` [.., in] of any rank. In mixed precision the
/// leading dimensions are folded into one (a single GEMM, as `torch.nn.functional.linear` does, rather than a batched
/// one that packs the weight once per batch entry: oneDNN's bf16 kernels reorder the weight on
/// every call), in mixed precision as [`matmul_mixed`].
pub fn linear<const D: usize>(x: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    if x.dtype() == w.dtype() {
        // Full precision: batched, as always (folding gained nothing measurable; BENCHMARKS.md).
        return x.matmul(w.unsqueeze());
    }
    linear_folded(x, w)
}

/// [`linear`] with the leading dimensions always folded into one GEMM.
pub fn linear_folded<const D: usize>(x: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    let dims = x.dims();
    let k = dims[D - 1];
    let rows: usize = dims[..D - 1].iter().product();
    let out_dim = w.dims()[1];
    let y = matmul_mixed(x.reshape([rows, k]), w);
    let mut out = dims;
    out[D - 1] = out_dim;
    y.reshape(out)
}

/// Whether a tensor is stored in fp32.
pub fn is_f32<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32
}

/// The CPU flags (from `/proc/cpuinfo`) of units that run bf16 matmuls faster than fp32.
pub fn cpu_bf16_flags() -> Vec<String> {
    let mut out: Vec<String> = crate::cpuinfo::flags().into_iter().filter(|f| matches!(f.as_str(), "amx_bf16" | "amx_tile" | "avx512_bf16")).collect();
    out.sort();
    out
}

/// What `dtype = "auto"` means for a recipe's backend and device on this machine; any other
/// dtype is kept as written.
pub fn resolve(d: Dtype, backend: BackendChoice, device: &str) -> Dtype {
    if d != Dtype::Auto {
        return d;
    }
    let device: DeviceSpec = device.parse().unwrap_or(DeviceSpec::Auto);
    let tch = crate::backend::compiled_backends().contains(&BackendKind::Tch) && backend != BackendChoice::Flex;
    let cuda = match device {
        DeviceSpec::Cuda(_) => true,
        DeviceSpec::Auto => tch && crate::backend::cuda_available(),
        DeviceSpec::Cpu => false,
    };
    if tch && (cuda || cpu_has_bf16_unit()) { Dtype::Bf16 } else { Dtype::F32 }
}

/// Whether this processor has a bf16 matrix unit (`amx_bf16` or `avx512_bf16`).
pub fn cpu_has_bf16_unit() -> bool {
    cpu_bf16_flags().iter().any(|f| f == "amx_bf16" || f == "avx512_bf16")
}

/// The run log's warning when a recipe asks for bf16 frozen weights on a CPU without a bf16
/// matrix unit, where libtorch's bf16 kernels run far slower than its fp32 ones (BENCHMARKS.md,
/// "bf16 on a CPU without a bf16 unit").
pub fn bf16_without_unit_warning(dtype: Dtype, on_cpu: bool, has_unit: bool) -> Option<String> {
    (dtype == Dtype::Bf16 && on_cpu && !has_unit).then(|| {
        "warning: `[backbone] dtype = \"bf16\"` on a CPU without a bf16 matrix unit (no `amx_bf16` or `avx512_bf16` in /proc/cpuinfo): libtorch's bf16 kernels ran a training step over 40 times slower than fp32 on such a CPU (BENCHMARKS.md, \"bf16 on a CPU without a bf16 unit\"); `dtype = \"auto\"` would pick fp32 on this machine (other stage keys, results that differ in their last digits)".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn bf16_without_a_unit_is_warned_on_cpu_only() {
        assert!(bf16_without_unit_warning(Dtype::Bf16, true, false).is_some_and(|w| w.contains("without a bf16 matrix unit")));
        assert_eq!(bf16_without_unit_warning(Dtype::Bf16, true, true), None);
        assert_eq!(bf16_without_unit_warning(Dtype::Bf16, false, false), None);
        assert_eq!(bf16_without_unit_warning(Dtype::F32, true, false), None);
    }

    #[test]
    fn mixed_matmul_is_close_to_fp32_and_returns_fp32() {
        let device = crate::backend::select(BackendChoice::Auto, DeviceSpec::Cpu, Some(1)).unwrap().device;
        let x: Vec<f32> = (0..64).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
        let w: Vec<f32> = (0..128).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.05).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [4, 16]), &device);
        let w = Tensor::<2>::from_data(TensorData::new(w, [16, 8]), &device);
        let exact = matmul_mixed(x.clone(), w.clone()).into_data().try_to_vec::<f32>().unwrap();
        let wb = w.cast(FloatDType::BF16);
        assert!(!is_f32(&wb));
        let out = matmul_mixed(x, wb);
        assert_eq!(out.dtype(), DType::F32);
        let mixed = out.into_data().try_to_vec::<f32>().unwrap();
        let scale = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = exact.iter().zip(&mixed).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // bf16 keeps 8 bits of mantissa: inputs rounded to ~0.4%, accumulated in fp32.
        assert!(err <= 0.01 * scale, "max error {err} against a scale of {scale}");
        assert!(err > 0.0, "the bf16 path was not taken");
    }

    #[test]
    fn folded_linear_equals_the_batched_product() {
        let device = crate::backend::select(BackendChoice::Auto, DeviceSpec::Cpu, Some(1)).unwrap().device;
        let x: Vec<f32> = (0..2 * 3 * 4).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
        let w: Vec<f32> = (0..4 * 5).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.05).collect();
        let x = Tensor::<3>::from_data(TensorData::new(x, [2, 3, 4]), &device);
        let w = Tensor::<2>::from_data(TensorData::new(w, [4, 5]), &device);
        let batched = x.clone().matmul(w.clone().unsqueeze()).into_data().try_to_vec::<f32>().unwrap();
        let folded = linear_folded(x.clone(), w.clone());
        assert_eq!(folded.dims(), [2, 3, 5]);
        let folded = folded.into_data().try_to_vec::<f32>().unwrap();
        assert!(batched.iter().zip(&folded).all(|(a, b)| (a - b).abs() < 1e-6), "{batched:?} vs {folded:?}");
        // Same dtypes: `linear` is the batched product itself, bit for bit.
        assert_eq!(linear(x, w).into_data().try_to_vec::<f32>().unwrap(), batched);
    }

    #[test]
    fn keys_name_the_attention_kernel_wherever_it_is_fused() {
        // fp32 and bf16 attention run fused on libtorch's CPU, so their keys name the kernel: no
        // artifact computed with attention from ops is served for them. f16 keeps the ops. Every
        // key names how an adapter's term is rounded.
        use AttentionDtype as A;
        let fused = |dtype| AttentionKernel::Fused { dtype };
        for (d, dt, a, products) in [
            (Dtype::F32, FloatDType::F32, A::F32, FloatDType::F32),
            (Dtype::Bf16, FloatDType::BF16, A::Bf16, FloatDType::BF16),
            (Dtype::Bf16, FloatDType::BF16, A::F32, FloatDType::F32),
        ] {
            assert!(kernels_key(Precision::new(d, a)).contains("fused") && kernels_key(Precision::new(d, a)).ends_with(EVERY_DTYPE));
            assert_eq!(attention_kernel(dt.into(), a), fused(products));
        }
        assert_eq!(kernels_key(Precision::new(Dtype::F16, A::F32)), EVERY_DTYPE);
        assert_eq!(attention_kernel(DType::F16, A::F32), AttentionKernel::Ops);
        // The two ways of bf16 weights have their own keys (the dtype tells the others apart); the
        // texts of the ways that predate `attention` are unchanged (the stage keys of fp32 runs,
        // and of bf16 runs with bf16 products, stay).
        assert_ne!(kernels_key(Precision::new(Dtype::Bf16, A::F32)), kernels_key(Precision::new(Dtype::Bf16, A::Bf16)));
        let before = "attention fused (libtorch CPU kernel); lora: s (x A) B, scaled at rank r";
        assert_eq!(kernels_key(Precision::new(Dtype::F32, A::F32)), before);
        assert_eq!(kernels_key(Precision::new(Dtype::Bf16, A::Bf16)), before);
        // bf16 products apply to bf16 weights only: with fp32 weights the key is fp32's.
        assert_eq!(kernels_key(Precision::new(Dtype::F32, A::Bf16)), before);
        assert_eq!(resolve_attention(Dtype::F32, A::Bf16), A::F32);
    }

    #[test]
    fn explicit_dtypes_are_kept_and_flex_is_always_fp32() {
        assert_eq!(resolve(Dtype::Bf16, BackendChoice::Flex, "cpu"), Dtype::Bf16);
        assert_eq!(resolve(Dtype::F32, BackendChoice::Tch, "cuda"), Dtype::F32);
        assert_eq!(resolve(Dtype::Auto, BackendChoice::Flex, "cpu"), Dtype::F32);
        let flags = cpu_bf16_flags();
        let want = if crate::backend::compiled_backends().contains(&BackendKind::Tch) && flags.iter().any(|f| f != "amx_tile") { Dtype::Bf16 } else { Dtype::F32 };
        assert_eq!(resolve(Dtype::Auto, BackendChoice::Auto, "cpu"), want, "flags {flags:?}");
    }
}
