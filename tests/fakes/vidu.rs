//! A fake Vidu enterprise API (v2), after the document the plugin's README names: Vidu
//! Platform API "Text to Video / Start-End to Video / Get Generation / Cancel Generation".
//!
//! - `POST /ent/v2/text2video` (`Authorization: Token <key>`) reads `model`, `prompt`,
//!   `duration`, `resolution`, `off_peak`, answers `{"task_id", "state": "created"}`;
//! - `GET /ent/v2/tasks/{id}/creations` answers `state` `processing` (with `progress`),
//!   `success` (`creations[].url` and `cover_url`, `credits`) or `failed` (`err_code`); a
//!   prompt with the word [`COVER_ELSEWHERE`] gets a cover on a host Vidu's plugin may not
//!   reach;
//! - `POST /ent/v2/tasks/{id}/cancel` with `{"id"}` cancels a task not yet running;
//! - errors are `{"code", "reason", "message"}` with the HTTP status.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use serde_json::json;

use super::{Call, FakeState, Phase, Scenario, json_reply, rate_limited_reply};

/// The API key the host is given.
pub const KEY: &str = "vd-e2e-key";
/// The vendor host the plugin calls.
pub const HOST: &str = "api.vidu.com";
/// The mainland China platform's host (`VIDU_REGION=cn`), same protocol.
pub const HOST_CN: &str = "api.vidu.cn";

/// A word that, in a prompt, puts its task's cover on [`COVER_HOST`].
pub const COVER_ELSEWHERE: &str = "cover:elsewhere";
/// A host outside the Vidu plugin's allowlist, so a cover there cannot be copied.
pub const COVER_HOST: &str = "covers.elsewhere.example";
/// The task id prefix that remembers [`COVER_ELSEWHERE`] until the task's poll.
const COVER_ELSEWHERE_PREFIX: &str = "vidu-cover-elsewhere";

/// Vidu's routes.
pub fn routes() -> Router<FakeState> {
    Router::new()
        .route("/ent/v2/text2video", post(create_task))
        .route("/ent/v2/img2video", post(create_task))
        .route("/ent/v2/start-end2video", post(create_task))
        .route("/ent/v2/tasks/{id}/creations", get(get_creations))
        .route("/ent/v2/tasks/{id}/cancel", post(cancel_task))
}

/// What a mapped error must mention.
pub fn error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "Unauthorized",
        Scenario::ContentRejected => "AuditSubmitIllegal",
        Scenario::FailsModeration => "CreationPolicyViolation",
        Scenario::BadParameter => "FieldInvalid",
        Scenario::RateLimited => super::RETRY_AFTER_PASSED_ON,
        _ => "InternalServiceFailure",
    }
}

fn error(status: u16, reason: &str, message: &str) -> Response {
    json_reply(
        status,
        json!({"code": status, "reason": reason, "message": message}),
    )
}

fn refusal(call: &Call, scenario: Scenario) -> Option<Response> {
    if !call.authorized_as(&format!("Token {KEY}")) || scenario == Scenario::AuthRejected {
        return Some(error(401, "Unauthorized", "unauthorized"));
    }
    Some(match scenario {
        Scenario::RateLimited => rate_limited_reply(
            429,
            json!({"code": 429, "reason": "TooManyRequests", "message": "too many requests"}),
        ),
        Scenario::ContentRejected => error(400, "AuditSubmitIllegal", "submit is illegal"),
        Scenario::BadParameter => error(400, "FieldInvalid", "invalid field: duration"),
        Scenario::UpstreamDown => error(500, "InternalServiceFailure", "internal"),
        _ => return None,
    })
}

async fn create_task(State(state): State<FakeState>, call: Call) -> Response {
    let body = call.json();
    let (Some(model), Some(prompt)) = (body["model"].as_str(), body["prompt"].as_str()) else {
        return error(400, "FieldLacking", "model and prompt are required");
    };
    if let Some(refused) = refusal(&call, Scenario::from_text(prompt)) {
        return refused;
    }
    let prefix = if prompt
        .split_whitespace()
        .any(|word| word == COVER_ELSEWHERE)
    {
        COVER_ELSEWHERE_PREFIX
    } else {
        "vidu"
    };
    let id = state.tasks.create(prefix, Scenario::from_text(prompt));
    json_reply(
        200,
        json!({"task_id": id, "state": "created", "model": model, "prompt": prompt, "credits": 40}),
    )
}

async fn get_creations(
    State(state): State<FakeState>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    if let Some(refused) = refusal(&call, Scenario::Success) {
        return refused;
    }
    match state.tasks.poll(&id) {
        None => error(404, "NotFound", "task not found"),
        Some(Phase::Running) => json_reply(
            200,
            json!({"id": id, "state": "processing", "progress": 40, "creations": []}),
        ),
        Some(Phase::FailedModeration) => json_reply(
            200,
            json!({"id": id, "state": "failed", "err_code": "CreationPolicyViolation", "creations": []}),
        ),
        Some(Phase::Succeeded) => {
            let cover = if id.starts_with(COVER_ELSEWHERE_PREFIX) {
                format!("https://{COVER_HOST}/{id}.png")
            } else {
                state.file_url(&format!("{id}.png"))
            };
            json_reply(
                200,
                json!({
                    "id": id, "state": "success", "err_code": "", "credits": 40,
                    "creations": [{"id": "c1", "url": state.file_url(&format!("{id}.mp4")), "cover_url": cover}]
                }),
            )
        }
    }
}

async fn cancel_task(
    State(state): State<FakeState>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    if let Some(refused) = refusal(&call, Scenario::Success) {
        return refused;
    }
    if call.json()["id"] != id.as_str() {
        return error(400, "FieldInvalid", "the body's id must be the task id");
    }
    if state.tasks.cancel(&id) {
        json_reply(200, json!({}))
    } else {
        error(400, "BadRequest", "task not found")
    }
}
