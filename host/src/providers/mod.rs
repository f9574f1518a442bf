//! Providers built into the host. Vendor adapters are WebAssembly plugins; native diffusion
//! lives in `easel-diffusion`.

pub mod media;
pub mod offline;
