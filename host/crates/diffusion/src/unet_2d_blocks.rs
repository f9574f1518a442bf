//! The UNet's down, mid and up blocks (diffusers' `CrossAttnDownBlock2D`, `DownBlock2D`,
//! `UNetMidBlock2DCrossAttn`, `UpBlock2D`, `CrossAttnUpBlock2D`).
//!
//! Invariants: a down block pushes one skip tensor per resnet and one after its downsampler;
//! an up block pops one per resnet (`layers_per_block + 1` of them), concatenating on the
//! channel axis `[hidden, skip]`, and upsamples to the spatial size of the next skip.
//! The cross-attention and plain variants differ only in whether each resnet is followed by
//! a transformer, so both are one [`Layers`] stack.

use anyhow::Result;
use burn::tensor::Tensor;

use crate::attention::{AttentionSpec, Transformer2D};
use crate::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::weights::Weights;

/// The UNet's resnets all use PyTorch's default group-norm epsilon.
const RESNET_EPS: f64 = 1e-5;

/// What every block's layers share: norm groups and, for cross-attention blocks, the
/// transformer heads.
#[derive(Clone, Copy)]
pub(crate) struct BlockSpec {
    /// `Some` for the cross-attention variants.
    pub(crate) attention: Option<AttentionSpec>,
    pub(crate) groups: usize,
}

/// `resnets.{j}` each followed by `attentions.{j}` when the block has attention.
struct Layers {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
}

impl Layers {
    fn load(w: &Weights, p: &str, count: usize, spec: BlockSpec) -> Result<Self> {
        let mut resnets = Vec::with_capacity(count);
        let mut attentions = Vec::new();
        for j in 0..count {
            let resnet = format!("{p}.resnets.{j}");
            resnets.push(ResnetBlock2D::load(w, &resnet, spec.groups, RESNET_EPS)?);
            if let Some(attention) = spec.attention {
                let attn = format!("{p}.attentions.{j}");
                attentions.push(Transformer2D::load(w, &attn, attention, spec.groups)?);
            }
        }
        Ok(Self {
            resnets,
            attentions,
        })
    }

    fn len(&self) -> usize {
        self.resnets.len()
    }

    /// Layer `j`: its resnet, then its transformer if any.
    fn forward(&self, j: usize, x: Tensor<4>, temb: &Tensor<2>, ctx: &Tensor<3>) -> Tensor<4> {
        let x = self.resnets[j].forward(x, Some(temb));
        match self.attentions.get(j) {
            Some(a) => a.forward(x, ctx),
            None => x,
        }
    }
}

/// `DownBlock2D` / `CrossAttnDownBlock2D`.
pub(crate) struct DownBlock {
    layers: Layers,
    downsample: Option<Downsample2D>,
}

impl DownBlock {
    /// `layers` resnets; the last block of the UNet has no downsampler.
    pub(crate) fn load(
        w: &Weights,
        p: &str,
        layers: usize,
        spec: BlockSpec,
        last: bool,
    ) -> Result<Self> {
        let downsample = if last {
            None
        } else {
            Some(Downsample2D::load(
                w,
                &format!("{p}.downsamplers.0"),
                false,
            )?)
        };
        Ok(Self {
            layers: Layers::load(w, p, layers, spec)?,
            downsample,
        })
    }

    pub(crate) fn forward(
        &self,
        mut x: Tensor<4>,
        temb: &Tensor<2>,
        ctx: &Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for j in 0..self.layers.len() {
            x = self.layers.forward(j, x, temb, ctx);
            skips.push(x.clone());
        }
        if let Some(d) = &self.downsample {
            x = d.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, transformer, resnet.
pub(crate) struct MidBlock {
    resnet_0: ResnetBlock2D,
    attention: Transformer2D,
    resnet_1: ResnetBlock2D,
}

impl MidBlock {
    pub(crate) fn load(
        w: &Weights,
        p: &str,
        attention: AttentionSpec,
        groups: usize,
    ) -> Result<Self> {
        let resnet =
            |j: usize| ResnetBlock2D::load(w, &format!("{p}.resnets.{j}"), groups, RESNET_EPS);
        Ok(Self {
            resnet_0: resnet(0)?,
            attention: Transformer2D::load(w, &format!("{p}.attentions.0"), attention, groups)?,
            resnet_1: resnet(1)?,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<4>, temb: &Tensor<2>, ctx: &Tensor<3>) -> Tensor<4> {
        let x = self.resnet_0.forward(x, Some(temb));
        let x = self.attention.forward(x, ctx);
        self.resnet_1.forward(x, Some(temb))
    }
}

/// `UpBlock2D` / `CrossAttnUpBlock2D`.
pub(crate) struct UpBlock {
    layers: Layers,
    upsample: Option<Upsample2D>,
}

impl UpBlock {
    /// `layers + 1` resnets (one per skip of the matching down block, plus its
    /// downsampler's); the last block of the UNet has no upsampler.
    pub(crate) fn load(
        w: &Weights,
        p: &str,
        layers: usize,
        spec: BlockSpec,
        last: bool,
    ) -> Result<Self> {
        let upsample = if last {
            None
        } else {
            Some(Upsample2D::load(w, &format!("{p}.upsamplers.0"))?)
        };
        Ok(Self {
            layers: Layers::load(w, p, layers + 1, spec)?,
            upsample,
        })
    }

    pub(crate) fn forward(
        &self,
        mut x: Tensor<4>,
        temb: &Tensor<2>,
        ctx: &Tensor<3>,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for j in 0..self.layers.len() {
            let skip = skips.pop().expect("UNet skip stack underflow");
            x = self
                .layers
                .forward(j, Tensor::cat(vec![x, skip], 1), temb, ctx);
        }
        if let Some(u) = &self.upsample {
            // A stride-2 downsample rounds odd sizes up (65 -> 33), so upsample to the skip's
            // size (66 -> 65), not 2x.
            let size = skips.last().map(|s| {
                let [_, _, h, w] = s.dims();
                [h, w]
            });
            x = u.forward(x, size);
        }
        x
    }
}
