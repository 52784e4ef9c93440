//! The trainable LoRA factors of one adapter on the host: initialized as PEFT does (A
//! Kaiming-uniform, B zero), attached to the model as the only parameters that take gradients,
//! laid out flat for the optimizer (which keeps them on the training device between steps), and
//! written in PEFT's format.

use burn::module::Param;
use burn::tensor::{Gradients, Tensor, TensorData};

use crate::rng::Rng;
use crate::model::lora::{LoraFactors, Proj, transpose};
use crate::model::peft::{LoraPair, PeftAdapter, PeftConfig};
use crate::model::weights::HostTensor;
use crate::model::CausalLm;
use crate::recipe::resolve::LoraConfig;
use crate::recipe::types::LoraTarget;

pub fn proj_of(t: LoraTarget) -> Proj {
    match t {
        LoraTarget::QProj => Proj::Q,
        LoraTarget::KProj => Proj::K,
        LoraTarget::VProj => Proj::V,
        LoraTarget::OProj => Proj::O,
        LoraTarget::GateProj => Proj::Gate,
        LoraTarget::UpProj => Proj::Up,
        LoraTarget::DownProj => Proj::Down,
    }
}

/// One adapted module's factors in burn's layout: `a` [in, r], `b` [r, out], row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleFactors {
    pub layer: usize,
    pub proj: Proj,
    pub d_in: usize,
    pub d_out: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// Every adapted module of one adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraState {
    pub rank: usize,
    pub alpha: f64,
    pub rslora: bool,
    pub modules: Vec<ModuleFactors>,
}

impl LoraState {
    /// Fresh factors for `cfg`'s target modules of `model`: A ~ U(-1/sqrt(in), 1/sqrt(in))
    /// (PEFT's `kaiming_uniform_(a=sqrt(5))`), B = 0, drawn from `seed` per module.
    pub fn init(model: &dyn CausalLm, cfg: &LoraConfig, seed: u64) -> LoraState {
        let targets: Vec<Proj> = cfg.targets.iter().copied().map(proj_of).collect();
        let r = cfg.rank as usize;
        let modules = model
            .projections()
            .into_iter()
            .filter(|(_, p, _)| targets.contains(p))
            .map(|(layer, proj, lin)| {
                let (d_in, d_out) = (lin.d_in(), lin.d_out());
                let bound = 1.0 / (d_in as f64).sqrt();
                let mut rng = Rng::derive(seed, &["lora-init", &layer.to_string(), proj.hf_name()]);
                let a = (0..d_in * r).map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32).collect();
                ModuleFactors { layer, proj, d_in, d_out, a, b: vec![0.0; r * d_out] }
            })
            .collect();
        LoraState { rank: r, alpha: cfg.alpha, rslora: cfg.rslora, modules }
    }

    pub fn scale(&self) -> f64 {
        if self.rslora { self.alpha / (self.rank as f64).sqrt() } else { self.alpha / self.rank as f64 }
    }

    pub fn num_params(&self) -> usize {
        self.modules.iter().map(|m| m.a.len() + m.b.len()).sum()
    }

    /// Every factor in one vector: each module's `a`, then its `b`, in module order (the layout of
    /// [`Self::attach_flat`], [`Self::grads_flat`] and the optimizer's state).
    pub fn flatten(&self) -> Vec<f32> {
        let mut flat = Vec::with_capacity(self.num_params());
        for m in &self.modules {
            flat.extend_from_slice(&m.a);
            flat.extend_from_slice(&m.b);
        }
        flat
    }

    /// Read every factor from `flat`, laid out as [`Self::flatten`] writes them.
    pub fn fill_from_flat(&mut self, flat: &[f32]) {
        unflatten_into(flat, self.modules.iter_mut().flat_map(|m| [&mut m.a, &mut m.b]));
    }

    /// Replace the adapters of `model`'s target modules by these factors. With `trainable`, on an
    /// autodiff device, they require gradients (and `dropout` applies to their input); otherwise
    /// nothing is tracked, so a forward pass records no graph. The base stays frozen.
    pub fn attach(&self, model: &mut dyn CausalLm, dropout: f64, trainable: bool) {
        let inner = model.device().inner();
        let flat = Tensor::<1>::from_data(TensorData::new(self.flatten(), [self.num_params()]), &inner);
        self.attach_flat(model, flat, dropout, trainable);
    }

    /// [`Self::attach`] with the factors given as one flat tensor (the layout of
    /// [`Self::flatten`]) already on the model's device, without autodiff: each factor is a view
    /// into it, so nothing goes through the host (on a GPU every transfer waits for the device).
    pub fn attach_flat(&self, model: &mut dyn CausalLm, flat: Tensor<1>, dropout: f64, trainable: bool) {
        assert_eq!(flat.dims(), [self.num_params()], "a flat LoRA state of another size");
        let device = model.device();
        // The leaves carry the model's autodiff context (and its checkpointing strategy).
        let flat = match device.gradient_checkpointing_strategy() {
            Some(strategy) => flat.autodiff().with_gradient_checkpointing_strategy(strategy),
            None => flat,
        };
        let r = self.rank;
        let scale = self.scale();
        let mut offset = 0;
        let mut piece = |shape: [usize; 2]| {
            let n = shape[0] * shape[1];
            let t = flat.clone().narrow(0, offset, n).reshape(shape);
            offset += n;
            Param::from_tensor(t).set_require_grad(trainable)
        };
        let mut it = self.modules.iter().peekable();
        for (layer, proj, lin) in model.projections_mut() {
            lin.adapters.clear();
            let Some(m) = it.peek().filter(|m| m.layer == layer && m.proj == proj) else { continue };
            let (a, b) = (piece([m.d_in, r]), piece([r, m.d_out]));
            lin.adapters.push(LoraFactors::new(a, b, scale, dropout));
            it.next();
        }
    }

    /// The gradients of the attached factors (after `backward`) as one flat tensor on the model's
    /// device without autodiff (the layout of [`Self::flatten`]), concatenated there, for the
    /// optimizer on the same device: on a GPU, reading back each factor's gradient (420 for r16
    /// on every linear layer of SmolLM2-135M) waits for the device each time. A factor the loss
    /// does not reach has zeros.
    pub fn grads_flat(&self, model: &dyn CausalLm, grads: &Gradients) -> Tensor<1> {
        let inner = model.device().inner();
        let mut parts: Vec<Tensor<1>> = Vec::with_capacity(2 * self.modules.len());
        let mut k = 0;
        for (layer, proj, lin) in model.projections() {
            let Some(m) = self.modules.get(k).filter(|m| m.layer == layer && m.proj == proj) else { continue };
            let f = &lin.adapters[0];
            for (t, n) in [(f.a.val(), m.a.len()), (f.b.val(), m.b.len())] {
                parts.push(t.grad(grads).map_or_else(|| Tensor::zeros([n], &inner), |g| g.reshape([n])));
            }
            k += 1;
        }
        assert_eq!(k, self.modules.len(), "the attached adapters are not this state's modules");
        if parts.is_empty() {
            return Tensor::zeros([0], &inner);
        }
        Tensor::cat(parts, 0)
    }

    /// The adapter in PEFT's format.
    pub fn to_peft(&self, base_model: Option<String>) -> PeftAdapter {
        let r = self.rank;
        let mut targets: Vec<Proj> = self.modules.iter().map(|m| m.proj).collect();
        targets.sort();
        targets.dedup();
        let config = PeftConfig { r, alpha: self.alpha, use_rslora: self.rslora, targets, rank_pattern: Default::default(), alpha_pattern: Default::default(), base_model };
        let modules = self
            .modules
            .iter()
            .map(|m| {
                let a = HostTensor { shape: vec![r, m.d_in], data: transpose(m.d_in, r, &m.a) };
                let b = HostTensor { shape: vec![m.d_out, r], data: transpose(r, m.d_out, &m.b) };
                ((m.layer, m.proj), LoraPair { a, b })
            })
            .collect();
        PeftAdapter { config, modules }
    }
}

/// Copy consecutive slices of `flat` into `parts`, in order; `flat` holds exactly their values
/// (the layout of [`LoraState::flatten`] and of the optimizer's flat moments).
pub fn unflatten_into<'a>(flat: &[f32], parts: impl IntoIterator<Item = &'a mut Vec<f32>>) {
    let mut offset = 0;
    for v in parts {
        let n = v.len();
        v.copy_from_slice(&flat[offset..offset + n]);
        offset += n;
    }
    assert_eq!(offset, flat.len(), "a flat state of another size");
}
