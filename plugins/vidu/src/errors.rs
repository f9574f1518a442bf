//! Vidu's errors onto the contract's typed errors, written once.
//!
//! Vidu answers a failed call with an HTTP status and a body
//! `{"code": 400, "reason": "CreditInsufficient", "message": "…"}`; a failed task carries
//! the same reason in the task's `err_code`. The reason decides; the status is the
//! fallback for reasons this table does not know.

use easel_sdk::Error;
use easel_sdk::http::{retry_after_secs, status_error};
use easel_sdk::serde_json::Value;

/// What a reason means, when it means more than its HTTP status says.
fn by_reason(reason: &str, message: &str, retry_after: Option<u64>) -> Option<Error> {
    let text = format!("{reason}: {message}");
    Some(match reason {
        // Out of credits: refused until the operator tops up, whatever the wait.
        "Unauthorized" | "Forbidden" | "CreditInsufficient" => Error::Unauthorized(text),
        "QuotaExceeded" | "TooManyRequests" | "SystemThrottling" => {
            Error::RateLimited(retry_after)
        }
        "AuditSubmitIllegal" | "TaskPromptPolicyViolation" | "CreationPolicyViolation" => Error::ContentRejected(text.into()),
        "InternalServiceFailure" | "ModelUnavailable" => Error::UpstreamUnavailable(text),
        "BadRequest" | "FieldLacking" | "FieldUnwanted" | "FieldItemCountOutOfRange" | "FieldInvalid"
        | "PageSizeOutOfRange" | "ImageDownloadFailure" | "ImageFormatInvalid" => Error::InvalidRequest(text.into()),
        _ => return None,
    })
}

/// The error a non-2xx answer stands for.
pub fn from_response(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error {
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or(Value::Null);
    let reason = parsed["reason"].as_str().unwrap_or_default();
    let message = parsed["message"].as_str().unwrap_or_default();
    by_reason(reason, message, retry_after_secs(retry_after))
        .or_else(|| status_error(status, retry_after, body))
        .unwrap_or_else(|| Error::upstream(format!("status {status}")))
}

/// The error a failed task's `err_code` stands for.
pub fn task_failure(err_code: &str) -> Error {
    by_reason(err_code, "the Vidu task failed", None)
        .unwrap_or_else(|| Error::upstream(format!("the Vidu task failed: {}", if err_code.is_empty() { "no err_code" } else { err_code })))
}
