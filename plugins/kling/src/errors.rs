//! Kling's errors onto the contract's typed errors, written once.
//!
//! Every answer is an envelope `{"code": 0, "message", "request_id", "data"}`; a non-zero
//! `code` is the error, whatever the HTTP status. The code decides; the HTTP status is the
//! fallback for codes this table does not know.

use easel_sdk::Error;
use easel_sdk::http::{retry_after_secs, status_error};

/// What a Kling business code means (Kling's published error-code table).
pub fn by_code(code: i64, message: &str, retry_after: Option<u64>) -> Option<Error> {
    let text = format!("{code}: {message}");
    Some(match code {
        // 1000–1004: authentication failed, empty, invalid, not yet valid, expired.
        1000..=1004 => Error::Unauthorized(text),
        // 1100 account exception, 1103 no permission for the resource.
        1100 | 1103 => Error::Unauthorized(text),
        // 1101 account in arrears, 1102 resource pack used up or expired: refused until the
        // operator pays, whatever the wait.
        1101 | 1102 => Error::Unauthorized(text),
        // 1200–1203: bad request, bad parameter, wrong method, unknown resource (model).
        1200..=1203 => Error::InvalidRequest(text.into()),
        // 1300 platform policy, 1301 content safety.
        1300 | 1301 => Error::ContentRejected(text.into()),
        // 1302 rate too high, 1303 concurrency or resource limits, 1304 IP allow-list
        // (an operator setting, closest to an authorization failure).
        1302 | 1303 => Error::RateLimited(retry_after),
        1304 => Error::Unauthorized(text),
        // 5000–5002: server error, unavailable (maintenance), internal timeout.
        5000..=5002 => Error::UpstreamUnavailable(text),
        _ => return None,
    })
}

/// The error an answer stands for: its non-zero `code`, else its non-2xx status.
pub fn from_answer(status: u16, retry_after: Option<&str>, body: &[u8]) -> Option<Error> {
    let parsed: easel_sdk::serde_json::Value = easel_sdk::serde_json::from_slice(body).unwrap_or_default();
    let code = parsed["code"].as_i64().unwrap_or(0);
    if code != 0 {
        let message = parsed["message"].as_str().unwrap_or_default();
        let retry = retry_after_secs(retry_after);
        return Some(
            by_code(code, message, retry)
                .or_else(|| status_error(status, retry_after, body))
                .unwrap_or_else(|| Error::upstream(format!("Kling error {code}: {message}"))),
        );
    }
    status_error(status, retry_after, body)
}
