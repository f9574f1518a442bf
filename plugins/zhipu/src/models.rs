//! The manifest: cogview-3-flash (seed 002's text-to-image row) and the GLM chat models.

use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, GenerationRequest, Manifest, Model, Result};

/// The image model, as seed 002 names it.
pub const COGVIEW_3_FLASH: &str = "cogview-3-flash";
/// GLM chat models served (vendor names) with display names.
pub const CHAT_MODELS: [(&str, &str); 3] = [
    ("glm-4.6", "GLM-4.6"),
    ("glm-4.5-air", "GLM-4.5-Air"),
    ("glm-4.5-flash", "GLM-4.5-Flash"),
];
/// CogView's recommended sizes; the first is its default.
pub const SIZES: [&str; 7] = [
    "1024x1024",
    "768x1344",
    "864x1152",
    "1344x768",
    "1152x864",
    "1440x720",
    "720x1440",
];

fn image_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "negative_prompt": {"type": "string", "default": "",
                                "description": "What to avoid; CogView has no such field, so it is added to the prompt."},
            "size": {"type": "string", "enum": SIZES, "default": "1024x1024"},
            "width": {"type": "integer", "minimum": 512, "maximum": 2048, "multipleOf": 16,
                      "description": "With height: a custom size instead of `size`."},
            "height": {"type": "integer", "minimum": 512, "maximum": 2048, "multipleOf": 16}
        },
        "additionalProperties": true
    })
}

/// The GLM chat schema: Zhipu's sampling ranges, JSON mode, and OpenAI's tool parameters as
/// Zhipu takes them. Its `tool_choice` is `auto` only, and it has no `parallel_tool_calls` switch (GLM may
/// make several calls in one answer), so `true` is the one value offered and is not sent.
fn chat_schema() -> Value {
    let mut schema = vendor_kit::chat::with_tools(json!({
        "type": "object",
        "properties": {
            "temperature": {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.75},
            "top_p": {"type": "number", "minimum": 0.01, "maximum": 1.0, "default": 0.9},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 98304},
            "response_format": {
                "type": "object",
                "properties": {"type": {"enum": ["text", "json_object"]}},
                "required": ["type"]
            }
        },
        "additionalProperties": true
    }));
    schema["properties"]["tool_choice"] = json!({"enum": ["auto"], "description": "Zhipu takes only auto."});
    schema["properties"]["parallel_tool_calls"] = json!({
        "enum": [true],
        "description": "GLM may make several calls in one answer; Zhipu cannot turn that off."
    });
    schema
}

/// The `size` to send: `width`×`height` when both are given (CogView caps custom sizes at
/// 2^21 pixels), else the `size` parameter.
pub fn image_size(request: &GenerationRequest) -> Result<String> {
    match (request.param_value("width"), request.param_value("height")) {
        (Some(_), Some(_)) => {
            let (w, h) = (
                request.param_u64("width", 1024)?,
                request.param_u64("height", 1024)?,
            );
            if w * h > 1 << 21 {
                return Err(Error::invalid(format!(
                    "{w}x{h} exceeds CogView's 2^21-pixel limit"
                )));
            }
            Ok(format!("{w}x{h}"))
        }
        (None, None) => Ok(request.param_str("size", SIZES[0])?.to_string()),
        _ => Err(Error::invalid("give both width and height, or neither")),
    }
}

/// The plugin's manifest.
pub fn manifest() -> Manifest {
    let mut manifest = Manifest::new("zhipu", env!("CARGO_PKG_VERSION"))
        .allow_host("open.bigmodel.cn")
        // CogView's `data[].url`: the reference
        // (https://docs.bigmodel.cn/api-reference/模型-api/图像生成) shows a placeholder;
        // published answers and examples link to this Zhipu host.
        .allow_host("aigc-files.bigmodel.cn")
        .secret(crate::API_KEY_SECRET)
        .model(
            Model::new(COGVIEW_3_FLASH, "CogView-3-Flash", "image")
                .capability("image.generate")
                .params_schema(image_schema())
                .price_hint(1.0)
                .extra(json!({
                    "resolutions": {"1K": {"1:1": "1024*1024", "16:9": "1344*768", "9:16": "768*1344",
                                           "4:3": "1152*864", "3:4": "864*1152", "2:1": "1440*720", "1:2": "720*1440"}},
                    "capabilities": {"supportsLora": false, "supportsRefImage": false}
                })),
        );
    for (key, name) in CHAT_MODELS {
        manifest = manifest.model(
            Model::new(key, name, "chat")
                .capability("chat")
                .params_schema(chat_schema())
                .price_hint(0.1),
        );
    }
    manifest
}
