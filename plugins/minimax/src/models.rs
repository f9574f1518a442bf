//! The manifest: MiniMax's current video, speech and chat models, with parameters under
//! the seeds' names (`duration`, `resolution`, `voice`, `speed`) and seed 000's extras; the
//! chat models make tool calls.

use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Manifest, Model};

/// The video model.
pub const VIDEO_MODEL: &str = "MiniMax-Hailuo-02";
/// Speech models with display names.
pub const SPEECH_MODELS: [(&str, &str); 2] = [("speech-02-hd", "MiniMax Speech 02 HD"), ("speech-02-turbo", "MiniMax Speech 02 Turbo")];
/// Chat models with display names.
pub const CHAT_MODELS: [(&str, &str); 2] = [("MiniMax-M2", "MiniMax M2"), ("MiniMax-Text-01", "MiniMax Text 01")];
/// System voices offered (id, display name, language).
pub const VOICES: [(&str, &str, &str); 6] = [
    ("male-qn-qingse", "青涩青年", "zh"),
    ("male-qn-jingying", "精英青年", "zh"),
    ("female-shaonv", "少女", "zh"),
    ("female-yujie", "御姐", "zh"),
    ("presenter_male", "男性主持人", "zh"),
    ("English_Graceful_Lady", "Graceful Lady", "en"),
];

fn video_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "duration": {"type": "integer", "enum": [6, 10], "default": 6, "description": "Seconds; 10 s only at 768P."},
            "resolution": {"type": "string", "enum": ["512P", "768P", "1080P"], "default": "768P"},
            "prompt_optimizer": {"type": "boolean", "default": true}
        },
        "additionalProperties": true
    })
}

fn speech_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "voice": {"type": "string", "enum": VOICES.map(|v| v.0), "default": "male-qn-qingse"},
            "speed": {"type": "number", "minimum": 0.5, "maximum": 2.0, "default": 1.0},
            "volume": {"type": "number", "exclusiveMinimum": 0.0, "maximum": 10.0, "default": 1.0},
            "pitch": {"type": "integer", "minimum": -12, "maximum": 12, "default": 0},
            "format": {"type": "string", "enum": ["mp3", "wav", "flac"], "default": "mp3"},
            "sample_rate": {"type": "integer", "enum": [8000, 16000, 22050, 24000, 32000, 44100], "default": 32000}
        },
        "additionalProperties": true
    })
}

/// The chat schema: MiniMax's sampling ranges and OpenAI's tool parameters as MiniMax takes
/// them: `tool_choice` `none`, `auto` or a named function, and no `parallel_tool_calls`
/// switch (the model may make several calls in one answer), so `true` is the one value
/// offered and is not sent.
fn chat_schema() -> Value {
    let mut schema = vendor_kit::chat::with_tools(json!({
        "type": "object",
        "properties": {
            "temperature": {"type": "number", "exclusiveMinimum": 0.0, "maximum": 1.0, "default": 1.0},
            "top_p": {"type": "number", "exclusiveMinimum": 0.0, "maximum": 1.0, "default": 0.95},
            "max_tokens": {"type": "integer", "minimum": 1}
        },
        "additionalProperties": true
    }));
    let tool_choice = &mut schema["properties"]["tool_choice"]["anyOf"][0];
    *tool_choice = json!({"enum": ["none", "auto"]});
    schema["properties"]["parallel_tool_calls"] = json!({
        "enum": [true],
        "description": "MiniMax may make several calls in one answer and cannot turn that off."
    });
    schema
}

/// The plugin's manifest.
pub fn manifest() -> Manifest {
    let voices: Vec<Value> = VOICES.iter().map(|(id, name, language)| json!({"id": id, "name": name, "language": language})).collect();
    let mut manifest = Manifest::new("minimax", env!("CARGO_PKG_VERSION"))
        .allow_host("api.minimax.io")
        .allow_host("api.minimaxi.com")
        // Hailuo videos: the file API's `download_url` (its reference,
        // https://platform.minimax.io/docs/api-reference/video-generation-download, shows a
        // placeholder). MiniMax's CDN in the international samples Cloudflare documents
        // (https://developers.cloudflare.com/ai/models/minimax/hailuo-2.3-fast/); published
        // mainland answers name this OSS bucket, with the last as `backup_download_url` (OSS is
        // anyone's storage, so the exact buckets). Speech comes back as bytes.
        .allow_host("video-product.cdn.minimax.io")
        .allow_host("public-cdn-video-data-algeng.oss-cn-wulanchabu.aliyuncs.com")
        .allow_host("public-cdn-video-data-algeng-us.oss-us-east-1.aliyuncs.com")
        .secret(crate::API_KEY_SECRET)
        .secret(crate::REGION_SECRET)
        .model(
            Model::new(VIDEO_MODEL, "MiniMax Hailuo 02", "video")
                .capability("video.generate")
                .params_schema(video_schema())
                .price_hint(30.0)
                .extra(json!({"durations": {"6s": "6秒", "10s": "10秒"},
                              "capabilities": {"supportsFirstFrame": true, "supportsFirstLastFrame": true}})),
        );
    for (key, name) in SPEECH_MODELS {
        manifest = manifest.model(
            Model::new(key, name, "audio")
                .capability("audio.speech")
                .params_schema(speech_schema())
                .price_hint(1.0)
                .extra(json!({"voices": voices})),
        );
    }
    for (key, name) in CHAT_MODELS {
        manifest = manifest.model(Model::new(key, name, "chat").capability("chat").params_schema(chat_schema()).price_hint(0.1));
    }
    manifest
}
