//! easel provider plugin for Kling AI (`https://api-singapore.klingai.com`, or the mainland
//! China platform `https://api-beijing.klingai.com` when `KLING_REGION` is `cn`).
//!
//! - video models (`video.generate`): `POST /v1/videos/text2video` without images,
//!   `POST /v1/videos/image2video` with a first frame (`image`) and an optional last frame
//!   (`image_tail`);
//! - image models (`image.generate`): `POST /v1/images/generations`.
//!
//! Every call carries a fresh HS256 JWT made from `KLING_ACCESS_KEY` and
//! `KLING_SECRET_KEY` ([`jwt`]). Tasks are polled at `GET <path>/{task_id}`. Kling
//! documents no cancel endpoint, so `cancel` keeps the SDK's refusal.

mod errors;
mod jwt;
mod models;
mod route;

#[cfg(test)]
mod tests;

use easel_sdk::http::Request;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, Manifest, Output, PollOutcome, Provider, Result, Submission};
use route::Route;
use std::time::Duration;
use vendor_kit::region::Region;

/// Kling's global API host (for servers outside China).
pub const API_HOST: &str = "api-singapore.klingai.com";
/// Kling's mainland China API host; keys are issued per platform and do not cross over.
pub const API_HOST_CN: &str = "api-beijing.klingai.com";
/// Optional secret choosing the platform: `global` (default) or `cn`.
pub const REGION_SECRET: &str = "KLING_REGION";
/// The access key (the JWT's issuer).
pub const ACCESS_KEY_SECRET: &str = "KLING_ACCESS_KEY";
/// The secret key (signs the JWT).
pub const SECRET_KEY_SECRET: &str = "KLING_SECRET_KEY";

/// The vendor part of handle prefixes; `vendor_kit::handle` adds `-cn` for mainland tasks.
const VENDOR: &str = "kling";
const HANDLE_VERSION: &str = "v1";
const VIDEO_POLL_AFTER_MS: u64 = 15_000;
const IMAGE_POLL_AFTER_MS: u64 = 5_000;
/// Words of Kling's `task_status_msg` when moderation stopped a task.
const MODERATION_WORDS: [&str; 5] = ["risk", "sensitive", "风控", "敏感", "违规"];

/// The provider; it keeps no state.
#[derive(Default)]
pub struct Kling;

easel_sdk::export!(Kling);

impl Provider for Kling {
    fn manifest(&self) -> Manifest {
        models::manifest()
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        let (route, body) = route::plan(&request)?;
        let region = Region::configured(REGION_SECRET)?;
        let url = format!("https://{}{}", host(region), route.path());
        let data = call(authorized(Request::post(url))?.json(&body))?;
        let task_id = data["task_id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::upstream(format!("Kling answered without a task_id: {data}")))?;
        let handle = vendor_kit::handle::encode_regional(region, VENDOR, HANDLE_VERSION, &[route.tag(), task_id]);
        Ok(Submission::pending(handle, poll_after(route)))
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        let (region, route, task_id) = decode(handle)?;
        let url = format!("https://{}{}/{task_id}", host(region), route.path());
        let data = call(authorized(Request::get(url))?)?;
        match data["task_status"].as_str().unwrap_or_default() {
            "submitted" | "processing" => Ok(PollOutcome::Running { progress: None, poll_after_ms: poll_after(route) }),
            "succeed" => Ok(finished(route, task_id, &data)),
            "failed" => {
                let message = data["task_status_msg"].as_str().unwrap_or("no reason given").to_string();
                let lower = message.to_lowercase();
                Ok(PollOutcome::Failed(if MODERATION_WORDS.iter().any(|w| lower.contains(w)) {
                    Error::ContentRejected(message.into())
                } else {
                    Error::upstream(format!("the Kling task failed: {message}"))
                }))
            }
            other => Err(Error::upstream(format!("Kling reported an unknown task_status `{other}`"))),
        }
    }
}

fn poll_after(route: Route) -> u64 {
    if route == Route::Image { IMAGE_POLL_AFTER_MS } else { VIDEO_POLL_AFTER_MS }
}

/// The API host of a region.
fn host(region: Region) -> &'static str {
    region.pick(API_HOST, API_HOST_CN)
}

/// `kling[-cn]:v1:<route>:<task id>` back into its parts; anything else is refused. The
/// handle, not the current setting, says which platform holds the task.
fn decode(handle: &str) -> Result<(Region, Route, &str)> {
    let (region, fields) = vendor_kit::handle::decode_regional(VENDOR, HANDLE_VERSION, handle, 2)?;
    let route = Route::from_tag(fields[0])
        .ok_or_else(|| Error::invalid(format!("unknown task route `{}` in handle", fields[0])))?;
    Ok((region, route, vendor_kit::handle::task_id(fields[1])?))
}

/// The succeeded task's videos or images as URL outputs (Kling deletes them after 30 days);
/// a success without any fails the task.
fn finished(route: Route, task_id: &str, data: &Value) -> PollOutcome {
    let (list, content_type) = if route == Route::Image { ("images", "image/png") } else { ("videos", "video/mp4") };
    let outputs: Vec<Output> = data["task_result"][list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["url"].as_str().filter(|url| !url.is_empty()))
        .map(|url| Output::Url { url: url.to_string(), content_type: Some(content_type.into()) })
        .collect();
    if outputs.is_empty() {
        return vendor_kit::outcome::succeeded_without_output("Kling", task_id, &format!("task_result.{list}[].url"));
    }
    let mut done = Finished::new(outputs);
    if let Some(duration) = data["task_result"]["videos"][0]["duration"].as_str() {
        done = done.usage(json!({"duration": duration}));
    }
    PollOutcome::Finished(done)
}

fn authorized(request: Request) -> Result<Request> {
    let access = easel_sdk::require_secret(ACCESS_KEY_SECRET)?;
    let secret = easel_sdk::require_secret(SECRET_KEY_SECRET)?;
    Ok(request.bearer(&jwt::token(&access, &secret, jwt::now())).timeout(Duration::from_secs(60)))
}

/// Sends and returns the envelope's `data`; a non-zero `code` or non-2xx status is a typed
/// error.
fn call(request: Request) -> Result<Value> {
    let response = request.send()?;
    if let Some(error) = errors::from_answer(response.status(), response.header("retry-after"), response.body()) {
        return Err(error);
    }
    let envelope: Value = response.json()?;
    Ok(envelope["data"].clone())
}
