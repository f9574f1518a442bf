//! Zhipu's errors onto the contract's typed errors, written once.
//!
//! The platform answers `{"error": {"code": "1301", "message": "…"}}` with an HTTP status;
//! the numeric business code is more precise than the status, so it decides and the status
//! is the fallback.

use easel_sdk::Error;
use easel_sdk::http::{retry_after_secs, status_error};
use easel_sdk::serde_json::Value;

/// What a business code means (BigModel's error-code page, docs.bigmodel.cn/cn/api/api-code).
/// Codes it does not list here (1100, 1200, 1231, 1300, unknown ones) fall back to the status.
pub fn by_code(code: &str, message: &str, retry_after: Option<u64>) -> Option<Error> {
    let text = format!("{code}: {message}");
    Some(match code {
        // 1000–1004: authentication failed, no token, bad token, token expired; 1110–1112,
        // 1121: account inactive, missing, locked, locked for violations; 1113: account in
        // arrears; 1220: no access to the API; 1310: the plan expired; 1311: the plan does
        // not include the model. Refused until the operator acts, whatever the wait.
        "1000" | "1001" | "1002" | "1003" | "1004" | "1110" | "1111" | "1112" | "1113" | "1121"
        | "1220" | "1310" | "1311" => Error::Unauthorized(text),
        // 1302–1305: concurrency, rate, daily and traffic limits; 1308–1309: plan usage caps;
        // 1312: the model is overloaded; 1313: throttled under the fair-use policy.
        "1302" | "1303" | "1304" | "1305" | "1308" | "1309" | "1312" | "1313" => {
            Error::RateLimited(retry_after)
        }
        // 1301: the input or output was judged unsafe (the same code either way).
        "1301" => Error::ContentRejected(text.into()),
        // 1210–1215: bad parameters, unknown model, method not supported; 1221/1222: the
        // API is offline or unknown; 1261: prompt too long.
        "1210" | "1211" | "1212" | "1213" | "1214" | "1215" | "1221" | "1222" | "1261" => {
            Error::InvalidRequest(text.into())
        }
        // 500: internal error; 1120: the account could not be reached, retry later;
        // 1230: API call flow error; 1234: network error.
        "500" | "1120" | "1230" | "1234" => Error::UpstreamUnavailable(text),
        _ => return None,
    })
}

/// The `(code, message)` of an error body, when it has one.
pub fn code_and_message(body: &Value) -> (String, String) {
    let error = &body["error"];
    let code = match &error["code"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    (
        code,
        error["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// The error a non-2xx answer stands for.
pub fn from_response(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error {
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or(Value::Null);
    let (code, message) = code_and_message(&parsed);
    by_code(
        &code,
        &message,
        retry_after_secs(retry_after),
    )
    .or_else(|| status_error(status, retry_after, body))
    .unwrap_or_else(|| Error::upstream(format!("status {status}")))
}
