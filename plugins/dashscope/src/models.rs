//! The manifest's models: keys, parameter schemas (the seeds' field names, enums,
//! ranges and defaults) and the display extras the Pixel API shows.

use crate::{chat, image, tts, video};
use easel_sdk::Model;
use easel_sdk::serde_json::{Map, Value, json};

const RATIOS: [&str; 5] = ["16:9", "4:3", "1:1", "3:4", "9:16"];
/// Seed 002's `size` list for Wan 2.6 video.
const WAN_VIDEO_SIZES: [&str; 9] =
    ["832*480", "480*832", "624*624", "1280*720", "720*1280", "960*960", "1920*1080", "1080*1920", "1440*1440"];

/// `max_inputs` of a model that reads its prompt alone: an input file would be sent nowhere, so
/// the host's front door refuses it.
fn text_only() -> Value {
    json!({"image": 0, "video": 0, "audio": 0})
}

fn schema(properties: Value) -> Value {
    json!({"type": "object", "properties": properties, "additionalProperties": true})
}

fn seed_and_watermark() -> Value {
    json!({
        "seed": {"type": "integer", "minimum": 0, "maximum": 2147483647},
        "watermark": {"type": "boolean", "default": false}
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

fn wan_image(key: &str, name: &str, price: f64) -> Model {
    let props = merge(
        json!({
            "negative_prompt": {"type": "string", "maxLength": 500, "default": ""},
            "size": {"type": "string", "pattern": "^[0-9]+\\*[0-9]+$", "default": image::default_size(key),
                     "sizeBounds": image::size_bounds(key), "description": "width*height in pixels"},
            "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
            "prompt_extend": {"type": "boolean", "default": true}
        }),
        seed_and_watermark(),
    );
    Model::new(key, name, "image")
        .capability("image.generate")
        .params_schema(schema(props))
        .price_hint(price)
        .extra(json!({"catelogid": "t2i", "max_inputs": text_only()}))
}

fn qwen_image() -> Model {
    let sizes: Map<String, Value> = image::QWEN_IMAGE_SIZES.iter().map(|(r, s)| (r.to_string(), json!(s))).collect();
    let props = merge(
        json!({
            "negativePrompt": {"type": "string", "default": ""},
            "resolution": {"type": "string", "enum": ["1K", "2K"], "default": "1K",
                           "description": "Qwen-Image renders one native size per aspect ratio; both tiers map to it."},
            "aspectRatio": {"type": "string", "enum": RATIOS, "default": "1:1"},
            "n": {"type": "integer", "minimum": 1, "maximum": 1, "default": 1},
            "prompt_extend": {"type": "boolean", "default": true}
        }),
        seed_and_watermark(),
    );
    Model::new("qwen-image", "Qwen Image", "image")
        .capability("image.generate")
        .capability("image.edit")
        .params_schema(schema(props))
        .price_hint(2.0)
        .extra(json!({
            "capabilities": {"supportsRefImage": true},
            "resolutions": {"1K": Value::Object(sizes.clone()), "2K": Value::Object(sizes)}
        }))
}

fn wan_video_props(duration_default: u64) -> Value {
    merge(
        json!({
            "negative_prompt": {"type": "string", "maxLength": 500, "default": ""},
            "size": {"type": "string", "enum": WAN_VIDEO_SIZES, "default": "1920*1080"},
            "duration": {"type": "integer", "enum": [5, 10, 15], "default": duration_default},
            "shot_type": {"type": "string", "enum": ["single", "multi"]},
            "audio": {"type": "boolean", "description": "Generate a sound track (default true at the vendor)."}
        }),
        seed_and_watermark(),
    )
}

fn wan_t2v() -> Model {
    let props = merge(wan_video_props(15), json!({"prompt_extend": {"type": "boolean", "default": true}}));
    Model::new("wan2.6-t2v", "Wan 2.6 text-to-video", "video")
        .capability("video.generate")
        .params_schema(schema(props))
        .price_hint(10.0)
        .extra(json!({"catelogid": "t2v", "durations": [5, 10, 15], "sizes": WAN_VIDEO_SIZES,
                      "max_inputs": text_only()}))
}

fn wan_r2v() -> Model {
    // Seed 002 offers 5, 10 and 15 s with 15 as the default, a length Model Studio refuses:
    // offering it would accept requests that can only fail once they run, so the schema
    // offers what renders and the host refuses 15 at the door.
    let props = merge(
        wan_video_props(10),
        json!({"duration": {"type": "integer", "enum": [5, 10], "default": 10,
                            "description": "Seconds. Model Studio renders wan2.6-r2v clips of 2-10 s, so seed \
                                            002's 15 (its default) is not offered and the default is 10."}}),
    );
    Model::new("wan2.6-r2v", "Wan 2.6 reference-to-video", "video")
        .capability("video.generate")
        .params_schema(schema(props))
        .price_hint(10.0)
        .extra(json!({
            "catelogid": "i2v",
            // Seed 002: both images.
            "i2v": {"required": {"first_frame": "image_file1", "last_frame": "image_file2"}},
            "durations": [5, 10],
            "capabilities": {"supportsRefImage": true},
            // `reference_urls` takes links Model Studio fetches, never bytes.
            "url_inputs": ["image", "video"]
        }))
}

fn pixel_wan_video() -> Model {
    let props = merge(
        json!({
            "negativePrompt": {"type": "string", "default": ""},
            "duration": {"type": "string", "enum": ["5s", "10s"], "default": "5s"},
            "resolution": {"type": "string", "enum": ["720p", "1080p"], "default": "720p"},
            "n": {"type": "integer", "minimum": 1, "maximum": 1, "default": 1},
            "prompt_extend": {"type": "boolean", "default": true},
            "shot_type": {"type": "string", "enum": ["single", "multi"]},
            "audio": {"type": "boolean"}
        }),
        seed_and_watermark(),
    );
    Model::new("wan2.6-video", "Wan 2.6 Video", "video")
        .capability("video.generate")
        .params_schema(schema(props))
        .price_hint(10.0)
        .extra(json!({
            "durations": {"5s": "5秒", "10s": "10秒"},
            "resolutions": ["720p", "1080p"],
            "capabilities": {"supportsRefImage": true}
        }))
}

fn happyhorse(key: &str, name: &str, catalog: &str, resolution: &str, duration: u64, ratio: bool) -> Model {
    let mut props = merge(
        json!({
            "resolution": {"type": "string", "enum": ["720P", "1080P"], "default": resolution},
            "duration": {"type": "integer", "minimum": 3, "maximum": 15, "default": duration}
        }),
        seed_and_watermark(),
    );
    if ratio {
        // The seed's default is "adaptive": left out, the model picks the ratio.
        props["ratio"] = json!({"type": "string", "enum": RATIOS});
    }
    let mut extra = json!({"catelogid": catalog, "resolutions": ["720P", "1080P"]});
    if catalog != "t2v" {
        extra["capabilities"] = json!({"supportsRefImage": true});
    } else {
        extra["max_inputs"] = text_only();
    }
    if catalog == "ref2v" {
        // Counted at the host's front door, so more are refused before a task is made.
        extra["max_inputs"] = json!({"image": video::HAPPYHORSE_MOST_REFERENCES});
    }
    Model::new(key, name, "video").capability("video.generate").params_schema(schema(props)).price_hint(8.0).extra(extra)
}

fn chat_model(key: &str, name: &str, price: f64) -> Model {
    Model::new(key, name, "chat")
        .capability("chat")
        .params_schema(chat::params_schema())
        .price_hint(price)
        .extra(json!({"catelogid": "t2t"}))
}

fn speech() -> Model {
    let voices: Vec<Value> =
        tts::VOICES.iter().map(|(id, name, language)| json!({"id": id, "name": name, "language": language})).collect();
    let ids: Vec<&str> = tts::VOICES.iter().map(|v| v.0).collect();
    Model::new(tts::MODEL, "Qwen3 TTS Flash", "audio")
        .capability("audio.speech")
        .params_schema(schema(json!({
            "voice": {"type": "string", "enum": ids, "default": "Cherry"},
            "language_type": {"type": "string", "enum": tts::LANGUAGES, "default": "Auto"}
        })))
        .price_hint(0.5)
        .extra(json!({"voices": voices}))
}

/// Every model, in the order the manifest lists them.
pub fn all() -> Vec<Model> {
    vec![
        qwen_image(),
        wan_image("wan2.2-t2i-plus", "Wan 2.2 text-to-image Plus", 2.0),
        wan_image("wan2.2-t2i-flash", "Wan 2.2 text-to-image Flash", 1.0),
        wan_image("wan2.5-t2i-preview", "Wan 2.5 text-to-image preview", 2.0),
        wan_t2v(),
        pixel_wan_video(),
        wan_r2v(),
        happyhorse("happyhorse-1.0-t2v", "HappyHorse 1.0 text-to-video", "t2v", "720P", 5, true),
        happyhorse("happyhorse-1.0-i2v", "HappyHorse 1.0 image-to-video", "i2v", "720P", 5, false),
        happyhorse("happyhorse-1.0-r2v", "HappyHorse 1.0 reference-to-video", "ref2v", "1080P", 15, true),
        chat_model(chat::MODELS[0], "Qwen Plus", 0.1),
        chat_model(chat::MODELS[1], "Qwen3 Max", 0.3),
        speech(),
    ]
}
