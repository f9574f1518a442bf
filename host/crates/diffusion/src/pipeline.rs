//! The Stable Diffusion pipeline: load a model once, then txt2img / img2img with
//! classifier-free guidance, following diffusers' `StableDiffusionPipeline` and
//! `StableDiffusionImg2ImgPipeline` step for step.
//!
//! Invariants:
//! - Guidance (`guidance_scale > 1`) batches `[uncond; cond]` into one UNet call per
//!   scheduler call; the negative prompt (or `""`) is the unconditional text.
//! - Several images share UNet calls up to [`UNET_BATCH_LATENT_PIXELS`] (all ten at 512x512,
//!   one at a time at 2048x2048), and the VAE decodes one image at a time, so memory stays
//!   bounded at every size the API accepts. The split depends only on the request, so the
//!   same request still gives the same bytes.
//! - All noise comes from a [`NoiseSource`], per image, on the host; the default source is
//!   [`crate::NoiseRng`] seeded `seed + index`.
//! - `on_step(done, total)` runs after every UNet call; returning `false` stops the run with
//!   [`Cancelled`] before the next call.
//! - Images come back as `height x width x 3` floats in `[0, 1]` (row-major, RGB).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};

use crate::adapters::apply::{AppliedAdapter, Merged, SetKey};
use crate::adapters::{AdapterTarget, Choice, Family};
use crate::clip::{ClipConfig, ClipTextTransformer};
use crate::convert::SingleFile;
use crate::schedulers::{self, Prediction, Scheduler};
use crate::tokenizer::Tokenizer;
use crate::unet_2d::{UNet2DConditionModel, UNetConfig};
use crate::vae::{AutoencoderKL, VaeConfig};
use crate::weights::{HostTensor, Safetensors, Weights, nest_text_model, read_safetensors};

/// The run was cancelled between steps.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Per-image noise for one request.
pub trait NoiseSource {
    /// `n` standard normals for image `image` (the next ones in that image's stream).
    fn draw(&mut self, image: usize, n: usize) -> Vec<f32>;
}

/// easel's default: image `i` draws from `NoiseRng::new(seed + i)`.
pub struct SeededNoise(Vec<crate::NoiseRng>);

impl SeededNoise {
    /// Streams for `images` images starting at `seed`.
    pub fn new(seed: u64, images: usize) -> Self {
        Self(
            (0..images as u64)
                .map(|i| crate::NoiseRng::new(seed.wrapping_add(i)))
                .collect(),
        )
    }
}

impl NoiseSource for SeededNoise {
    fn draw(&mut self, image: usize, n: usize) -> Vec<f32> {
        self.0[image].normals(n)
    }
}

/// One generation request (already validated by the caller or [`GenerateParams::validate`]).
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// The prompt.
    pub prompt: String,
    /// The unconditional text; `None` means `""`.
    pub negative_prompt: Option<String>,
    /// Output width, a multiple of 8.
    pub width: usize,
    /// Output height, a multiple of 8.
    pub height: usize,
    /// Inference steps.
    pub steps: usize,
    /// Classifier-free guidance scale (off at `<= 1`).
    pub guidance_scale: f64,
    /// Images to make (1..=10).
    pub num_images: usize,
    /// One of [`schedulers::SCHEDULER_NAMES`].
    pub scheduler: String,
    /// img2img strength in `[0, 1]`.
    pub strength: f64,
    /// img2img input: `height x width x 3` floats in `[0, 1]`; `None` for txt2img.
    pub init_image: Option<Vec<f32>>,
    /// txt2img only: initial latents (before `init_noise_sigma` scaling) instead of drawing
    /// them; used by parity tests.
    pub latents: Option<Vec<f32>>,
}

/// The most latent pixels, summed over the batch (guidance doubles it), one UNet call takes:
/// 20 batch items at 512x512. The activations of a call grow with it (a 2048x2048 image's
/// first UNet level alone is 80 MiB per batch item and tensor).
pub const UNET_BATCH_LATENT_PIXELS: usize = 20 * 64 * 64;

/// The largest width or height, as the provider's schema says.
pub const MAX_SIDE: usize = 2048;

impl GenerateParams {
    /// Checks ranges; the error text is fit for a 400 answer.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0
            || self.height == 0
            || !self.width.is_multiple_of(8)
            || !self.height.is_multiple_of(8)
        {
            bail!("width and height must be positive multiples of 8");
        }
        if self.width > MAX_SIDE || self.height > MAX_SIDE {
            bail!("width and height must be at most {MAX_SIDE}");
        }
        if !(1..=10).contains(&self.num_images) {
            bail!("num_images must be between 1 and 10");
        }
        if !(1..=500).contains(&self.steps) {
            bail!("num_inference_steps must be between 1 and 500");
        }
        if !(0.0..=1.0).contains(&self.strength) {
            bail!("strength must be between 0 and 1");
        }
        if !self.guidance_scale.is_finite() || self.guidance_scale < 0.0 {
            bail!("guidance_scale must be a non-negative number");
        }
        if !schedulers::SCHEDULER_NAMES.contains(&self.scheduler.as_str()) {
            bail!("unknown scheduler {}", self.scheduler);
        }
        Ok(())
    }
}

/// A loaded SD 1.x or 2.x model on one device.
pub struct StableDiffusion {
    tokenizer: Tokenizer,
    clip: ClipTextTransformer,
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    latent_channels: usize,
    /// From the scheduler config of a diffusers folder; for single files, see
    /// `SingleFile`'s (epsilon for SD 1.x, v for SD 2.x).
    prediction: Prediction,
    adapters: Arc<AdapterTarget>,
    /// The adapter set [`StableDiffusion::with_adapters_kept`] left merged, with its key
    /// and what it applied; `None` when the model holds its own weights.
    kept: Option<(SetKey, Merged, Vec<AppliedAdapter>)>,
    merges: usize,
    device: Device,
    /// The image side the model was trained at (see [`StableDiffusion::native_side`]).
    native_side: usize,
}

/// The part of diffusers' `scheduler_config.json` easel reads: the prediction type, and the
/// training noise schedule, which must be SD's own (every sampler here is built on it).
#[derive(serde::Deserialize, Default)]
struct SchedulerConfig {
    prediction_type: Option<String>,
    beta_start: Option<f64>,
    beta_end: Option<f64>,
    beta_schedule: Option<String>,
    num_train_timesteps: Option<usize>,
    trained_betas: Option<serde_json::Value>,
    #[serde(default)]
    rescale_betas_zero_snr: bool,
}

impl SchedulerConfig {
    /// Refuses a training schedule other than SD's (scaled-linear betas 0.00085..0.012 over
    /// 1000 steps), which would otherwise be sampled on SD's without a word.
    fn check_schedule(&self) -> Result<()> {
        let near = |value: Option<f64>, sd: f64| value.is_none_or(|v| (v - sd).abs() < 1e-9);
        let trained = self.trained_betas.as_ref().is_some_and(|b| !b.is_null());
        if !near(self.beta_start, 0.00085)
            || !near(self.beta_end, 0.012)
            || self
                .beta_schedule
                .as_deref()
                .is_some_and(|s| s != "scaled_linear")
            || self.num_train_timesteps.is_some_and(|n| n != 1000)
            || trained
            || self.rescale_betas_zero_snr
        {
            bail!(
                "the scheduler config's training schedule is not SD's (scaled_linear betas \
                 0.00085..0.012 over 1000 steps, no zero-SNR rescaling), the only one easel \
                 samples"
            );
        }
        Ok(())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn component_file(dir: &Path) -> Result<std::path::PathBuf> {
    for name in ["diffusion_pytorch_model.safetensors", "model.safetensors"] {
        let p = dir.join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .with_context(|| format!("no .safetensors in {}", dir.display()))
}

impl StableDiffusion {
    /// Loads a diffusers-layout folder (`text_encoder/`, `unet/`, `vae/`) or a single-file
    /// original-layout `.safetensors` checkpoint onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let mut tokenizer = Tokenizer::new()?;
        let mut prediction = Prediction::Epsilon;
        let (weights, clip_cfg, unet_cfg, vae_cfg) = if path.is_dir() {
            let scheduler = path.join("scheduler/scheduler_config.json");
            if scheduler.exists() {
                let config: SchedulerConfig = read_json(&scheduler)?;
                config
                    .check_schedule()
                    .with_context(|| scheduler.display().to_string())?;
                if let Some(name) = config.prediction_type {
                    prediction = Prediction::parse(&name)
                        .with_context(|| format!("unsupported prediction_type {name}"))?;
                }
            }
            // SD 2.x pads with "!" where SD 1.x pads with <|endoftext|>.
            let special = path.join("tokenizer/special_tokens_map.json");
            if special.exists() {
                let map: serde_json::Value = read_json(&special)?;
                let pad = &map["pad_token"];
                if let Some(token) = pad.as_str().or_else(|| pad["content"].as_str()) {
                    tokenizer.set_pad(token)?;
                }
            }
            let mut all = std::collections::HashMap::<String, HostTensor>::new();
            for comp in ["text_encoder", "unet", "vae"] {
                let t = read_safetensors(&component_file(&path.join(comp))?, |_| true)?.tensors;
                all.extend(t.into_iter().map(|(k, v)| (format!("{comp}.{k}"), v)));
            }
            nest_text_model(&mut all, "text_encoder.");
            let clip: ClipConfig = read_json(&path.join("text_encoder/config.json"))?;
            let unet: UNetConfig = read_json(&path.join("unet/config.json"))?;
            let vae: VaeConfig = read_json(&path.join("vae/config.json"))?;
            (Weights::new(all, None, device.clone()), clip, unet, vae)
        } else {
            let Safetensors {
                tensors: mut t,
                metadata: meta,
                ..
            } = read_safetensors(path, SingleFile::is_component_key)?;
            let sf = SingleFile::prepare(&mut t, &meta)?;
            if let Some(token) = sf.pad_token {
                tokenizer.set_pad(token)?;
            }
            prediction = sf.prediction;
            let rename = sf.renamer();
            (
                Weights::new(t, Some(rename), device.clone()),
                sf.clip,
                sf.unet,
                sf.vae,
            )
        };
        let clip = ClipTextTransformer::load(&weights, &clip_cfg)?;
        let unet = UNet2DConditionModel::load(&weights, &unet_cfg)?;
        let vae = AutoencoderKL::load(&weights, &vae_cfg)?;
        // OpenCLIP's exact GELU is what marks SD 2.x's text tower (see `convert`).
        let family = if clip_cfg.hidden_act == "gelu" {
            Family::Sd2
        } else {
            Family::Sd1
        };
        // diffusers' default: the UNet's latent sample size times the VAE's downscale. A
        // single file carries no UNet config; diffusers reads a v-prediction SD 2.x one as a
        // 768-v model.
        let downscale = 1 << vae_cfg.block_out_channels.len().saturating_sub(1);
        let native_side = match unet_cfg.sample_size {
            Some(latent) => latent * downscale,
            None if family == Family::Sd2 && prediction == Prediction::V => 768,
            None => 512,
        };
        let adapters = AdapterTarget::new(
            weights.into_layers(),
            family,
            clip_cfg.hidden_size,
            &crate::convert::ldm_unet_names(&unet_cfg),
        );
        Ok(Self {
            tokenizer,
            clip,
            unet,
            vae,
            latent_channels: vae_cfg.latent_channels,
            prediction,
            adapters: Arc::new(adapters),
            kept: None,
            merges: 0,
            device: device.clone(),
            native_side,
        })
    }

    /// The image side, in pixels, the model was trained at: the width and height a request
    /// that names neither gets (512 for SD 1.x and SD 2.x base, 768 for SD 2.x 768-v).
    pub fn native_side(&self) -> usize {
        self.native_side
    }

    /// The model's layers, family and text width, which adapters are read against.
    pub fn adapter_target(&self) -> Arc<AdapterTarget> {
        self.adapters.clone()
    }

    /// Runs `run` with `choices` merged into the model (see [`crate::adapters::apply`]),
    /// then puts the model's own weights back; also says what was applied. Taking `&mut
    /// self` keeps every other user of the model out while its weights are changed.
    pub fn with_adapters<R>(
        &mut self,
        choices: &[Choice],
        run: impl FnOnce(&Self) -> R,
    ) -> Result<(R, Vec<AppliedAdapter>)> {
        self.kept = None;
        let (merged, applied) = crate::adapters::apply::merge(&self.adapters, choices)?;
        self.merges += 1;
        let out = run(self);
        drop(merged);
        Ok((out, applied))
    }

    /// Runs `run` with `choices` merged into the model, and keeps them merged afterwards, so
    /// that the next call with the same set (same names, content hashes, weights and order)
    /// runs at once instead of merging again. A call with another set first puts the model's
    /// own weights back, then merges its own; an empty set (or weights 0 only) runs on the
    /// model's own weights, bit for bit. The methods that run the model directly
    /// (`generate`, `unet`, …) see a kept set until [`StableDiffusion::with_adapters`] or
    /// this method is called with another: callers that mix them go through these two.
    pub fn with_adapters_kept<R>(
        &mut self,
        choices: &[Choice],
        run: impl FnOnce(&Self) -> R,
    ) -> Result<(R, Vec<AppliedAdapter>)> {
        let key = SetKey::of(choices);
        if self.kept.as_ref().is_none_or(|(kept, ..)| *kept != key) {
            // Restores before the next merge reads any weight (DoRA reads the layer's own).
            self.kept = None;
            let (merged, applied) = crate::adapters::apply::merge(&self.adapters, choices)?;
            self.merges += 1;
            self.kept = Some((key, merged, applied));
        }
        let applied = self
            .kept
            .as_ref()
            .map(|(.., a)| a.clone())
            .unwrap_or_default();
        Ok((run(self), applied))
    }

    /// How many times adapter sets were merged into this model (an empty set counts): what
    /// [`StableDiffusion::with_adapters_kept`] saves shows here.
    pub fn adapter_merges(&self) -> usize {
        self.merges
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Text embeddings `[B, 77, D]` for `prompts`.
    pub fn encode_text(&self, prompts: &[&str]) -> Tensor<3> {
        let ids: Vec<Vec<u32>> = prompts.iter().map(|p| self.tokenizer.encode(p)).collect();
        self.clip.forward(&ids)
    }

    /// Text embeddings for explicit token id rows (77 each).
    pub fn encode_ids(&self, ids: &[Vec<u32>]) -> Tensor<3> {
        self.clip.forward(ids)
    }

    /// One UNet call.
    pub fn unet(&self, x: Tensor<4>, t: f32, ctx: &Tensor<3>) -> Tensor<4> {
        self.unet.forward(x, t, ctx)
    }

    /// The VAE.
    pub fn vae(&self) -> &AutoencoderKL {
        &self.vae
    }

    /// Host floats to a device tensor.
    pub fn tensor<const D: usize>(&self, data: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(data, shape), &self.device)
    }

    /// A tensor's values on the host as f32, whatever the device computes in.
    pub fn values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
        tensor
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading a tensor back: {e:?}"))
    }

    /// Runs txt2img (no `init_image`) or img2img; see the module docs for the invariants.
    pub fn generate(
        &self,
        p: &GenerateParams,
        noise: &mut dyn NoiseSource,
        on_step: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Vec<Vec<f32>>> {
        p.validate()?;
        let n = p.num_images;
        let f = self.vae.scale;
        if !p.width.is_multiple_of(f) || !p.height.is_multiple_of(f) {
            bail!("width and height must be multiples of {f} for this model");
        }
        let (h, w) = (p.height / f, p.width / f);
        let c = self.latent_channels;
        let per = c * h * w;
        if p.latents.as_ref().is_some_and(|l| l.len() != n * per) {
            bail!("latents must hold {n} x {c} x {h} x {w} values");
        }
        let mut sched: Box<dyn Scheduler> =
            schedulers::by_name(&p.scheduler, p.steps).context("unknown scheduler")?;
        let cfg = p.guidance_scale > 1.0;
        let cond = self.encode_text(&[p.prompt.as_str()]);
        let uncond = cfg.then(|| self.encode_text(&[p.negative_prompt.as_deref().unwrap_or("")]));
        let batch_items = if cfg { 2 } else { 1 };
        let images_per_call = (UNET_BATCH_LATENT_PIXELS / (batch_items * h * w)).clamp(1, n);
        // Each UNet call's first image, image count and text context, the same every step.
        let calls: Vec<(usize, usize, Tensor<3>)> = (0..n)
            .step_by(images_per_call)
            .map(|first| {
                let m = images_per_call.min(n - first);
                let context = match &uncond {
                    Some(un) => Tensor::cat(
                        vec![un.clone().repeat_dim(0, m), cond.clone().repeat_dim(0, m)],
                        0,
                    ),
                    None => cond.clone().repeat_dim(0, m),
                };
                (first, m, context)
            })
            .collect();
        let (mut latents, start) = match &p.init_image {
            None => {
                let raw = match &p.latents {
                    Some(l) => l.clone(),
                    None => (0..n).flat_map(|i| noise.draw(i, per)).collect(),
                };
                let s = sched.init_noise_sigma();
                (
                    raw.into_iter()
                        .map(|v| (v as f64 * s) as f32)
                        .collect::<Vec<f32>>(),
                    0,
                )
            }
            Some(img) => {
                if img.len() != p.height * p.width * 3 {
                    bail!("init image must be {}x{} RGB", p.width, p.height);
                }
                let x = self
                    .tensor(img.clone(), [1, p.height, p.width, 3])
                    .permute([0, 3, 1, 2])
                    .mul_scalar(2.0)
                    .sub_scalar(1.0);
                let z = self.vae.encode(x).mul_scalar(self.vae.scaling_factor);
                let z = Self::values(z)?;
                let init_t = ((p.steps as f64 * p.strength) as usize).min(p.steps);
                let t_start = p.steps - init_t;
                let start = t_start * sched.order();
                if start >= sched.timesteps().len() {
                    // strength x steps below 1 (strength 0, say): no step to run, so the
                    // image comes back through the VAE alone (diffusers refuses instead).
                    let out: Vec<f32> = (0..n).flat_map(|_| z.clone()).collect();
                    return self.decode(&out, h, w);
                }
                let mut lat = Vec::with_capacity(n * per);
                for i in 0..n {
                    let e = noise.draw(i, per);
                    lat.extend(sched.add_noise(&z, &e, start));
                }
                (lat, start)
            }
        };
        let total = sched.timesteps().len() - start;
        for (done, idx) in (start..sched.timesteps().len()).enumerate() {
            let t = sched.timesteps()[idx] as f32;
            let scale = sched.input_scale(idx) as f32;
            let mut eps = Vec::with_capacity(n * per);
            for &(first, m, ref context) in &calls {
                let x = latents[first * per..(first + m) * per].to_vec();
                let x = self.tensor(x, [m, c, h, w]).mul_scalar(scale);
                let x = if cfg {
                    Tensor::cat(vec![x.clone(), x], 0)
                } else {
                    x
                };
                let out = self.unet.forward(x, t, context);
                let out = if cfg {
                    let u = out.clone().narrow(0, 0, m);
                    let tx = out.narrow(0, m, m);
                    u.clone() + (tx - u).mul_scalar(p.guidance_scale as f32)
                } else {
                    out
                };
                eps.extend(Self::values(out)?);
            }
            let mut draw = || {
                (0..n)
                    .flat_map(|i| noise.draw(i, per))
                    .collect::<Vec<f32>>()
            };
            latents = match self.prediction {
                Prediction::Epsilon => sched.step(&eps, idx, &latents, &mut draw),
                Prediction::V => sched.step_v(&eps, idx, &latents, &mut draw),
            };
            if !on_step(done + 1, total) {
                return Err(Cancelled.into());
            }
        }
        self.decode(&latents, h, w)
    }

    /// The images of `c x h x w` latents, decoded one at a time (a 2048x2048 decode holds
    /// several 2 GiB activations per image).
    fn decode(&self, latents: &[f32], h: usize, w: usize) -> Result<Vec<Vec<f32>>> {
        let c = self.latent_channels;
        latents
            .chunks_exact(c * h * w)
            .map(|latent| {
                let z = self
                    .tensor(latent.to_vec(), [1, c, h, w])
                    .div_scalar(self.vae.scaling_factor as f32);
                let img = self
                    .vae
                    .decode(z)
                    .div_scalar(2.0)
                    .add_scalar(0.5)
                    .clamp(0.0, 1.0)
                    .permute([0, 2, 3, 1]);
                Self::values(img)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(json: &str) -> Result<()> {
        serde_json::from_str::<SchedulerConfig>(json)
            .unwrap()
            .check_schedule()
    }

    #[test]
    fn only_sds_training_schedule_is_accepted() {
        schedule(r#"{"beta_start": 0.00085, "beta_end": 0.012, "trained_betas": null}"#).unwrap();
        schedule("{}").unwrap();
        for other in [
            r#"{"beta_schedule": "linear"}"#,
            r#"{"beta_end": 0.02}"#,
            r#"{"num_train_timesteps": 500}"#,
            r#"{"trained_betas": [0.1, 0.2]}"#,
            r#"{"rescale_betas_zero_snr": true}"#,
        ] {
            assert!(schedule(other).is_err(), "{other}");
        }
    }
}
