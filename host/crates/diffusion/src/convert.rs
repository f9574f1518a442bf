//! Single-file SD 1.x and 2.x checkpoints: maps each diffusers parameter name onto the
//! original (CompVis/LDM) key, and infers the component configs from tensor shapes.
//!
//! Invariants: the map is total over the parameters the loaders ask for; a name it does not
//! know maps to `None` and the lookup then fails naming the key. Shapes decide channel
//! counts and depths; what shapes cannot tell (heads, norm groups) follows Stable Diffusion
//! (SD 1.x: 8 heads; SD 2.x, told by its linear `proj_in`: 64 channels per head; 32 groups;
//! CLIP heads = width/64) unless the file's `__metadata__` carries `easel.unet.heads`,
//! `easel.unet.head_channels`, `easel.unet.norm_num_groups`, `easel.vae.norm_num_groups` or
//! `easel.clip.heads`.
//!
//! SD 2.x files hold an OpenCLIP text tower (`cond_stage_model.model.`) where SD 1.x files
//! hold transformers' CLIP (`cond_stage_model.transformer.`). [`SingleFile::prepare`]
//! rewrites the tower into transformers' names once, in the table, so everything after it
//! (the renamer, the CLIP loader) knows one layout. The tower marks the file as SD 2.x:
//! gelu, `!` padding, v-prediction and upcast attention (see [`SingleFile`]).

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::clip::ClipConfig;
use crate::schedulers::Prediction;
use crate::unet_2d::UNetConfig;
use crate::vae::VaeConfig;
use crate::weights::{HostTensor, Renamer, nest_text_model};

/// SD 2.x's OpenCLIP text tower.
const OPEN_CLIP: &str = "cond_stage_model.model.";
/// SD 1.x's transformers CLIP, and where the OpenCLIP tower is rewritten to.
const TRANSFORMERS_CLIP: &str = "cond_stage_model.transformer.";

/// transformers' name for an OpenCLIP resblock parameter other than the fused `in_proj`.
fn open_clip_layer_key(rest: &str) -> Option<String> {
    let (module, param) = rest.rsplit_once('.')?;
    let name = match module {
        "ln_1" => "layer_norm1",
        "ln_2" => "layer_norm2",
        "attn.out_proj" => "self_attn.out_proj",
        "mlp.c_fc" => "mlp.fc1",
        "mlp.c_proj" => "mlp.fc2",
        _ => return None,
    };
    Some(format!("{name}.{param}"))
}

/// Rewrites an OpenCLIP text tower (`cond_stage_model.model.*`) into transformers' CLIP
/// names under `cond_stage_model.transformer.text_model.`; returns whether there was one.
///
/// - Each fused `attn.in_proj_weight`/`_bias` (rows q, then k, then v) is split into
///   `q_proj`, `k_proj` and `v_proj`.
/// - The last resblock is dropped: SD 2.x conditions on the penultimate layer's output
///   (then `ln_final`), which diffusers' SD 2.x configs express as a text encoder one layer
///   shorter than the tower (23 of ViT-H's 24).
/// - `text_projection` and `logit_scale` are dropped: SD reads hidden states, not the
///   pooled projection.
fn open_clip_to_transformers(t: &mut HashMap<String, HostTensor>) -> Result<bool> {
    let tower: Vec<String> = t
        .keys()
        .filter(|k| k.starts_with(OPEN_CLIP))
        .cloned()
        .collect();
    if tower.is_empty() {
        return Ok(false);
    }
    let block = |k: &str| -> Option<(usize, String)> {
        let rest = k
            .strip_prefix(OPEN_CLIP)?
            .strip_prefix("transformer.resblocks.")?;
        let (i, rest) = rest.split_once('.')?;
        Some((i.parse().ok()?, rest.to_string()))
    };
    let blocks = tower
        .iter()
        .filter_map(|k| block(k))
        .map(|(i, _)| i + 1)
        .max()
        .context("OpenCLIP text tower without resblocks")?;
    let out = format!("{TRANSFORMERS_CLIP}text_model.");
    for key in tower {
        let h = t.remove(&key).expect("listed above");
        let rest = &key[OPEN_CLIP.len()..];
        let name = match (rest, block(&key)) {
            ("token_embedding.weight", _) => "embeddings.token_embedding.weight".to_string(),
            ("positional_embedding", _) => "embeddings.position_embedding.weight".to_string(),
            ("ln_final.weight" | "ln_final.bias", _) => {
                format!("final_layer_norm.{}", &rest["ln_final.".len()..])
            }
            (_, Some((i, _))) if i + 1 == blocks => continue,
            (_, Some((i, part))) => {
                let layer = format!("encoder.layers.{i}");
                if let Some(param) = part.strip_prefix("attn.in_proj_") {
                    // [3w, w] weight or [3w] bias: thirds along the first axis.
                    ensure!(h.shape[0].is_multiple_of(3), "{key}: shape {:?}", h.shape);
                    let mut shape = h.shape.clone();
                    shape[0] /= 3;
                    let third = h.data.len() / 3;
                    for (j, proj) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                        let data = h.data[j * third..(j + 1) * third].to_vec();
                        let shape = shape.clone();
                        let name = format!("{out}{layer}.self_attn.{proj}.{param}");
                        t.insert(name, HostTensor { data, shape });
                    }
                    continue;
                }
                let Some(name) = open_clip_layer_key(&part) else {
                    bail!("unknown OpenCLIP text tower key {key}");
                };
                format!("{layer}.{name}")
            }
            _ => continue,
        };
        t.insert(format!("{out}{name}"), h);
    }
    Ok(true)
}

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

/// The original (LDM) name of a UNet parameter or module of a model configured as `unet`,
/// from its diffusers name without the `unet.` prefix
/// (`down_blocks.0.attentions.0.proj_in` → `input_blocks.1.1.proj_in`). The one map between
/// the two layouts: single-file checkpoints are read through it, and adapters whose keys
/// follow the original layout (`lora_unet_input_blocks_1_1_proj_in`) are matched through it.
pub(crate) fn ldm_unet_names(
    unet: &UNetConfig,
) -> impl Fn(&str) -> Option<String> + Send + Sync + use<> {
    let layers = unet.layers_per_block;
    let up_attn: Vec<bool> = unet
        .up_block_types
        .iter()
        .map(|s| s.starts_with("CrossAttn"))
        .collect();
    move |name: &str| {
        if name.ends_with(".weight") || name.ends_with(".bias") {
            return unet_key(name, layers, &up_attn);
        }
        // The map is written for parameters; a module is named as its weight, unsuffixed.
        let key = unet_key(&format!("{name}.weight"), layers, &up_attn)?;
        key.strip_suffix(".weight").map(str::to_string)
    }
}

/// Shapes and names needed to map and configure a single-file checkpoint.
pub(crate) struct SingleFile {
    pub(crate) unet: UNetConfig,
    pub(crate) vae: VaeConfig,
    pub(crate) clip: ClipConfig,
    /// The tokenizer's pad token when not `<|endoftext|>`: `!` (id 0, what open_clip's
    /// tokenizer pads with) for SD 2.x.
    pub(crate) pad_token: Option<&'static str>,
    /// v-prediction for SD 2.x, as diffusers' `from_single_file` assumes: a file does not say,
    /// and the 768-v models are the 2.x default (the 512-base ones, epsilon, need a diffusers
    /// folder, whose scheduler config says so).
    pub(crate) prediction: Prediction,
}

fn shape<'a>(t: &'a HashMap<String, HostTensor>, k: &str) -> Result<&'a [usize]> {
    t.get(k)
        .map(|h| h.shape.as_slice())
        .ok_or_else(|| anyhow!("single-file checkpoint lacks {k}"))
}

impl SingleFile {
    /// Brings the text encoder's keys to transformers' nested layout (from OpenCLIP or bare
    /// transformers names), then infers the configs from the original-layout state dict.
    pub(crate) fn prepare(
        t: &mut HashMap<String, HostTensor>,
        meta: &HashMap<String, String>,
    ) -> Result<Self> {
        let sd2 = open_clip_to_transformers(t)?;
        nest_text_model(t, TRANSFORMERS_CLIP);
        let mut sf = Self::infer(t, meta)?;
        if sd2 {
            sf.clip.hidden_act = "gelu".into();
            // The file does not say; SD 2.1's attention overflows in f16, and upcasting costs
            // 2.0 nothing but speed in f16 (in f32 it changes nothing).
            sf.unet.upcast_attention = true;
            sf.pad_token = Some("!");
            sf.prediction = Prediction::V;
        }
        Ok(sf)
    }

    /// The configs of an original-layout state dict whose text keys are nested
    /// transformers names, read as SD 1.x.
    fn infer(t: &HashMap<String, HostTensor>, meta: &HashMap<String, String>) -> Result<Self> {
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
        // SD 2.x fixes the channels per head (LDM's `num_head_channels: 64`), so its head
        // count differs per block; SD 1.x fixes the head count (`num_heads: 8`).
        let head_channels = match meta.get("easel.unet.head_channels") {
            Some(c) => Some(c.parse::<usize>()?),
            None => linear_proj.then_some(64),
        };
        let heads = match (meta.get("easel.unet.heads"), head_channels) {
            (Some(h), _) => serde_json::Value::from(h.parse::<u64>()?),
            (None, Some(c)) => {
                ensure!(c > 0, "easel.unet.head_channels must be positive");
                serde_json::Value::from(
                    channels
                        .iter()
                        .map(|ch| (ch / c) as u64)
                        .collect::<Vec<_>>(),
                )
            }
            (None, None) => serde_json::Value::from(8u64),
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
            upcast_attention: false,
            // A single file says nothing of its training size (see `StableDiffusion::load`).
            sample_size: None,
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
        let c = &format!("{TRANSFORMERS_CLIP}text_model.");
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
        Ok(Self {
            unet,
            vae,
            clip,
            pad_token: None,
            prediction: Prediction::Epsilon,
        })
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
    pub(crate) fn renamer(&self) -> Renamer {
        let unet = ldm_unet_names(&self.unet);
        let levels = self.vae.block_out_channels.len();
        Box::new(move |name: &str| {
            if let Some(r) = name.strip_prefix("unet.") {
                unet(r).map(|k| format!("model.diffusion_model.{k}"))
            } else if let Some(r) = name.strip_prefix("vae.") {
                vae_key(r, levels).map(|k| format!("first_stage_model.{k}"))
            } else {
                name.strip_prefix("text_encoder.")
                    .map(|r| format!("{TRANSFORMERS_CLIP}{r}"))
            }
        })
    }
}
