//! diffusers / PEFT module names: the layer's own diffusers name under `unet.` or
//! `text_encoder.` (the text encoder's with or without transformers' `text_model.` level).

use super::layers::LayerTable;

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
