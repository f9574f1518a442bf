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
use crate::nn::{Conv2d, GroupNorm, silu};
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
    #[serde(default = "sf")]
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
fn sf() -> f64 {
    0.18215
}

struct Mid {
    r0: ResnetBlock2D,
    attn: VaeAttention,
    r1: ResnetBlock2D,
}

impl Mid {
    fn load(w: &Weights, p: &str, g: usize) -> Result<Self> {
        Ok(Self {
            r0: ResnetBlock2D::load(w, &format!("{p}.resnets.0"), g, 1e-6)?,
            attn: VaeAttention::load(w, &format!("{p}.attentions.0"), g)?,
            r1: ResnetBlock2D::load(w, &format!("{p}.resnets.1"), g, 1e-6)?,
        })
    }
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.r1
            .forward(self.attn.forward(self.r0.forward(x, None)), None)
    }
}

struct Level {
    resnets: Vec<ResnetBlock2D>,
    down: Option<Downsample2D>,
    up: Option<Upsample2D>,
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
        let mut enc_levels = Vec::new();
        for i in 0..n {
            let p = format!("vae.encoder.down_blocks.{i}");
            let resnets = (0..cfg.layers_per_block)
                .map(|j| ResnetBlock2D::load(w, &format!("{p}.resnets.{j}"), g, 1e-6))
                .collect::<Result<_>>()?;
            let down = if i + 1 < n {
                Some(Downsample2D::load(w, &format!("{p}.downsamplers.0"), true)?)
            } else {
                None
            };
            enc_levels.push(Level {
                resnets,
                down,
                up: None,
            });
        }
        let mut dec_levels = Vec::new();
        for i in 0..n {
            let p = format!("vae.decoder.up_blocks.{i}");
            let resnets = (0..cfg.layers_per_block + 1)
                .map(|j| ResnetBlock2D::load(w, &format!("{p}.resnets.{j}"), g, 1e-6))
                .collect::<Result<_>>()?;
            let up = if i + 1 < n {
                Some(Upsample2D::load(w, &format!("{p}.upsamplers.0"))?)
            } else {
                None
            };
            dec_levels.push(Level {
                resnets,
                down: None,
                up,
            });
        }
        Ok(Self {
            enc_conv_in: w.conv2d("vae.encoder.conv_in", 1, 1)?,
            enc_levels,
            enc_mid: Mid::load(w, "vae.encoder.mid_block", g)?,
            enc_norm: w.group_norm("vae.encoder.conv_norm_out", g, 1e-6)?,
            enc_conv_out: w.conv2d("vae.encoder.conv_out", 1, 1)?,
            quant_conv: w.conv2d("vae.quant_conv", 1, 0)?,
            post_quant_conv: w.conv2d("vae.post_quant_conv", 1, 0)?,
            dec_conv_in: w.conv2d("vae.decoder.conv_in", 1, 1)?,
            dec_mid: Mid::load(w, "vae.decoder.mid_block", g)?,
            dec_levels,
            dec_norm: w.group_norm("vae.decoder.conv_norm_out", g, 1e-6)?,
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
            for r in &l.resnets {
                x = r.forward(x, None);
            }
            if let Some(d) = &l.down {
                x = d.forward(x);
            }
        }
        x = self.enc_mid.forward(x);
        x = self.enc_conv_out.forward(silu(self.enc_norm.forward(x)));
        let moments = self.quant_conv.forward(x);
        moments.narrow(1, 0, self.latent_channels)
    }

    /// Latents (already divided by the scaling factor) to an image in about `[-1, 1]`.
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let mut x = self.dec_conv_in.forward(self.post_quant_conv.forward(z));
        x = self.dec_mid.forward(x);
        for l in &self.dec_levels {
            for r in &l.resnets {
                x = r.forward(x, None);
            }
            if let Some(u) = &l.up {
                x = u.forward(x, None);
            }
        }
        self.dec_conv_out.forward(silu(self.dec_norm.forward(x)))
    }
}
