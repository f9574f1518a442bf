//! The manifest's models: keys, parameter schemas in the seeds' names, extras.

use crate::{chat, image, tts, video};
use easel_sdk::Model;
use easel_sdk::serde_json::{Value, json};

fn schema(properties: Value) -> Value {
    json!({"type": "object", "properties": properties, "additionalProperties": true})
}

/// Seedance 2.0: seed 002's tables (resolution 480p/720p/1080p; ratio default adaptive) with
/// seed 001's limits (duration 4–15, ratio also 21:9 and adaptive). Resolution and duration
/// name no schema default: theirs depend on the mode (720p and 5 s for text and frames,
/// 1080p and 12 s with references), which `video::submit` picks, and a schema default would
/// be filled in before it could.
fn seedance_2(key: &str, name: &str, price: f64) -> Model {
    let props = json!({
        "resolution": {"type": "string", "enum": ["480p", "720p", "1080p"],
                       "description": "Default 720p; 1080p in reference mode (reference inputs)."},
        "ratio": {"type": "string", "enum": ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"], "default": "adaptive"},
        "duration": {"type": "integer", "minimum": 4, "maximum": 15,
                     "description": "Seconds: default 5; 12 in reference mode."},
        "seed": {"type": "integer", "minimum": -1, "maximum": 4294967295_u64},
        "watermark": {"type": "boolean", "default": false},
        "generate_audio": {"type": "boolean"},
        "return_last_frame": {"type": "boolean",
                              "description": "Also return the video's last frame, a PNG image to start the next video from."}
    });
    Model::new(key, name, "video")
        .capability("video.generate")
        .params_schema(schema(props))
        .price_hint(price)
        .extra(json!({
            "catelogid": ["t2v", "i2v", "ref2v"],
            // Seed 002: image-to-video takes both frames.
            "i2v": {"required": {"first_frame": "image1_file", "last_frame": "image2_file"}},
            "resolutions": ["480p", "720p", "1080p"],
            "durations": {"min": 4, "max": 15},
            "capabilities": {"supportsRefImage": true, "supportsFirstLastFrame": true,
                             "supportsRefVideo": true, "supportsRefAudio": true},
            // Ark takes video and audio references only as links it fetches.
            "url_inputs": ["video", "audio"]
        }))
}

fn seedance_1_5_pro() -> Model {
    let props = json!({
        "resolution": {"type": "string", "enum": ["480p", "720p", "1080p"], "default": "1080p"},
        "ratio": {"type": "string", "enum": ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"]},
        "duration": {"type": "integer", "minimum": 4, "maximum": 12, "default": 12},
        "seed": {"type": "integer", "minimum": -1, "maximum": 4294967295_u64},
        "watermark": {"type": "boolean", "default": false},
        "generate_audio": {"type": "boolean"},
        "camera_fixed": {"type": "boolean"},
        "return_last_frame": {"type": "boolean",
                              "description": "Also return the video's last frame, a PNG image to start the next video from."}
    });
    Model::new(video::SEEDANCE_1_5_PRO, "Seedance 1.5 pro", "video")
        .capability("video.generate")
        .params_schema(schema(props))
        .price_hint(12.0)
        .extra(json!({
            "catelogid": ["t2v", "i2v"],
            // Seed 002: either frame may be left out.
            "i2v": {"required": {}},
            "resolutions": ["480p", "720p", "1080p"],
            "durations": {"min": 4, "max": 12},
            "capabilities": {"supportsFirstLastFrame": true}
        }))
}

fn seedream() -> Model {
    Model::new(image::SEEDREAM, "Seedream 4.0", "image")
        .capability("image.generate")
        .capability("image.edit")
        .params_schema(schema(json!({
            "size": {"type": "string", "pattern": "^([124]K|[0-9]{3,4}x[0-9]{3,4})$", "default": "2K",
                     "description": "1K, 2K, 4K, or WIDTHxHEIGHT"},
            "seed": {"type": "integer", "minimum": -1, "maximum": 2147483647},
            "watermark": {"type": "boolean", "default": false}
        })))
        .price_hint(2.0)
        .extra(json!({"resolutions": ["1K", "2K", "4K"], "capabilities": {"supportsRefImage": true}}))
}

fn chat_model(key: &str, name: &str) -> Model {
    Model::new(key, name, "chat").capability("chat").params_schema(chat::params_schema(key)).price_hint(0.1)
}

fn doubao_tts() -> Model {
    let ids: Vec<&str> = tts::VOICES.iter().map(|v| v.0).collect();
    let voices: Vec<Value> =
        tts::VOICES.iter().map(|(id, _, name, language)| json!({"id": id, "name": name, "language": language})).collect();
    Model::new(tts::MODEL, "豆包 TTS", "audio")
        .capability("audio.speech")
        .params_schema(schema(json!({
            "voice": {"type": "string", "enum": ids, "default": tts::VOICES[0].0},
            "speed": {"type": "number", "minimum": 0.2, "maximum": 3.0, "default": 1.0},
            "encoding": {"type": "string", "enum": tts::ENCODINGS.map(|e| e.0), "default": "mp3"}
        })))
        .price_hint(0.5)
        .extra(json!({"voices": voices}))
}

/// Every model, in manifest order.
pub fn all() -> Vec<Model> {
    vec![
        seedance_2(video::SEEDANCE_2[0], "Seedance 2.0", 15.0),
        seedance_2(video::SEEDANCE_2[1], "Seedance 2.0 fast", 10.0),
        seedance_1_5_pro(),
        seedream(),
        chat_model(chat::MODELS[0], "Doubao Seed 1.6"),
        chat_model(chat::MODELS[1], "Doubao 1.5 pro 32k"),
        doubao_tts(),
    ]
}
