//! A fake Volcengine Ark and Doubao speech, after the documents the plugin's README names:
//! Ark's "创建视频生成任务 / 查询视频生成任务 / 取消或删除视频生成任务", Ark's image generation
//! API (Seedream) and Doubao speech synthesis's HTTP API.
//!
//! - `POST /api/v3/contents/generations/tasks` (`Authorization: Bearer <ARK key>`) reads
//!   `model` and the `content[]` text item, answers `{"id"}`; `GET …/tasks/{id}` answers
//!   `status` `running`, `succeeded` (`content.video_url`, with `last_frame_url` when the task
//!   asked for `return_last_frame`, and `usage`) or `failed` (`error`);
//!   `DELETE …/tasks/{id}` cancels a queued task;
//! - `POST /api/v3/images/generations` (Seedream) answers `data[].url` synchronously;
//! - Ark errors are `{"error": {"code", "message", "param", "type"}}` with the HTTP status;
//! - `POST /api/v1/tts` on openspeech (`Authorization: Bearer;<token>`, app id in
//!   `app.appid`) answers `{"code": 3000, "data": <base64 audio>}`, other codes on failure.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use base64::Engine as _;
use serde_json::json;

use super::{Call, FakeState, Phase, Scenario, json_reply, rate_limited_reply};

/// The Ark API key.
pub const ARK_KEY: &str = "ark-e2e-key";
/// The speech app id and access token.
pub const TTS_APP_ID: &str = "app-e2e";
/// The speech access token.
pub const TTS_TOKEN: &str = "tts-e2e-token";
/// Ark's host.
pub const ARK_HOST: &str = "ark.cn-beijing.volces.com";
/// Doubao speech's host.
pub const SPEECH_HOST: &str = "openspeech.bytedance.com";

/// Ark's and Doubao speech's routes (one fake serves both hosts).
pub fn routes() -> Router<FakeState> {
    Router::new()
        .route("/api/v3/contents/generations/tasks", post(create_task))
        .route(
            "/api/v3/contents/generations/tasks/{id}",
            get(query_task).delete(cancel_task),
        )
        .route("/api/v3/images/generations", post(generate_images))
        .route("/api/v1/tts", post(synthesize))
}

/// What a mapped Ark error must mention.
pub fn error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "AuthenticationError",
        Scenario::ContentRejected => "InputTextSensitiveContentDetected",
        Scenario::FailsModeration => "OutputVideoSensitiveContentDetected",
        Scenario::BadParameter => "InvalidParameter",
        Scenario::RateLimited => super::RETRY_AFTER_PASSED_ON,
        _ => "InternalServiceError",
    }
}

/// What a mapped Doubao speech error must mention (its codes come in the body; the rate
/// limit is code 3003 without `Retry-After`).
pub fn speech_error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "3001",
        Scenario::BadParameter => "3050",
        Scenario::RateLimited => "rate limited",
        _ => "3031",
    }
}

fn ark_error(status: u16, code: &str, message: &str) -> Response {
    json_reply(
        status,
        json!({"error": {"code": code, "message": message, "param": "", "type": "BadRequest"}}),
    )
}

fn ark_refusal(call: &Call, scenario: Scenario) -> Option<Response> {
    if !call.authorized_as(&format!("Bearer {ARK_KEY}")) || scenario == Scenario::AuthRejected {
        return Some(ark_error(
            401,
            "AuthenticationError",
            "the API key or AK/SK in the request is missing or invalid",
        ));
    }
    Some(match scenario {
        Scenario::RateLimited => rate_limited_reply(
            429,
            json!({"error": {"code": "RateLimitExceeded.EndpointRPMExceeded", "message": "too many requests", "type": "TooManyRequests"}}),
        ),
        Scenario::ContentRejected => ark_error(
            400,
            "InputTextSensitiveContentDetected",
            "The request failed because the input text may contain sensitive information.",
        ),
        Scenario::BadParameter => ark_error(
            400,
            "InvalidParameter",
            "the parameter `duration` specified in the request is not valid",
        ),
        Scenario::UpstreamDown => ark_error(
            500,
            "InternalServiceError",
            "the service encountered an unexpected internal error",
        ),
        _ => return None,
    })
}

/// The id prefix of a task whose request asked for its last frame (`return_last_frame`).
const LAST_FRAME_TASK: &str = "cgt-last-frame";

pub async fn create_task(State(state): State<FakeState>, call: Call) -> Response {
    let body = call.json();
    let text = body["content"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["type"] == "text"))
        .and_then(|i| i["text"].as_str());
    let (Some(_), Some(text)) = (body["model"].as_str(), text) else {
        return ark_error(
            400,
            "MissingParameter",
            "the request is missing `model` or a text content item",
        );
    };
    let scenario = Scenario::from_text(text);
    if let Some(refused) = ark_refusal(&call, scenario) {
        return refused;
    }
    let kind = if body["return_last_frame"] == true {
        LAST_FRAME_TASK
    } else {
        "cgt"
    };
    json_reply(200, json!({"id": state.tasks.create(kind, scenario)}))
}

pub async fn query_task(
    State(state): State<FakeState>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    if let Some(refused) = ark_refusal(&call, Scenario::Success) {
        return refused;
    }
    let task = json!({"id": id, "model": "doubao-seedance-2-0-260128", "created_at": 1_743_414_619, "updated_at": 1_743_414_673});
    let extra = match state.tasks.poll(&id) {
        None => return ark_error(404, "ResourceNotFound", "the task does not exist"),
        Some(Phase::Running) => json!({"status": "running"}),
        Some(Phase::FailedModeration) => json!({"status": "failed", "error": {
            "code": "OutputVideoSensitiveContentDetected", "message": "The generated video may contain sensitive content."}}),
        Some(Phase::Succeeded) => {
            let mut content = json!({"video_url": state.file_url(&format!("{id}.mp4"))});
            if id.starts_with(LAST_FRAME_TASK) {
                content["last_frame_url"] = state.file_url(&format!("{id}.png")).into();
            }
            json!({"status": "succeeded", "content": content,
                "usage": {"completion_tokens": 108_900, "total_tokens": 108_900}, "resolution": "720p", "duration": 5})
        }
    };
    let mut answer = task;
    answer
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json_reply(200, answer)
}

pub async fn cancel_task(
    State(state): State<FakeState>,
    Path(id): Path<String>,
    call: Call,
) -> Response {
    if let Some(refused) = ark_refusal(&call, Scenario::Success) {
        return refused;
    }
    if state.tasks.cancel(&id) {
        json_reply(200, json!({}))
    } else {
        ark_error(404, "ResourceNotFound", "the task does not exist")
    }
}

async fn generate_images(State(state): State<FakeState>, call: Call) -> Response {
    let body = call.json();
    let Some(prompt) = body["prompt"].as_str() else {
        return ark_error(400, "MissingParameter", "the request is missing `prompt`");
    };
    if let Some(refused) = ark_refusal(&call, Scenario::from_text(prompt)) {
        return refused;
    }
    json_reply(
        200,
        json!({
            "model": body["model"], "created": 1_757_321_139,
            "data": [{"url": state.file_url("seedream.png"), "size": "2048x2048"}],
            "usage": {"generated_images": 1, "output_tokens": 16_384, "total_tokens": 16_384}
        }),
    )
}

async fn synthesize(call: Call) -> Response {
    let body = call.json();
    let speech_error = |status: u16, code: u32, message: &str| {
        json_reply(
            status,
            json!({"reqid": body["request"]["reqid"], "code": code, "message": message}),
        )
    };
    if !call.authorized_as(&format!("Bearer;{TTS_TOKEN}")) || body["app"]["appid"] != TTS_APP_ID {
        return speech_error(401, 3001, "invalid auth token");
    }
    let Some(text) = body["request"]["text"].as_str() else {
        return speech_error(400, 3011, "empty text");
    };
    match Scenario::from_text(text) {
        Scenario::AuthRejected => speech_error(401, 3001, "invalid auth token"),
        Scenario::RateLimited => speech_error(200, 3003, "concurrency exceeded"),
        Scenario::BadParameter => speech_error(400, 3050, "voice_type not exists"),
        Scenario::UpstreamDown => speech_error(500, 3031, "processing error"),
        _ => json_reply(
            200,
            json!({
                "reqid": body["request"]["reqid"], "code": 3000, "operation": "query", "message": "Success", "sequence": -1,
                "data": base64::engine::general_purpose::STANDARD.encode(super::MP3_HEADER), "addition": {"duration": "1960"}
            }),
        ),
    }
}
