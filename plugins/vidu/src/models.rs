//! The manifest: one model, its parameter schema (seed 002's names, enums and defaults)
//! and the display extras seed 000 shows.

use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Manifest, Model};

/// Vidu's model name, as the seeds write it.
pub const VIDUQ3_PRO: &str = "viduq3-pro";
/// Seed 002's aspect ratios for viduq3-pro.
pub const RATIOS: [&str; 5] = ["16:9", "9:16", "4:3", "3:4", "1:1"];
/// Seed 002's resolutions for viduq3-pro.
pub const RESOLUTIONS: [&str; 3] = ["540p", "720p", "1080p"];

/// The parameters seed 002 lists for viduq3-pro (text-to-video and start/end frames).
pub fn params_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "off_peak": {"type": "string", "enum": ["Y", "N"], "default": "N",
                         "description": "Off-peak mode: cheaper, finished within 48 hours."},
            "duration": {"type": "integer", "minimum": 1, "maximum": 16, "default": 10,
                         "description": "Video length in seconds."},
            "ratio": {"type": "string", "enum": RATIOS, "default": "16:9",
                      "description": "Aspect ratio (text-to-video; frame videos follow the images)."},
            "resolution": {"type": "string", "enum": RESOLUTIONS, "default": "1080p"},
            "seed": {"type": "integer", "minimum": 0, "description": "0 or absent: random."}
        },
        "additionalProperties": true
    })
}

/// The plugin's manifest.
pub fn manifest() -> Manifest {
    Manifest::new("vidu", env!("CARGO_PKG_VERSION"))
        .allow_host("api.vidu.com")
        .allow_host("api.vidu.cn")
        // `creations[].url`: Vidu's reference (https://platform.vidu.com/docs/get-generation)
        // shows a placeholder. International results: Vidu's CDN host in the viduq3-pro samples
        // Cloudflare documents (https://developers.cloudflare.com/ai/models/vidu/q3-pro/).
        // Mainland answers put the files in these two buckets (AWS Ningxia, and lately Alibaba
        // OSS), named exactly because both clouds are anyone's storage.
        .allow_host("video.cf.vidu.com")
        .allow_host("prod-ss-vidu.s3.cn-northwest-1.amazonaws.com.cn")
        .allow_host("prod-ss-vidu.s3.oss-cn-beijing.aliyuncs.com")
        .secret(crate::API_KEY_SECRET)
        .secret(crate::REGION_SECRET)
        .model(
            Model::new(VIDUQ3_PRO, "Vidu Q3 Pro", "video")
                .capability("video.generate")
                .params_schema(params_schema())
                .price_hint(40.0)
                .extra(json!({
                    "durations": {"5s": "5秒", "10s": "10秒", "16s": "16秒"},
                    // Seed 002: image-to-video takes both frames.
                    "i2v": {"required": {"first_frame": "image_file1", "last_frame": "image_file2"}},
                    "capabilities": {"supportsFirstLastFrame": true, "supportsFirstFrame": true,
                                     "supportsRefImage": false, "supportsOffPeak": true}
                })),
        )
}
