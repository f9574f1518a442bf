//! DashScope's error answers mapped onto the contract's typed errors, in one place.
//!
//! DashScope's native API answers errors as `{"code", "message", "request_id"}` with an
//! HTTP status; its OpenAI-compatible mode nests them as `{"error": {"code", "message"}}`;
//! failed asynchronous tasks carry `output.code` and `output.message` under a 200. The
//! code decides first (moderation hides behind a plain 400 as `DataInspectionFailed`, an
//! account in arrears is `Arrearage`, refused like a bad key), the status second.

use easel_sdk::http::Response;
use easel_sdk::serde_json::Value;
use easel_sdk::{Error, Result};
use easel_sdk::http::retry_after_secs;

/// The error a non-2xx answer (or an error inside a 2xx stream) stands for.
pub fn from_answer(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error {
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or(Value::Null);
    let (code, message) = code_and_message(&parsed);
    let message = if message.is_empty() { String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned() } else { message };
    classify(&code, &message, Some(status), retry_after_secs(retry_after))
}

/// The error a task that ended `FAILED` stands for (`output.code`, `output.message`).
pub fn from_failed_task(output: &Value) -> Error {
    let code = output.get("code").and_then(Value::as_str).unwrap_or("");
    let message = output.get("message").and_then(Value::as_str).unwrap_or("the task failed without a message");
    classify(code, message, None, None)
}

/// The JSON body of a 2xx answer, or the mapped error.
pub fn json_or_error(response: Response) -> Result<Value> {
    if !response.is_success() {
        return Err(from_answer(response.status(), response.header("retry-after"), response.body()));
    }
    response.json()
}

fn code_and_message(body: &Value) -> (String, String) {
    let inner = body.get("error").filter(|e| e.is_object()).unwrap_or(body);
    let text = |k: &str| inner.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    (text("code"), text("message"))
}

fn classify(code: &str, message: &str, status: Option<u16>, retry_after: Option<u64>) -> Error {
    let lower = code.to_ascii_lowercase();
    let text = if code.is_empty() { format!("DashScope: {message}") } else { format!("DashScope {code}: {message}") };
    if lower.contains("datainspection") || lower.contains("data_inspection") || lower.contains("ipinfringement") {
        return Error::ContentRejected(text.into());
    }
    // Throttling.RateQuota / Throttling.AllocationQuota mean "not now, not with this quota",
    // which the contract calls rate-limited.
    if lower.starts_with("throttling") || lower.contains("quota") || status == Some(429) {
        return Error::RateLimited(retry_after);
    }
    // An account in arrears is refused until the operator pays: no wait makes it pass.
    if lower == "arrearage" || lower.contains("invalidapikey") || lower.contains("invalid_api_key")
        || lower.starts_with("accessdenied") || matches!(status, Some(401 | 403))
    {
        return Error::Unauthorized(text);
    }
    match status {
        Some(s) if s >= 500 => Error::UpstreamUnavailable(text),
        Some(408) => Error::UpstreamUnavailable(text),
        Some(s) if (400..500).contains(&s) => Error::InvalidRequest(text.into()),
        Some(_) => Error::UpstreamUnavailable(text),
        // A failed task: parameter problems are the request's fault, the rest the vendor's.
        None if lower.starts_with("invalid") || lower.starts_with("badrequest") => Error::InvalidRequest(text.into()),
        None => Error::UpstreamUnavailable(text),
    }
}
