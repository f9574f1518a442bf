//! The manifest: one Jimeng model per seed 001 capability, keyed by Jimeng's `req_key`,
//! with parameters under seed 001's names (`width`, `height`, `scale`, `force_single`,
//! `resolution`, `ratio`, `duration`).

use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Manifest, Model};

/// Jimeng 4.0 image generation.
pub const T2I: &str = "jimeng_t2i_v40";
/// Jimeng interactive inpainting.
pub const INPAINT: &str = "jimeng_image2image_dream_inpaint";
/// Jimeng smart upscaling (智能超清).
pub const UPSCALE: &str = "jimeng_i2i_seed3_tilesr_cvtob";
/// The inpainting page's default seed (a fixed one, so repeated edits agree; -1 is random).
pub const INPAINT_SEED: i64 = 101;
/// Jimeng video 3.0 Pro (text or first frame).
pub const VIDEO: &str = "jimeng_ti2v_v30_pro";

fn scale(description: &str) -> Value {
    json!({"type": "number", "minimum": 0, "maximum": 100, "default": 50, "description": description})
}

fn generate_schema() -> Value {
    json!({"type": "object", "properties": {
        "width": {"type": "integer", "minimum": 1024, "maximum": 4096, "default": 2048},
        "height": {"type": "integer", "minimum": 1024, "maximum": 4096, "default": 2048},
        "scale": scale("How strongly the text steers the image (seed 001); sent as 0–1."),
        "force_single": {"type": "boolean", "default": true}
    }, "additionalProperties": true})
}

fn inpaint_schema() -> Value {
    json!({"type": "object", "properties": {
        "seed": {"type": "integer", "minimum": -1, "default": INPAINT_SEED,
                 "description": "-1 picks a random seed; the same seed and inputs repeat an edit."}
    }, "additionalProperties": true})
}

fn upscale_schema() -> Value {
    json!({"type": "object", "properties": {
        "resolution": {"type": "string", "enum": ["4k", "8k"], "default": "4k"},
        "scale": scale("How much detail the upscaler may invent (0–100).")
    }, "additionalProperties": true})
}

fn video_schema() -> Value {
    json!({"type": "object", "properties": {
        "duration": {"type": "integer", "minimum": 4, "maximum": 15, "default": 5,
                     "description": "Jimeng renders 5 s or 10 s; up to 7 gives 5 s, longer gives 10 s."},
        "ratio": {"type": "string", "enum": ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"], "default": "adaptive"},
        "resolution": {"type": "string", "enum": ["480p", "720p", "1080p"], "default": "1080p",
                       "description": "Video 3.0 Pro renders 1080p whatever is asked."}
    }, "additionalProperties": true})
}

/// The plugin's manifest.
pub fn manifest() -> Manifest {
    let secrets = [crate::ACCESS_KEY, crate::SECRET_KEY, crate::VOLC_ACCESS_KEY, crate::VOLC_SECRET_KEY];
    let mut manifest = Manifest::new("jimeng", env!("CARGO_PKG_VERSION"))
        .allow_host(crate::API_HOST)
        // `image_urls` (asked for with `return_url`): Jimeng's API references (the 即梦AI pages
        // under https://www.volcengine.com/docs/85621) show `https://xxxx`; published answers
        // link to ByteDance's image CDN under numbered hosts (`p3-aiop-sign.byteimg.com`,
        // `p9-…`, `p26-…`), so the CDN's domain, which only ByteDance serves. Where `video_url`
        // points is not documented anywhere found, so no host for it.
        .allow_host("*.byteimg.com");
    for secret in secrets {
        manifest = manifest.secret(secret);
    }
    manifest
        .model(Model::new(T2I, "即梦 4.0 图片生成", "image").capability("image.generate").params_schema(generate_schema()).price_hint(4.0)
            .extra(json!({"capabilities": {"supportsRefImage": true}})))
        .model(Model::new(INPAINT, "即梦 局部重绘", "image").capability("image.inpaint").params_schema(inpaint_schema()).price_hint(4.0))
        .model(Model::new(UPSCALE, "即梦 智能超清", "image").capability("image.upscale").params_schema(upscale_schema()).price_hint(4.0))
        .model(Model::new(VIDEO, "即梦 视频 3.0 Pro", "video").capability("video.generate").params_schema(video_schema()).price_hint(50.0)
            .extra(json!({"durations": {"5s": "5秒", "10s": "10秒"}, "capabilities": {"supportsFirstFrame": true}})))
}
