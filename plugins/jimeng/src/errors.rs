//! Jimeng's errors onto the contract's typed errors, written once.
//!
//! The visual API answers `{"code": 10000, "message", "request_id", "data"}`; any other
//! `code` is an error (often under HTTP 200). Gateway failures (bad signature, unknown
//! key) come back as HTTP 401/403 with `ResponseMetadata.Error` instead.

use easel_sdk::Error;
use easel_sdk::http::{retry_after_secs, status_error};
use easel_sdk::serde_json::Value;

/// The success code.
pub const OK: i64 = 10000;

/// What a business code means (the visual API's common error codes).
pub fn by_code(code: i64, message: &str, retry_after: Option<u64>) -> Option<Error> {
    let text = format!("{code}: {message}");
    Some(match code {
        OK => return None,
        // 50411/50412/50413: input image/text failed review or holds sensitive words;
        // 50511/50512: the output failed review.
        50411 | 50412 | 50413 | 50511 | 50512 => Error::ContentRejected(text.into()),
        // 50429: QPS limit; 50430: concurrency limit.
        50429 | 50430 => Error::RateLimited(retry_after),
        // 50400: no access to the service (not enabled or not paid for).
        50400 => Error::Unauthorized(text),
        // 50500/50501: internal errors.
        50500 | 50501 => Error::UpstreamUnavailable(text),
        // Everything else in the 5xxxx family is a bad parameter or input.
        c if (50000..51000).contains(&c) => Error::InvalidRequest(text.into()),
        _ => Error::UpstreamUnavailable(text),
    })
}

/// The error an answer stands for, or `None` for a success.
pub fn from_answer(status: u16, retry_after: Option<&str>, body: &[u8]) -> Option<Error> {
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or_default();
    if let Some(code) = parsed["code"].as_i64() {
        let retry = retry_after_secs(retry_after);
        if let Some(error) = by_code(code, parsed["message"].as_str().unwrap_or_default(), retry) {
            return Some(error);
        }
    }
    status_error(status, retry_after, body)
}
