//! A fake EvoLink API, after the documents the plugin's README names: EvoLink's "GPT Image 2
//! image generation", "Seedance 2.0" video (text-, image- and reference-to-video, standard
//! and fast), "Query task status" and "Base64 file upload" API references.
//!
//! - `POST /v1/images/generations` (`Authorization: Bearer <key>`) reads `model`, `prompt`,
//!   `quality`, `size`, `n`, answers `{"id", "object": "image.generation.task", "status":
//!   "pending", "progress": 0}`;
//! - `POST /v1/videos/generations` reads `model` (one of the six Seedance 2.0 names),
//!   `prompt`, `duration` 4–15, `quality`, `aspect_ratio`, `generate_audio` and the
//!   `image_urls` / `video_urls` / `audio_urls` the model's mode takes, answers a
//!   `video.generation.task` with `task_info.can_cancel`;
//! - `GET /v1/tasks/{id}` answers `status` `processing` (with `progress`), `completed`
//!   (`results[]` URLs: .png for images, .mp4 for videos) or `failed` (`error.code`,
//!   `error.message`);
//! - `POST /api/v1/files/upload/base64` (the `files-api.evolink.ai` host) takes
//!   `{"base64_data": "data:image/…;base64,…"}` and answers `{"success", "code", "data":
//!   {"file_id", "file_url", …}}`;
//! - errors are `{"error": {"code", "message", "type"}}` with the HTTP status: 401 key, 402
//!   balance, 429 rate (with `Retry-After`), 400 `content_policy_violation` or bad
//!   parameters, 5xx. EvoLink documents no cancel endpoint, so there is none here: a call
//!   to one would be a stray.
//!
//! Image task ids start with `task-unified-img`, video task ids with `task-unified-video`.

use axum::{
    Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{Call, FakeState, Phase, Scenario, json_reply, rate_limited_reply};

/// The API key the host is given.
pub const KEY: &str = "ev-e2e-key";
/// The vendor host the plugin calls for tasks.
pub const HOST: &str = "api.evolink.ai";
/// The vendor host the plugin uploads bytes-only inputs to.
pub const FILES_HOST: &str = "files-api.evolink.ai";
/// The id prefix of image tasks.
pub const IMAGE_TASK: &str = "task-unified-img";
/// The id prefix of video tasks.
pub const VIDEO_TASK: &str = "task-unified-video";

/// EvoLink's routes (both hosts: their paths do not overlap).
pub fn routes() -> Router<FakeState> {
    Router::new()
        .route("/v1/images/generations", post(create_image_task))
        .route("/v1/videos/generations", post(create_video_task))
        .route("/v1/tasks/{id}", get(query_task))
        .route("/api/v1/files/upload/base64", post(upload_base64))
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

async fn create_image_task(State(state): State<FakeState>, call: Call) -> Response {
    let body = call.json();
    let (Some(_), Some(prompt)) = (body["model"].as_str(), body["prompt"].as_str()) else {
        return error(400, "invalid_parameter", "model and prompt are required");
    };
    let scenario = Scenario::from_text(prompt);
    if let Some(refused) = refusal(&call, scenario) {
        return refused;
    }
    let id = state.tasks.create(IMAGE_TASK, scenario);
    json_reply(
        200,
        json!({"id": id, "object": "image.generation.task", "status": "pending", "progress": 0,
               "task_info": {"can_cancel": true, "estimated_time": 100}, "type": "image"}),
    )
}

/// How many URLs `field` holds; `None` when it is present but not an array of strings.
fn url_count(body: &Value, field: &str) -> Option<usize> {
    match &body[field] {
        Value::Null => Some(0),
        Value::Array(urls)
            if urls
                .iter()
                .all(|u| u.as_str().is_some_and(|u| u.starts_with("http"))) =>
        {
            Some(urls.len())
        }
        _ => None,
    }
}

/// Why EvoLink would refuse a Seedance 2.0 body, if it would.
fn video_body_problem(body: &Value) -> Option<String> {
    let model = body["model"].as_str().unwrap_or_default();
    let mode = ["text-to-video", "image-to-video", "reference-to-video"]
        .into_iter()
        .find(|m| {
            model == format!("seedance-2.0-{m}") || model == format!("seedance-2.0-fast-{m}")
        });
    let Some(mode) = mode else {
        return Some(format!("model_access_denied: unknown model {model:?}"));
    };
    if body["prompt"].as_str().is_none_or(str::is_empty) {
        return Some("prompt is required".into());
    }
    if !body["duration"]
        .as_u64()
        .is_some_and(|d| (4..=15).contains(&d))
    {
        return Some("duration must be an integer from 4 to 15".into());
    }
    if !["480p", "720p", "1080p"].contains(&body["quality"].as_str().unwrap_or("720p")) {
        return Some("quality must be 480p, 720p or 1080p".into());
    }
    let ratios = ["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "adaptive"];
    if !ratios.contains(&body["aspect_ratio"].as_str().unwrap_or("16:9")) {
        return Some("aspect_ratio is not supported".into());
    }
    if !body["generate_audio"].is_null() && !body["generate_audio"].is_boolean() {
        return Some("generate_audio must be a boolean".into());
    }
    let (Some(images), Some(videos), Some(audios)) = (
        url_count(body, "image_urls"),
        url_count(body, "video_urls"),
        url_count(body, "audio_urls"),
    ) else {
        return Some("image_urls, video_urls and audio_urls must be arrays of URLs".into());
    };
    let fits = match mode {
        "text-to-video" => images + videos + audios == 0,
        "image-to-video" => (1..=2).contains(&images) && videos + audios == 0,
        _ => images <= 9 && videos <= 3 && audios <= 3 && (audios == 0 || images + videos > 0),
    };
    (!fits).then(|| format!("the inputs do not fit {model}"))
}

async fn create_video_task(State(state): State<FakeState>, call: Call) -> Response {
    let body = call.json();
    let scenario = Scenario::from_text(body["prompt"].as_str().unwrap_or_default());
    if let Some(refused) = refusal(&call, scenario) {
        return refused;
    }
    if let Some(problem) = video_body_problem(&body) {
        return error(400, "invalid_request", &problem);
    }
    let id = state.tasks.create(VIDEO_TASK, scenario);
    json_reply(
        200,
        json!({"id": id, "model": body["model"], "object": "video.generation.task", "status": "pending",
               "progress": 0, "task_info": {"can_cancel": true, "estimated_time": 165,
               "video_duration": body["duration"]}, "type": "video"}),
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
    let (object, kind, extension) = if id.starts_with(VIDEO_TASK) {
        ("video.generation.task", "video", "mp4")
    } else {
        ("image.generation.task", "image", "png")
    };
    match state.tasks.poll(&id) {
        None => error(404, "task_not_found", "task not found"),
        Some(Phase::Running) => json_reply(
            200,
            json!({"id": id, "object": object, "type": kind, "status": "processing", "progress": 50,
                   "task_info": {"can_cancel": true}}),
        ),
        Some(Phase::FailedModeration) => json_reply(
            200,
            json!({"id": id, "object": object, "type": kind, "status": "failed", "task_info": {"can_cancel": false},
                   "error": {"code": "content_policy_violation", "message": "the output was flagged"}}),
        ),
        Some(Phase::Succeeded) => json_reply(
            200,
            json!({"id": id, "object": object, "type": kind, "status": "completed", "progress": 100,
                   "task_info": {"can_cancel": false},
                   "results": [state.file_url(&format!("{id}.{extension}"))]}),
        ),
    }
}

async fn upload_base64(State(state): State<FakeState>, call: Call) -> Response {
    if !call.authorized_as(&format!("Bearer {KEY}")) {
        return error(401, "invalid_api_key", "Invalid API key");
    }
    let body = call.json();
    let data_url = body["base64_data"].as_str().unwrap_or_default();
    let decoded = ["image/png", "image/jpeg", "image/gif", "image/webp"]
        .into_iter()
        .find_map(|mime| data_url.strip_prefix(&format!("data:{mime};base64,")))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
    let Some(bytes) = decoded.filter(|b| !b.is_empty()) else {
        return json_reply(
            400,
            json!({"success": false, "code": 400, "msg": "base64_data must be an image data URL"}),
        );
    };
    let n = state.calls.lock().unwrap().len();
    json_reply(
        200,
        json!({"success": true, "code": 200, "msg": "File uploaded", "data": {
            "file_id": format!("file_{n}"), "file_name": format!("upload-{n}.png"),
            "file_size": bytes.len(), "mime_type": "image/png",
            "file_url": state.file_url(&format!("upload-{n}.png")),
            "download_url": state.file_url(&format!("upload-{n}.png")),
            "expires_at": "2026-11-04T00:00:00+08:00"}}),
    )
}
