//! A fake DashScope (Alibaba Cloud Model Studio), after the documents the plugin's README
//! names: "Text-to-image (Wan) API reference", "Wan text-to-video API reference", "Qwen-TTS
//! API reference" and "Asynchronous task management (query / cancel)".
//!
//! - `POST /api/v1/services/aigc/{text2image/image-synthesis | video-generation/video-synthesis}`
//!   needs `Authorization: Bearer <key>` and `X-DashScope-Async: enable`, reads `model` and
//!   `input.prompt`, answers `{"request_id", "output": {"task_id", "task_status": "PENDING"}}`;
//! - `GET /api/v1/tasks/{id}` answers `output.task_status` `RUNNING`, `SUCCEEDED` (images in
//!   `output.results[].url`, video in `output.video_url`) or `FAILED` with `output.code`;
//! - `POST /api/v1/tasks/{id}/cancel` cancels a task still queued;
//! - `POST /api/v1/services/aigc/multimodal-generation/generation` answers synchronously:
//!   Qwen-TTS with `output.audio.url`, `qwen-image-edit` (one message holding an `image` and a
//!   `text` part) with the edited image in `output.choices[0].message.content[].image`;
//! - `POST /compatible-mode/v1/chat/completions` (OpenAI-compatible mode) streams
//!   `chat.completion.chunk`s (`system_fingerprint: null`, as Qwen sends it) that echo the
//!   last message word by word, then a usage-only chunk (with `prompt_tokens_details` of two
//!   cached tokens) and `data: [DONE]`; asked with `tools` (and a last message that is not a tool's),
//!   it instead calls the first tool with `{"said": <the last message>}`, its arguments in two
//!   pieces after the piece naming the call, and finishes with `tool_calls`; a `tool` message
//!   must answer a call the assistant message before it made (by `tool_call_id`); asked with
//!   `enable_thinking: true`, it first thinks in `reasoning_content` pieces (`content: null`),
//!   as Qwen's thinking mode streams;
//! - errors are `{"request_id", "code", "message"}` with the HTTP status.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use serde_json::json;

use super::{Call, FakeState, Phase, Scenario, json_reply, rate_limited_reply};

/// The API key the host is given.
pub const KEY: &str = "sk-dashscope-e2e";
/// The vendor host the plugin calls.
pub const HOST: &str = "dashscope.aliyuncs.com";

/// DashScope's routes.
pub fn routes() -> Router<FakeState> {
    Router::new()
        .route(
            "/api/v1/services/aigc/text2image/image-synthesis",
            post(create_image_task),
        )
        .route(
            "/api/v1/services/aigc/video-generation/video-synthesis",
            post(create_video_task),
        )
        .route(
            "/api/v1/services/aigc/multimodal-generation/generation",
            post(multimodal_generation),
        )
        .route("/compatible-mode/v1/chat/completions", post(chat))
        .route("/api/v1/tasks/{id}", get(query_task))
        .route("/api/v1/tasks/{id}/cancel", post(cancel_task))
}

/// What a mapped error must mention for each refusal.
pub fn error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "InvalidApiKey",
        Scenario::ContentRejected | Scenario::FailsModeration => "DataInspectionFailed",
        Scenario::BadParameter => "InvalidParameter",
        Scenario::RateLimited => super::RETRY_AFTER_PASSED_ON,
        _ => "InternalError",
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    json_reply(
        status,
        json!({"request_id": "req-e2e", "code": code, "message": message}),
    )
}

/// The refusal a scenario plays, or a refusal for a request that breaks the protocol.
fn refusal(call: &Call, scenario: Scenario) -> Option<Response> {
    if !call.authorized_as(&format!("Bearer {KEY}")) || scenario == Scenario::AuthRejected {
        return Some(error(401, "InvalidApiKey", "Invalid API-key provided."));
    }
    Some(match scenario {
        Scenario::RateLimited => rate_limited_reply(
            429,
            json!({"request_id": "req-e2e", "code": "Throttling.RateQuota", "message": "Requests rate limit exceeded."}),
        ),
        Scenario::ContentRejected => error(
            400,
            "DataInspectionFailed",
            "Input data may contain inappropriate content.",
        ),
        Scenario::BadParameter => error(
            400,
            "InvalidParameter",
            "The size is not match the allowed size",
        ),
        Scenario::UpstreamDown => error(500, "InternalError", "An internal error has occured."),
        _ => return None,
    })
}

async fn create_task(call: Call, state: &FakeState, family: &str) -> Response {
    let body = call.json();
    let prompt = body["input"]["prompt"].as_str().unwrap_or_default();
    if call.header("x-dashscope-async") != Some("enable") {
        return error(
            403,
            "AccessDenied",
            "current user api does not support synchronous calls",
        );
    }
    if body["model"].as_str().is_none() || prompt.is_empty() {
        return error(400, "InvalidParameter", "Field required: input.prompt");
    }
    let scenario = Scenario::from_text(prompt);
    if let Some(refused) = refusal(&call, scenario) {
        return refused;
    }
    let id = state.tasks.create(family, scenario);
    json_reply(
        200,
        json!({"request_id": "req-e2e", "output": {"task_id": id, "task_status": "PENDING"}}),
    )
}

async fn create_image_task(State(state): State<FakeState>, call: Call) -> Response {
    create_task(call, &state, "img").await
}

async fn create_video_task(State(state): State<FakeState>, call: Call) -> Response {
    create_task(call, &state, "vid").await
}

async fn query_task(
    State(state): State<FakeState>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    if let Some(refused) = refusal(&call, Scenario::Success) {
        return refused;
    }
    let output = match state.tasks.poll(&id) {
        None => json!({"task_id": id, "task_status": "UNKNOWN"}),
        Some(Phase::Running) => json!({"task_id": id, "task_status": "RUNNING"}),
        Some(Phase::FailedModeration) => {
            json!({"task_id": id, "task_status": "FAILED", "code": "DataInspectionFailed",
                                                 "message": "Output data may contain inappropriate content."})
        }
        Some(Phase::Succeeded) if id.starts_with("img") => {
            json!({"task_id": id, "task_status": "SUCCEEDED",
            "results": [{"url": state.file_url(&format!("{id}.png")), "orig_prompt": "e2e"}]})
        }
        Some(Phase::Succeeded) => {
            json!({"task_id": id, "task_status": "SUCCEEDED", "video_url": state.file_url(&format!("{id}.mp4"))})
        }
    };
    json_reply(
        200,
        json!({"request_id": "req-e2e", "output": output, "usage": {"image_count": 1}}),
    )
}

async fn cancel_task(
    State(state): State<FakeState>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    if let Some(refused) = refusal(&call, Scenario::Success) {
        return refused;
    }
    if state.tasks.cancel(&id) {
        json_reply(200, json!({"request_id": "req-e2e"}))
    } else {
        error(
            400,
            "UnsupportedOperation",
            "Failed to cancel the task, please confirm if the task is in PENDING status.",
        )
    }
}

async fn multimodal_generation(State(state): State<FakeState>, call: Call) -> Response {
    if call.json()["model"] == "qwen-image-edit" {
        return edit_image(&state, &call);
    }
    synthesize_speech(&state, &call)
}

fn edit_image(state: &FakeState, call: &Call) -> Response {
    let body = call.json();
    let parts = body["input"]["messages"][0]["content"].as_array();
    let part = |name: &str| {
        parts
            .into_iter()
            .flatten()
            .find_map(|part| part[name].as_str().map(str::to_string))
    };
    let (Some(_), Some(text)) = (part("image"), part("text")) else {
        return error(
            400,
            "InvalidParameter",
            "the message must hold an image and a text",
        );
    };
    if let Some(refused) = refusal(call, Scenario::from_text(&text)) {
        return refused;
    }
    json_reply(
        200,
        json!({
            "request_id": "req-e2e",
            "output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant",
                "content": [{"image": state.file_url("edited.png")}]}}]},
            "usage": {"image_count": 1}
        }),
    )
}

fn synthesize_speech(state: &FakeState, call: &Call) -> Response {
    let body = call.json();
    let text = body["input"]["text"].as_str().unwrap_or_default();
    if text.is_empty() || body["input"]["voice"].as_str().is_none() {
        return error(
            400,
            "InvalidParameter",
            "input.text and input.voice are required",
        );
    }
    if let Some(refused) = refusal(call, Scenario::from_text(text)) {
        return refused;
    }
    json_reply(
        200,
        json!({
            "request_id": "req-e2e",
            "output": {"finish_reason": "stop", "audio": {"url": state.file_url("speech.wav"), "id": "audio-1", "expires_at": 1_900_000_000}},
            "usage": {"characters": text.chars().count()}
        }),
    )
}

async fn chat(call: Call) -> Response {
    if !call.authorized_as(&format!("Bearer {KEY}")) {
        return error(401, "InvalidApiKey", "Invalid API-key provided.");
    }
    let body = call.json();
    if body["stream"] != true || body["messages"].as_array().is_none_or(Vec::is_empty) {
        return error(
            400,
            "InvalidParameter",
            "messages and stream: true are required",
        );
    }
    let messages = body["messages"].as_array().unwrap();
    let last = messages.last().unwrap();
    if last["role"] == "tool" {
        let asked = messages.len() >= 2
            && messages[messages.len() - 2]["tool_calls"]
                .as_array()
                .is_some_and(|calls| calls.iter().any(|c| c["id"] == last["tool_call_id"]));
        if !asked {
            return error(
                400,
                "InvalidParameter",
                "a tool message must answer a tool call of the assistant message before it",
            );
        }
    }
    let said = last["content"].as_str().unwrap_or_default().to_string();
    let chunk = |choices: serde_json::Value, usage: serde_json::Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "model": body["model"],
                   "choices": choices, "usage": usage, "system_fingerprint": null})
        )
    };
    // A call (its id and name, then its arguments in two pieces), or the message's words.
    let tool = body["tools"][0]["function"]["name"].as_str();
    let (deltas, finish, usage): (Vec<serde_json::Value>, _, _) =
        match tool.filter(|_| last["role"] != "tool") {
            Some(tool) => {
                let arguments = json!({"said": said}).to_string();
                let (head, tail) = arguments.split_at(arguments.len() / 2);
                let opening = json!({"index": 0, "id": "call_e2e_0", "type": "function",
                                     "function": {"name": tool, "arguments": ""}});
                let pieces = [
                    opening,
                    json!({"index": 0, "function": {"arguments": head}}),
                    json!({"index": 0, "function": {"arguments": tail}}),
                ];
                let deltas = pieces
                    .into_iter()
                    .map(|piece| json!({"tool_calls": [piece]}));
                (
                    deltas.collect(),
                    "tool_calls",
                    json!({"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}),
                )
            }
            None => (
                said.split_inclusive(' ')
                    .map(|word| json!({"content": word}))
                    .collect(),
                "stop",
                json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                       "prompt_tokens_details": {"cached_tokens": 2}}),
            ),
        };
    // Qwen's thinking mode: the reasoning first, word by word, with no text beside it.
    let thought = format!("The user said: {said}");
    let thinking = (body["enable_thinking"] == true)
        .then(|| {
            thought
                .split_inclusive(' ')
                .map(|word| json!({"content": null, "reasoning_content": word}))
        })
        .into_iter()
        .flatten();
    let mut events = String::new();
    for delta in thinking.chain(deltas) {
        events.push_str(&chunk(
            json!([{"index": 0, "delta": delta, "finish_reason": null}]),
            serde_json::Value::Null,
        ));
    }
    events.push_str(&chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": finish}]),
        serde_json::Value::Null,
    ));
    events.push_str(&chunk(json!([]), usage));
    events.push_str("data: [DONE]\n\n");
    axum::response::IntoResponse::into_response(([("content-type", "text/event-stream")], events))
}
