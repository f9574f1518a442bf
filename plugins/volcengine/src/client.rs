//! Ark's HTTP plumbing: base URL, the `ARK_API_KEY` bearer token, and handles for video
//! tasks (`POST`/`GET`/`DELETE /api/v3/contents/generations/tasks`).

use crate::errors;
use easel_sdk::http::Request;
use easel_sdk::serde_json::Value;
use easel_sdk::{Error, Result};
use std::time::Duration;

/// Ark's API key secret.
pub const ARK_API_KEY: &str = "ARK_API_KEY";
/// Ark's API host (China, Beijing).
pub const ARK_HOST: &str = "ark.cn-beijing.volces.com";
const HANDLE_PREFIX: &str = "volcengine-task:v1";
/// Submits and polls answer quickly; image generation answers when the images exist.
pub const QUICK: Duration = Duration::from_secs(30);
/// Seedream answers synchronously, after rendering.
pub const SLOW: Duration = Duration::from_secs(180);

/// `https://ark.cn-beijing.volces.com/api/v3` followed by `path`.
pub fn ark(path: &str) -> String {
    format!("https://{ARK_HOST}/api/v3{path}")
}

/// The request with the operator's Ark key.
pub fn authorized(request: Request) -> Result<Request> {
    Ok(request.bearer(&easel_sdk::require_secret(ARK_API_KEY)?))
}

/// Sends an authorized JSON request and reads the answer (or the mapped error).
pub fn send(request: Request, timeout: Duration) -> Result<Value> {
    errors::ark_json(authorized(request)?.timeout(timeout).send()?)
}

/// The handle for Ark task `id`.
pub fn handle(id: &str) -> String {
    vendor_kit::handle::encode(HANDLE_PREFIX, &[id])
}

/// The Ark task id inside a handle.
pub fn task_id(handle: &str) -> Result<String> {
    let fields = vendor_kit::handle::decode(HANDLE_PREFIX, handle, 1)?;
    if fields[0].contains('/') {
        return Err(Error::invalid("handle carries a malformed task id"));
    }
    Ok(fields[0].to_string())
}
