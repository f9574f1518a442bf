//! Speech: Qwen-TTS (`qwen3-tts-flash`) through the synchronous
//! `multimodal-generation/generation` call; the answer's `output.audio.url` (a WAV file
//! DashScope keeps for 24 hours) is handed to the host to store.

use crate::client::{self, Region};
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, Output, Result, Submission};

/// The speech model key (DashScope's model name).
pub const MODEL: &str = "qwen3-tts-flash";
const MULTIMODAL: &str = "/services/aigc/multimodal-generation/generation";

/// The system voices: id, display name, main language (dialect voices speak Chinese).
pub const VOICES: [(&str, &str, &str); 17] = [
    ("Cherry", "芊悦", "zh"),
    ("Ethan", "晨煦", "zh"),
    ("Nofish", "不吃鱼", "zh"),
    ("Jennifer", "詹妮弗", "en"),
    ("Ryan", "甜茶", "en"),
    ("Katerina", "卡捷琳娜", "en"),
    ("Elias", "墨讲师", "zh"),
    ("Jada", "上海-阿珍", "zh"),
    ("Dylan", "北京-晓东", "zh"),
    ("Sunny", "四川-晴儿", "zh"),
    ("Li", "南京-老李", "zh"),
    ("Marcus", "陕西-秦川", "zh"),
    ("Roy", "闽南-阿杰", "zh"),
    ("Peter", "天津-李彼得", "zh"),
    ("Rocky", "粤语-阿强", "zh"),
    ("Kiki", "粤语-阿清", "zh"),
    ("Eric", "四川-程川", "zh"),
];

/// Languages `language_type` accepts.
pub const LANGUAGES: [&str; 11] =
    ["Auto", "Chinese", "English", "German", "Italian", "Portuguese", "Spanish", "Japanese", "Korean", "French", "Russian"];

/// Synthesizes the prompt.
pub fn submit(request: &GenerationRequest, region: Region) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let body = json!({
        "model": MODEL,
        "input": {
            "text": request.prompt,
            "voice": request.param_str("voice", "Cherry")?,
            "language_type": request.param_str("language_type", "Auto")?,
        }
    });
    let answer = client::call(region, MULTIMODAL, &body)?;
    let url = answer
        .pointer("/output/audio/url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::upstream(format!("DashScope answered without audio: {answer}")))?;
    let out = Finished::new(vec![Output::Url { url: url.to_string(), content_type: Some("audio/wav".into()) }]);
    Ok(Submission::Finished(crate::image::with_usage(out, &answer)))
}
