//! Device selection: wgpu first (any adapter wgpu finds, GPU or software), the pure-Rust
//! `flex` CPU backend when no adapter comes up.
//!
//! Invariants: selection runs once per process (burn's wgpu runtime can be initialized only
//! once) and is cached; `EASEL_SD_DEVICE=flex` or `=wgpu` forces a choice (`wgpu` then
//! fails loudly instead of falling back). The description names the backend and adapter.

use std::sync::OnceLock;

use burn::tensor::Device;

static SELECTED: OnceLock<Result<(Device, String), String>> = OnceLock::new();

fn try_wgpu() -> Result<(Device, String), String> {
    let attempt = std::panic::catch_unwind(|| Device::wgpu_options().init_with_setup());
    match attempt {
        Ok(Ok((device, setup))) => {
            let info = setup.adapter.get_info();
            Ok((
                device,
                format!(
                    "wgpu ({:?}, {:?}: {})",
                    info.device_type, info.backend, info.name
                ),
            ))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("wgpu initialization panicked".into()),
    }
}

/// The wgpu device if an adapter exists, else `flex`; with its description.
pub fn select_device() -> Result<(Device, String), String> {
    SELECTED
        .get_or_init(|| match std::env::var("EASEL_SD_DEVICE").as_deref() {
            Ok("flex") => Ok((Device::flex(), "flex (cpu)".to_string())),
            Ok("wgpu") => try_wgpu(),
            _ => Ok(try_wgpu().unwrap_or_else(|_| (Device::flex(), "flex (cpu)".to_string()))),
        })
        .clone()
}

/// The wgpu device alone (no fallback), for tests that must exercise wgpu.
pub fn wgpu_device() -> Result<(Device, String), String> {
    static WGPU: OnceLock<Result<(Device, String), String>> = OnceLock::new();
    WGPU.get_or_init(|| match SELECTED.get() {
        Some(Ok((d, s))) if s.starts_with("wgpu") => Ok((d.clone(), s.clone())),
        _ => try_wgpu(),
    })
    .clone()
}
