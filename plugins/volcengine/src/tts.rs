//! Doubao speech synthesis: the non-streaming HTTP API, `POST
//! https://openspeech.bytedance.com/api/v1/tts`, authenticated with an app id in the body
//! and `Authorization: Bearer;<access token>` (a semicolon, not a space). The audio comes
//! back base64-encoded in `data`, so this plugin returns the bytes.

use crate::errors;
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, Output, Result, Submission};
use std::time::Duration;

/// The model key seed 000 uses.
pub const MODEL: &str = "doubao-tts";
/// The speech API host.
pub const HOST: &str = "openspeech.bytedance.com";
/// The app id from the speech console.
pub const APP_ID: &str = "VOLC_TTS_APP_ID";
/// The access token from the speech console.
pub const ACCESS_TOKEN: &str = "VOLC_TTS_ACCESS_TOKEN";
/// Optional cluster; `volcano_tts` when unset.
pub const CLUSTER: &str = "VOLC_TTS_CLUSTER";

/// Voices: the id clients use, Doubao's `voice_type`, display name, language.
pub const VOICES: [(&str, &str, &str, &str); 6] = [
    ("zh_female_qingxin", "zh_female_qingxinnvsheng_mars_bigtts", "清新女声", "zh"),
    ("zh_female_shuangkuaisisi", "zh_female_shuangkuaisisi_moon_bigtts", "爽快思思", "zh"),
    ("zh_female_wanwanxiaohe", "zh_female_wanwanxiaohe_moon_bigtts", "湾湾小何", "zh"),
    ("zh_male_wennuanahu", "zh_male_wennuanahu_moon_bigtts", "温暖阿虎", "zh"),
    ("zh_male_jingqiangkanye", "zh_male_jingqiangkanye_moon_bigtts", "京腔侃爷", "zh"),
    ("en_male_adam", "en_male_adam_mars_bigtts", "Adam", "en"),
];

/// Audio encodings offered, with their MIME types.
pub const ENCODINGS: [(&str, &str); 3] = [("mp3", "audio/mpeg"), ("wav", "audio/wav"), ("ogg_opus", "audio/ogg")];

/// Synthesizes the prompt.
pub fn submit(request: &GenerationRequest) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let app_id = easel_sdk::require_secret(APP_ID)?;
    let token = easel_sdk::require_secret(ACCESS_TOKEN)?;
    let cluster = easel_sdk::secret(CLUSTER).filter(|c| !c.trim().is_empty()).unwrap_or_else(|| "volcano_tts".into());
    let voice = request.param_str("voice", VOICES[0].0)?;
    let voice_type = VOICES
        .iter()
        .find(|v| v.0 == voice || v.1 == voice)
        .map(|v| v.1)
        .ok_or_else(|| Error::invalid(format!("unknown voice `{voice}`")))?;
    let encoding = request.param_str("encoding", "mp3")?;
    let mime = ENCODINGS
        .iter()
        .find(|e| e.0 == encoding)
        .map(|e| e.1)
        .ok_or_else(|| Error::invalid(format!("`encoding` must be mp3, wav or ogg_opus, not `{encoding}`")))?;
    let body = json!({
        "app": {"appid": app_id, "token": "access_token", "cluster": cluster},
        "user": {"uid": "easel"},
        "audio": {
            "voice_type": voice_type,
            "encoding": encoding,
            "speed_ratio": request.param_f64("speed", 1.0)?,
        },
        "request": {
            "reqid": request_id(&request.prompt),
            "text": request.prompt,
            "text_type": "plain",
            "operation": "query",
        }
    });
    let response = Request::post(format!("https://{HOST}/api/v1/tts"))
        .header("Authorization", format!("Bearer;{token}"))
        .json(&body)
        .timeout(Duration::from_secs(120))
        .send()?;
    let answer: Value = easel_sdk::serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    let code = answer.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = answer.get("message").and_then(Value::as_str).unwrap_or("");
    if !response.is_success() || code != 3000 {
        let message = if message.is_empty() { response.text() } else { message.to_string() };
        return Err(errors::tts_code(response.status(), code, &message));
    }
    let audio = answer
        .get("data")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::upstream("Doubao TTS reported success without audio"))?;
    let mut done = Finished::new(vec![Output::bytes(mime, vendor_kit::media::decode_base64(audio)?)]);
    if let Some(duration) = answer.pointer("/addition/duration").and_then(Value::as_str) {
        done = done.usage(json!({"duration_ms": duration.parse::<u64>().unwrap_or(0), "characters": request.prompt.chars().count()}));
    }
    Ok(Submission::Finished(done))
}

/// A request id unique enough for the vendor's logs: time plus a hash of the text.
fn request_id(text: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("easel-{nanos:x}-{hash:016x}")
}
