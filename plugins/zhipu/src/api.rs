//! Authorized requests and the shared handling of Zhipu's answers.

use crate::errors;
use easel_sdk::Result;
use easel_sdk::http::Request;
use easel_sdk::serde_json::Value;
use std::time::Duration;

/// A POST with `Authorization: Bearer <ZHIPU_API_KEY>`. Image generation takes up to
/// about 20 s, so the timeout leaves room.
pub fn post(url: &str) -> Result<Request> {
    let key = easel_sdk::require_secret(crate::API_KEY_SECRET)?;
    Ok(Request::post(url)
        .bearer(&key)
        .timeout(Duration::from_secs(120)))
}

/// Sends and reads the JSON answer; non-2xx answers become typed errors.
pub fn call(request: Request) -> Result<Value> {
    let response = request.send()?;
    if !response.is_success() {
        return Err(errors::from_response(
            response.status(),
            response.header("retry-after"),
            response.body(),
        ));
    }
    response.json()
}
