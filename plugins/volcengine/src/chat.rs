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

/// The model whose answer format may be chosen (Ark's structured output, in beta): JSON
/// mode or a JSON schema.
const FORMATS_MODEL: &str = MODELS[0];

/// OpenAI's sampling and tool parameters plus Ark's `thinking` switch, and for
/// [`FORMATS_MODEL`] the answer format.
pub fn params_schema(model: &str) -> Value {
    let mut extra = json!({
        "thinking": {"type": "object", "properties": {"type": {"type": "string", "enum": ["enabled", "disabled", "auto"]}},
                     "description": "Deep thinking for doubao-seed-1-6."}
    });
    if model == FORMATS_MODEL {
        extra["response_format"] = json!({
            "type": "object",
            "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}},
            "required": ["type"]
        });
    }
    vendor_kit::chat::with_tools(vendor_kit::chat::params_schema(extra))
}

/// Starts a streamed answer.
pub fn start(request: &ChatRequest) -> Result<Box<dyn ChatStream>> {
    let mut passthrough = [&PASSTHROUGH[..], &vendor_kit::chat::TOOL_PARAMS[..]].concat();
    if request.model == FORMATS_MODEL {
        passthrough.push("response_format");
    }
    let body = vendor_kit::chat::request_body(request, &request.model, &passthrough);
    let http = client::authorized(Request::post(client::ark("/chat/completions")))?
        .json(&body)
        .first_byte_timeout(Duration::from_secs(120))
        .between_bytes_timeout(Duration::from_secs(120));
    vendor_kit::chat::stream(http, errors::from_ark_answer)
}
