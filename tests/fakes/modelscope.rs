//! A fake ModelScope API-Inference, after the document the plugin's README names:
//! "API-Inference: image generation (asynchronous mode)".
//!
//! - `POST /v1/images/generations` (`Authorization: Bearer <token>`, `X-ModelScope-Async-Mode:
//!   true`) reads `model` and `prompt`, answers `{"task_id", "request_id"}`;
//! - `GET /v1/tasks/{id}` (`X-ModelScope-Task-Type: image_generation`) answers `task_status`
//!   `PENDING`, `RUNNING`, `SUCCEED` (`output_images[]`) or `FAILED` (`errors.message`);
//! - errors are `{"errors": {"message"}, "request_id"}` with the HTTP status; moderation is a
//!   400 whose message says the content did not pass review. There is no cancel endpoint.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use serde_json::json;

use super::{Call, FakeState, Phase, Scenario, json_reply, rate_limited_reply};

/// The access token the host is given.
pub const KEY: &str = "ms-e2e-token";
/// The vendor host the plugin calls.
pub const HOST: &str = "api-inference.modelscope.cn";

/// ModelScope's routes.
pub fn routes() -> Router<FakeState> {
    Router::new()
        .route("/v1/images/generations", post(create_task))
        .route("/v1/tasks/{id}", get(query_task))
}

/// What a mapped error must mention.
pub fn error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "Invalid token",
        Scenario::ContentRejected => "未通过审核",
        Scenario::FailsModeration => "inappropriate",
        Scenario::BadParameter => "size out of range",
        Scenario::RateLimited => super::RETRY_AFTER_PASSED_ON,
        _ => "status 500",
    }
}

fn error(status: u16, message: &str) -> Response {
    json_reply(
        status,
        json!({"errors": {"message": message}, "request_id": "req-e2e"}),
    )
}

fn refusal(call: &Call, scenario: Scenario) -> Option<Response> {
    if !call.authorized_as(&format!("Bearer {KEY}")) || scenario == Scenario::AuthRejected {
        return Some(error(401, "Invalid token"));
    }
    Some(match scenario {
        Scenario::RateLimited => rate_limited_reply(
            429,
            json!({"errors": {"message": "daily quota exceeded"}, "request_id": "req-e2e"}),
        ),
        Scenario::ContentRejected => error(400, "输入内容未通过审核"),
        Scenario::BadParameter => error(400, "size out of range"),
        Scenario::UpstreamDown => error(500, "internal"),
        _ => return None,
    })
}

async fn create_task(State(state): State<FakeState>, call: Call) -> Response {
    let body = call.json();
    let (Some(_), Some(prompt)) = (body["model"].as_str(), body["prompt"].as_str()) else {
        return error(400, "model and prompt are required");
    };
    if call.header("x-modelscope-async-mode") != Some("true") {
        return error(
            400,
            "this model only supports asynchronous calls: set X-ModelScope-Async-Mode: true",
        );
    }
    let scenario = Scenario::from_text(prompt);
    if let Some(refused) = refusal(&call, scenario) {
        return refused;
    }
    json_reply(
        200,
        json!({"task_id": state.tasks.create("ms", scenario), "request_id": "req-e2e"}),
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
    if call.header("x-modelscope-task-type") != Some("image_generation") {
        return error(400, "X-ModelScope-Task-Type must be image_generation");
    }
    match state.tasks.poll(&id) {
        None => error(404, "task not found"),
        Some(Phase::Running) => json_reply(
            200,
            json!({"task_status": "RUNNING", "request_id": "req-e2e"}),
        ),
        Some(Phase::FailedModeration) => json_reply(
            200,
            json!({"task_status": "FAILED", "errors": {"message": "The output content is inappropriate"}}),
        ),
        Some(Phase::Succeeded) => json_reply(
            200,
            json!({"task_status": "SUCCEED", "output_images": [state.file_url(&format!("{id}.png"))]}),
        ),
    }
}
