//! A fake EvoLink API, after the document the plugin's README names: EvoLink "GPT Image 2
//! (gpt-image-2) image generation" and "Query task" API reference.
//!
//! - `POST /v1/images/generations` (`Authorization: Bearer <key>`) reads `model`, `prompt`,
//!   `quality`, `size`, `n`, answers `{"id", "object": "image.generation.task", "status":
//!   "pending", "progress": 0}`;
//! - `GET /v1/tasks/{id}` answers `status` `processing` (with `progress`), `completed`
//!   (`results[]` URLs) or `failed` (`error.code`, `error.message`);
//! - errors are `{"error": {"code", "message", "type"}}` with the HTTP status: 401 key, 402
//!   balance, 429 rate (with `Retry-After`), 400 `content_policy_violation` or bad
//!   parameters, 5xx. There is no cancel endpoint.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use serde_json::json;

use super::{Call, FakeState, Phase, Scenario, json_reply, rate_limited_reply};

/// The API key the host is given.
pub const KEY: &str = "ev-e2e-key";
/// The vendor host the plugin calls.
pub const HOST: &str = "api.evolink.ai";

/// EvoLink's routes.
pub fn routes() -> Router<FakeState> {
    Router::new()
        .route("/v1/images/generations", post(create_task))
        .route("/v1/tasks/{id}", get(query_task))
}

/// What a mapped error must mention.
pub fn error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "invalid_api_key",
        Scenario::ContentRejected | Scenario::FailsModeration => "content_policy_violation",
        Scenario::BadParameter => "invalid_parameter",
        Scenario::RateLimited => super::RETRY_AFTER_PASSED_ON,
        _ => "internal_error",
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    json_reply(
        status,
        json!({"error": {"code": code, "message": message, "type": "invalid_request_error"}}),
    )
}

fn refusal(call: &Call, scenario: Scenario) -> Option<Response> {
    if !call.authorized_as(&format!("Bearer {KEY}")) || scenario == Scenario::AuthRejected {
        return Some(error(401, "invalid_api_key", "Invalid API key"));
    }
    Some(match scenario {
        Scenario::RateLimited => rate_limited_reply(
            429,
            json!({"error": {"code": "rate_limit_exceeded", "message": "Too many requests", "type": "rate_limit_error"}}),
        ),
        Scenario::ContentRejected => error(
            400,
            "content_policy_violation",
            "The prompt violates the content policy",
        ),
        Scenario::BadParameter => error(
            400,
            "invalid_parameter",
            "size must be one of auto, 1:1, 3:2, 2:3",
        ),
        Scenario::UpstreamDown => json_reply(
            503,
            json!({"error": {"code": "internal_error", "message": "upstream busy", "type": "server_error"}}),
        ),
        _ => return None,
    })
}

async fn create_task(State(state): State<FakeState>, call: Call) -> Response {
    let body = call.json();
    let (Some(_), Some(prompt)) = (body["model"].as_str(), body["prompt"].as_str()) else {
        return error(400, "invalid_parameter", "model and prompt are required");
    };
    let scenario = Scenario::from_text(prompt);
    if let Some(refused) = refusal(&call, scenario) {
        return refused;
    }
    let id = state.tasks.create("task-unified", scenario);
    json_reply(
        200,
        json!({"id": id, "object": "image.generation.task", "status": "pending", "progress": 0}),
    )
}

async fn query_task(
    State(state): State<FakeState>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    if let Some(refused) = refusal(&call, Scenario::Success) {
        return refused;
    }
    match state.tasks.poll(&id) {
        None => error(404, "task_not_found", "task not found"),
        Some(Phase::Running) => json_reply(
            200,
            json!({"id": id, "status": "processing", "progress": 50}),
        ),
        Some(Phase::FailedModeration) => json_reply(
            200,
            json!({"id": id, "status": "failed",
            "error": {"code": "content_policy_violation", "message": "the output was flagged"}}),
        ),
        Some(Phase::Succeeded) => json_reply(
            200,
            json!({"id": id, "status": "completed", "progress": 100, "results": [state.file_url(&format!("{id}.png"))]}),
        ),
    }
}
