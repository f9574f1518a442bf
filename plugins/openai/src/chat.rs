//! Chat: `POST /v1/chat/completions`, with `stream: true` and `stream_options.include_usage`
//! when the client reads a stream, whole (`stream: false`) when it does not. Every chat model
//! takes OpenAI's function calling (`tools`, `tool_choice`, `parallel_tool_calls`); its calls
//! come back as tool-call events.

use crate::{client, errors};
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{ChatRequest, ChatStream, Result};
use std::time::Duration;

/// The chat models.
pub const MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "gpt-4.1-mini"];
const PASSTHROUGH: [&str; 20] = [
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
    "user",
    "response_format",
    // What changes the answer reaches the model, never dropped unsaid; what only OpenAI's
    // side keeps (stored completions, caching, tiers) goes with it as the client asked.
    "logit_bias",
    "reasoning_effort",
    "verbosity",
    "prediction",
    "web_search_options",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
];

/// OpenAI's sampling parameters, its answer format (JSON mode, a JSON schema), its current
/// name for the token cap, its tool parameters, and the passed-on parameters in the types and
/// values OpenAI documents, so the host refuses a wrong one before it reaches OpenAI.
pub fn params_schema() -> Value {
    vendor_kit::chat::with_tools(vendor_kit::chat::params_schema(json!({
        "user": {"type": "string"},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        // OpenAI's seed is any int64, negative ones included.
        "seed": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX},
        "response_format": {
            "type": "object",
            "properties": {
                "type": {"enum": ["text", "json_object", "json_schema"]},
                "json_schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "schema": {"type": "object"},
                                   "strict": {"type": ["boolean", "null"]}},
                    "required": ["name"]
                }
            },
            "required": ["type"],
            "if": {"properties": {"type": {"const": "json_schema"}}},
            "then": {"required": ["json_schema"]}
        },
        "logit_bias": {"type": "object", "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}},
        "reasoning_effort": {"enum": ["none", "minimal", "low", "medium", "high", "xhigh"]},
        "verbosity": {"enum": ["low", "medium", "high"]},
        "service_tier": {"enum": ["auto", "default", "flex", "scale", "priority"]},
        "metadata": {"type": "object", "maxProperties": 16, "additionalProperties": {"type": "string", "maxLength": 512}},
        "store": {"type": "boolean"},
        "prompt_cache_key": {"type": "string"},
        "safety_identifier": {"type": "string"},
        "prediction": {"type": "object"},
        "web_search_options": {"type": "object"}
    })))
}

/// Starts the answer, streamed or whole as the client asked. `max_tokens` is sent as
/// `max_completion_tokens`, the name OpenAI documents now (the old one is deprecated); a
/// client that sets both gets the one under the current name.
pub fn start(request: &ChatRequest) -> Result<Box<dyn ChatStream>> {
    let streams = vendor_kit::chat::client_streams(request);
    let passthrough = [&PASSTHROUGH[..], &vendor_kit::chat::TOOL_PARAMS[..]].concat();
    let mut body = vendor_kit::chat::request_body(request, &request.model, &passthrough);
    if let Some(fields) = body.as_object_mut() {
        if let Some(limit) = fields.remove("max_tokens") {
            fields.entry("max_completion_tokens").or_insert(limit);
        }
        if !streams {
            fields.insert("stream".into(), false.into());
            fields.remove("stream_options");
        }
    }
    let http = client::post("/chat/completions")?
        .json(&body)
        .first_byte_timeout(Duration::from_secs(120))
        .between_bytes_timeout(Duration::from_secs(120));
    if streams {
        vendor_kit::chat::stream(http, errors::from_answer)
    } else {
        vendor_kit::chat::whole(http, errors::from_answer)
    }
}
