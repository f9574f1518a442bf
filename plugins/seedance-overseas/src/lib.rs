//! easel provider plugin for Seedance 2.0 on BytePlus ModelArk, the overseas route
//! (`https://ark.ap-southeast.bytepluses.com/api/v3`).
//!
//! One model, `dreamina-seedance-2-0-260128` (`video.generate`): text-to-video, first
//! (and last) frame video, and multimodal reference video (images, videos, audio), all
//! through ModelArk's asynchronous content-generation tasks:
//! `POST /contents/generations/tasks` to submit, `GET …/tasks/{id}` to poll and
//! `DELETE …/tasks/{id}` to cancel a queued task.

mod errors;
mod models;
mod request;

#[cfg(test)]
mod tests;

use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, Manifest, Output, PollOutcome, Provider, Result, Submission};

/// ModelArk's Asia-Pacific endpoint, the only region serving Seedance video.
pub const API_BASE: &str = "https://ark.ap-southeast.bytepluses.com/api/v3";
/// The key BytePlus documents for ModelArk.
pub const ARK_API_KEY: &str = "ARK_API_KEY";
/// Read when `ARK_API_KEY` is unset, as BytePlus' own SDKs do.
pub const BYTEPLUS_API_KEY: &str = "BYTEPLUS_API_KEY";

const HANDLE_PREFIX: &str = "seedance-overseas:v1";
/// Seedance 2.0 takes one to several minutes.
const POLL_AFTER_MS: u64 = 15_000;

/// The provider; it keeps no state.
#[derive(Default)]
pub struct SeedanceOverseas;

easel_sdk::export!(SeedanceOverseas);

impl Provider for SeedanceOverseas {
    fn manifest(&self) -> Manifest {
        models::manifest()
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        if request.capability != "video.generate" || request.model != models::SEEDANCE_2_0 {
            return Err(Error::invalid(format!("seedance-overseas/{} does not do {}", request.model, request.capability)));
        }
        let body = request::task_body(&request)?;
        let answer = request::call(request::authorized(easel_sdk::http::Request::post(tasks_url()))?.json(&body))?;
        let id = answer["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::upstream(format!("ModelArk answered without a task id: {answer}")))?;
        Ok(Submission::pending(vendor_kit::handle::encode(HANDLE_PREFIX, &[id]), POLL_AFTER_MS))
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        let id = task_id(handle)?;
        let answer = request::call(request::authorized(easel_sdk::http::Request::get(format!("{}/{id}", tasks_url())))?)?;
        match answer["status"].as_str().unwrap_or_default() {
            "queued" | "running" => Ok(PollOutcome::Running { progress: None, poll_after_ms: POLL_AFTER_MS }),
            "succeeded" => Ok(finished(id, &answer)),
            "failed" => Ok(PollOutcome::Failed(errors::task_failure(&answer["error"]))),
            "cancelled" => Ok(PollOutcome::Failed(Error::internal("the task was cancelled upstream"))),
            "expired" => Ok(PollOutcome::Failed(Error::upstream("ModelArk let the task expire before it ran"))),
            other => Err(Error::upstream(format!("ModelArk reported an unknown task status `{other}`"))),
        }
    }

    fn cancel(&self, handle: &str) -> Result<()> {
        let id = task_id(handle)?;
        request::call(request::authorized(easel_sdk::http::Request::delete(format!("{}/{id}", tasks_url())))?).map(|_| ())
    }
}

fn tasks_url() -> String {
    format!("{API_BASE}/contents/generations/tasks")
}

/// The task id inside a handle; anything else is refused so it never reaches a URL.
fn task_id(handle: &str) -> Result<&str> {
    vendor_kit::handle::task_id(vendor_kit::handle::decode(HANDLE_PREFIX, handle, 1)?[0])
}

/// The succeeded task's video (and its last frame when asked for) as URLs the host copies;
/// usage in tokens. A success without a video fails the task.
fn finished(task_id: &str, answer: &Value) -> PollOutcome {
    let Some(video) = answer["content"]["video_url"].as_str().filter(|url| !url.is_empty()) else {
        return vendor_kit::outcome::succeeded_without_output("ModelArk", task_id, "content.video_url");
    };
    let mut outputs = vec![Output::Url { url: video.to_string(), content_type: Some("video/mp4".into()) }];
    if let Some(frame) = answer["content"]["last_frame_url"].as_str() {
        outputs.push(Output::Url { url: frame.to_string(), content_type: Some("image/png".into()) });
    }
    let mut done = Finished::new(outputs);
    if answer["usage"].is_object() {
        done = done.usage(json!(answer["usage"]));
    }
    PollOutcome::Finished(done)
}
