//! A fake OpenAI API, after the OpenAI API reference the plugin's README names ("Images:
//! create image", "Audio: create speech", "Error codes").
//!
//! - `POST /v1/images/generations` (`Authorization: Bearer <key>`) reads `model`, `prompt`,
//!   `n`, `size`; `gpt-image-1` answers `data[].b64_json` (plus `usage`), `dall-e-3` with
//!   `response_format: url` answers `data[].url`;
//! - `POST /v1/images/edits` reads a multipart form (`model`, `prompt`, `image[]` files and an
//!   optional `mask` file) and answers `data[].b64_json`;
//! - `POST /v1/audio/speech` reads `model`, `input`, `voice` and answers the audio bytes;
//! - `POST /v1/chat/completions` echoes the last user message: whole as a `chat.completion`
//!   object, or with `stream: true` as `chat.completion.chunk` events (a usage-only chunk
//!   when `stream_options.include_usage`) and `data: [DONE]`; a message holding `wait:<ms>`
//!   is answered, head and all, only after that many milliseconds, one holding `first:<ms>`
//!   has its stream's head sent at once and its events that many milliseconds later, and one
//!   holding `then:<ms>` sends the text and the finish at once and the rest (the usage and
//!   `[DONE]`) that many milliseconds later, and one holding `end:<ms>` sends the whole stream
//!   at once and ends its body (the last chunk of its chunked encoding) that many
//!   milliseconds later; asked with `tools` (and a last message that is not a tool's), it
//!   calls each of the first two tools with `{"said": <the last message>}` (ids `call_oa_0`,
//!   `call_oa_1`), whole or streamed (a call's id and name, then its arguments; `first:<ms>`
//!   holds the events back as for text), and finishes with `tool_calls`; a message holding
//!   `refuse` is declined as OpenAI declines a structured answer: `content` null and
//!   [`REFUSAL`] as `refusal`, whole or streamed in two pieces; one holding `too_long` is
//!   refused as too long for the model (400 `context_length_exceeded`, `param` `messages`);
//!   one holding `busy` is refused as rate limited (429, `Retry-After` [`RETRY_AFTER_SECS`]);
//!   every answer and
//!   chunk names its `system_fingerprint` ([`FINGERPRINT`]) and `service_tier` (`default`), and
//!   its usage has OpenAI's `prompt_tokens_details` and `completion_tokens_details`;
//! - errors are `{"error": {"message", "type", "param", "code"}}` with the HTTP status
//!   (moderation is a 400 `content_policy_violation`, quota a 429 with `Retry-After`); an
//!   image prompt holding `busy:<n>` is refused as rate limited (`Retry-After` a date a second
//!   ahead) the first `n` times it is asked for, and served after.

use axum::{
    Router,
    extract::{FromRequest, State},
    http::header,
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine as _;
use futures::StreamExt;
use serde_json::json;

use super::{Call, FakeState, Scenario, json_reply, rate_limited_reply};

/// The API key the host is given.
pub const KEY: &str = "sk-openai-e2e";
/// The vendor host the plugin calls.
pub const HOST: &str = "api.openai.com";

/// OpenAI's routes.
pub fn routes() -> Router<FakeState> {
    Router::new()
        .route("/v1/images/generations", post(generate_images))
        .route("/v1/images/edits", post(edit_images))
        .route("/v1/audio/speech", post(create_speech))
        .route("/v1/chat/completions", post(chat))
}

/// What a mapped error must mention.
pub fn error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "invalid_api_key",
        Scenario::ContentRejected => "content_policy_violation",
        Scenario::BadParameter => "invalid_value",
        Scenario::RateLimited => super::RETRY_AFTER_PASSED_ON,
        _ => "server_error",
    }
}

fn error(status: u16, kind: &str, code: &str, message: &str) -> Response {
    json_reply(
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

fn refusal(call: &Call, scenario: Scenario) -> Option<Response> {
    if !call.authorized_as(&format!("Bearer {KEY}")) || scenario == Scenario::AuthRejected {
        return Some(error(
            401,
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect API key provided: sk-op***e2e.",
        ));
    }
    Some(match scenario {
        Scenario::RateLimited => rate_limited_reply(
            429,
            json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
        ),
        Scenario::ContentRejected => error(
            400,
            "invalid_request_error",
            "content_policy_violation",
            "Your request was rejected as a result of our safety system.",
        ),
        Scenario::BadParameter => error(
            400,
            "invalid_request_error",
            "invalid_value",
            "Invalid value for 'size'.",
        ),
        Scenario::UpstreamDown => error(
            500,
            "server_error",
            "",
            "The server had an error while processing your request.",
        ),
        _ => return None,
    })
}

/// The 429 for a prompt holding `busy:<n>` asked for the `n`th time or sooner (this call
/// included: it was recorded as it arrived).
fn busy(state: &super::Shared, prompt: &str) -> Option<Response> {
    let times: usize = prompt
        .split_whitespace()
        .find_map(|word| word.strip_prefix("busy:"))?
        .parse()
        .ok()?;
    let asked = state
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|call| call.path == "/v1/images/generations" && call.json()["prompt"] == prompt)
        .count();
    (asked <= times).then(|| {
        let mut response = error(
            429,
            "requests",
            "rate_limit_exceeded",
            "Rate limit reached for requests",
        );
        // As an HTTP date, the form the plugins must read besides seconds.
        let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            httpdate::fmt_http_date(soon).parse().unwrap(),
        );
        response
    })
}

async fn generate_images(State(state): State<FakeState>, call: Call) -> Response {
    let body = call.json();
    let (Some(model), Some(prompt)) = (body["model"].as_str(), body["prompt"].as_str()) else {
        return error(
            400,
            "invalid_request_error",
            "missing_required_parameter",
            "You must provide a model and a prompt.",
        );
    };
    if let Some(refused) = refusal(&call, Scenario::from_text(prompt)) {
        return refused;
    }
    if let Some(busy) = busy(&state, prompt) {
        return busy;
    }
    if model == "gpt-image-1" {
        let png = base64::engine::general_purpose::STANDARD.encode(super::PNG_1X1);
        json_reply(
            200,
            json!({"created": 1_713_833_628, "data": [{"b64_json": png}],
                               "usage": {"total_tokens": 100, "input_tokens": 50, "output_tokens": 50}}),
        )
    } else if body["response_format"] == "url" {
        json_reply(
            200,
            json!({"created": 1_713_833_628, "data": [{"url": state.file_url("dalle.png"), "revised_prompt": prompt}]}),
        )
    } else {
        error(
            400,
            "invalid_request_error",
            "invalid_value",
            "response_format must be url or b64_json",
        )
    }
}

/// Reads `POST /v1/images/edits`' multipart form: `model` and `prompt` fields, `image[]` files
/// (each an image type), at most one `mask` file; answers `gpt-image-1`'s base64 image.
async fn edit_images(call: Call) -> Response {
    let invalid = |message: &str| error(400, "invalid_request_error", "invalid_value", message);
    let content_type = call.header("content-type").unwrap_or_default().to_string();
    let request = axum::http::Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(call.0.body.clone()))
        .unwrap();
    let Ok(mut form) = axum::extract::Multipart::from_request(request, &()).await else {
        return invalid("the body must be a multipart form");
    };
    let (mut fields, mut images, mut masks) = (serde_json::Map::new(), 0, 0);
    loop {
        let part = match form.next_field().await {
            Ok(Some(part)) => part,
            Ok(None) => break,
            Err(_) => return invalid("the multipart form is malformed"),
        };
        let name = part.name().unwrap_or_default().to_string();
        let is_image = part.content_type().is_some_and(|t| t.starts_with("image/"));
        match name.as_str() {
            "image[]" | "mask" if part.file_name().is_some() && is_image => {
                if name == "mask" {
                    masks += 1
                } else {
                    images += 1
                }
            }
            "image[]" | "mask" => return invalid("image[] and mask must be image files"),
            _ => {
                fields.insert(name, part.text().await.unwrap_or_default().into());
            }
        }
    }
    let text = |name: &str| fields.get(name).and_then(|value| value.as_str());
    let (Some(_), Some(prompt)) = (text("model"), text("prompt")) else {
        return invalid("You must provide a model and a prompt.");
    };
    if let Some(refused) = refusal(&call, Scenario::from_text(prompt)) {
        return refused;
    }
    if images == 0 || masks > 1 {
        return invalid("give one or more image[] files and at most one mask");
    }
    let png = base64::engine::general_purpose::STANDARD.encode(super::PNG_1X1);
    json_reply(
        200,
        json!({"created": 1_713_833_628, "data": [{"b64_json": png}]}),
    )
}

async fn create_speech(call: Call) -> Response {
    let body = call.json();
    let (Some(_), Some(input), Some(_)) = (
        body["model"].as_str(),
        body["input"].as_str(),
        body["voice"].as_str(),
    ) else {
        return error(
            400,
            "invalid_request_error",
            "missing_required_parameter",
            "model, input and voice are required.",
        );
    };
    if let Some(refused) = refusal(&call, Scenario::from_text(input)) {
        return refused;
    }
    ([(header::CONTENT_TYPE, "audio/mpeg")], super::MP3_HEADER).into_response()
}

async fn chat(call: Call) -> Response {
    if let Some(refused) = refusal(&call, Scenario::Success) {
        return refused;
    }
    let body = call.json();
    let Some(said) = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
    else {
        return error(
            400,
            "invalid_request_error",
            "missing_required_parameter",
            "messages must end with a message with text content.",
        );
    };
    let millis = |directive: &str| {
        said.split_whitespace()
            .find_map(|w| w.strip_prefix(directive))
            .and_then(|ms| ms.parse().ok())
            .map(std::time::Duration::from_millis)
    };
    if let Some(wait) = millis("wait:") {
        tokio::time::sleep(wait).await;
    }
    let usage = json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
                       "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
                       "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0,
                           "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}});
    let last_is_tool =
        body["messages"].as_array().and_then(|m| m.last()).unwrap()["role"] == "tool";
    let tools = body["tools"].as_array().filter(|_| !last_is_tool);
    if let Some(tools) = tools {
        return tool_calls(&body, tools, said, usage, millis("first:"));
    }
    if said.split_whitespace().any(|w| w == "refuse") {
        return refused(&body, usage);
    }
    if said.split_whitespace().any(|w| w == "busy")
        && let Some(busy) = refusal(&call, Scenario::RateLimited)
    {
        return busy;
    }
    if said.split_whitespace().any(|w| w == "too_long") {
        return json_reply(
            400,
            json!({"error": {"message": "This model's maximum context length is 128000 tokens.",
                             "type": "invalid_request_error", "param": "messages",
                             "code": "context_length_exceeded"}}),
        );
    }
    if body["stream"] != true {
        let choice = json!({"index": 0, "message": {"role": "assistant", "content": said}, "finish_reason": "stop"});
        return completion(&body, choice, usage);
    }
    let chunk = |choices, usage| chunk_event(&body, choices, usage);
    let mut events = chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": said}, "finish_reason": null}]),
        serde_json::Value::Null,
    );
    events.push_str(&chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        serde_json::Value::Null,
    ));
    let mut end = String::new();
    if body["stream_options"]["include_usage"] == true {
        end.push_str(&chunk(json!([]), usage));
    }
    end.push_str("data: [DONE]\n\n");
    let body = match (millis("first:"), millis("then:"), millis("end:")) {
        (Some(first), _, _) => axum::body::Body::from_stream(futures::stream::once(async move {
            tokio::time::sleep(first).await;
            Ok::<_, std::convert::Infallible>(events + &end)
        })),
        (None, Some(then), _) => axum::body::Body::from_stream(
            futures::stream::iter([Ok::<_, std::convert::Infallible>(events)]).chain(
                futures::stream::once(async move {
                    tokio::time::sleep(then).await;
                    Ok(end)
                }),
            ),
        ),
        (None, None, Some(later)) => axum::body::Body::from_stream(
            futures::stream::iter([Ok::<_, std::convert::Infallible>(events + &end)]).chain(
                futures::stream::once(async move {
                    tokio::time::sleep(later).await;
                    Ok(String::new())
                }),
            ),
        ),
        (None, None, None) => (events + &end).into(),
    };
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

/// The backend configuration every chat answer names, as OpenAI's do.
pub const FINGERPRINT: &str = "fp_e2e0001";

/// What the model says when it declines to answer.
pub const REFUSAL: &str = "I'm sorry, I can't help with that.";

/// A declined answer, whole or streamed as OpenAI streams one: an opening with an empty
/// refusal and no content, then the refusal in pieces, then the finish.
fn refused(body: &serde_json::Value, usage: serde_json::Value) -> Response {
    if body["stream"] != true {
        let choice = json!({"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": null, "refusal": REFUSAL}});
        return completion(body, choice, usage);
    }
    let (first, rest) = REFUSAL.split_at(8);
    let deltas = [
        json!({"role": "assistant", "content": null, "refusal": ""}),
        json!({"refusal": first}),
        json!({"refusal": rest}),
    ];
    let mut events: String = deltas
        .into_iter()
        .map(|delta| {
            let choices = json!([{"index": 0, "delta": delta, "finish_reason": null}]);
            chunk_event(body, choices, serde_json::Value::Null)
        })
        .collect();
    let finish = json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]);
    events.push_str(&chunk_event(body, finish, serde_json::Value::Null));
    if body["stream_options"]["include_usage"] == true {
        events.push_str(&chunk_event(body, json!([]), usage));
    }
    events.push_str("data: [DONE]\n\n");
    ([(header::CONTENT_TYPE, "text/event-stream")], events).into_response()
}

/// A whole answer (`chat.completion`) with its one `choice`.
fn completion(
    body: &serde_json::Value,
    choice: serde_json::Value,
    usage: serde_json::Value,
) -> Response {
    json_reply(
        200,
        json!({"id": "chatcmpl-e2e", "object": "chat.completion", "created": 1_713_833_628,
               "model": body["model"], "choices": [choice], "usage": usage,
               "service_tier": "default", "system_fingerprint": FINGERPRINT}),
    )
}

/// One `chat.completion.chunk` event.
fn chunk_event(
    body: &serde_json::Value,
    choices: serde_json::Value,
    usage: serde_json::Value,
) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1_713_833_628,
               "model": body["model"], "choices": choices, "usage": usage,
               "service_tier": "default", "system_fingerprint": FINGERPRINT})
    )
}

/// The answer of a chat asked with `tools`: a call of each of the first two; streamed, after
/// `first` when given (the head at once).
fn tool_calls(
    body: &serde_json::Value,
    tools: &[serde_json::Value],
    said: &str,
    usage: serde_json::Value,
    first: Option<std::time::Duration>,
) -> Response {
    let arguments = json!({"said": said}).to_string();
    let calls: Vec<_> = tools
        .iter()
        .take(2)
        .enumerate()
        .map(|(i, tool)| (i, format!("call_oa_{i}"), tool["function"]["name"].clone()))
        .collect();
    if body["stream"] != true {
        let tool_calls: Vec<_> = calls
            .iter()
            .map(|(_, id, name)| {
                json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
            })
            .collect();
        let choice = json!({"index": 0, "finish_reason": "tool_calls",
                            "message": {"role": "assistant", "content": null, "tool_calls": tool_calls}});
        return completion(body, choice, usage);
    }
    let chunk = |delta: serde_json::Value, finish: serde_json::Value, usage: serde_json::Value| {
        let choices = if usage.is_null() {
            json!([{"index": 0, "delta": delta, "finish_reason": finish}])
        } else {
            json!([])
        };
        chunk_event(body, choices, usage)
    };
    let null = serde_json::Value::Null;
    let mut events = chunk(
        json!({"role": "assistant", "content": null}),
        null.clone(),
        null.clone(),
    );
    for (i, id, name) in &calls {
        let opening = json!({"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": ""}});
        let rest = json!({"index": i, "function": {"arguments": arguments}});
        for piece in [opening, rest] {
            events.push_str(&chunk(
                json!({"tool_calls": [piece]}),
                null.clone(),
                null.clone(),
            ));
        }
    }
    events.push_str(&chunk(json!({}), json!("tool_calls"), null.clone()));
    if body["stream_options"]["include_usage"] == true {
        events.push_str(&chunk(null.clone(), null.clone(), usage));
    }
    events.push_str("data: [DONE]\n\n");
    let events = futures::stream::once(async move {
        tokio::time::sleep(first.unwrap_or_default()).await;
        Ok::<_, std::convert::Infallible>(events)
    });
    let body = axum::body::Body::from_stream(events);
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}
