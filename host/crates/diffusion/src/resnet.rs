//! diffusers' `ResnetBlock2D` (UNet, with a time embedding) and the VAE's variant (no time
//! embedding), plus the 2x down/up samplers.
//!
//! Invariant: `out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + temb)))`,
//! output scale 1, the shortcut a 1x1 conv only when channel counts differ.

use anyhow::Result;
use burn::tensor::Tensor;

use crate::nn::{Conv2d, GroupNorm, Linear, silu, upsample_nearest};
use crate::weights::Weights;

pub(crate) struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    pub(crate) fn load(w: &Weights, p: &str, groups: usize, eps: f64) -> Result<Self> {
        let temb = format!("{p}.time_emb_proj.weight");
        let short = format!("{p}.conv_shortcut.weight");
        Ok(Self {
            norm1: w.group_norm(&format!("{p}.norm1"), groups, eps)?,
            conv1: w.conv2d(&format!("{p}.conv1"), 1, 1)?,
            time_emb_proj: if w.contains(&temb) {
                Some(w.linear(&format!("{p}.time_emb_proj"))?)
            } else {
                None
            },
            norm2: w.group_norm(&format!("{p}.norm2"), groups, eps)?,
            conv2: w.conv2d(&format!("{p}.conv2"), 1, 1)?,
            conv_shortcut: if w.contains(&short) {
                Some(w.conv2d(&format!("{p}.conv_shortcut"), 1, 0)?)
            } else {
                None
            },
        })
    }

    /// `temb`: the UNet's time embedding `[B, T]`, before the SiLU this block applies to it;
    /// `None` in the VAE.
    pub(crate) fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = self.conv1.forward(self.norm1.forward_silu(x.clone()));
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(silu(t.clone()));
            let [b, c] = t.dims();
            h = h + t.reshape([b, c, 1, 1]);
        }
        let h = self.conv2.forward(self.norm2.forward_silu(h));
        let x = match &self.conv_shortcut {
            Some(c) => c.forward(x),
            None => x,
        };
        x + h
    }
}

/// Stride-2 3x3 conv; the VAE's pads right/bottom only (`asymmetric`).
pub(crate) struct Downsample2D {
    conv: Conv2d,
    asymmetric: bool,
}

impl Downsample2D {
    pub(crate) fn load(w: &Weights, p: &str, asymmetric: bool) -> Result<Self> {
        Ok(Self {
            conv: w.conv2d(&format!("{p}.conv"), 2, if asymmetric { 0 } else { 1 })?,
            asymmetric,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.asymmetric {
            self.conv.forward_pad_br(x)
        } else {
            self.conv.forward(x)
        }
    }
}

/// Nearest resize (2x, or to `size`) then a 3x3 conv.
pub(crate) struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    pub(crate) fn load(w: &Weights, p: &str) -> Result<Self> {
        // On flex the stored 3x3 weight serves the rare sizes other than 2x, its phase kernels
        // the 2x case.
        Ok(Self {
            conv: w.conv2d_upsampling(&format!("{p}.conv"))?,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        match size {
            // The UNet asks for its skip connection's size, which is 2x unless a level was odd.
            Some(size) if size != [h * 2, w * 2] => self.conv.forward(upsample_nearest(x, size)),
            _ => self.conv.forward_upsampled2x(x),
        }
    }
}
