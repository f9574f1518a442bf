//! EvoLink's errors onto the contract's typed errors, written once: answers carry
//! `{"error": {"code", "message", "type"}}` with an HTTP status (the file service answers
//! `{"success": false, "code", "msg"}`). Moderation refusals are
//! recognised by their code or message; everything else follows the status (402, EvoLink's
//! "insufficient quota", is the account's balance run out: refused like a bad key, since no
//! wait makes it pass).

use easel_sdk::Error;
use easel_sdk::http::status_error;
use easel_sdk::serde_json::Value;

fn is_moderation(code: &str, message: &str) -> bool {
    let text = format!("{code} {message}").to_lowercase();
    ["content_policy", "sensitive", "moderation", "nsfw", "safety"].iter().any(|w| text.contains(w))
}

/// The error a non-2xx answer stands for.
pub fn from_response(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error {
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or_default();
    let code = parsed["error"]["code"].as_str().unwrap_or_default();
    let message = parsed["error"]["message"].as_str().or_else(|| parsed["msg"].as_str()).unwrap_or_default();
    if is_moderation(code, message) {
        return Error::ContentRejected(format!("{code}: {message}").into());
    }
    if status == 402 {
        return Error::Unauthorized(format!("{code}: {message}"));
    }
    status_error(status, retry_after, body).unwrap_or_else(|| Error::upstream(format!("status {status}")))
}

/// The error a failed task's `error` object stands for.
pub fn task_failure(error: &Value) -> Error {
    let code = error["code"].as_str().unwrap_or_default();
    let message = error["message"].as_str().unwrap_or("the task failed");
    if is_moderation(code, message) {
        Error::ContentRejected(format!("{code}: {message}").into())
    } else {
        Error::upstream(format!("the EvoLink task failed: {code}: {message}"))
    }
}
