//! The manifest: Kling's current video and image models with parameters under the seeds'
//! names (`duration`, `ratio`, `resolution`, `aspectRatio`, `n`, `negative_prompt`).

use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Manifest, Model};

/// Video models (Kling's model names) with display names.
pub const VIDEO_MODELS: [(&str, &str); 2] = [("kling-v2-5-turbo", "Kling 2.5 Turbo"), ("kling-v2-1-master", "Kling 2.1 Master")];
/// Image models.
pub const IMAGE_MODELS: [(&str, &str); 1] = [("kling-v2-1", "Kling Image 2.1")];
/// Aspect ratios Kling's text-to-video accepts.
pub const VIDEO_RATIOS: [&str; 3] = ["16:9", "9:16", "1:1"];
/// Aspect ratios Kling's image generation accepts.
pub const IMAGE_RATIOS: [&str; 8] = ["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"];

fn video_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "duration": {"type": "integer", "enum": [5, 10], "default": 5, "description": "Seconds."},
            "ratio": {"type": "string", "enum": VIDEO_RATIOS, "default": "16:9",
                      "description": "Text-to-video only; image-to-video follows the image."},
            "resolution": {"type": "string", "enum": ["720p", "1080p"], "default": "720p",
                           "description": "720p is Kling's std mode, 1080p its pro mode."},
            "negative_prompt": {"type": "string", "maxLength": 2500},
            "cfg_scale": {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.5}
        },
        "additionalProperties": true
    })
}

fn image_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "resolution": {"type": "string", "enum": ["1K", "2K"], "default": "1K"},
            "aspectRatio": {"type": "string", "enum": IMAGE_RATIOS, "default": "1:1"},
            "n": {"type": "integer", "minimum": 1, "maximum": 9, "default": 1},
            "negative_prompt": {"type": "string", "maxLength": 2500}
        },
        "additionalProperties": true
    })
}

/// Seed 000's `resolutions` display table for Kling's image sizes at 1K and 2K.
fn image_resolutions() -> Value {
    json!({
        "1K": {"1:1": "1024*1024", "16:9": "1360*768", "9:16": "768*1360", "4:3": "1184*888", "3:4": "888*1184"},
        "2K": {"1:1": "2048*2048", "16:9": "2720*1536", "9:16": "1536*2720", "4:3": "2368*1776", "3:4": "1776*2368"}
    })
}

/// The plugin's manifest.
pub fn manifest() -> Manifest {
    let mut manifest = Manifest::new("kling", env!("CARGO_PKG_VERSION"))
        .allow_host(crate::API_HOST)
        .allow_host(crate::API_HOST_CN)
        // Result files come from Kling's own CDN. The API reference
        // (https://app.klingai.com/global/dev/document-api) does not name a host; published
        // task answers link to `cdn.klingai.com`, Kling's samples to numbered
        // `p1-kling.klingai.com`-style shards. Kling's own domain, so the wildcard.
        .allow_host("*.klingai.com")
        .secret(crate::ACCESS_KEY_SECRET)
        .secret(crate::SECRET_KEY_SECRET)
        .secret(crate::REGION_SECRET);
    for (key, name) in VIDEO_MODELS {
        manifest = manifest.model(
            Model::new(key, name, "video")
                .capability("video.generate")
                .params_schema(video_schema())
                .price_hint(35.0)
                .extra(json!({
                    "durations": {"5s": "5秒", "10s": "10秒"},
                    "capabilities": {"supportsFirstFrame": true, "supportsFirstLastFrame": true}
                })),
        );
    }
    for (key, name) in IMAGE_MODELS {
        manifest = manifest.model(
            Model::new(key, name, "image")
                .capability("image.generate")
                .params_schema(image_schema())
                .price_hint(3.0)
                .extra(json!({"resolutions": image_resolutions(), "capabilities": {"supportsRefImage": true}})),
        );
    }
    manifest
}
