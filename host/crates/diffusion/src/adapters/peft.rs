//! diffusers / PEFT module names: the layer's own diffusers name under `unet.` or
//! `text_encoder.` (the text encoder's with or without transformers' `text_model.` level),
//! and the scale a PEFT file's metadata gives its modules.
//!
//! Older layouts are read under today's names ([`current_name`]), so nothing else knows them:
//! the attention processors of diffusers before PEFT (`save_attn_procs`: bare UNet names,
//! `….attn1.processor.to_q_lora.down.weight`; the text encoder's
//! `….self_attn.to_q_lora.down.weight`), its `lora_linear_layer` level, and PEFT's own
//! `base_model.model.` prefix (a UNet's, or a CLIP text model's under `text_model.`). None of
//! them stores an alpha: their scale is 1, as diffusers' training scripts save them
//! (`lora_alpha` equal to the rank; a PEFT `adapter_config.json` beside a file is not read).
//!
//! diffusers writes no `.alpha` tensors for a PEFT LoRA; it stores each component's PEFT
//! config as JSON under the safetensors metadata key `lora_adapter_metadata`, its keys
//! prefixed with the component (`unet.lora_alpha`, `unet.r`, `text_encoder.use_rslora`, …).
//! A module then scales by `lora_alpha / r` (`lora_alpha / √r` with rsLoRA), as PEFT does;
//! per-module `alpha_pattern` and `rank_pattern` are refused rather than applied wrongly.

use std::borrow::Cow;
use std::collections::HashMap;

use super::layers::LayerTable;

/// The safetensors metadata key diffusers stores the PEFT configs under.
const METADATA_KEY: &str = "lora_adapter_metadata";

/// Each component's scale (`unet`, `text_encoder`) from a file's PEFT configs.
#[derive(Debug, Default)]
pub(crate) struct Scales(HashMap<String, f32>);

impl Scales {
    /// Reads the PEFT configs in a safetensors file's `__metadata__`, if any; why they cannot
    /// be applied otherwise.
    pub(crate) fn from_metadata(metadata: &HashMap<String, String>) -> Result<Self, String> {
        let Some(text) = metadata.get(METADATA_KEY) else {
            return Ok(Self::default());
        };
        let config: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| format!("{METADATA_KEY} is not a JSON object: {e}"))?;
        let mut scales = HashMap::new();
        for (key, alpha) in &config {
            let Some(component) = key.strip_suffix(".lora_alpha") else {
                continue;
            };
            let field = |name: &str| config.get(&format!("{component}.{name}"));
            for pattern in ["alpha_pattern", "rank_pattern"] {
                if field(pattern)
                    .and_then(|p| p.as_object())
                    .is_some_and(|p| !p.is_empty())
                {
                    return Err(format!(
                        "{METADATA_KEY}: {component}.{pattern} (per-module scales) is not supported"
                    ));
                }
            }
            let (Some(alpha), Some(rank)) = (alpha.as_f64(), field("r").and_then(|r| r.as_f64()))
            else {
                return Err(format!(
                    "{METADATA_KEY}: {component} needs a numeric lora_alpha and r"
                ));
            };
            if rank <= 0.0 {
                return Err(format!("{METADATA_KEY}: {component}.r must be positive"));
            }
            let rslora = field("use_rslora").and_then(|v| v.as_bool()) == Some(true);
            let scale = if rslora {
                alpha / rank.sqrt()
            } else {
                alpha / rank
            };
            scales.insert(component.to_string(), scale as f32);
        }
        Ok(Self(scales))
    }

    /// The scale of the module named `module` (`unet.down_blocks…`), when its component's
    /// config gives one.
    pub(crate) fn of(&self, module: &str) -> Option<f32> {
        self.0.get(module.split('.').next()?).copied()
    }
}

/// The layer a dotted module name adapts, if the model has it.
pub(crate) fn layer(module: &str, table: &LayerTable) -> Option<String> {
    if table.get(module).is_some()
        && (module.starts_with("unet.") || module.starts_with("text_encoder."))
    {
        return Some(module.to_string());
    }
    let nested = format!(
        "text_encoder.text_model.{}",
        module.strip_prefix("text_encoder.")?
    );
    table.get(&nested).is_some().then_some(nested)
}

/// The attention projections as diffusers' attention processors named their LoRAs, with the
/// layer each adapts in the UNet's attention and in CLIP's self-attention.
const PROCESSOR_LORAS: [(&str, &str, &str); 4] = [
    ("to_q_lora", "to_q", "q_proj"),
    ("to_k_lora", "to_k", "k_proj"),
    ("to_v_lora", "to_v", "v_proj"),
    ("to_out_lora", "to_out.0", "out_proj"),
];

/// How a UNet's own module names begin: a file of the UNet alone names them so, bare.
const UNET_TOPS: [&str; 7] = [
    "down_blocks.",
    "mid_block.",
    "up_blocks.",
    "conv_in.",
    "conv_out.",
    "conv_norm_out.",
    "time_embedding.",
];

/// `key` under today's diffusers name when it is written in one of the older layouts (see the
/// module docs); as it is otherwise.
pub(crate) fn current_name(key: &str) -> Cow<'_, str> {
    let mut name = Cow::Borrowed(key);
    if let Some(rest) = key.strip_prefix("base_model.model.") {
        let component = if rest.starts_with("text_model.") {
            "text_encoder"
        } else {
            "unet"
        };
        name = Cow::Owned(format!("{component}.{rest}"));
    } else if UNET_TOPS.iter().any(|top| key.starts_with(top)) {
        name = Cow::Owned(format!("unet.{key}"));
    }
    if name.contains(".lora_linear_layer.") {
        name = Cow::Owned(name.replace(".lora_linear_layer.", ".lora."));
    }
    for (old, unet, clip) in PROCESSOR_LORAS {
        // A UNet processor sat beside its attention's projections; CLIP's LoRAs were named
        // inside its self-attention.
        let renames = [
            (format!(".processor.{old}."), format!(".{unet}.lora.")),
            (
                format!(".self_attn.{old}."),
                format!(".self_attn.{clip}.lora."),
            ),
        ];
        for (written, today) in renames {
            if name.contains(&written) {
                return Cow::Owned(name.replace(&written, &today));
            }
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::current_name;

    #[test]
    fn older_layouts_are_read_under_todays_names() {
        for (old, today) in [
            (
                "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight",
                "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight",
            ),
            (
                "unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight",
                "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.lora.up.weight",
            ),
            (
                "text_encoder.text_model.encoder.layers.3.self_attn.to_v_lora.up.weight",
                "text_encoder.text_model.encoder.layers.3.self_attn.v_proj.lora.up.weight",
            ),
            (
                "text_encoder.text_model.encoder.layers.3.self_attn.k_proj.lora_linear_layer.down.weight",
                "text_encoder.text_model.encoder.layers.3.self_attn.k_proj.lora.down.weight",
            ),
            (
                "base_model.model.up_blocks.1.attentions.2.proj_in.lora_A.weight",
                "unet.up_blocks.1.attentions.2.proj_in.lora_A.weight",
            ),
            (
                "base_model.model.text_model.encoder.layers.0.mlp.fc1.lora_B.weight",
                "text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_B.weight",
            ),
        ] {
            assert_eq!(current_name(old), today);
        }
        for current in [
            "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight",
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
            "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha",
        ] {
            assert_eq!(current_name(current), current);
        }
    }
}
