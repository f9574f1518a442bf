//! GLM chat, streamed: `POST /chat/completions` with `stream: true`, read as OpenAI-style
//! server-sent events (`choices[0].delta.content`, a final chunk with `finish_reason` and
//! `usage`, then `data: [DONE]`).

use crate::{API_BASE, api, errors};
use easel_sdk::http::SseReader;
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{ChatEvent, ChatRequest, ChatStream, Error, Result};

/// The request parameters passed through to Zhipu, when given.
const PASSED_PARAMS: [&str; 4] = ["temperature", "top_p", "max_tokens", "stop"];

/// Sends the chat request and returns the stream of its answer.
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
    let response = api::post(&format!("{API_BASE}/chat/completions"))?.json(&Value::Object(body)).send_streaming()?;
    if !(200..300).contains(&response.status()) {
        let status = response.status();
        let retry_after = response.header("retry-after").map(str::to_string);
        let full = response.into_response()?;
        return Err(errors::from_response(status, retry_after.as_deref(), full.body()));
    }
    Ok(Box::new(GlmStream { events: response.sse(), usage: None, finish: None, ended: false }))
}

/// The answer in progress: text deltas as they come, then usage and the finish reason.
struct GlmStream {
    events: SseReader,
    usage: Option<ChatEvent>,
    finish: Option<String>,
    ended: bool,
}

impl GlmStream {
    /// The closing events, once: usage (when Zhipu sent it) and the finish reason.
    fn close(&mut self) -> Vec<ChatEvent> {
        self.ended = true;
        let mut tail: Vec<ChatEvent> = self.usage.take().into_iter().collect();
        tail.push(ChatEvent::Finish(self.finish.take().unwrap_or_else(|| "stop".into())));
        tail
    }
}

impl ChatStream for GlmStream {
    fn next(&mut self) -> Result<Vec<ChatEvent>> {
        if self.ended {
            return Ok(Vec::new());
        }
        while let Some(event) = self.events.next_event()? {
            if event.is_done_marker() {
                return Ok(self.close());
            }
            let chunk: Value = event.json()?;
            if chunk.get("error").is_some() {
                let (code, message) = errors::code_and_message(&chunk);
                return Err(errors::by_code(&code, &message, None)
                    .unwrap_or_else(|| Error::upstream(format!("stream error {code}: {message}"))));
            }
            if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
                self.usage = Some(ChatEvent::Usage {
                    prompt: usage["prompt_tokens"].as_u64().unwrap_or(0),
                    completion: usage["completion_tokens"].as_u64().unwrap_or(0),
                });
            }
            let choice = &chunk["choices"][0];
            if let Some(reason) = choice["finish_reason"].as_str() {
                // Zhipu ends a moderated answer with `sensitive`; OpenAI's word is content_filter.
                self.finish = Some(if reason == "sensitive" { "content_filter".into() } else { reason.to_string() });
            }
            if let Some(text) = choice["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
                return Ok(vec![ChatEvent::Delta(text.to_string())]);
            }
        }
        Ok(self.close())
    }
}
