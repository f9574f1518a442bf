//! Streamed chat: `POST /text/chatcompletion_v2` with `stream: true`, read as
//! OpenAI-style server-sent events; the last chunk carries `usage`, and a chunk may carry
//! a `base_resp` error instead of text.

use crate::api::authorized;
use crate::{REGION_SECRET, api_base, errors};
use vendor_kit::region::Region;
use easel_sdk::http::{Request, SseReader};
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{ChatEvent, ChatRequest, ChatStream, Result};

const PASSED_PARAMS: [&str; 3] = ["temperature", "top_p", "max_tokens"];

/// Sends the request and returns the stream of the answer.
pub fn start(request: &ChatRequest) -> Result<Box<dyn ChatStream>> {
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), request.messages.clone());
    body.insert("stream".into(), json!(true));
    for name in PASSED_PARAMS {
        if let Some(v) = request.params.get(name).filter(|v| !v.is_null()) {
            body.insert(name.into(), v.clone());
        }
    }
    let base = api_base(Region::configured(REGION_SECRET)?);
    let response = authorized(Request::post(format!("{base}/text/chatcompletion_v2")))?
        .json(&Value::Object(body))
        .send_streaming()?;
    let is_event_stream = response.header("content-type").is_some_and(|t| t.contains("event-stream"));
    // Errors come back as plain JSON (often with status 200), not as a stream.
    if !(200..300).contains(&response.status()) || !is_event_stream {
        let status = response.status();
        let full = response.into_response()?;
        if let Some(error) = errors::from_answer(status, full.header("retry-after"), full.body()) {
            return Err(error);
        }
        return Err(easel_sdk::Error::upstream(format!("MiniMax answered a chat without a stream: {}", full.text())));
    }
    Ok(Box::new(MiniMaxStream { events: response.sse(), usage: None, finish: None, ended: false }))
}

struct MiniMaxStream {
    events: SseReader,
    usage: Option<ChatEvent>,
    finish: Option<String>,
    ended: bool,
}

impl MiniMaxStream {
    fn close(&mut self) -> Vec<ChatEvent> {
        self.ended = true;
        let mut tail: Vec<ChatEvent> = self.usage.take().into_iter().collect();
        tail.push(ChatEvent::Finish(self.finish.take().unwrap_or_else(|| "stop".into())));
        tail
    }
}

impl ChatStream for MiniMaxStream {
    fn next(&mut self) -> Result<Vec<ChatEvent>> {
        if self.ended {
            return Ok(Vec::new());
        }
        while let Some(event) = self.events.next_event()? {
            if event.is_done_marker() {
                return Ok(self.close());
            }
            let chunk: Value = event.json()?;
            if let Some(error) = errors::from_base_resp(&chunk, None) {
                return Err(error);
            }
            if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
                self.usage = Some(ChatEvent::Usage {
                    prompt: usage["prompt_tokens"].as_u64().unwrap_or(0),
                    completion: usage["completion_tokens"].as_u64().unwrap_or(0),
                });
            }
            let choice = &chunk["choices"][0];
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finish = Some(reason.to_string());
                // The final chunk repeats the whole answer under `message`, not `delta`;
                // only deltas are text still to send.
            }
            if let Some(text) = choice["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
                return Ok(vec![ChatEvent::Delta(text.to_string())]);
            }
        }
        Ok(self.close())
    }
}
