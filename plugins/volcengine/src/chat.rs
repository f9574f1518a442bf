//! Doubao chat through Ark's OpenAI-style `POST /api/v3/chat/completions`, streamed. Both
//! Doubao models take Ark's function calling (`tools`, `tool_choice`, `parallel_tool_calls` in
//! OpenAI's shape); the calls come back as tool-call events.

use crate::{client, errors};
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{ChatRequest, ChatStream, Result};
use std::time::Duration;

/// The chat models (Ark model names).
pub const MODELS: [&str; 2] = ["doubao-seed-1-6-250615", "doubao-1-5-pro-32k-250115"];
const PASSTHROUGH: [&str; 7] = ["temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty", "stop", "thinking"];

/// OpenAI's sampling and tool parameters plus Ark's `thinking` switch.
pub fn params_schema() -> Value {
    vendor_kit::chat::with_tools(vendor_kit::chat::params_schema(json!({
        "thinking": {"type": "object", "properties": {"type": {"type": "string", "enum": ["enabled", "disabled", "auto"]}},
                     "description": "Deep thinking for doubao-seed-1-6."}
    })))
}

/// Starts a streamed answer.
pub fn start(request: &ChatRequest) -> Result<Box<dyn ChatStream>> {
    let passthrough = [&PASSTHROUGH[..], &vendor_kit::chat::TOOL_PARAMS[..]].concat();
    let body = vendor_kit::chat::request_body(request, &request.model, &passthrough);
    let http = client::authorized(Request::post(client::ark("/chat/completions")))?
        .json(&body)
        .first_byte_timeout(Duration::from_secs(120))
        .between_bytes_timeout(Duration::from_secs(120));
    vendor_kit::chat::stream(http, errors::from_ark_answer)
}
