//! Speech: `POST /v1/audio/speech`, which answers the audio file itself.

use crate::{client, errors};
use easel_sdk::serde_json::json;
use easel_sdk::{Error, GenerationRequest, Output, Result, Submission};
use std::time::Duration;

/// The speech models.
pub const MODELS: [&str; 2] = ["gpt-4o-mini-tts", "tts-1"];
/// Voices both speech models take.
pub const VOICES: [&str; 9] = ["alloy", "ash", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer"];
/// Output formats with their MIME types.
pub const FORMATS: [(&str, &str); 6] = [
    ("mp3", "audio/mpeg"),
    ("opus", "audio/ogg"),
    ("aac", "audio/aac"),
    ("flac", "audio/flac"),
    ("wav", "audio/wav"),
    ("pcm", "audio/L16;rate=24000;channels=1"),
];

/// Speaks the prompt.
pub fn submit(request: &GenerationRequest) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let format = request.param_str("response_format", "mp3")?;
    let mime = FORMATS
        .iter()
        .find(|f| f.0 == format)
        .map(|f| f.1)
        .ok_or_else(|| Error::invalid(format!("unknown response_format `{format}`")))?;
    let mut body = json!({
        "model": request.model,
        "input": request.prompt,
        "voice": request.param_str("voice", "alloy")?,
        "response_format": format,
        "speed": request.param_f64("speed", 1.0)?,
    });
    // Only the GPT-4o speech model follows spoken-style instructions.
    if request.model == "gpt-4o-mini-tts"
        && let Some(instructions) = request.param_value("instructions")
    {
        body["instructions"] = instructions.clone();
    }
    let response = client::post("/audio/speech")?.json(&body).timeout(Duration::from_secs(120)).send()?;
    let response = errors::checked(response)?;
    // A proxy or an outage page in front of the API can answer 200 with a page: that is no
    // audio, whatever format was asked for.
    let said = response.header("content-type").unwrap_or_default().to_ascii_lowercase();
    if said.starts_with("text/") || said.contains("json") || said.contains("html") {
        let text = String::from_utf8_lossy(&response.body()[..response.body().len().min(200)]).into_owned();
        return Err(Error::upstream(format!("OpenAI answered the speech request with {said}, not audio: {text}")));
    }
    let audio = response.into_body();
    if audio.is_empty() {
        return Err(Error::upstream("OpenAI answered the speech request with an empty body"));
    }
    Ok(Submission::finished(vec![Output::bytes(mime, audio)]))
}
