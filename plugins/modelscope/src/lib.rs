//! easel provider plugin for ModelScope's API-Inference (`https://api-inference.modelscope.cn`).
//!
//! One model, `qwen-image` (ModelScope model id `Qwen/Qwen-Image`, `image.generate`),
//! run as an asynchronous task: `POST /v1/images/generations` with
//! `X-ModelScope-Async-Mode: true` answers a `task_id`; `GET /v1/tasks/{id}` with
//! `X-ModelScope-Task-Type: image_generation` reports `task_status` and, once `SUCCEED`,
//! `output_images`. API-Inference documents no way to cancel a task, so `cancel` keeps the
//! SDK's answer (the host then just stops polling).

mod errors;
mod models;

#[cfg(test)]
mod tests;

use easel_sdk::http::Request;
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, Manifest, Output, PollOutcome, Provider, Result, Submission};
use std::time::Duration;

/// API-Inference's base URL.
pub const API_BASE: &str = "https://api-inference.modelscope.cn/v1";
/// The ModelScope access token (sent as a bearer token).
pub const API_KEY_SECRET: &str = "MODELSCOPE_API_KEY";

const HANDLE_PREFIX: &str = "modelscope:v1";
/// Qwen-Image takes some tens of seconds on the shared inference pool.
const POLL_AFTER_MS: u64 = 5_000;

/// The provider; it keeps no state.
#[derive(Default)]
pub struct ModelScope;

easel_sdk::export!(ModelScope);

impl Provider for ModelScope {
    fn manifest(&self) -> Manifest {
        models::manifest()
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        if request.capability != "image.generate" || request.model != models::QWEN_IMAGE {
            return Err(Error::invalid(format!("modelscope/{} does not do {}", request.model, request.capability)));
        }
        if request.prompt.trim().is_empty() {
            return Err(Error::invalid("Missing required parameter: prompt"));
        }
        let body = generation_body(&request)?;
        let answer = call(
            authorized(Request::post(format!("{API_BASE}/images/generations")))?
                .header("X-ModelScope-Async-Mode", "true")
                .json(&body),
        )?;
        let task_id = answer["task_id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::upstream(format!("ModelScope answered without a task_id: {answer}")))?;
        Ok(Submission::pending(vendor_kit::handle::encode(HANDLE_PREFIX, &[task_id]), POLL_AFTER_MS))
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        let task_id = vendor_kit::handle::task_id(vendor_kit::handle::decode(HANDLE_PREFIX, handle, 1)?[0])?;
        let answer = call(
            authorized(Request::get(format!("{API_BASE}/tasks/{task_id}")))?
                .header("X-ModelScope-Task-Type", "image_generation"),
        )?;
        match answer["task_status"].as_str().unwrap_or_default() {
            "PENDING" | "RUNNING" | "PROCESSING" => Ok(PollOutcome::Running { progress: None, poll_after_ms: POLL_AFTER_MS }),
            "SUCCEED" | "SUCCEEDED" => Ok(finished(task_id, &answer)),
            "FAILED" => Ok(PollOutcome::Failed(errors::task_failure(&answer))),
            other => Err(Error::upstream(format!("ModelScope reported an unknown task_status `{other}`"))),
        }
    }
}

/// The body of `POST /v1/images/generations`, in ModelScope's field names.
fn generation_body(request: &GenerationRequest) -> Result<Value> {
    let mut body = Map::new();
    body.insert("model".into(), json!(models::MODELSCOPE_MODEL_ID));
    body.insert("prompt".into(), json!(request.prompt));
    let negative = match request.param_str("negative_prompt", "")? {
        "" => request.param_str("negativePrompt", "")?,
        given => given,
    };
    if !negative.is_empty() {
        body.insert("negative_prompt".into(), json!(negative));
    }
    body.insert("size".into(), json!(models::size(request)?));
    // Left out unless asked for, so ModelScope's own defaults apply.
    for name in ["seed", "steps"] {
        if request.param_value(name).is_some() {
            body.insert(name.into(), json!(request.param_u64(name, 0)?));
        }
    }
    if request.param_value("guidance").is_some() {
        body.insert("guidance".into(), json!(request.param_f64("guidance", 3.5)?));
    }
    if let Some(loras) = models::loras(request)? {
        body.insert("loras".into(), loras);
    }
    Ok(Value::Object(body))
}

/// The succeeded task's images as URL outputs (ModelScope keeps them only for a while); a
/// success without any fails the task.
fn finished(task_id: &str, answer: &Value) -> PollOutcome {
    let outputs: Vec<Output> = answer["output_images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|url| url.as_str().filter(|url| !url.is_empty()))
        .map(|url| Output::Url { url: url.to_string(), content_type: Some("image/png".into()) })
        .collect();
    if outputs.is_empty() {
        return vendor_kit::outcome::succeeded_without_output("ModelScope", task_id, "output_images");
    }
    PollOutcome::Finished(Finished::new(outputs))
}

fn authorized(request: Request) -> Result<Request> {
    let key = easel_sdk::require_secret(API_KEY_SECRET)?;
    Ok(request.bearer(&key).timeout(Duration::from_secs(60)))
}

/// Sends and reads the JSON answer; non-2xx answers become typed errors.
fn call(request: Request) -> Result<Value> {
    let response = request.send()?;
    if !response.is_success() {
        return Err(errors::from_response(response.status(), response.header("retry-after"), response.body()));
    }
    response.json()
}
