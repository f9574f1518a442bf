//! A fake MiniMax open platform (international, `api.minimax.io`), after the documents the
//! plugin's README names: "Video Generation (Hailuo)", "T2A v2" and "Error codes".
//!
//! - every call carries `Authorization: Bearer <key>`; answers are HTTP 200 with
//!   `base_resp: {"status_code", "status_msg"}`, where a non-zero code is the error: 1004
//!   auth, 1002 rate limit, 1026 input / 1027 output sensitive, 2013 parameters, 1000 unknown;
//! - `POST /v1/video_generation` reads `model`, `prompt`, `duration`, `resolution`, answers
//!   `{"task_id"}`; `GET /v1/query/video_generation?task_id=` answers `status` `Processing`,
//!   `Success` (`file_id`) or `Fail`; `GET /v1/files/retrieve?file_id=` answers
//!   `file.download_url`. There is no cancel endpoint;
//! - `POST /v1/t2a_v2` reads `model`, `text`, `voice_setting.voice_id` and answers the audio as
//!   hex in `data.audio`.

use axum::{
    Router,
    extract::State,
    response::Response,
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{Call, FakeState, Phase, Scenario, json_reply};

/// The API key the host is given.
pub const KEY: &str = "mm-e2e-key";
/// The vendor host the plugin calls.
pub const HOST: &str = "api.minimax.io";
/// The mainland China platform's host (`MINIMAX_REGION=cn`), same protocol.
pub const HOST_CN: &str = "api.minimaxi.com";

/// MiniMax's routes.
pub fn routes() -> Router<FakeState> {
    Router::new()
        .route("/v1/video_generation", post(create_video_task))
        .route("/v1/query/video_generation", get(query_video_task))
        .route("/v1/files/retrieve", get(retrieve_file))
        .route("/v1/t2a_v2", post(text_to_audio))
}

/// What a mapped error must mention (MiniMax sends no `Retry-After`).
pub fn error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "1004",
        Scenario::ContentRejected => "1026",
        Scenario::FailsModeration => "1027",
        Scenario::BadParameter => "2013",
        Scenario::RateLimited => "rate limited",
        _ => "1000",
    }
}

fn answer(code: u32, message: &str, mut body: Value) -> Response {
    body["base_resp"] = json!({"status_code": code, "status_msg": message});
    json_reply(200, body)
}

fn refusal(call: &Call, scenario: Scenario) -> Option<Response> {
    if !call.authorized_as(&format!("Bearer {KEY}")) || scenario == Scenario::AuthRejected {
        return Some(answer(
            1004,
            "authorized error, please check your API key",
            json!({}),
        ));
    }
    Some(match scenario {
        Scenario::RateLimited => answer(1002, "rate limit exceeded", json!({})),
        Scenario::ContentRejected => answer(1026, "input new_sensitive", json!({})),
        Scenario::BadParameter => answer(2013, "invalid params, duration", json!({})),
        Scenario::UpstreamDown => answer(1000, "unknown error", json!({})),
        _ => return None,
    })
}

async fn create_video_task(State(state): State<FakeState>, call: Call) -> Response {
    let body = call.json();
    let (Some(_), Some(prompt)) = (body["model"].as_str(), body["prompt"].as_str()) else {
        return answer(
            2013,
            "invalid params, model and prompt are required",
            json!({}),
        );
    };
    let scenario = Scenario::from_text(prompt);
    if let Some(refused) = refusal(&call, scenario) {
        return refused;
    }
    answer(
        0,
        "success",
        json!({"task_id": state.tasks.create("mm", scenario)}),
    )
}

async fn query_video_task(State(state): State<FakeState>, call: Call) -> Response {
    if let Some(refused) = refusal(&call, Scenario::Success) {
        return refused;
    }
    let id = call.query_param("task_id").unwrap_or_default();
    match state.tasks.poll(&id) {
        None => answer(2013, "invalid params, task_id not found", json!({})),
        Some(Phase::Running) => answer(
            0,
            "success",
            json!({"task_id": id, "status": "Processing", "file_id": ""}),
        ),
        Some(Phase::FailedModeration) => answer(
            1027,
            "output video sensitive",
            json!({"task_id": id, "status": "Fail"}),
        ),
        Some(Phase::Succeeded) => answer(
            0,
            "success",
            json!({"task_id": id, "status": "Success", "file_id": format!("file-{id}"),
                                                           "video_width": 1366, "video_height": 768}),
        ),
    }
}

async fn retrieve_file(State(state): State<FakeState>, call: Call) -> Response {
    if let Some(refused) = refusal(&call, Scenario::Success) {
        return refused;
    }
    let Some(file_id) = call.query_param("file_id") else {
        return answer(2013, "invalid params, file_id", json!({}));
    };
    answer(
        0,
        "success",
        json!({"file": {"file_id": file_id, "filename": "output.mp4",
                                          "download_url": state.file_url(&format!("{file_id}.mp4"))}}),
    )
}

async fn text_to_audio(call: Call) -> Response {
    let body = call.json();
    let (Some(_), Some(text), Some(_)) = (
        body["model"].as_str(),
        body["text"].as_str(),
        body["voice_setting"]["voice_id"].as_str(),
    ) else {
        return answer(
            2013,
            "invalid params, model, text and voice_setting.voice_id are required",
            json!({}),
        );
    };
    if let Some(refused) = refusal(&call, Scenario::from_text(text)) {
        return refused;
    }
    let hex: String = super::MP3_HEADER
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    answer(
        0,
        "success",
        json!({"data": {"audio": hex, "status": 2}, "extra_info": {"audio_length": 900, "usage_characters": 2}}),
    )
}
