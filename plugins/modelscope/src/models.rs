//! The manifest (seed 000's `modelscope/qwen-image`: resolution levels by aspect ratio,
//! LoRA support) and the translation of those parameters to ModelScope's `size` and
//! `loras`.

use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{Error, GenerationRequest, Manifest, Model, Result};

/// easel's model key, as seed 000 writes it.
pub const QWEN_IMAGE: &str = "qwen-image";
/// The model id on ModelScope.
pub const MODELSCOPE_MODEL_ID: &str = "Qwen/Qwen-Image";
/// Qwen-Image's native sizes per aspect ratio (its largest side stays within
/// API-Inference's 1664-pixel limit, so there is only the `1K` level).
pub const SIZES_1K: [(&str, &str); 5] =
    [("1:1", "1328x1328"), ("16:9", "1664x928"), ("9:16", "928x1664"), ("4:3", "1472x1104"), ("3:4", "1104x1472")];

fn params_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "resolution": {"type": "string", "enum": ["1K"], "default": "1K"},
            "aspectRatio": {"type": "string", "enum": SIZES_1K.map(|(r, _)| r), "default": "1:1"},
            "size": {"type": "string", "pattern": "^[0-9]{2,4}x[0-9]{2,4}$", "sizeBounds": {"minSide": 64, "maxSide": 1664},
                     "description": "Explicit WIDTHxHEIGHT (64–1664 each); overrides resolution and aspectRatio."},
            "negative_prompt": {"type": "string", "maxLength": 2000},
            "negativePrompt": {"type": "string", "maxLength": 2000, "description": "Seed 000's spelling of negative_prompt."},
            "seed": {"type": "integer", "minimum": 0, "maximum": 2147483647},
            "steps": {"type": "integer", "minimum": 1, "maximum": 100, "default": 30},
            "guidance": {"type": "number", "minimum": 1.5, "maximum": 20.0, "default": 3.5},
            "loras": {"type": "array", "maxItems": 6, "items": {
                "type": "object", "required": ["model"],
                "properties": {"model": {"type": "string"}, "weight": {"type": "number", "minimum": 0.0, "maximum": 2.0, "default": 1.0}}
            }}
        },
        "additionalProperties": true
    })
}

/// The `size` to send.
pub fn size(request: &GenerationRequest) -> Result<String> {
    // The schema's pattern and `sizeBounds` kept it within what the model renders.
    if let Some(size) = request.param_value("size") {
        let size = size.as_str().ok_or_else(|| Error::invalid("`size` must be a string"))?;
        return Ok(size.to_string());
    }
    let ratio = request.param_str("aspectRatio", "1:1")?;
    SIZES_1K
        .iter()
        .find(|(r, _)| *r == ratio)
        .map(|(_, s)| s.to_string())
        .ok_or_else(|| Error::invalid(format!("aspectRatio `{ratio}` is not one of {:?}", SIZES_1K.map(|(r, _)| r))))
}

/// Seed 000's `loras: [{model, weight}]` as ModelScope's `{repo id: weight}` map.
pub fn loras(request: &GenerationRequest) -> Result<Option<Value>> {
    let Some(list) = request.param_value("loras") else { return Ok(None) };
    let list = list.as_array().ok_or_else(|| Error::invalid("`loras` must be a list"))?;
    let mut map = Map::new();
    for lora in list {
        let model = lora["model"].as_str().filter(|m| !m.is_empty()).ok_or_else(|| Error::invalid("each LoRA needs a `model`"))?;
        map.insert(model.to_string(), json!(lora["weight"].as_f64().unwrap_or(1.0)));
    }
    Ok(if map.is_empty() { None } else { Some(Value::Object(map)) })
}

/// The plugin's manifest.
pub fn manifest() -> Manifest {
    let sizes: Map<String, Value> = SIZES_1K.iter().map(|(r, s)| (r.to_string(), json!(s.replace('x', "*")))).collect();
    Manifest::new("modelscope", env!("CARGO_PKG_VERSION"))
        .allow_host("api-inference.modelscope.cn")
        // `output_images` links: the API-Inference docs
        // (https://modelscope.cn/docs/model-service/API-Inference/intro) name no host; published
        // task answers all link to this OSS bucket. Only that bucket, OSS being anyone's storage.
        .allow_host("muse-ai.oss-cn-hangzhou.aliyuncs.com")
        .secret(crate::API_KEY_SECRET)
        .model(
            Model::new(QWEN_IMAGE, "ModelScope Qwen Image", "image")
                .capability("image.generate")
                .params_schema(params_schema())
                .price_hint(2.0)
                .extra(json!({
                    "resolutions": {"1K": sizes},
                    "capabilities": {"supportsLora": true}
                })),
        )
}
