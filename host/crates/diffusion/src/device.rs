//! Device selection: wgpu first when it finds a hardware adapter (discrete, integrated or
//! virtual GPU), the pure-Rust `flex` CPU backend otherwise.
//!
//! Invariants: selection runs once per process (burn's wgpu runtime can be initialized only
//! once) and is cached; `EASEL_SD_DEVICE=flex` or `=wgpu` forces a choice (`wgpu` then
//! fails loudly instead of falling back, and accepts a software adapter). A software
//! adapter such as Mesa's lavapipe is not chosen by default: on the 2-core build box its
//! first full-size 256x256 UNet call fails to allocate a 145 MiB buffer (after 12 minutes
//! of autotuning when burn's autotune was on, after 20 s now), where flex takes 1.3-2.5 s a
//! step (docs/BENCHMARKS.md). The description names the backend and adapter.
//!
//! Precision: flex always computes in f32 (its kernels are f32). On wgpu the model computes
//! in f16 when a hardware adapter has shader-f16, and in f32 otherwise (a software adapter
//! such as lavapipe has no half-precision units to gain from, only precision to lose);
//! `EASEL_SD_PRECISION=f32` or `=f16` forces one. The choice sets the device's default
//! float type for the whole process, so it is made once, before the first tensor, and a
//! later different request is an error.
//! Host-side work (noise, scheduler arithmetic, timestep embeddings) stays f32 either way, as
//! in diffusers' fp16 pipelines.

use std::sync::OnceLock;

use burn::tensor::{Device, FloatDType};

/// The float type a model computes in on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats (flex, and wgpu adapters without shader-f16).
    F32,
    /// Half precision, on wgpu adapters that support it.
    F16,
}

impl Precision {
    fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

/// The wgpu device, its description, and whether its adapter is software (a CPU);
/// initialized on first use only, since the runtime cannot be initialized twice.
fn wgpu() -> &'static Result<(Device, String, bool), String> {
    static WGPU: OnceLock<Result<(Device, String, bool), String>> = OnceLock::new();
    WGPU.get_or_init(init_wgpu)
}

fn init_wgpu() -> Result<(Device, String, bool), String> {
    let attempt = std::panic::catch_unwind(|| Device::wgpu_options().init_with_setup());
    match attempt {
        Ok(Ok((device, setup))) => {
            let info = setup.adapter.get_info();
            let software = info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu;
            let name = format!(
                "wgpu ({:?}, {:?}: {})",
                info.device_type, info.backend, info.name
            );
            Ok((device, name, software))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("wgpu initialization panicked".into()),
    }
}

fn flex() -> (Device, String) {
    (Device::flex(), "flex (cpu)".to_string())
}

/// The device the `local` provider runs on, with its description (backend, adapter and
/// precision): `EASEL_SD_DEVICE` when set, else a hardware wgpu adapter, else flex.
pub fn select_device() -> Result<(Device, String), String> {
    static SELECTED: OnceLock<Result<(Device, String), String>> = OnceLock::new();
    SELECTED
        .get_or_init(|| {
            let precision = match std::env::var("EASEL_SD_PRECISION").as_deref() {
                Ok("f32") => Some(Precision::F32),
                Ok("f16") => Some(Precision::F16),
                Ok(other) if !other.is_empty() => {
                    return Err(format!(
                        "EASEL_SD_PRECISION must be f32 or f16, not {other}"
                    ));
                }
                _ => None,
            };
            match std::env::var("EASEL_SD_DEVICE").as_deref() {
                Ok("flex") => Ok(flex()),
                Ok("wgpu") => wgpu_device(precision),
                Ok(other) if !other.is_empty() => {
                    Err(format!("EASEL_SD_DEVICE must be flex or wgpu, not {other}"))
                }
                _ => match wgpu() {
                    Ok((_, _, false)) => wgpu_device(precision),
                    _ => Ok(flex()),
                },
            }
        })
        .clone()
}

/// The wgpu device alone (no fallback, software adapters accepted), computing in `precision`
/// (`None`: f16 on a hardware adapter that supports it). Fails when the adapter lacks f16 and
/// f16 was asked for, or when the process already chose the other precision.
pub fn wgpu_device(precision: Option<Precision>) -> Result<(Device, String), String> {
    let (device, name, software) = wgpu().as_ref().map_err(Clone::clone)?;
    let has_f16 = device.supports_dtype(FloatDType::F16);
    let precision = match precision {
        Some(Precision::F16) if !has_f16 => {
            return Err(format!("{name} does not support f16 (shader-f16)"));
        }
        Some(precision) => precision,
        None if has_f16 && !software => Precision::F16,
        None => Precision::F32,
    };
    let mut configured = device.clone();
    if configured.configure(precision.dtype()).is_err()
        && device.settings().float_dtype != precision.dtype()
    {
        return Err(format!(
            "{name} already computes in {:?}; the precision is chosen once per process",
            device.settings().float_dtype
        ));
    }
    Ok((device.clone(), format!("{name}, {}", precision.name())))
}
