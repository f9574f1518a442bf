//! A fake Zhipu BigModel open platform (v4), after the documents the plugin's README names:
//! "CogView-3-Flash image generation" and the platform's error-code table.
//!
//! - `POST /api/paas/v4/images/generations` (`Authorization: Bearer <key>`) reads `model`,
//!   `prompt`, `size` and answers synchronously `{"created", "data": [{"url"}]}`;
//! - errors are `{"error": {"code", "message"}}` with numeric codes as strings: 1001–1004
//!   auth (401), 1302/1113 rate and balance (429), 1301 content security (400), 1210–1214
//!   parameters (400), 500 internal.

use axum::{Router, extract::State, response::Response, routing::post};
use serde_json::json;

use super::{Call, FakeState, Scenario, json_reply, rate_limited_reply};

/// The API key the host is given.
pub const KEY: &str = "zhipu-e2e.key";
/// The vendor host the plugin calls.
pub const HOST: &str = "open.bigmodel.cn";

/// Zhipu's routes.
pub fn routes() -> Router<FakeState> {
    Router::new().route("/api/paas/v4/images/generations", post(generate_images))
}

/// What a mapped error must mention.
pub fn error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "1002",
        Scenario::ContentRejected => "1301",
        Scenario::BadParameter => "1214",
        Scenario::RateLimited => super::RETRY_AFTER_PASSED_ON,
        _ => "500",
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    json_reply(status, json!({"error": {"code": code, "message": message}}))
}

async fn generate_images(State(state): State<FakeState>, call: Call) -> Response {
    let body = call.json();
    let (Some(_), Some(prompt)) = (body["model"].as_str(), body["prompt"].as_str()) else {
        return error(400, "1214", "model and prompt are required");
    };
    if !call.authorized_as(&format!("Bearer {KEY}")) {
        return error(
            401,
            "1002",
            "Authorization Token非法，请确认Authorization Token正确传递。",
        );
    }
    match Scenario::from_text(prompt) {
        Scenario::AuthRejected => error(
            401,
            "1002",
            "Authorization Token非法，请确认Authorization Token正确传递。",
        ),
        Scenario::RateLimited => rate_limited_reply(
            429,
            json!({"error": {"code": "1302", "message": "您当前使用该API的并发数过高"}}),
        ),
        Scenario::ContentRejected => error(
            400,
            "1301",
            "系统检测到输入或生成内容可能包含不安全或敏感内容",
        ),
        Scenario::BadParameter => error(400, "1214", "size 参数非法"),
        Scenario::UpstreamDown => error(500, "500", "Internal Error"),
        _ => json_reply(
            200,
            json!({"created": 1_700_000_000, "data": [{"url": state.file_url("cogview.png")}]}),
        ),
    }
}
