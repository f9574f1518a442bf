//! Chat: `POST /text/chatcompletion_v2`, streamed when the client reads a stream and whole
//! otherwise, read by `vendor_kit::chat` (OpenAI's chunks and `chat.completion` objects, tool
//! calls included). MiniMax's differences from that format: usage arrives in the last chunk
//! without `stream_options`, that chunk repeats the whole answer under `message` (only
//! `delta`s are read from a stream), and errors carry a non-zero `base_resp.status_code`,
//! often with status 200 and as plain JSON in place of a stream.

use crate::api::authorized;
use crate::{REGION_SECRET, api_base, errors};
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{ChatRequest, ChatStream, Error, Result};
use vendor_kit::region::Region;

/// The request parameters passed through to MiniMax, when given (see `models::chat_schema`).
const PASSED_PARAMS: [&str; 5] = ["temperature", "top_p", "max_tokens", "tools", "tool_choice"];

/// Sends the request and returns the answer, as a stream or whole as the client reads it.
pub fn start(request: &ChatRequest) -> Result<Box<dyn ChatStream>> {
    let streams = vendor_kit::chat::client_streams(request);
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), request.messages.clone());
    body.insert("stream".into(), json!(streams));
    for name in PASSED_PARAMS {
        if let Some(v) = request.params.get(name).filter(|v| !v.is_null()) {
            body.insert(name.into(), v.clone());
        }
    }
    let base = api_base(Region::configured(REGION_SECRET)?);
    let http = authorized(Request::post(format!("{base}/text/chatcompletion_v2")))?.json(&Value::Object(body));
    if streams {
        vendor_kit::chat::stream(http, map_error)
    } else {
        vendor_kit::chat::whole(http, map_error)
    }
}

/// A `base_resp` code decides, else the status. Only failures are mapped, so an answer that
/// says neither (an OpenAI-style `error` object under 200) is still one.
fn map_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error {
    errors::from_answer(status, retry_after, body).unwrap_or_else(|| {
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]);
        Error::upstream(format!("MiniMax failed a chat ({status}): {shown}"))
    })
}
