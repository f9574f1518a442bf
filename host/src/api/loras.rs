//! The adapters a model offers, as every dialect's model listing shows them.
//!
//! A model takes adapters by name when its params schema declares `loras` items with a
//! `name` (the `local` model does); its provider lists them in `extra.loras`, one object per
//! usable adapter (`name`, `format`, `family`, `rank`, `tensors`, `unet_layers`,
//! `text_encoder_layers`, `sha256`). Each listing shows them where its contract leaves room:
//! Pixel's open `capabilities` object (with Pixel's composite `id`, the value its
//! `extraParams.loras[].model` takes), seed 001's capabilities (keyed by model id) and
//! llmage's model objects (`loras`).
//!
//! Invariant: a model that does not take named adapters lists none, whatever its `extra`
//! holds, so no listing offers adapters a request would be refused for naming.

use easel_provider::ModelInfo;
use serde_json::Value;

/// Whether the model reads adapters named `{name, weight}`.
pub fn takes_named_loras(model: &ModelInfo) -> bool {
    model.params_schema["properties"]["loras"]["items"]["properties"]
        .get("name")
        .is_some()
}

/// The adapters `model` offers, as its provider lists them; `None` when it takes none.
pub fn listed(model: &ModelInfo) -> Option<Vec<Value>> {
    if !takes_named_loras(model) {
        return None;
    }
    Some(match model.extra.get("loras") {
        Some(Value::Array(loras)) => loras.clone(),
        _ => Vec::new(),
    })
}

/// [`listed`] with each adapter's composite `provider/name` id first, as Pixel names them.
pub fn listed_with_ids(model: &ModelInfo, provider: &str) -> Option<Vec<Value>> {
    let loras = listed(model)?;
    Some(
        loras
            .into_iter()
            .map(|lora| {
                let mut with_id = serde_json::Map::new();
                if let Some(name) = lora.get("name").and_then(Value::as_str) {
                    with_id.insert("id".into(), format!("{provider}/{name}").into());
                }
                if let Value::Object(fields) = lora {
                    with_id.extend(fields);
                }
                Value::Object(with_id)
            })
            .collect(),
    )
}
