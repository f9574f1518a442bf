//! Authorized requests and the shared reading of MiniMax's answers: every JSON answer
//! carries `base_resp: {status_code, status_msg}`, and a non-zero code is an error even
//! under HTTP 200.

use crate::errors;
use easel_sdk::http::Request;
use easel_sdk::serde_json::Value;
use easel_sdk::Result;
use std::time::Duration;

/// Adds `Authorization: Bearer <MINIMAX_API_KEY>` and a timeout (speech of a long text
/// takes a while, so it is generous).
pub fn authorized(request: Request) -> Result<Request> {
    let key = easel_sdk::require_secret(crate::API_KEY_SECRET)?;
    Ok(request.bearer(&key).timeout(Duration::from_secs(120)))
}

/// Sends and returns the JSON answer, or the typed error its status or `base_resp` says.
pub fn call(request: Request) -> Result<Value> {
    let response = request.send()?;
    if let Some(error) = errors::from_answer(response.status(), response.header("retry-after"), response.body()) {
        return Err(error);
    }
    response.json()
}

/// Like [`call`], but a 2xx answer is returned whatever its `base_resp` says: a failed
/// video task reports its reason there, which is the task's outcome, not a failed query.
pub fn call_keeping_base_resp(request: Request) -> Result<Value> {
    let response = request.send()?;
    if let Some(error) = easel_sdk::http::status_error(response.status(), response.header("retry-after"), response.body()) {
        return Err(error);
    }
    response.json()
}
