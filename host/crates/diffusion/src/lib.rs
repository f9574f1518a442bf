//! Native Stable Diffusion 1.x and 2.x for easel on burn 0.22: wgpu first, the pure-Rust
//! `flex` CPU backend as fallback, and the `local` provider that serves it.
//!
//! Layout follows candle's: [`clip`] (text encoder), the UNet in `unet_2d`,
//! `unet_2d_blocks`, `attention`, `resnet`, `embeddings`, the autoencoder in [`vae`], one
//! sampler per file under [`schedulers`], and [`pipeline`] tying them together.
//! [`adapters`] reads LoRA / LoCon / LoHa / LoKr files strictly against the loaded model and
//! merges a request's adapters for the length of that request
//! ([`StableDiffusion::with_adapters`]).
//!
//! Invariants (crate-wide):
//! - f32 on flex; on wgpu f16 where a hardware adapter supports it, else f32 (see
//!   [`Precision`]).
//!   Weights stored as f16/bf16 are widened on the host and stored on the device in its
//!   precision; noise, schedulers and timestep embeddings are f32 on the host throughout.
//! - Noise is generated on the host by [`NoiseRng`] (`seed + image index`), so the same
//!   request gives the same latents on every backend.
//! - Nothing is downloaded at build or run time; the CLIP BPE vocabulary ships in
//!   `assets/`.
//! - SD 2.x loads from a diffusers folder: its `prediction_type` (v-prediction for the 768-v
//!   models) comes from `scheduler/scheduler_config.json` and its `!` pad token from
//!   `tokenizer/special_tokens_map.json`. A single file is SD 2.x when its text encoder is an
//!   OpenCLIP tower (see `convert`), and is then read as v-prediction with `!` padding, as
//!   diffusers' `from_single_file` does. Both forms are checked against diffusers on a tiny
//!   random 2.x model (gelu CLIP, linear projections, per-block head counts, all nine
//!   schedulers in v-prediction).
//!
//! Host wiring: when `EASEL_SD_MODEL` is set, `LocalDiffusion::load(path).await?` (a
//! diffusers folder or a single-file `.safetensors`; it picks the device with
//! [`select_device`]: `EASEL_SD_DEVICE` when set, else a hardware wgpu adapter, else flex;
//! `EASEL_SD_PRECISION` forces f32 or f16 on wgpu)
//! and register the result as a provider; its id is `local` and its one model is
//! `local/<LocalDiffusion::model_key()>`. [`LocalDiffusion::device_name`] is what `/health`
//! and the registry show. End-to-end tests can load the tiny random model the parity tests
//! use, `tests/fixtures/tiny-sd` in this crate (model key `tiny-sd`).

#![deny(missing_docs)]

pub mod adapters;
mod attention;
pub mod clip;
mod convert;
mod device;
mod embeddings;
mod flex;
mod nn;
pub mod pipeline;
mod provider;
mod resnet;
mod rng;
pub mod schedulers;
pub mod tokenizer;
mod unet_2d;
mod unet_2d_blocks;
pub mod vae;
mod weights;

pub use device::{Precision, select_device, wgpu_device};
pub use pipeline::{Cancelled, GenerateParams, NoiseSource, SeededNoise, StableDiffusion};
pub use provider::LocalDiffusion;
pub use rng::NoiseRng;
pub use unet_2d::UNetConfig;

/// Re-exported so callers can name devices and tensors without depending on burn directly.
pub use burn::tensor::{Device, Tensor};
