//! Volcengine's error answers mapped onto the contract's typed errors, in one place.
//!
//! Ark answers `{"error": {"code", "message", "param", "type"}}` with an HTTP status, and
//! a failed video task carries the same `error` object under a 200. The code decides
//! first: moderation is a 400 with a `…SensitiveContentDetected` code, an account in
//! arrears a 403 `AccountOverdueError`. Doubao speech uses numeric codes (see [`tts_code`]).

use easel_sdk::http::Response;
use easel_sdk::serde_json::Value;
use easel_sdk::{Error, Result};
use easel_sdk::http::retry_after_secs;

/// The error an Ark answer with a non-2xx status (or an error inside a stream) stands for.
pub fn from_ark_answer(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error {
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = parsed.get("error").unwrap_or(&Value::Null);
    let code = error.get("code").and_then(Value::as_str).unwrap_or("");
    let message = match error.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    };
    classify(code, &message, Some(status), retry_after_secs(retry_after))
}

/// The error a failed Ark task's `error` object stands for.
pub fn from_failed_task(error: &Value) -> Error {
    let code = error.get("code").and_then(Value::as_str).unwrap_or("");
    let message = error.get("message").and_then(Value::as_str).unwrap_or("the task failed without a message");
    classify(code, message, None, None)
}

/// The JSON body of a 2xx Ark answer, or the mapped error.
pub fn ark_json(response: Response) -> Result<Value> {
    if !response.is_success() {
        return Err(from_ark_answer(response.status(), response.header("retry-after"), response.body()));
    }
    response.json()
}

fn classify(code: &str, message: &str, status: Option<u16>, retry_after: Option<u64>) -> Error {
    let text = if code.is_empty() { format!("Volcengine Ark: {message}") } else { format!("Volcengine Ark {code}: {message}") };
    if code.contains("SensitiveContent") || code.contains("ContentSecurity") || code.contains("RiskDetection") {
        return Error::ContentRejected(text.into());
    }
    // Rate and quota limits mean "not now".
    if code.contains("RateLimit") || code.contains("QuotaExceeded") || code.contains("SetLimitExceeded")
        || code == "ServerOverloaded" || status == Some(429)
    {
        return Error::RateLimited(retry_after);
    }
    // An account that ran out of money is refused until the operator pays, like a bad key.
    if code.starts_with("Authentication") || code.starts_with("AccessDenied") || code.starts_with("OperationDenied")
        || code == "AccountOverdueError" || matches!(status, Some(401 | 403))
    {
        return Error::Unauthorized(text);
    }
    match status {
        Some(s) if s >= 500 => Error::UpstreamUnavailable(text),
        Some(s) if (400..500).contains(&s) => Error::InvalidRequest(text.into()),
        Some(_) => Error::UpstreamUnavailable(text),
        None if code.starts_with("Invalid") || code.starts_with("Missing") => Error::InvalidRequest(text.into()),
        None => Error::UpstreamUnavailable(text),
    }
}

/// Doubao speech's result codes: 3000 is success; 3001 (bad request or unknown
/// voice/resource), 3010 (text too long), 3011 (empty or invalid text) and 3050 (voice not
/// found) are the request's fault; 3003 is the concurrency limit; 3005, 3006, 3030–3032 and
/// 3040 are the service's own trouble.
pub fn tts_code(http_status: u16, code: i64, message: &str) -> Error {
    let text = format!("Doubao TTS {code}: {message}");
    match (http_status, code) {
        (401 | 403, _) => Error::Unauthorized(text),
        (429, _) | (_, 3003) => Error::RateLimited(None),
        (_, 3001 | 3010 | 3011 | 3050) => Error::InvalidRequest(text.into()),
        (s, _) if s >= 500 => Error::UpstreamUnavailable(text),
        (_, 3005 | 3006 | 3030 | 3031 | 3032 | 3040) => Error::UpstreamUnavailable(text),
        (s, _) if (400..500).contains(&s) => Error::InvalidRequest(text.into()),
        _ => Error::UpstreamUnavailable(text),
    }
}
