//! JSON bodies parsed by hand, so a malformed body gets the calling API's own 400 instead of
//! axum's plain-text rejection.

use serde::de::DeserializeOwned;

/// Parses `bytes` as `T`, or explains why not in one sentence.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("Request body must be a JSON object.".into());
    }
    serde_json::from_slice(bytes).map_err(|error| format!("Invalid JSON body: {error}"))
}

/// A canonical form of a JSON body (sorted keys, no whitespace), for idempotency hashing.
pub fn canonical(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
