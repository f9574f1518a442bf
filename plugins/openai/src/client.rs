//! OpenAI's HTTP plumbing: the API host and the `OPENAI_API_KEY` bearer token.

use easel_sdk::Result;
use easel_sdk::http::Request;

/// The API key secret.
pub const API_KEY: &str = "OPENAI_API_KEY";
/// The API host.
pub const HOST: &str = "api.openai.com";

/// `https://api.openai.com/v1` followed by `path`.
pub fn api(path: &str) -> String {
    format!("https://{HOST}/v1{path}")
}

/// A POST to `path` with the operator's key.
pub fn post(path: &str) -> Result<Request> {
    Ok(Request::post(api(path)).bearer(&easel_sdk::require_secret(API_KEY)?))
}
