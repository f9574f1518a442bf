//! ModelArk's errors onto the contract's typed errors, written once.
//!
//! A failed call answers an HTTP status with `{"error": {"code", "message", "param",
//! "type"}}`; a failed task carries the same `error` object. The code decides; the HTTP
//! status is the fallback.

use easel_sdk::Error;
use easel_sdk::http::{retry_after_secs, status_error};
use easel_sdk::serde_json::Value;

fn by_code(code: &str, message: &str, retry_after: Option<u64>) -> Option<Error> {
    let text = format!("{code}: {message}");
    // Moderation codes all end the same way: InputTextSensitiveContentDetected,
    // InputImageSensitiveContentDetected, OutputVideoSensitiveContentDetected, …
    if code.contains("SensitiveContentDetected") || code.contains("RiskDetection") {
        return Some(Error::ContentRejected(text.into()));
    }
    Some(match code {
        // An overdue account is out of credit: refused until the operator pays, like a bad key.
        "AuthenticationError" | "AccessDenied" | "InvalidAccountStatus" | "AccountOverdueError" => {
            Error::Unauthorized(text)
        }
        "RateLimitExceeded" | "QuotaExceeded" | "SetLimitExceeded" => {
            Error::RateLimited(retry_after)
        }
        "InternalServiceError" | "ServerOverloaded" | "ServiceUnavailable" => Error::UpstreamUnavailable(text),
        c if c.starts_with("InvalidParameter") || c.starts_with("MissingParameter") || c.starts_with("InvalidEndpoint")
            || c.starts_with("ModelNotOpen") || c == "InvalidArgumentError" =>
        {
            Error::InvalidRequest(text.into())
        }
        _ => return None,
    })
}

/// The error a non-2xx answer stands for.
pub fn from_response(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error {
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = parsed["error"]["code"].as_str().unwrap_or_default();
    let message = parsed["error"]["message"].as_str().unwrap_or_default();
    by_code(code, message, retry_after_secs(retry_after))
        .or_else(|| status_error(status, retry_after, body))
        .unwrap_or_else(|| Error::upstream(format!("status {status}")))
}

/// The error a failed task's `error` object stands for.
pub fn task_failure(error: &Value) -> Error {
    let code = error["code"].as_str().unwrap_or_default();
    let message = error["message"].as_str().unwrap_or("the task failed");
    by_code(code, message, None).unwrap_or_else(|| Error::upstream(format!("the Seedance task failed: {code}: {message}")))
}
