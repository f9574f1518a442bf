//! A fake Kling AI open platform, after the documents the plugin's README names: Kling API
//! "Authentication (JWT)", "Image Generation", "Text to Video" and the error-code table.
//!
//! - every call carries `Authorization: Bearer <JWT>`: HS256 over `{"iss": <access key>,
//!   "exp", "nbf"}` signed with the secret key; the fake verifies the signature and times;
//! - `POST /v1/images/generations` and `POST /v1/videos/text2video` read `model_name` and
//!   `prompt`, answer `{"code": 0, "message": "SUCCEED", "data": {"task_id", "task_status":
//!   "submitted"}}`; `GET` on the same path plus `/{id}` answers `task_status` `processing`,
//!   `succeed` (`task_result.images[]` / `videos[]`) or `failed` (`task_status_msg`);
//! - errors are `{"code", "message", "request_id"}` with Kling's codes: 1000–1004 auth,
//!   1302 rate limit, 1301 content safety, 1201 parameters, 5000 server. No cancel endpoint.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Call, FakeState, Phase, Scenario, json_reply, rate_limited_reply};

/// The access key the host is given.
pub const ACCESS_KEY: &str = "ak-kling-e2e";
/// The secret key the host is given.
pub const SECRET_KEY: &str = "sk-kling-e2e-secret";
/// The vendor host the plugin calls.
pub const HOST: &str = "api-singapore.klingai.com";
/// The mainland China platform's host (`KLING_REGION=cn`), same protocol.
pub const HOST_CN: &str = "api-beijing.klingai.com";

/// Kling's routes.
pub fn routes() -> Router<FakeState> {
    Router::new()
        .route("/v1/images/generations", post(create_image_task))
        .route("/v1/images/generations/{id}", get(query_task))
        .route("/v1/videos/text2video", post(create_video_task))
        .route("/v1/videos/text2video/{id}", get(query_task))
}

/// What a mapped error must mention.
pub fn error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "1002",
        Scenario::ContentRejected => "1301",
        Scenario::FailsModeration => "risk control",
        Scenario::BadParameter => "1201",
        Scenario::RateLimited => super::RETRY_AFTER_PASSED_ON,
        _ => "5000",
    }
}

/// Whether `authorization` is `Bearer <JWT>` signed with the secret key for the access key
/// and valid now.
pub fn valid_jwt(authorization: Option<&str>) -> bool {
    let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return false;
    };
    let parts: Vec<&str> = token.split('.').collect();
    let &[header, payload, signature] = parts.as_slice() else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET_KEY.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    if URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()) != signature {
        return false;
    }
    let decode = |part: &str| -> Value {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    let (header, claims) = (decode(header), decode(payload));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    header["alg"] == "HS256"
        && claims["iss"] == ACCESS_KEY
        && claims["exp"].as_u64().is_some_and(|exp| exp > now)
        && claims["nbf"].as_u64().is_some_and(|nbf| nbf <= now)
}

fn error(status: u16, code: u32, message: &str) -> Response {
    json_reply(
        status,
        json!({"code": code, "message": message, "request_id": "req-e2e"}),
    )
}

fn succeed(data: Value) -> Response {
    json_reply(
        200,
        json!({"code": 0, "message": "SUCCEED", "request_id": "req-e2e", "data": data}),
    )
}

fn refusal(call: &Call, scenario: Scenario) -> Option<Response> {
    if !valid_jwt(call.header("authorization")) || scenario == Scenario::AuthRejected {
        return Some(error(401, 1002, "Authorization is invalid"));
    }
    Some(match scenario {
        Scenario::RateLimited => rate_limited_reply(
            429,
            json!({"code": 1302, "message": "The API request is too fast", "request_id": "req-e2e"}),
        ),
        Scenario::ContentRejected => error(
            400,
            1301,
            "Trigger the content security policy of the platform",
        ),
        Scenario::BadParameter => error(400, 1201, "Parameter error: aspect_ratio is invalid"),
        Scenario::UpstreamDown => error(500, 5000, "Internal server error"),
        _ => return None,
    })
}

async fn create_task(call: Call, state: &FakeState, kind: &str) -> Response {
    let body = call.json();
    let (Some(_), Some(prompt)) = (body["model_name"].as_str(), body["prompt"].as_str()) else {
        return error(400, 1201, "model_name and prompt are required");
    };
    let scenario = Scenario::from_text(prompt);
    if let Some(refused) = refusal(&call, scenario) {
        return refused;
    }
    succeed(
        json!({"task_id": state.tasks.create(kind, scenario), "task_status": "submitted", "created_at": 1_722_769_557_708_u64}),
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
    match state.tasks.poll(&id) {
        None => error(404, 1203, "task not found"),
        Some(Phase::Running) => succeed(json!({"task_id": id, "task_status": "processing"})),
        Some(Phase::FailedModeration) => succeed(json!({"task_id": id, "task_status": "failed",
            "task_status_msg": "The generated content failed risk control review"})),
        Some(Phase::Succeeded) if id.starts_with("img") => {
            succeed(json!({"task_id": id, "task_status": "succeed",
            "task_result": {"images": [{"index": 0, "url": state.file_url(&format!("{id}.png"))}]}}))
        }
        Some(Phase::Succeeded) => succeed(json!({"task_id": id, "task_status": "succeed",
            "task_result": {"videos": [{"id": "v1", "url": state.file_url(&format!("{id}.mp4")), "duration": "5"}]}})),
    }
}
