//! The manifest: one model with seed 002's parameters for dreamina-seedance-2-0-260128, its
//! overseas Seedance 2.0 in the text-, image- and reference-to-video tables (seed 002 gives the
//! domestic one's fields for all three; seed 001's video limits), plus seed 000's display
//! extras.

use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Manifest, Model};

/// The model name, as seed 002 writes it.
pub const SEEDANCE_2_0: &str = "dreamina-seedance-2-0-260128";
/// Seed 001's aspect ratios (a superset of seed 002's, which defaults to `adaptive`).
pub const RATIOS: [&str; 7] = ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"];
/// Seed 002's resolutions.
pub const RESOLUTIONS: [&str; 3] = ["480p", "720p", "1080p"];

/// The parameter schema. Resolution and duration name no default: seed 002's depend on the
/// mode (720p and 5 s for text and frames, 1080p and 12 s with references), which
/// [`crate::request::task_body`] picks, and a schema default would be filled in first.
pub fn params_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "resolution": {"type": "string", "enum": RESOLUTIONS,
                           "description": "Default 720p; 1080p in reference mode (reference inputs)."},
            "ratio": {"type": "string", "enum": RATIOS, "default": "adaptive"},
            "duration": {"type": "integer", "minimum": 4, "maximum": 15,
                         "description": "Video length in seconds: default 5; 12 in reference mode."},
            "seed": {"type": "integer", "minimum": -1, "maximum": 4294967295_u64},
            "generate_audio": {"type": "boolean", "default": true,
                               "description": "Seedance 2.0 makes a soundtrack unless this is false."},
            "watermark": {"type": "boolean", "default": false},
            "return_last_frame": {"type": "boolean",
                                  "description": "Also return the video's last frame, a PNG image to start the next video from."}
        },
        "additionalProperties": true
    })
}

/// The plugin's manifest.
pub fn manifest() -> Manifest {
    Manifest::new("seedance-overseas", env!("CARGO_PKG_VERSION"))
        .allow_host("ark.ap-southeast.bytepluses.com")
        // ModelArk's finished videos: BytePlus's reference
        // (https://docs.byteplus.com/en/docs/ModelArk/1520757) does not name the host; published
        // task answers put `content.video_url` on this TOS bucket in Volcano Engine's storage
        // (shared object storage, so the exact bucket, no wildcard).
        .allow_host("ark-content-generation-ap-southeast-1.tos-ap-southeast-1.volces.com")
        .secret(crate::ARK_API_KEY)
        .secret(crate::BYTEPLUS_API_KEY)
        .model(
            Model::new(SEEDANCE_2_0, "Seedance 2.0 (BytePlus, overseas)", "video")
                .capability("video.generate")
                .params_schema(params_schema())
                .price_hint(60.0)
                .extra(json!({
                    "catelogid": ["t2v", "i2v", "ref2v"],
                    // Seed 002: Seedance 2.0's image-to-video takes both frames.
                    "i2v": {"required": {"first_frame": "image1_file", "last_frame": "image2_file"}},
                    "durations": {"5s": "5秒", "10s": "10秒", "15s": "15秒"},
                    "capabilities": {"supportsFirstLastFrame": true, "supportsRefImage": true,
                                     "supportsRefVideo": true, "supportsRefAudio": true}
                })),
        )
}
