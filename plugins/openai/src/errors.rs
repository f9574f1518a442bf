//! OpenAI's error answers mapped onto the contract's typed errors, in one place.
//!
//! OpenAI answers `{"error": {"message", "type", "param", "code"}}`. A refused request keeps
//! its code and param (contract 0.4.0) and, with a code, OpenAI's message as it is, which
//! easel's OpenAI API shows as OpenAI does. The code and type decide first
//! (`content_policy_violation` and `moderation_blocked` are 400s, an exhausted
//! balance is a 429 `insufficient_quota`, refused like a bad key since no wait makes it
//! pass), the status second.

use easel_sdk::http::Response;
use easel_sdk::serde_json::Value;
use easel_sdk::{Error, Result};
use easel_sdk::http::retry_after_secs;

/// The error an answer with a non-2xx status (or an error inside a stream) stands for.
pub fn from_answer(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error {
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = parsed.get("error").unwrap_or(&Value::Null);
    let field = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (code, kind) = (field("code"), field("type"));
    let message = match error.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    };
    let label = if code.is_empty() { kind.clone() } else { code.clone() };
    let text = if label.is_empty() { format!("OpenAI: {message}") } else { format!("OpenAI {label}: {message}") };
    // A refused request keeps OpenAI's code and parameter, which its clients read as such,
    // and OpenAI's own words once the code says the rest.
    let coded = |refused: fn(String) -> Error| {
        let refused = if code.is_empty() {
            refused(text.clone())
        } else {
            refused(message.clone()).with_code(code.as_str())
        };
        match error.get("param").and_then(Value::as_str) {
            Some(param) => refused.with_param(param),
            None => refused,
        }
    };
    if code == "content_policy_violation" || code == "moderation_blocked" || (kind == "image_generation_user_error" && message.contains("safety")) {
        return coded(Error::rejected);
    }
    if code == "insufficient_quota" {
        return Error::Unauthorized(text);
    }
    if status == 429 || code == "rate_limit_exceeded" {
        return Error::RateLimited(retry_after_secs(retry_after));
    }
    match status {
        401 | 403 => Error::Unauthorized(text),
        400..=499 => coded(Error::invalid),
        // An error event inside a 200 stream: the server gave up mid-answer.
        _ => Error::UpstreamUnavailable(text),
    }
}

/// The body of a 2xx answer, or the mapped error.
pub fn checked(response: Response) -> Result<Response> {
    if response.is_success() {
        Ok(response)
    } else {
        Err(from_answer(response.status(), response.header("retry-after"), response.body()))
    }
}
