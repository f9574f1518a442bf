//! The UNet's down, mid and up blocks (diffusers' `CrossAttnDownBlock2D`, `DownBlock2D`,
//! `UNetMidBlock2DCrossAttn`, `UpBlock2D`, `CrossAttnUpBlock2D`).
//!
//! Invariants: a down block pushes one skip tensor per resnet and one after its downsampler;
//! an up block pops one per resnet (`layers_per_block + 1` of them), concatenating on the
//! channel axis `[hidden, skip]`, and upsamples to the spatial size of the next skip.

use anyhow::Result;
use burn::tensor::Tensor;

use crate::attention::Transformer2D;
use crate::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::weights::Weights;

pub(crate) struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    downsample: Option<Downsample2D>,
}

impl DownBlock {
    pub(crate) fn load(
        w: &Weights,
        p: &str,
        layers: usize,
        attn: bool,
        heads: usize,
        groups: usize,
        last: bool,
    ) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for j in 0..layers {
            resnets.push(ResnetBlock2D::load(
                w,
                &format!("{p}.resnets.{j}"),
                groups,
                1e-5,
            )?);
            if attn {
                attentions.push(Transformer2D::load(
                    w,
                    &format!("{p}.attentions.{j}"),
                    heads,
                    groups,
                )?);
            }
        }
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
            resnets,
            attentions,
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
        for (j, r) in self.resnets.iter().enumerate() {
            x = r.forward(x, Some(temb));
            if let Some(a) = self.attentions.get(j) {
                x = a.forward(x, ctx);
            }
            skips.push(x.clone());
        }
        if let Some(d) = &self.downsample {
            x = d.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

pub(crate) struct MidBlock {
    resnet_0: ResnetBlock2D,
    attention: Transformer2D,
    resnet_1: ResnetBlock2D,
}

impl MidBlock {
    pub(crate) fn load(w: &Weights, p: &str, heads: usize, groups: usize) -> Result<Self> {
        Ok(Self {
            resnet_0: ResnetBlock2D::load(w, &format!("{p}.resnets.0"), groups, 1e-5)?,
            attention: Transformer2D::load(w, &format!("{p}.attentions.0"), heads, groups)?,
            resnet_1: ResnetBlock2D::load(w, &format!("{p}.resnets.1"), groups, 1e-5)?,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<4>, temb: &Tensor<2>, ctx: &Tensor<3>) -> Tensor<4> {
        let x = self.resnet_0.forward(x, Some(temb));
        let x = self.attention.forward(x, ctx);
        self.resnet_1.forward(x, Some(temb))
    }
}

pub(crate) struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    upsample: Option<Upsample2D>,
}

impl UpBlock {
    pub(crate) fn load(
        w: &Weights,
        p: &str,
        layers: usize,
        attn: bool,
        heads: usize,
        groups: usize,
        last: bool,
    ) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for j in 0..layers + 1 {
            resnets.push(ResnetBlock2D::load(
                w,
                &format!("{p}.resnets.{j}"),
                groups,
                1e-5,
            )?);
            if attn {
                attentions.push(Transformer2D::load(
                    w,
                    &format!("{p}.attentions.{j}"),
                    heads,
                    groups,
                )?);
            }
        }
        let upsample = if last {
            None
        } else {
            Some(Upsample2D::load(w, &format!("{p}.upsamplers.0"))?)
        };
        Ok(Self {
            resnets,
            attentions,
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
        for (j, r) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("UNet skip stack underflow");
            x = r.forward(Tensor::cat(vec![x, skip], 1), Some(temb));
            if let Some(a) = self.attentions.get(j) {
                x = a.forward(x, ctx);
            }
        }
        if let Some(u) = &self.upsample {
            let size = skips.last().map(|s| {
                let [_, _, h, w] = s.dims();
                [h, w]
            });
            x = u.forward(x, size);
        }
        x
    }
}
