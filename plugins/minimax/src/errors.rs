//! MiniMax's errors onto the contract's typed errors, written once.
//!
//! MiniMax answers most failures with HTTP 200 and `base_resp.status_code` ≠ 0; the code
//! decides, and a non-2xx status is the fallback.

use easel_sdk::Error;
use easel_sdk::http::{retry_after_secs, status_error};
use easel_sdk::serde_json::Value;

/// What a `status_code` means: MiniMax's error-code pages (international "Error Codes",
/// mainland "错误码查询", which adds 2038); 1013 is on neither page and is kept unconfirmed.
pub fn by_code(code: i64, message: &str, retry_after: Option<u64>) -> Option<Error> {
    let text = format!("{code}: {message}");
    Some(match code {
        0 => return None,
        // 1004 not authorized / key and group do not match, 2049 invalid API key,
        // 2038 voice cloning not enabled for the account (identity check missing), 1008
        // insufficient balance (refused until the operator pays, whatever the wait).
        1004 | 2049 | 2038 | 1008 => Error::Unauthorized(text),
        // 1002 rate limit, 1039 token (TPM) limit, 1041 connection limit, 2045 request
        // growth too steep, 2056 plan usage limit of the window.
        1002 | 1039 | 1041 | 2045 | 2056 => Error::RateLimited(retry_after),
        // 1026 sensitive input, 1027 sensitive output.
        1026 | 1027 => Error::ContentRejected(text.into()),
        // 2013 invalid parameters, 1042 too many invisible or illegal characters,
        // 20132 bad voice_id or clone sample, 2042 no access to the voice_id, and the
        // voice-clone checks: 1043, 1044 (similarity), 2037 (duration), 2039 (duplicate
        // voice_id), 2048 (prompt audio too long).
        2013 | 1042 | 20132 | 2042 | 1043 | 1044 | 2037 | 2039 | 2048 => Error::InvalidRequest(text.into()),
        // 1000 unknown, 1001 timeout, 1013 internal service error, 1024 internal error,
        // 1033 system or downstream error; codes this table does not know land here too.
        1000 | 1001 | 1013 | 1024 | 1033 => Error::UpstreamUnavailable(text),
        _ => Error::UpstreamUnavailable(text),
    })
}

/// The error an answer stands for: a non-zero `base_resp.status_code`, else a non-2xx
/// status; `None` when it is a success.
pub fn from_answer(status: u16, retry_after: Option<&str>, body: &[u8]) -> Option<Error> {
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or_default();
    from_base_resp(&parsed, retry_after_secs(retry_after))
        .or_else(|| status_error(status, retry_after, body))
}

/// The error in a parsed answer's `base_resp`, if any.
pub fn from_base_resp(answer: &Value, retry_after: Option<u64>) -> Option<Error> {
    let code = answer["base_resp"]["status_code"].as_i64().unwrap_or(0);
    by_code(code, answer["base_resp"]["status_msg"].as_str().unwrap_or_default(), retry_after)
}
