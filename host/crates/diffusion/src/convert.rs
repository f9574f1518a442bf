//! Single-file SD 1.x checkpoints: maps each diffusers parameter name onto the original
//! (CompVis/LDM) key, and infers the component configs from tensor shapes.
//!
//! Invariants: the map is total over the parameters the loaders ask for; a name it does not
//! know maps to `None` and the lookup then fails naming the key. Shapes decide channel
//! counts and depths; what shapes cannot tell (heads, norm groups) follows SD 1.x
//! (8 heads, 32 groups, CLIP heads = width/64) unless the file's `__metadata__` carries
//! `easel.unet.heads`, `easel.unet.norm_num_groups`, `easel.vae.norm_num_groups` or `easel.clip.heads`.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow};

use crate::clip::ClipConfig;
use crate::unet_2d::UNetConfig;
use crate::vae::VaeConfig;
use crate::weights::HostTensor;

fn resnet_unet(rest: &[&str]) -> String {
    let first = match rest[0] {
        "norm1" => "in_layers.0",
        "conv1" => "in_layers.2",
        "time_emb_proj" => "emb_layers.1",
        "norm2" => "out_layers.0",
        "conv2" => "out_layers.3",
        "conv_shortcut" => "skip_connection",
        other => other,
    };
    format!("{first}.{}", rest[1..].join("."))
}

fn unet_key(k: &str, layers: usize, up_attn: &[bool]) -> Option<String> {
    let p: Vec<&str> = k.split('.').collect();
    let tail = |from: usize| p[from..].join(".");
    Some(match p[0] {
        "time_embedding" => {
            let l = if p[1] == "linear_1" {
                "time_embed.0"
            } else {
                "time_embed.2"
            };
            format!("{l}.{}", tail(2))
        }
        "conv_in" => format!("input_blocks.0.0.{}", tail(1)),
        "conv_norm_out" => format!("out.0.{}", tail(1)),
        "conv_out" => format!("out.2.{}", tail(1)),
        "down_blocks" => {
            let b: usize = p[1].parse().ok()?;
            if p[2] == "downsamplers" {
                format!("input_blocks.{}.0.op.{}", (b + 1) * (layers + 1), tail(5))
            } else {
                let j: usize = p[3].parse().ok()?;
                let idx = 1 + b * (layers + 1) + j;
                if p[2] == "resnets" {
                    format!("input_blocks.{idx}.0.{}", resnet_unet(&p[4..]))
                } else {
                    format!("input_blocks.{idx}.1.{}", tail(4))
                }
            }
        }
        "mid_block" => {
            let j: usize = p[2].parse().ok()?;
            if p[1] == "resnets" {
                format!("middle_block.{}.{}", 2 * j, resnet_unet(&p[3..]))
            } else {
                format!("middle_block.1.{}", tail(3))
            }
        }
        "up_blocks" => {
            let b: usize = p[1].parse().ok()?;
            if p[2] == "upsamplers" {
                let slot = if *up_attn.get(b)? { 2 } else { 1 };
                format!(
                    "output_blocks.{}.{slot}.conv.{}",
                    b * (layers + 1) + layers,
                    tail(5)
                )
            } else {
                let j: usize = p[3].parse().ok()?;
                let idx = b * (layers + 1) + j;
                if p[2] == "resnets" {
                    format!("output_blocks.{idx}.0.{}", resnet_unet(&p[4..]))
                } else {
                    format!("output_blocks.{idx}.1.{}", tail(4))
                }
            }
        }
        _ => return None,
    })
}

fn vae_key(k: &str, levels: usize) -> Option<String> {
    let p: Vec<&str> = k.split('.').collect();
    let side = p[0];
    if side == "quant_conv" || side == "post_quant_conv" {
        return Some(k.to_string());
    }
    let rest = &p[1..];
    let resnet = |r: &[&str]| {
        let first = if r[0] == "conv_shortcut" {
            "nin_shortcut"
        } else {
            r[0]
        };
        format!("{first}.{}", r[1..].join("."))
    };
    Some(match rest[0] {
        "conv_in" | "conv_out" => k.to_string(),
        "conv_norm_out" => format!("{side}.norm_out.{}", rest[1..].join(".")),
        "mid_block" => {
            if rest[1] == "resnets" {
                let j: usize = rest[2].parse().ok()?;
                format!("{side}.mid.block_{}.{}", j + 1, resnet(&rest[3..]))
            } else {
                let (name, from) = match rest[3] {
                    "group_norm" => ("norm", 4),
                    "to_q" => ("q", 4),
                    "to_k" => ("k", 4),
                    "to_v" => ("v", 4),
                    "to_out" => ("proj_out", 5),
                    _ => return None,
                };
                format!("{side}.mid.attn_1.{name}.{}", rest[from..].join("."))
            }
        }
        "down_blocks" | "up_blocks" => {
            let mut i: usize = rest[1].parse().ok()?;
            if side == "decoder" {
                i = levels - 1 - i;
            }
            let word = if side == "encoder" { "down" } else { "up" };
            if rest[2] == "downsamplers" || rest[2] == "upsamplers" {
                let s = if side == "encoder" {
                    "downsample"
                } else {
                    "upsample"
                };
                format!("{side}.{word}.{i}.{s}.conv.{}", rest[5..].join("."))
            } else {
                format!("{side}.{word}.{i}.block.{}.{}", rest[3], resnet(&rest[4..]))
            }
        }
        _ => return None,
    })
}

/// Shapes and names needed to map and configure a single-file checkpoint.
pub(crate) struct SingleFile {
    pub(crate) unet: UNetConfig,
    pub(crate) vae: VaeConfig,
    pub(crate) clip: ClipConfig,
}

fn shape<'a>(t: &'a HashMap<String, HostTensor>, k: &str) -> Result<&'a [usize]> {
    t.get(k)
        .map(|h| h.shape.as_slice())
        .ok_or_else(|| anyhow!("single-file checkpoint lacks {k}"))
}

impl SingleFile {
    /// Infers the configs from an original-layout state dict.
    pub(crate) fn infer(
        t: &HashMap<String, HostTensor>,
        meta: &HashMap<String, String>,
    ) -> Result<Self> {
        let u = "model.diffusion_model.";
        let max_in = t
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{u}input_blocks.")))
            .filter_map(|r| r.split('.').next()?.parse::<usize>().ok())
            .max()
            .context("no UNet input_blocks in checkpoint")?;
        // Down-block 0's downsampler sits at index layers+1; it is the first index whose
        // module 0 is an `op` conv.
        let layers = (1..=max_in)
            .find(|i| t.contains_key(&format!("{u}input_blocks.{i}.0.op.weight")))
            .map(|i| i - 1)
            .unwrap_or(max_in);
        let levels = (max_in) / (layers + 1) + 1;
        let mut channels = Vec::new();
        let mut down = Vec::new();
        let mut up = Vec::new();
        for b in 0..levels {
            let idx = 1 + b * (layers + 1);
            channels.push(shape(t, &format!("{u}input_blocks.{idx}.0.out_layers.3.weight"))?[0]);
            let attn = t.contains_key(&format!("{u}input_blocks.{idx}.1.norm.weight"));
            down.push(
                if attn {
                    "CrossAttnDownBlock2D"
                } else {
                    "DownBlock2D"
                }
                .to_string(),
            );
            let oidx = b * (layers + 1);
            let uattn = t.contains_key(&format!("{u}output_blocks.{oidx}.1.norm.weight"));
            up.push(
                if uattn {
                    "CrossAttnUpBlock2D"
                } else {
                    "UpBlock2D"
                }
                .to_string(),
            );
        }
        let attn_key = (0..levels)
            .map(|b| 1 + b * (layers + 1))
            .map(|i| format!("{u}input_blocks.{i}.1.transformer_blocks.0.attn2.to_k.weight"))
            .find(|k| t.contains_key(k))
            .unwrap_or_else(|| format!("{u}middle_block.1.transformer_blocks.0.attn2.to_k.weight"));
        let cross = shape(t, &attn_key)?[1];
        let linear_proj = shape(t, &format!("{u}middle_block.1.proj_in.weight"))?.len() == 2;
        let heads = match meta.get("easel.unet.heads") {
            Some(h) => serde_json::Value::from(h.parse::<u64>()?),
            None if linear_proj => serde_json::Value::from(
                channels.iter().map(|c| (c / 64) as u64).collect::<Vec<_>>(),
            ),
            None => serde_json::Value::from(8u64),
        };
        let unet = UNetConfig {
            in_channels: shape(t, &format!("{u}input_blocks.0.0.weight"))?[1],
            block_out_channels: channels,
            down_block_types: down,
            up_block_types: up,
            layers_per_block: layers,
            attention_head_dim: None,
            num_attention_heads: Some(heads),
            cross_attention_dim: cross,
            norm_num_groups: meta
                .get("easel.unet.norm_num_groups")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(32),
        };
        let v = "first_stage_model.";
        let vlevels = (0..)
            .take_while(|i| t.contains_key(&format!("{v}encoder.down.{i}.block.0.conv1.weight")))
            .count();
        let vch = (0..vlevels)
            .map(|i| shape(t, &format!("{v}encoder.down.{i}.block.0.conv1.weight")).map(|s| s[0]))
            .collect::<Result<Vec<_>>>()?;
        let vlayers = (0..)
            .take_while(|j| t.contains_key(&format!("{v}encoder.down.0.block.{j}.conv1.weight")))
            .count();
        let vae = VaeConfig {
            block_out_channels: vch,
            layers_per_block: vlayers,
            latent_channels: shape(t, &format!("{v}post_quant_conv.weight"))?[0],
            norm_num_groups: meta
                .get("easel.vae.norm_num_groups")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(32),
            scaling_factor: 0.18215,
        };
        let c = "cond_stage_model.transformer.text_model.";
        let emb = shape(t, &format!("{c}embeddings.token_embedding.weight"))?;
        let hidden = emb[1];
        let clayers = (0..)
            .take_while(|i| t.contains_key(&format!("{c}encoder.layers.{i}.mlp.fc1.weight")))
            .count();
        let clip = ClipConfig {
            vocab_size: emb[0],
            hidden_size: hidden,
            intermediate_size: shape(t, &format!("{c}encoder.layers.0.mlp.fc1.weight"))?[0],
            num_hidden_layers: clayers,
            num_attention_heads: meta
                .get("easel.clip.heads")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(hidden / 64),
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        };
        Ok(Self { unet, vae, clip })
    }

    /// Whether an original-layout key belongs to the UNet, the VAE or the text encoder;
    /// checkpoints also carry an EMA copy, `alphas_cumprod` and training state, never read.
    pub(crate) fn is_component_key(key: &str) -> bool {
        [
            "model.diffusion_model.",
            "first_stage_model.",
            "cond_stage_model.",
        ]
        .iter()
        .any(|p| key.starts_with(p))
    }

    /// The renaming closure: prefixed diffusers name to original key.
    pub(crate) fn renamer(&self) -> Box<dyn Fn(&str) -> Option<String> + Send + Sync> {
        let layers = self.unet.layers_per_block;
        let up_attn: Vec<bool> = self
            .unet
            .up_block_types
            .iter()
            .map(|s| s.starts_with("CrossAttn"))
            .collect();
        let levels = self.vae.block_out_channels.len();
        Box::new(move |name: &str| {
            if let Some(r) = name.strip_prefix("unet.") {
                unet_key(r, layers, &up_attn).map(|k| format!("model.diffusion_model.{k}"))
            } else if let Some(r) = name.strip_prefix("vae.") {
                vae_key(r, levels).map(|k| format!("first_stage_model.{k}"))
            } else {
                name.strip_prefix("text_encoder.")
                    .map(|r| format!("cond_stage_model.transformer.{r}"))
            }
        })
    }
}
