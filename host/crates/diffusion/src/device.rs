//! Device selection: wgpu first when it finds a hardware adapter (discrete, integrated or
//! virtual GPU), the pure-Rust `flex` CPU backend otherwise.
//!
//! Invariants: selection runs once per process (burn's wgpu runtime can be initialized only
//! once) and is cached; `EASEL_SD_DEVICE=flex` or `=wgpu` forces a choice (`wgpu` then
//! fails loudly instead of falling back, and accepts a software adapter). A software
//! adapter such as Mesa's lavapipe is not chosen by default: on the 2-core build box it
//! spent 12 minutes in its first full-size 256x256 UNet call and then failed to allocate a
//! buffer, where flex takes about 3 s a step (docs/BENCHMARKS.md). The description names the
//! backend and adapter.

use std::sync::OnceLock;

use burn::tensor::Device;

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

/// The device the `local` provider runs on, with its description: `EASEL_SD_DEVICE` when
/// set, else a hardware wgpu adapter, else flex.
pub fn select_device() -> Result<(Device, String), String> {
    static SELECTED: OnceLock<Result<(Device, String), String>> = OnceLock::new();
    SELECTED
        .get_or_init(|| match std::env::var("EASEL_SD_DEVICE").as_deref() {
            Ok("flex") => Ok(flex()),
            Ok("wgpu") => wgpu_device(),
            _ => Ok(match wgpu() {
                Ok((d, name, false)) => (d.clone(), name.clone()),
                _ => flex(),
            }),
        })
        .clone()
}

/// The wgpu device alone (no fallback, software adapters accepted), for tests that must
/// exercise wgpu.
pub fn wgpu_device() -> Result<(Device, String), String> {
    wgpu()
        .as_ref()
        .map(|(d, name, _)| (d.clone(), name.clone()))
        .map_err(Clone::clone)
}
