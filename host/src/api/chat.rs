//! Chat for llmage and the OpenAI paths: find the model, open the provider's stream, and turn
//! it into OpenAI's `chat.completion` object or `chat.completion.chunk` server-sent events.
//!
//! Chat is answered while the client waits, so it does not go through the task queue: a
//! stream that breaks mid-way ends with an error event instead of being retried. Each dialect
//! adds its own fields to the chunks through [`ChunkStyle`].

use std::convert::Infallible;

use axum::{
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, Sse},
    },
};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    api::AppState,
    engine::{
        provider::{CallContext, ChatEvent, ChatRequest, ChatStream, ProgressSink, ProviderError},
        registry::Resolved,
        task::{new_id, now_ms},
    },
};

/// Extra fields a dialect puts on each chunk and on the final object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkStyle {
    /// Plain OpenAI.
    OpenAi,
    /// llmage: also top-level `content`, `reasoning_content` and `finish` ("0"/"1").
    Llmage,
}

/// A status and message for a provider error, for the dialect to wrap.
pub fn error_status(error: &ProviderError) -> (StatusCode, String) {
    let status = match error {
        ProviderError::InvalidRequest(_) | ProviderError::ContentRejected(_) => {
            StatusCode::BAD_REQUEST
        }
        ProviderError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ProviderError::Unauthorized(_) | ProviderError::UpstreamUnavailable(_) => {
            StatusCode::BAD_GATEWAY
        }
        ProviderError::Internal(_) | ProviderError::Cancelled => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, error.to_string())
}

/// Opens the model's chat stream.
pub async fn open(
    resolved: &Resolved,
    messages: Vec<Value>,
    params: Map<String, Value>,
) -> Result<ChatStream, ProviderError> {
    let request = ChatRequest {
        model: resolved.model.key.clone(),
        messages,
        params,
    };
    let ctx = CallContext {
        task_id: new_id("chat"),
        cancel: CancellationToken::new(),
        progress: ProgressSink::discard(),
    };
    resolved.provider.chat(&request, &ctx).await
}

/// The whole answer, for `stream: false`.
pub async fn complete(
    model_name: &str,
    mut stream: ChatStream,
    style: ChunkStyle,
) -> Result<Value, ProviderError> {
    let mut text = String::new();
    let mut usage = None;
    let mut finish = "stop".to_string();
    while let Some(event) = stream.next().await {
        match event? {
            ChatEvent::Delta(delta) => text.push_str(&delta),
            ChatEvent::Usage {
                prompt_tokens,
                completion_tokens,
            } => usage = Some(usage_json(prompt_tokens, completion_tokens)),
            ChatEvent::Finish(reason) => finish = reason,
        }
    }
    let mut body = json!({
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": now_ms() / 1000,
        "model": model_name,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
        }],
        "usage": usage.unwrap_or_else(|| usage_json(0, 0)),
    });
    if style == ChunkStyle::Llmage {
        body["content"] = text.into();
        body["finish"] = "1".into();
    }
    Ok(body)
}

fn usage_json(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// Builds the `chat.completion.chunk` events of one answer.
struct Chunks {
    id: String,
    created: i64,
    model: String,
    style: ChunkStyle,
}

impl Chunks {
    /// One chunk: a delta, the finishing chunk, or OpenAI's usage-only chunk (no choices).
    fn event(&self, delta: Value, finish: Option<&str>, usage: Option<Value>) -> Event {
        let choices = if usage.is_some() {
            json!([])
        } else {
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}])
        };
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        if self.style == ChunkStyle::Llmage {
            chunk["content"] = delta.get("content").cloned().unwrap_or_else(|| "".into());
            chunk["reasoning_content"] = Value::Null;
            chunk["finish"] = if finish.is_some() { "1" } else { "0" }.into();
        }
        Event::default().data(chunk.to_string())
    }
}

/// The answer as server-sent `chat.completion.chunk` events ending with `data: [DONE]`.
/// `include_usage` adds OpenAI's final usage-only chunk. A task relays the provider's stream
/// so a client that goes away stops the relay at its next event.
pub fn sse(
    model_name: &str,
    mut stream: ChatStream,
    style: ChunkStyle,
    include_usage: bool,
) -> Response {
    let chunks = Chunks {
        id: new_id("chatcmpl"),
        created: now_ms() / 1000,
        model: model_name.to_string(),
        style,
    };
    let (events, relayed) = futures::channel::mpsc::unbounded::<Event>();
    tokio::spawn(async move {
        let send = |event: Event| events.unbounded_send(event).is_ok();
        if !send(chunks.event(json!({"role": "assistant", "content": ""}), None, None)) {
            return;
        }
        let mut usage = None;
        while let Some(event) = stream.next().await {
            let delivered = match event {
                Ok(ChatEvent::Delta(text)) => {
                    send(chunks.event(json!({"content": text}), None, None))
                }
                Ok(ChatEvent::Usage {
                    prompt_tokens,
                    completion_tokens,
                }) => {
                    usage = Some(usage_json(prompt_tokens, completion_tokens));
                    true
                }
                Ok(ChatEvent::Finish(reason)) => {
                    send(chunks.event(json!({}), Some(&reason), None))
                        && match usage.take().filter(|_| include_usage) {
                            Some(usage) => send(chunks.event(json!({}), None, Some(usage))),
                            None => true,
                        }
                }
                Err(error) => {
                    let (_, message) = error_status(&error);
                    send(Event::default().data(json!({"error": {"message": message}}).to_string()));
                    break;
                }
            };
            if !delivered {
                return;
            }
        }
        send(Event::default().data("[DONE]"));
    });
    Sse::new(relayed.map(Ok::<_, Infallible>)).into_response()
}

/// A chat model by name (`provider/key`, alias, or a unique bare key).
pub fn find_model(state: &AppState, name: &str) -> Option<Resolved> {
    state
        .engine
        .registry()
        .find(name)
        .filter(|r| r.model.capabilities.iter().any(|c| c == "chat"))
}
