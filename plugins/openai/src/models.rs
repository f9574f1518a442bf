//! The manifest's models and their parameter schemas (OpenAI's own field names; no seed
//! documents OpenAI models, so the names and ranges are the vendor's).

use crate::{chat, image, speech};
use easel_sdk::Model;
use easel_sdk::serde_json::{Value, json};

fn schema(properties: Value) -> Value {
    json!({"type": "object", "properties": properties, "additionalProperties": true})
}

fn gpt_image() -> Model {
    Model::new(image::MODELS[0], "GPT Image 1", "image")
        .capability("image.generate")
        .capability("image.edit")
        .capability("image.inpaint")
        .params_schema(schema(json!({
            "n": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
            "size": {"type": "string", "enum": ["auto", "1024x1024", "1536x1024", "1024x1536"], "default": "auto"},
            "quality": {"type": "string", "enum": ["auto", "low", "medium", "high"], "default": "auto"},
            "output_format": {"type": "string", "enum": ["png", "jpeg", "webp"], "default": "png"},
            "background": {"type": "string", "enum": ["auto", "transparent", "opaque"]},
            "output_compression": {"type": "integer", "minimum": 0, "maximum": 100,
                                   "description": "JPEG or WebP compression, percent."},
            "input_fidelity": {"type": "string", "enum": ["high", "low"],
                               "description": "Edits: how closely to keep the input's features."}
        })))
        .price_hint(4.0)
        // OpenAI answers this model in base64 only, so clients of `/v1/images` expect that;
        // its edits take files, so easel fetches an image or mask given as a link.
        .extra(json!({"resolutions": ["1024x1024", "1536x1024", "1024x1536"], "image_answer": "b64_json",
                      "file_inputs": ["image", "mask"]}))
}

fn dalle3() -> Model {
    Model::new(image::MODELS[1], "DALL·E 3", "image")
        .capability("image.generate")
        .params_schema(schema(json!({
            "n": {"type": "integer", "minimum": 1, "maximum": 1, "default": 1},
            "size": {"type": "string", "enum": ["1024x1024", "1792x1024", "1024x1792"], "default": "1024x1024"},
            "quality": {"type": "string", "enum": ["standard", "hd"], "default": "standard"},
            "style": {"type": "string", "enum": ["vivid", "natural"], "default": "vivid"}
        })))
        .price_hint(4.0)
        .extra(json!({"resolutions": ["1024x1024", "1792x1024", "1024x1792"]}))
}

fn speech_model(key: &str, name: &str, instructions: bool) -> Model {
    let mut props = json!({
        "voice": {"type": "string", "enum": speech::VOICES, "default": "alloy"},
        "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0, "default": 1.0},
        "response_format": {"type": "string", "enum": speech::FORMATS.map(|f| f.0), "default": "mp3"}
    });
    if instructions {
        props["instructions"] = json!({"type": "string", "description": "How to speak: tone, pace, emotion."});
    }
    let voices: Vec<Value> = speech::VOICES.iter().map(|v| json!({"id": v, "name": v, "language": "multi"})).collect();
    Model::new(key, name, "audio")
        .capability("audio.speech")
        .params_schema(schema(props))
        .price_hint(0.5)
        .extra(json!({"voices": voices}))
}

/// Every model, in manifest order.
pub fn all() -> Vec<Model> {
    let mut models = vec![gpt_image(), dalle3()];
    for (key, name) in chat::MODELS.iter().zip(["GPT-4o", "GPT-4o mini", "GPT-4.1 mini"]) {
        models.push(Model::new(*key, name, "chat").capability("chat").params_schema(chat::params_schema()).price_hint(0.2));
    }
    models.push(speech_model(speech::MODELS[0], "GPT-4o mini TTS", true));
    models.push(speech_model(speech::MODELS[1], "TTS-1", false));
    models
}
