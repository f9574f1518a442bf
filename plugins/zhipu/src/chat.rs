//! GLM chat, streamed: `POST /chat/completions` with `stream: true`, read as OpenAI-style
//! server-sent events (`choices[0].delta.content`, a final chunk with `finish_reason` and
//! `usage`, then `data: [DONE]`) by `vendor_kit::chat`. With `tools`, GLM's calls arrive whole,
//! one chunk each (`delta.tool_calls`), and the answer finishes with `tool_calls`.

use crate::{API_BASE, api, errors};
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{ChatRequest, ChatStream, Error, Result};

/// The request parameters passed through to Zhipu, when given: `response_format`, `tools` and
/// `tool_choice`, but not `parallel_tool_calls`, which Zhipu does not take (see
/// `models::chat_schema`).
const PASSED_PARAMS: [&str; 7] =
    ["temperature", "top_p", "max_tokens", "stop", "response_format", "tools", "tool_choice"];

/// Sends the chat request and returns the stream of its answer. Zhipu takes no
/// `stream_options`, so the body is built here rather than by `vendor_kit::chat::request_body`.
pub fn start(request: &ChatRequest) -> Result<Box<dyn ChatStream>> {
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), request.messages.clone());
    body.insert("stream".into(), json!(true));
    for name in PASSED_PARAMS {
        if let Some(value) = request.params.get(name).filter(|v| !v.is_null()) {
            body.insert(name.into(), value.clone());
        }
    }
    let http = api::post(&format!("{API_BASE}/chat/completions"))?.json(&Value::Object(body));
    vendor_kit::chat::stream(http, map_error)
}

/// A refused request (non-2xx) maps as every Zhipu answer does; an error inside the stream
/// (status 200) maps by its code, else names it.
fn map_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error {
    if status != 200 {
        return errors::from_response(status, retry_after, body);
    }
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or(Value::Null);
    let (code, message) = errors::code_and_message(&parsed);
    errors::by_code(&code, &message, None)
        .unwrap_or_else(|| Error::upstream(format!("stream error {code}: {message}")))
}
