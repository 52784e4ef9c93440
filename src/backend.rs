//! Backend and device selection, at run time, behind burn's device dispatch.
//!
//! Two backends can be compiled in: burn's pure-Rust `flex` (default build) and libtorch through
//! burn-tch (cargo feature `tch`). A recipe (or `--device` / `--backend`) picks one at run time.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::recipe::types::BackendChoice;

/// Where tensors live, as written in recipes and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse::<usize>().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device `{s}`: expected `auto`, `cpu`, `cuda` or `cuda:N`")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// A backend compiled into this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Flex,
    Tch,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Flex => "flex",
            BackendKind::Tch => "tch",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    #[error("backend `{0}` is not compiled into this binary (build with `--features {0}`; see README)")]
    NotCompiled(BackendKind),
    #[error("no backend is compiled into this binary (enable feature `flex` or `tch`)")]
    NoBackend,
    #[error("device `{0}` needs the libtorch backend (`--backend tch`)")]
    CudaNeedsTch(DeviceSpec),
    #[error("device `{0}` was requested, but libtorch sees no CUDA device")]
    NoCuda(DeviceSpec),
}

/// The backend and device an experiment runs on.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub backend: BackendKind,
    pub device_spec: DeviceSpec,
    pub device: Device,
}

impl Runtime {
    pub fn describe(&self) -> String {
        format!("{} on {}", self.backend, self.device_spec)
    }
}

/// Backends compiled into this binary, preferred first.
pub fn compiled_backends() -> Vec<BackendKind> {
    let mut out = Vec::new();
    if cfg!(feature = "tch") {
        out.push(BackendKind::Tch);
    }
    if cfg!(feature = "flex") {
        out.push(BackendKind::Flex);
    }
    out
}

/// Decide the backend and concrete device; `threads` caps CPU threads (best before any tensor work).
pub fn select(choice: BackendChoice, device: DeviceSpec, threads: Option<u32>) -> Result<Runtime, BackendError> {
    let compiled = compiled_backends();
    let backend = match choice {
        BackendChoice::Auto => match device {
            DeviceSpec::Cuda(_) => BackendKind::Tch,
            _ => *compiled.first().ok_or(BackendError::NoBackend)?,
        },
        BackendChoice::Flex => BackendKind::Flex,
        BackendChoice::Tch => BackendKind::Tch,
    };
    if !compiled.contains(&backend) {
        return Err(BackendError::NotCompiled(backend));
    }
    if let Some(n) = threads {
        set_threads(backend, n);
    }
    let (device_spec, device) = match backend {
        BackendKind::Flex => match device {
            DeviceSpec::Cuda(_) => return Err(BackendError::CudaNeedsTch(device)),
            _ => (DeviceSpec::Cpu, flex_device()),
        },
        BackendKind::Tch => tch_device(device)?,
    };
    Ok(Runtime { backend, device_spec, device })
}

#[cfg(feature = "flex")]
fn flex_device() -> Device {
    Device::flex()
}
#[cfg(not(feature = "flex"))]
fn flex_device() -> Device {
    unreachable!("checked by compiled_backends")
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated upstream but is the libtorch route in burn 0.22
fn tch_device(spec: DeviceSpec) -> Result<(DeviceSpec, Device), BackendError> {
    let cuda = tch::Cuda::is_available();
    match spec {
        DeviceSpec::Auto if cuda => Ok((DeviceSpec::Cuda(0), Device::libtorch_cuda(0))),
        DeviceSpec::Auto | DeviceSpec::Cpu => Ok((DeviceSpec::Cpu, Device::libtorch())),
        DeviceSpec::Cuda(i) if cuda && (i as i64) < tch::Cuda::device_count() => Ok((spec, Device::libtorch_cuda(i))),
        DeviceSpec::Cuda(_) => Err(BackendError::NoCuda(spec)),
    }
}
#[cfg(not(feature = "tch"))]
fn tch_device(_spec: DeviceSpec) -> Result<(DeviceSpec, Device), BackendError> {
    Err(BackendError::NotCompiled(BackendKind::Tch))
}

/// Whether `device` (or the device under its autodiff) is an accelerator: a libtorch device other
/// than its CPU (flex runs on the CPU only).
#[allow(deprecated)] // burn-tch is deprecated upstream but is the libtorch route in burn 0.22
pub fn is_gpu(device: &Device) -> bool {
    let device = device.clone().inner();
    #[cfg(feature = "flex")]
    if device == flex_device() {
        return false;
    }
    #[cfg(feature = "tch")]
    {
        device != Device::libtorch()
    }
    #[cfg(not(feature = "tch"))]
    {
        false
    }
}

/// Whether libtorch sees a CUDA device (false without the `tch` backend).
pub fn cuda_available() -> bool {
    #[cfg(feature = "tch")]
    {
        tch::Cuda::is_available()
    }
    #[cfg(not(feature = "tch"))]
    {
        false
    }
}

fn set_threads(backend: BackendKind, n: u32) {
    match backend {
        // rayon reads this when its global pool starts (the first parallel kernel).
        BackendKind::Flex => {
            if std::env::var_os("RAYON_NUM_THREADS").is_none() {
                // SAFETY: called while the process is still single-threaded (before any tensor work).
                unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
            }
        }
        #[cfg(feature = "tch")]
        BackendKind::Tch => tch::set_num_threads(n as i32),
        #[cfg(not(feature = "tch"))]
        BackendKind::Tch => {}
    }
}

/// The values of an f32 tensor on the host, in row-major order. Panics on another dtype (a bug:
/// every tensor read this way is computed in f32). One copy through `reccocktail_host`, at
/// opt-level 3 in every profile: burn's checked conversion is instantiated here at opt-level 1 and
/// took 3% of a small training step reading the gradients back.
pub fn host_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    let data = t.into_data();
    assert_eq!(data.dtype(), burn::tensor::DType::F32, "host_f32 of a {:?} tensor", data.dtype());
    reccocktail_host::f32s_from_ne_bytes(data.as_bytes())
}

/// A tiny forward + backward on the device: proves the backend works end to end.
/// Returns (value of sum(x @ x), gradient sum) for x = [[1, 2], [3, 4]]: (54, 40).
pub fn smoke_test(device: &Device) -> (f32, f32) {
    use burn::tensor::{Tensor, TensorData};
    let ad = device.clone().autodiff();
    let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), &ad).require_grad();
    let y = x.clone().matmul(x.clone()).sum();
    let value = y.clone().into_scalar::<f32>();
    let grads = y.backward();
    let g = x.grad(&grads).expect("x requires grad").sum().into_scalar::<f32>();
    (value, g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda:3".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(3)));
        assert!("gpu".parse::<DeviceSpec>().unwrap_err().contains("expected `auto`"));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn every_compiled_backend_computes_and_differentiates() {
        for b in compiled_backends() {
            let choice = if b == BackendKind::Flex { BackendChoice::Flex } else { BackendChoice::Tch };
            let rt = select(choice, DeviceSpec::Cpu, Some(1)).unwrap();
            assert_eq!(rt.backend, b);
            assert_eq!(smoke_test(&rt.device), (54.0, 40.0), "backend {b}");
        }
    }

    #[test]
    fn cuda_on_flex_is_refused() {
        if compiled_backends().contains(&BackendKind::Flex) {
            assert_eq!(select(BackendChoice::Flex, DeviceSpec::Cuda(0), None).unwrap_err(), BackendError::CudaNeedsTch(DeviceSpec::Cuda(0)));
        }
    }
}
