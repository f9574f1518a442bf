//! Reading request parameters the way both seed APIs name them.
//!
//! Models that only the Pixel API lists (`qwen-image`, `wan2.6-video`) take Pixel's
//! camel-case names (`negativePrompt`, `aspectRatio`); the llmage models take snake case
//! (`negative_prompt`). The negative prompt is read under either name so a client of one
//! API reaching a model of the other still gets what it asked for.

use easel_sdk::serde_json::Value;
use easel_sdk::{GenerationRequest, Result};

/// The negative prompt under `negative_prompt` or `negativePrompt`; empty counts as none.
pub fn negative_prompt(request: &GenerationRequest) -> Result<Option<String>> {
    for name in ["negative_prompt", "negativePrompt"] {
        let text = request.param_str(name, "")?;
        if !text.trim().is_empty() {
            return Ok(Some(text.to_string()));
        }
    }
    Ok(None)
}

/// Copies the named parameters the client set into `target` unchanged.
pub fn copy(request: &GenerationRequest, target: &mut Value, names: &[&str]) {
    for name in names {
        if let Some(value) = request.param_value(name) {
            target[*name] = value.clone();
        }
    }
}
