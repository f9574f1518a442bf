//! diffusers' `AutoencoderKL`: the encoder (image to latent posterior mean) and decoder
//! (latent to image), with `quant_conv` / `post_quant_conv`.
//!
//! Invariants: images are `[B, 3, H, W]` in `[-1, 1]`; latents `[B, latent, H/f, W/f]` with
//! `f = 2^(levels-1)` (8 for SD). Scaling by `scaling_factor` is the pipeline's job, not
//! this module's. Encoding returns the posterior mean (deterministic img2img).

use anyhow::Result;
use burn::tensor::Tensor;
use serde::Deserialize;

use crate::attention::VaeAttention;
use crate::nn::{Conv2d, GroupNorm};
use crate::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::weights::Weights;

/// VAE hyper-parameters (diffusers' `config.json` subset).
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    /// Channels per level (`[128, 256, 512, 512]` for SD).
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder level (decoder levels have one more).
    #[serde(default = "one")]
    pub layers_per_block: usize,
    /// Latent channels (4).
    #[serde(default = "four")]
    pub latent_channels: usize,
    /// Group norm groups (32).
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    /// Latent scaling (0.18215 for SD 1.x).
    #[serde(default = "sd_scaling_factor")]
    pub scaling_factor: f64,
}

fn one() -> usize {
    1
}
fn four() -> usize {
    4
}
fn thirty_two() -> usize {
    32
}
fn sd_scaling_factor() -> f64 {
    0.18215
}

/// Every norm in diffusers' VAE uses epsilon 1e-6.
const EPS: f64 = 1e-6;

struct Mid {
    r0: ResnetBlock2D,
    attn: VaeAttention,
    r1: ResnetBlock2D,
}

impl Mid {
    fn load(w: &Weights, p: &str, g: usize) -> Result<Self> {
        Ok(Self {
            r0: ResnetBlock2D::load(w, &format!("{p}.resnets.0"), g, EPS)?,
            attn: VaeAttention::load(w, &format!("{p}.attentions.0"), g)?,
            r1: ResnetBlock2D::load(w, &format!("{p}.resnets.1"), g, EPS)?,
        })
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.r1
            .forward(self.attn.forward(self.r0.forward(x, None)), None)
    }
}

/// The resampler closing an encoder (down) or decoder (up) level.
enum Resample {
    Down(Downsample2D),
    Up(Upsample2D),
}

/// One encoder or decoder level: its resnets, then its resampler (none on the last level).
struct Level {
    resnets: Vec<ResnetBlock2D>,
    resample: Option<Resample>,
}

impl Level {
    /// `n` levels under `{prefix}.{i}`: `resnets` resnets each, and every level but the last
    /// closed by `resample` (loaded from its `downsamplers.0` / `upsamplers.0`).
    fn load_all(
        w: &Weights,
        prefix: &str,
        n: usize,
        resnets: usize,
        g: usize,
        resample: fn(&Weights, &str) -> Result<Resample>,
    ) -> Result<Vec<Self>> {
        (0..n)
            .map(|i| {
                let p = format!("{prefix}.{i}");
                Ok(Self {
                    resnets: (0..resnets)
                        .map(|j| ResnetBlock2D::load(w, &format!("{p}.resnets.{j}"), g, EPS))
                        .collect::<Result<_>>()?,
                    resample: if i + 1 < n {
                        Some(resample(w, &p)?)
                    } else {
                        None
                    },
                })
            })
            .collect()
    }

    fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for r in &self.resnets {
            x = r.forward(x, None);
        }
        match &self.resample {
            Some(Resample::Down(d)) => d.forward(x),
            Some(Resample::Up(u)) => u.forward(x, None),
            None => x,
        }
    }
}

/// The loaded autoencoder.
pub struct AutoencoderKL {
    enc_conv_in: Conv2d,
    enc_levels: Vec<Level>,
    enc_mid: Mid,
    enc_norm: GroupNorm,
    enc_conv_out: Conv2d,
    quant_conv: Conv2d,
    post_quant_conv: Conv2d,
    dec_conv_in: Conv2d,
    dec_mid: Mid,
    dec_levels: Vec<Level>,
    dec_norm: GroupNorm,
    dec_conv_out: Conv2d,
    latent_channels: usize,
    /// Latent scaling factor.
    pub scaling_factor: f64,
    /// Spatial downscale factor between image and latent.
    pub scale: usize,
}

impl AutoencoderKL {
    /// Loads `vae.*`.
    pub(crate) fn load(w: &Weights, cfg: &VaeConfig) -> Result<Self> {
        let g = cfg.norm_num_groups;
        let n = cfg.block_out_channels.len();
        // diffusers' VAE downsamplers pad only right and bottom (asymmetric).
        let down = |w: &Weights, p: &str| {
            Downsample2D::load(w, &format!("{p}.downsamplers.0"), true).map(Resample::Down)
        };
        let up = |w: &Weights, p: &str| {
            Upsample2D::load(w, &format!("{p}.upsamplers.0")).map(Resample::Up)
        };
        let l = cfg.layers_per_block;
        let enc_levels = Level::load_all(w, "vae.encoder.down_blocks", n, l, g, down)?;
        let dec_levels = Level::load_all(w, "vae.decoder.up_blocks", n, l + 1, g, up)?;
        Ok(Self {
            enc_conv_in: w.conv2d("vae.encoder.conv_in", 1, 1)?,
            enc_levels,
            enc_mid: Mid::load(w, "vae.encoder.mid_block", g)?,
            enc_norm: w.group_norm("vae.encoder.conv_norm_out", g, EPS)?,
            enc_conv_out: w.conv2d("vae.encoder.conv_out", 1, 1)?,
            quant_conv: w.conv2d("vae.quant_conv", 1, 0)?,
            post_quant_conv: w.conv2d("vae.post_quant_conv", 1, 0)?,
            dec_conv_in: w.conv2d("vae.decoder.conv_in", 1, 1)?,
            dec_mid: Mid::load(w, "vae.decoder.mid_block", g)?,
            dec_levels,
            dec_norm: w.group_norm("vae.decoder.conv_norm_out", g, EPS)?,
            dec_conv_out: w.conv2d("vae.decoder.conv_out", 1, 1)?,
            latent_channels: cfg.latent_channels,
            scaling_factor: cfg.scaling_factor,
            scale: 1 << (n - 1),
        })
    }

    /// Image `[B, 3, H, W]` in `[-1, 1]` to the posterior mean `[B, latent, H/f, W/f]`.
    pub fn encode(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.enc_conv_in.forward(x);
        for l in &self.enc_levels {
            x = l.forward(x);
        }
        x = self.enc_mid.forward(x);
        x = self.enc_conv_out.forward(self.enc_norm.forward_silu(x));
        let moments = self.quant_conv.forward(x);
        moments.narrow(1, 0, self.latent_channels)
    }

    /// Latents (already divided by the scaling factor) to an image in about `[-1, 1]`.
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let mut x = self.dec_conv_in.forward(self.post_quant_conv.forward(z));
        x = self.dec_mid.forward(x);
        for l in &self.dec_levels {
            x = l.forward(x);
        }
        self.dec_conv_out.forward(self.dec_norm.forward_silu(x))
    }
}
