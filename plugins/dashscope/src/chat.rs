//! Qwen chat (`qwen-plus`, `qwen3-max`) through DashScope's OpenAI-compatible endpoint,
//! streamed (`POST /compatible-mode/v1/chat/completions` with `stream: true` and
//! `stream_options.include_usage`). Both models take function calling there (`tools`,
//! `tool_choice`, `parallel_tool_calls` in OpenAI's shape); the calls come back as tool-call
//! events.

use crate::client::{self, Region};
use crate::errors;
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{ChatRequest, ChatStream, Result};
use std::time::Duration;

/// The chat models; their keys are DashScope's model names.
pub const MODELS: [&str; 2] = ["qwen-plus", "qwen3-max"];

/// Parameters passed on to DashScope; anything else the client sends is dropped.
const PASSTHROUGH: [&str; 10] = [
    "temperature",
    "top_p",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
    "enable_thinking",
    "enable_search",
    "response_format",
];

/// The chat params schema: OpenAI's sampling and tool parameters, JSON mode, plus DashScope's
/// switches.
pub fn params_schema() -> Value {
    vendor_kit::chat::with_tools(vendor_kit::chat::params_schema(json!({
        "enable_thinking": {"type": "boolean", "description": "Qwen thinking mode (qwen-plus); streamed only."},
        "enable_search": {"type": "boolean", "description": "Let the model search the web."},
        "response_format": {
            "type": "object",
            "properties": {"type": {"enum": ["text", "json_object"]}},
            "required": ["type"],
            "description": "JSON mode: {\"type\": \"json_object\"} (the prompt must mention JSON)."
        }
    })))
}

/// Starts a streamed answer.
pub fn start(request: &ChatRequest, region: Region) -> Result<Box<dyn ChatStream>> {
    let passthrough = [&PASSTHROUGH[..], &vendor_kit::chat::TOOL_PARAMS[..]].concat();
    let body = vendor_kit::chat::request_body(request, &request.model, &passthrough);
    let http = client::authorized(Request::post(region.compatible("/chat/completions")))?
        .json(&body)
        .first_byte_timeout(Duration::from_secs(120))
        .between_bytes_timeout(Duration::from_secs(120));
    vendor_kit::chat::stream(http, errors::from_answer)
}
