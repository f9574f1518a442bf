//! A fake Jimeng (即梦) on Volcengine's visual API, after the documents the plugin's README
//! names: "即梦AI 图片生成 4.0 / 视频生成 3.0 Pro" (CVSync2AsyncSubmitTask /
//! CVSync2AsyncGetResult, Version 2022-08-31) and Volcengine's "签名方法" (HMAC-SHA256).
//!
//! - both actions are `POST /?Action=…&Version=2022-08-31` with a JSON body; every request is
//!   signed: `X-Date`, `X-Content-Sha256` and `Authorization: HMAC-SHA256 Credential=<ak>/
//!   <date>/cn-north-1/cv/request, SignedHeaders=content-type;host;x-content-sha256;x-date,
//!   Signature=…`, which the fake recomputes with the secret key;
//! - submit checks the fields each `req_key`'s page requires (text-to-image and video: a
//!   `prompt`; inpainting, "即梦AI交互编辑inpainting": a `prompt` and exactly two images, the
//!   original and the mask; smart upscaling, "智能超清": exactly one image, `resolution` `4k` or
//!   `8k`, and an integer `scale` 0–100) and answers `data.task_id`; get-result reads `req_key`,
//!   `task_id`, `req_json` and answers `data.status` `generating` or `done` (`image_urls` /
//!   `video_url`);
//! - answers are `{"code", "message", "request_id", "status", "data"}`, `code` 10000 on
//!   success; 50412/50511 moderation, 50429 rate limit, 50207 parameters, 50500 internal; a
//!   bad signature is a 401 `ResponseMetadata.Error` `SignatureDoesNotMatch`. No cancel.

use axum::{Router, extract::State, response::Response, routing::post};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Call, FakeState, Phase, Recorded, Scenario, json_reply, rate_limited_reply};

/// The access key id the host is given.
pub const ACCESS_KEY: &str = "AKLTjimenge2e";
/// The secret access key the host is given.
pub const SECRET_KEY: &str = "jimeng-e2e-secret";
/// The vendor host the plugin calls (and signs).
pub const HOST: &str = "visual.volcengineapi.com";

/// Jimeng's route: both actions share `/`.
pub fn routes() -> Router<FakeState> {
    Router::new().route("/", post(action))
}

/// What a mapped error must mention.
pub fn error_detail(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::AuthRejected => "SignatureDoesNotMatch",
        Scenario::ContentRejected => "50412",
        Scenario::FailsModeration => "50511",
        Scenario::BadParameter => "50207",
        Scenario::RateLimited => super::RETRY_AFTER_PASSED_ON,
        _ => "50500",
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Whether the request carries Volcengine's HMAC-SHA256 signature made with the secret key.
pub fn validly_signed(call: &Recorded) -> bool {
    let (Some(date_time), Some(body_hash), Some(authorization)) = (
        call.header("x-date"),
        call.header("x-content-sha256"),
        call.header("authorization"),
    ) else {
        return false;
    };
    if hex::encode(Sha256::digest(&call.body)) != body_hash || date_time.len() != 16 {
        return false;
    }
    let signed_headers = "content-type;host;x-content-sha256;x-date";
    let query = call.query.as_deref().unwrap_or_default();
    let canonical = format!(
        "POST\n/\n{query}\ncontent-type:application/json\nhost:{HOST}\nx-content-sha256:{body_hash}\nx-date:{date_time}\n\n{signed_headers}\n{body_hash}"
    );
    let date = &date_time[..8];
    let scope = format!("{date}/cn-north-1/cv/request");
    let string_to_sign = format!(
        "HMAC-SHA256\n{date_time}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = ["cn-north-1", "cv", "request"]
        .iter()
        .fold(hmac(SECRET_KEY.as_bytes(), date), |key, part| {
            hmac(&key, part)
        });
    let signature = hex::encode(hmac(&key, &string_to_sign));
    authorization
        == format!(
            "HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
        )
}

fn answer(code: u32, message: &str, data: Value) -> Response {
    json_reply(
        200,
        json!({"code": code, "message": message, "request_id": "req-e2e", "status": code, "data": data}),
    )
}

fn refusal(call: &Call, scenario: Scenario) -> Option<Response> {
    if !validly_signed(&call.0) || scenario == Scenario::AuthRejected {
        return Some(json_reply(
            401,
            json!({"ResponseMetadata": {"RequestId": "req-e2e", "Action": "CVSync2AsyncSubmitTask",
            "Error": {"Code": "SignatureDoesNotMatch", "Message": "The request signature we calculated does not match"}}}),
        ));
    }
    Some(match scenario {
        Scenario::RateLimited => rate_limited_reply(
            429,
            json!({"code": 50429, "message": "Request Has Reached API Limit", "request_id": "req-e2e", "status": 50429}),
        ),
        Scenario::ContentRejected => answer(50412, "Text Risk Not Pass", Value::Null),
        Scenario::BadParameter => answer(50207, "width invalid", Value::Null),
        Scenario::UpstreamDown => json_reply(
            500,
            json!({"code": 50500, "message": "Internal Error", "request_id": "req-e2e", "status": 50500}),
        ),
        _ => return None,
    })
}

async fn action(State(state): State<FakeState>, call: Call) -> Response {
    match call.query_param("Action").as_deref() {
        Some("CVSync2AsyncSubmitTask")
            if call.query_param("Version").as_deref() == Some("2022-08-31") =>
        {
            submit_task(&state, &call)
        }
        Some("CVSync2AsyncGetResult")
            if call.query_param("Version").as_deref() == Some("2022-08-31") =>
        {
            get_result(&state, &call)
        }
        _ => json_reply(
            404,
            json!({"ResponseMetadata": {"Error": {"Code": "InvalidActionOrVersion", "Message": "unknown action"}}}),
        ),
    }
}

/// How many images a body carries, as URLs or as base64.
fn image_count(body: &Value) -> usize {
    ["image_urls", "binary_data_base64"]
        .iter()
        .filter_map(|field| body[field].as_array())
        .map(Vec::len)
        .sum()
}

/// Whether the body has what its `req_key`'s page requires; unknown keys are refused.
fn has_required_fields(req_key: &str, body: &Value) -> bool {
    let prompt = body["prompt"].as_str().is_some_and(|p| !p.is_empty());
    match req_key {
        "jimeng_t2i_v40" | "jimeng_ti2v_v30_pro" => prompt,
        "jimeng_image2image_dream_inpaint" => prompt && image_count(body) == 2,
        "jimeng_i2i_seed3_tilesr_cvtob" => {
            image_count(body) == 1
                && matches!(body["resolution"].as_str(), Some("4k" | "8k"))
                && body["scale"].as_u64().is_some_and(|scale| scale <= 100)
        }
        _ => false,
    }
}

fn submit_task(state: &FakeState, call: &Call) -> Response {
    let body = call.json();
    let Some(req_key) = body["req_key"].as_str() else {
        return answer(50207, "req_key is required", Value::Null);
    };
    if !has_required_fields(req_key, &body) {
        return answer(
            50207,
            &format!("the body does not fit {req_key}"),
            Value::Null,
        );
    }
    // Upscaling takes no prompt; such a task plays success.
    let scenario = Scenario::from_text(body["prompt"].as_str().unwrap_or_default());
    if let Some(refused) = refusal(call, scenario) {
        return refused;
    }
    // One task per scenario and kind: editing tasks get kinds of their own, so they do not
    // share `img` with the text-to-image tasks a test counts.
    let kind = match req_key {
        "jimeng_ti2v_v30_pro" => "vid",
        "jimeng_image2image_dream_inpaint" => "edit",
        "jimeng_i2i_seed3_tilesr_cvtob" => "sr",
        _ => "img",
    };
    answer(
        10000,
        "Success",
        json!({"task_id": state.tasks.create(kind, scenario)}),
    )
}

fn get_result(state: &FakeState, call: &Call) -> Response {
    if let Some(refused) = refusal(call, Scenario::Success) {
        return refused;
    }
    let body = call.json();
    let (Some(_), Some(id)) = (body["req_key"].as_str(), body["task_id"].as_str()) else {
        return answer(50207, "req_key and task_id are required", Value::Null);
    };
    match state.tasks.poll(id) {
        None => answer(10000, "Success", json!({"status": "not_found"})),
        Some(Phase::Running) => answer(10000, "Success", json!({"status": "generating"})),
        Some(Phase::FailedModeration) => answer(50511, "Post Img Risk Not Pass", Value::Null),
        Some(Phase::Succeeded) if id.starts_with("vid") => answer(
            10000,
            "Success",
            json!({"status": "done", "video_url": state.file_url(&format!("{id}.mp4"))}),
        ),
        Some(Phase::Succeeded) => answer(
            10000,
            "Success",
            json!({"status": "done", "image_urls": [state.file_url(&format!("{id}.png"))]}),
        ),
    }
}
