//! The backbone as model stages load it: from the file their parameters name (a fetched asset or
//! a local path), with its tokenizer and the prompt encoding of their parameters.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use burn::tensor::Device;

use super::context::{StageContext, StageError};
use crate::model::ModelError;
use crate::model::load::{BackboneRef, TextModel, load_text_model_as};
use crate::model::precision::Precision;
use crate::plan::Role;
use crate::prompt::{PromptFormat, Prompter};
use crate::backend::{DeviceSpec, Runtime};
use crate::recipe::types::Dtype;

/// Refuse a backbone dtype the runtime cannot compute in (or only very slowly).
pub fn check_dtype(dtype: Dtype, runtime: &Runtime) -> Result<(), StageError> {
    let refuse = |why: &str| Err(StageError::Failed(format!("`[backbone] dtype = \"{}\"` {why} (this run: {})", crate::recipe::types::serde_name(&dtype), runtime.describe())));
    match dtype {
        Dtype::F32 => Ok(()),
        Dtype::Auto => refuse("should have been resolved when the plan was compiled"),
        Dtype::F16 if runtime.device_spec == DeviceSpec::Cpu => refuse("is for CUDA devices: use `bf16` on a CPU"),
        _ => Ok(()),
    }
}

/// A loaded backbone and the prompt encoding every model stage shares.
pub struct StageModel {
    /// The model and tokenizer (its chat template moved into `prompter`).
    pub text: TextModel,
    pub prompter: Prompter,
}

/// Load `backbone` on `device` (the runtime's, or its autodiff version for training).
pub fn load(ctx: &StageContext<'_>, backbone: &BackboneRef, format: &PromptFormat, device: &Device) -> Result<StageModel, StageError> {
    let path = ctx.source_file(&backbone.source, Role::Backbone)?;
    check_dtype(backbone.dtype, ctx.runtime)?;
    let (mut text, reused) = LAST.load(&path, device, backbone.precision())?;
    if reused {
        (ctx.log)(&format!("{}: backbone {} as the previous stage loaded it", ctx.stage.id, path.display()));
    }
    let prompter = Prompter::new(format, text.chat.take());
    Ok(StageModel { text, prompter })
}

/// What makes a loaded backbone the one a stage asks for.
#[derive(PartialEq)]
struct LoadKey {
    path: PathBuf,
    /// [`stamp`]: a backbone rewritten meanwhile is loaded again.
    stamp: Option<(u64, SystemTime)>,
    precision: Precision,
    /// The hardware (`Device`'s equality ignores autodiff), whether autodiff wraps it, and with
    /// which checkpointing.
    device: Device,
    autodiff: bool,
    checkpointing: String,
}

/// The backbone this process loaded last, for the next stage that asks for the same one: a local
/// run's evaluation stages load one backbone after another (SmolLM2-135M: ~3.5 s of a ~10 s stage
/// on a 2-core CPU, ~5 s of ~5.5 on an H200). One entry, emptied before any other load, so a run
/// never holds two backbones at once. Stages get clones, which share the weights' storage; no
/// stage changes a weight in place (folding an adapter or casting makes new tensors, and the
/// backends only reuse storage that nothing else holds).
struct LastLoaded(Mutex<Option<(LoadKey, TextModel)>>);

static LAST: LastLoaded = LastLoaded(Mutex::new(None));

impl LastLoaded {
    /// [`load_text_model_as`], or a clone of the last load when it was the same; true when reused.
    fn load(&self, path: &Path, device: &Device, precision: Precision) -> Result<(TextModel, bool), ModelError> {
        let key = LoadKey {
            path: path.to_path_buf(),
            stamp: stamp(path),
            precision,
            device: device.clone(),
            autodiff: device.is_autodiff(),
            checkpointing: format!("{:?}", device.gradient_checkpointing_strategy()),
        };
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, model)) = last.as_ref().filter(|(k, _)| *k == key) {
            return Ok((model.clone(), true));
        }
        *last = None;
        let model = load_text_model_as(path, device, precision)?;
        if key.stamp.is_some() {
            *last = Some((key, model.clone()));
        }
        Ok((model, false))
    }
}

/// Length and latest modification time of a model file, or of the files of a model directory;
/// `None` when they cannot be read (such a backbone is not kept).
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let of = |m: std::fs::Metadata| Some((m.len(), m.modified().ok()?));
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return of(meta);
    }
    let mut total = (0, SystemTime::UNIX_EPOCH);
    for entry in std::fs::read_dir(path).ok()? {
        let (len, modified) = of(entry.ok()?.metadata().ok()?)?;
        total = (total.0 + len, total.1.max(modified));
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(m: &TextModel) -> Vec<f32> {
        m.backbone.model.embed_tokens.val().into_data().try_to_vec().unwrap()
    }

    #[test]
    fn the_last_backbone_is_reused_unchanged_by_what_a_stage_does_to_its_copy() {
        let dir = std::env::temp_dir().join(format!("rc-shared-backbone-{}", std::process::id()));
        crate::model::tiny::write_tiny_chat_model(&dir, crate::model::tiny::TinySpec::default(), 7).unwrap();
        let device = crate::backend::select(crate::recipe::types::BackendChoice::Auto, DeviceSpec::Cpu, None).unwrap().device;
        let last = LastLoaded(Mutex::new(None));
        let load_shared = |device: &Device, dtype| last.load(&dir, device, dtype);
        let (mut first, reused) = load_shared(&device, Precision::F32).unwrap();
        assert!(!reused);
        let original = weights(&first);
        // What stages do to their copy: new weights, new adapters; the shared one keeps its own.
        first.backbone.model.embed_tokens = burn::module::Param::from_tensor(first.backbone.model.embed_tokens.val().mul_scalar(2.0));
        let (second, reused) = load_shared(&device, Precision::F32).unwrap();
        assert!(reused);
        assert_eq!(weights(&second), original);
        assert_ne!(weights(&first), original);
        // Another dtype or device is another backbone: loaded afresh, and the last one dropped.
        let (_, reused) = load_shared(&device.clone().autodiff(), Precision::F32).unwrap();
        assert!(!reused);
        let (_, reused) = load_shared(&device.clone().autodiff().gradient_checkpointing(), Precision::F32).unwrap();
        assert!(!reused);
        let (_, reused) = load_shared(&device, Precision::F32).unwrap();
        assert!(!reused);
        // So is another way of computing attention, and the model computes it as asked.
        use crate::recipe::types::AttentionDtype;
        let bf16 = |attention| Precision::new(Dtype::Bf16, attention);
        let (m, reused) = load_shared(&device, bf16(AttentionDtype::Bf16)).unwrap();
        assert!(!reused);
        assert_eq!(m.backbone.model.attention, AttentionDtype::Bf16);
        let (m, reused) = load_shared(&device, bf16(AttentionDtype::F32)).unwrap();
        assert!(!reused);
        assert_eq!(m.backbone.model.attention, AttentionDtype::F32);
        // A model directory whose files change is loaded again.
        let config = dir.join("config.json");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, format!("{text}\n")).unwrap();
        let (_, reused) = load_shared(&device, Precision::F32).unwrap();
        assert!(!reused);
        std::fs::remove_dir_all(&dir).ok();
    }
}
