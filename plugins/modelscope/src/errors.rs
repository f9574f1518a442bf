//! ModelScope's errors onto the contract's typed errors, written once.
//!
//! API-Inference publishes no error-code table: its guide and its usage-limits page name no
//! status or code, so failures are read by HTTP status (401 bad token, 429 over the daily
//! free quota or rate, 400 bad parameters, 5xx inference pool trouble) with a message in
//! `errors.message` (older answers: `message`); these statuses are unconfirmed by its
//! documents. It has no moderation code either, so a refusal is recognised by its message:
//! the words looked for are listed in [`MODERATION_WORDS`] (also unconfirmed).

use easel_sdk::Error;
use easel_sdk::http::status_error;
use easel_sdk::serde_json::Value;

/// Words ModelScope's moderation refusals contain (English and Chinese answers).
const MODERATION_WORDS: [&str; 6] = ["inappropriate", "sensitive", "content security", "审核", "违规", "敏感"];

/// The message of an error answer, wherever ModelScope put it.
pub fn message_of(body: &Value) -> String {
    [&body["errors"]["message"], &body["error"]["message"], &body["message"], &body["errors"]]
        .into_iter()
        .find_map(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

fn is_moderation(message: &str) -> bool {
    let lower = message.to_lowercase();
    MODERATION_WORDS.iter().any(|w| lower.contains(w))
}

/// The error a non-2xx answer stands for.
pub fn from_response(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error {
    let parsed: Value = easel_sdk::serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = message_of(&parsed);
    if (400..500).contains(&status) && is_moderation(&message) {
        return Error::ContentRejected(message.into());
    }
    status_error(status, retry_after, body).unwrap_or_else(|| Error::upstream(format!("status {status}")))
}

/// The error a `FAILED` task stands for.
pub fn task_failure(answer: &Value) -> Error {
    let message = message_of(answer);
    if is_moderation(&message) {
        Error::ContentRejected(message.into())
    } else {
        Error::upstream(format!("the ModelScope task failed: {}", if message.is_empty() { "no reason given" } else { &message }))
    }
}
