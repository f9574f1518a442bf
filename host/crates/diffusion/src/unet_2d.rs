//! diffusers' `UNet2DConditionModel` for SD 1.x (and 2.x shapes): time embedding, `conv_in`,
//! down blocks, the cross-attention mid block, up blocks, `conv_norm_out` + SiLU + `conv_out`.
//!
//! Invariants: input `[B, in_channels, h, w]` with one timestep per batch row and context
//! `[B, 77, cross_attention_dim]`; output has the input's shape. Head counts follow
//! diffusers' reading of `attention_head_dim` (it is the number of heads): one for every
//! block (SD 1.x's 8) or one per down block (SD 2.x's `[5, 10, 20, 20]`), mirrored in the
//! up blocks, the last one in the mid block.

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use serde::Deserialize;

use crate::attention::AttentionSpec;
use crate::embeddings::{TimestepEmbedding, timestep_embedding};
use crate::nn::{Conv2d, GroupNorm};
use crate::unet_2d_blocks::{BlockSpec, DownBlock, MidBlock, UpBlock};
use crate::weights::Weights;

/// UNet hyper-parameters (diffusers' `config.json` subset).
#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    /// Latent channels in.
    #[serde(default = "four")]
    pub in_channels: usize,
    /// Channels per resolution level (`[320, 640, 1280, 1280]` for SD 1.x).
    pub block_out_channels: Vec<usize>,
    /// Down block class names.
    pub down_block_types: Vec<String>,
    /// Up block class names.
    pub up_block_types: Vec<String>,
    /// Resnets per down block (up blocks have one more).
    #[serde(default = "two")]
    pub layers_per_block: usize,
    /// Heads per block (SD 1.x: one number, 8; SD 2.x: a list, one per down block);
    /// diffusers' historical name.
    #[serde(default)]
    pub attention_head_dim: Option<serde_json::Value>,
    /// Heads per block when given explicitly.
    #[serde(default)]
    pub num_attention_heads: Option<serde_json::Value>,
    /// Text embedding width (768 for SD 1.x).
    pub cross_attention_dim: usize,
    /// Group norm groups.
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    /// Compute attention in f32 even when the model runs in f16 (SD 2.1).
    #[serde(default)]
    pub upcast_attention: bool,
    /// The latent side the model was trained at (64 for 512-pixel models, 96 for 768-v).
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn four() -> usize {
    4
}
fn two() -> usize {
    2
}
fn thirty_two() -> usize {
    32
}

impl UNetConfig {
    /// Heads for each down block (index by block): one number for all, or one per block;
    /// 8 when the config names none.
    pub fn heads(&self) -> Result<Vec<usize>> {
        let n = self.block_out_channels.len();
        let count = |x: &serde_json::Value| match x.as_u64() {
            Some(heads) if heads > 0 => Ok(heads as usize),
            _ => bail!("UNet config: {x} is not a number of attention heads"),
        };
        match self
            .num_attention_heads
            .as_ref()
            .or(self.attention_head_dim.as_ref())
        {
            None | Some(serde_json::Value::Null) => Ok(vec![8; n]),
            Some(serde_json::Value::Array(list)) if list.len() == n => {
                list.iter().map(count).collect()
            }
            Some(serde_json::Value::Array(list)) => {
                bail!("UNet config: {} head counts for {n} blocks", list.len())
            }
            Some(one) => Ok(vec![count(one)?; n]),
        }
    }
}

/// The loaded UNet.
pub struct UNet2DConditionModel {
    time_dim: usize,
    time_embedding: TimestepEmbedding,
    conv_in: Conv2d,
    down: Vec<DownBlock>,
    mid: MidBlock,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet2DConditionModel {
    /// Loads `unet.*`.
    pub(crate) fn load(w: &Weights, cfg: &UNetConfig) -> Result<Self> {
        let n = cfg.block_out_channels.len();
        if cfg.down_block_types.len() != n || cfg.up_block_types.len() != n {
            bail!("UNet config: block type lists do not match block_out_channels");
        }
        let heads = cfg.heads()?;
        let g = cfg.norm_num_groups;
        let l = cfg.layers_per_block;
        let attention = |heads: usize| AttentionSpec {
            heads,
            upcast: cfg.upcast_attention,
        };
        let spec = |kind: &str, heads: usize| BlockSpec {
            attention: kind.starts_with("CrossAttn").then_some(attention(heads)),
            groups: g,
        };
        let down = (0..n)
            .map(|b| {
                let p = format!("unet.down_blocks.{b}");
                DownBlock::load(
                    w,
                    &p,
                    l,
                    spec(&cfg.down_block_types[b], heads[b]),
                    b == n - 1,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        // Up blocks mirror the down blocks, so block `b` uses the heads of down block n-1-b.
        let up = (0..n)
            .map(|b| {
                let p = format!("unet.up_blocks.{b}");
                let kind = &cfg.up_block_types[b];
                UpBlock::load(w, &p, l, spec(kind, heads[n - 1 - b]), b == n - 1)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            time_dim: cfg.block_out_channels[0],
            time_embedding: TimestepEmbedding::load(w, "unet.time_embedding")?,
            conv_in: w.conv2d("unet.conv_in", 1, 1)?,
            down,
            mid: MidBlock::load(w, "unet.mid_block", attention(heads[n - 1]), g)?,
            up,
            norm_out: w.group_norm("unet.conv_norm_out", g, 1e-5)?,
            conv_out: w.conv2d("unet.conv_out", 1, 1)?,
        })
    }

    /// Predicts noise for `x` at `timestep` (the same for every row) given `ctx`.
    pub fn forward(&self, x: Tensor<4>, timestep: f32, ctx: &Tensor<3>) -> Tensor<4> {
        let b = x.dims()[0];
        let t = timestep_embedding(&vec![timestep; b], self.time_dim, &x.device());
        let temb = self.time_embedding.forward(t);
        let mut x = self.conv_in.forward(x);
        let mut skips = vec![x.clone()];
        for d in &self.down {
            x = d.forward(x, &temb, ctx, &mut skips);
        }
        x = self.mid.forward(x, &temb, ctx);
        for u in &self.up {
            x = u.forward(x, &temb, ctx, &mut skips);
        }
        self.conv_out.forward(self.norm_out.forward_silu(x))
    }
}
