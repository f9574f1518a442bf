//! kohya / A1111 module names: a layer's diffusers name with its component prefix replaced
//! (`unet.` → `lora_unet_`, `text_encoder.` → `lora_te_`) and every `.` written `_`
//! (`lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`,
//! `lora_te_text_model_encoder_layers_0_self_attn_q_proj`).
//!
//! Some trainers and SD 2.x / SGM-style tools name UNet modules after the original (LDM)
//! layout instead (`lora_unet_input_blocks_1_1_proj_in`, `lora_unet_middle_block_1_…`,
//! `lora_unet_output_blocks_…`); those names come from the one diffusers-to-LDM map
//! (`convert::ldm_unet_names`), never from a second copy of it.
//!
//! Invariant: underscores make the name ambiguous to split, so it is never parsed; each of
//! the model's layers is written in these forms and the module name is looked up. A text
//! encoder layer is also found without transformers' `text_model.` level
//! (`lora_te_encoder_layers_0_…`), as files made from a bare `CLIPTextModel` state name it.

use std::collections::HashMap;

use super::layers::LayerTable;

/// The components kohya names, with their diffusers prefix.
const COMPONENTS: [(&str, &str); 2] = [("unet.", "lora_unet_"), ("text_encoder.", "lora_te_")];

/// kohya module name → the model's layer name.
pub(crate) struct KohyaNames(HashMap<String, String>);

impl KohyaNames {
    /// Every layer of `table` under its kohya names; `ldm_unet` gives a UNet module's
    /// original-layout name from its diffusers one.
    pub(crate) fn of(table: &LayerTable, ldm_unet: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut names = HashMap::new();
        for (name, _) in table.iter() {
            if let Some(ldm) = name.strip_prefix("unet.").and_then(ldm_unet) {
                names.insert(format!("lora_unet_{}", ldm.replace('.', "_")), name.clone());
            }
            for (prefix, kohya) in COMPONENTS {
                let Some(rest) = name.strip_prefix(prefix) else {
                    continue;
                };
                names.insert(format!("{kohya}{}", rest.replace('.', "_")), name.clone());
                if let Some(bare) = rest.strip_prefix("text_model.") {
                    names.insert(format!("{kohya}{}", bare.replace('.', "_")), name.clone());
                }
            }
        }
        Self(names)
    }

    /// The layer a kohya module adapts.
    pub(crate) fn layer(&self, module: &str) -> Option<&str> {
        self.0.get(module).map(String::as_str)
    }

    /// Whether the module name is kohya's (whether or not the model has that layer).
    pub(crate) fn is_kohya(module: &str) -> bool {
        COMPONENTS
            .iter()
            .any(|(_, kohya)| module.starts_with(kohya))
    }
}
