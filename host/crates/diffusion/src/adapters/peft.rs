//! diffusers / PEFT module names: the layer's own diffusers name under `unet.` or
//! `text_encoder.` (the text encoder's with or without transformers' `text_model.` level),
//! and the scale a PEFT file's metadata gives its modules.
//!
//! diffusers writes no `.alpha` tensors for a PEFT LoRA; it stores each component's PEFT
//! config as JSON under the safetensors metadata key `lora_adapter_metadata`, its keys
//! prefixed with the component (`unet.lora_alpha`, `unet.r`, `text_encoder.use_rslora`, …).
//! A module then scales by `lora_alpha / r` (`lora_alpha / √r` with rsLoRA), as PEFT does;
//! per-module `alpha_pattern` and `rank_pattern` are refused rather than applied wrongly.

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
