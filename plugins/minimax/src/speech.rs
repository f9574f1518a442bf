//! Speech: `POST /t2a_v2`, synchronous. The audio comes back hex-encoded in `data.audio`
//! and is returned as bytes.

use crate::api::{authorized, call};
use crate::{REGION_SECRET, api_base};
use vendor_kit::region::Region;
use easel_sdk::http::Request;
use easel_sdk::serde_json::json;
use easel_sdk::{Error, Finished, GenerationRequest, Output, Result, Submission};

/// Synthesizes the prompt.
pub fn synthesize(request: &GenerationRequest) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let format = request.param_str("format", "mp3")?;
    let body = json!({
        "model": request.model,
        "text": request.prompt,
        "stream": false,
        "voice_setting": {
            "voice_id": request.param_str("voice", "male-qn-qingse")?,
            "speed": request.param_f64("speed", 1.0)?,
            "vol": request.param_f64("volume", 1.0)?,
            "pitch": request.param_value("pitch").and_then(|p| p.as_i64()).unwrap_or(0)
        },
        "audio_setting": {
            "sample_rate": request.param_u64("sample_rate", 32000)?,
            "bitrate": 128000,
            "format": format,
            "channel": 1
        }
    });
    let base = api_base(Region::configured(REGION_SECRET)?);
    let answer = call(authorized(Request::post(format!("{base}/t2a_v2")))?.json(&body))?;
    let hex = answer["data"]["audio"]
        .as_str()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::upstream("MiniMax answered without audio"))?;
    let audio = decode_hex(hex)?;
    let content_type = match format {
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        _ => "audio/mpeg",
    };
    let mut done = Finished::new(vec![Output::bytes(content_type, audio)]);
    if answer["extra_info"].is_object() {
        done = done.usage(answer["extra_info"].clone());
    }
    Ok(Submission::Finished(done))
}

fn decode_hex(hex: &str) -> Result<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return Err(Error::upstream("MiniMax audio is not valid hex"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| Error::upstream("MiniMax audio is not valid hex")))
        .collect()
}
