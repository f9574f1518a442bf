//! easel provider plugin for Vidu's enterprise API (`https://api.vidu.com/ent/v2`, or
//! `https://api.vidu.cn/ent/v2` on the mainland platform when `VIDU_REGION` is `cn`).
//!
//! One model, `viduq3-pro` (`video.generate`):
//! - no input image: `POST /ent/v2/text2video`;
//! - one image (role `first_frame` or none): `POST /ent/v2/img2video`;
//! - two images (`first_frame` + `last_frame`, or two plain images in order):
//!   `POST /ent/v2/start-end2video`.
//!
//! Every task is asynchronous: `submit` returns a pending handle carrying the Vidu task id,
//! `poll` reads `GET /ent/v2/tasks/{id}/creations`, `cancel` calls
//! `POST /ent/v2/tasks/{id}/cancel`. Parameters use the names of the llmage document
//! (seed 002): `off_peak` (`Y`/`N`), `duration`, `ratio`, `resolution`; [`request`]
//! translates them to Vidu's wire names.

mod errors;
mod handle;
mod models;
mod request;

#[cfg(test)]
mod tests;

use easel_sdk::serde_json::Value;
use easel_sdk::{Error, Finished, GenerationRequest, Manifest, Output, PollOutcome, Provider, Result, Submission};
use handle::TaskHandle;
use vendor_kit::region::Region;

/// Where Vidu's international API lives.
pub const API_BASE: &str = "https://api.vidu.com/ent/v2";
/// Where the mainland China platform (platform.vidu.cn) serves the same API.
pub const API_BASE_CN: &str = "https://api.vidu.cn/ent/v2";
/// The secret holding the API key (sent as `Authorization: Token <key>`).
pub const API_KEY_SECRET: &str = "VIDU_API_KEY";
/// Optional secret choosing the platform: `global` (default) or `cn`. Keys work only on
/// the platform that issued them.
pub const REGION_SECRET: &str = "VIDU_REGION";

/// The API base of a region.
fn api_base(region: Region) -> &'static str {
    region.pick(API_BASE, API_BASE_CN)
}

/// The provider; it keeps no state.
#[derive(Default)]
pub struct Vidu;

easel_sdk::export!(Vidu);

impl Provider for Vidu {
    fn manifest(&self) -> Manifest {
        models::manifest()
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        if request.capability != "video.generate" || request.model != models::VIDUQ3_PRO {
            return Err(Error::invalid(format!("vidu/{} does not do {}", request.model, request.capability)));
        }
        let plan = request::plan(&request)?;
        let region = Region::configured(REGION_SECRET)?;
        let url = format!("{}/{}", api_base(region), plan.endpoint);
        let answer = request::call(request::post(&url)?.json(&plan.body))?;
        let task_id = string_or_number(&answer["task_id"])
            .ok_or_else(|| Error::upstream(format!("Vidu answered without a task_id: {answer}")))?;
        let handle = TaskHandle { task_id, off_peak: plan.off_peak, region };
        Ok(Submission::pending(handle.encode(), handle.poll_after_ms()))
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        let handle = TaskHandle::decode(handle)?;
        let url = format!("{}/tasks/{}/creations", api_base(handle.region), handle.task_id);
        let answer = request::call(request::get(&url)?)?;
        let state = answer["state"].as_str().unwrap_or_default();
        match state {
            "success" => Ok(finished(&handle.task_id, &answer)),
            "failed" => {
                let code = answer["err_code"].as_str().unwrap_or_default();
                Ok(PollOutcome::Failed(errors::task_failure(code)))
            }
            "created" | "queueing" | "processing" | "scheduled" => {
                Ok(PollOutcome::Running { progress: progress(&answer), poll_after_ms: handle.poll_after_ms() })
            }
            other => Err(Error::upstream(format!("Vidu reported an unknown task state `{other}`"))),
        }
    }

    fn cancel(&self, handle: &str) -> Result<()> {
        let handle = TaskHandle::decode(handle)?;
        let url = format!("{}/tasks/{}/cancel", api_base(handle.region), handle.task_id);
        request::call(request::post(&url)?.json(&easel_sdk::serde_json::json!({"id": handle.task_id}))).map(|_| ())
    }
}

/// The succeeded task's videos, then their covers, as URLs the host copies before they
/// expire (24 h). A cover is declared as an image, so the host treats it as a by-product of
/// the video: kept when it can be copied, left out (not failing the video) when it cannot.
/// A success without a video fails the task.
fn finished(task_id: &str, answer: &Value) -> PollOutcome {
    let creations = answer["creations"].as_array().map(Vec::as_slice).unwrap_or_default();
    let videos = creations.iter().filter_map(|c| c["url"].as_str().filter(|url| !url.is_empty()));
    let mut outputs: Vec<Output> =
        videos.map(|url| Output::Url { url: url.to_string(), content_type: Some("video/mp4".to_string()) }).collect();
    if outputs.is_empty() {
        return vendor_kit::outcome::succeeded_without_output("Vidu", task_id, "creations[].url");
    }
    let covers = creations.iter().filter_map(|c| c["cover_url"].as_str().filter(|url| !url.is_empty()));
    outputs.extend(covers.map(|url| Output::Url { url: url.to_string(), content_type: Some(cover_type(url).to_string()) }));
    let mut done = Finished::new(outputs);
    if let Some(credits) = answer.get("credits").filter(|c| c.is_number()) {
        done = done.usage(easel_sdk::serde_json::json!({"credits": credits}));
    }
    PollOutcome::Finished(done)
}

/// A cover's image type, by its file name's extension; JPEG when the name does not say
/// (Vidu's answer gives no type).
fn cover_type(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let file_name = path.rsplit('/').next().unwrap_or_default();
    match file_name.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase()).as_deref() {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        _ => "image/jpeg",
    }
}

/// Vidu's `progress` (0–100) when the answer has one.
fn progress(answer: &Value) -> Option<f32> {
    answer["progress"].as_f64().map(|p| (p / 100.0).clamp(0.0, 1.0) as f32)
}

/// Vidu documents task ids as strings, but some answers carry them as numbers.
fn string_or_number(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
