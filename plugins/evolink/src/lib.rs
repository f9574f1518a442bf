//! easel provider plugin for EvoLink (`https://api.evolink.ai`), seed 001's "EvoLink"
//! engine: `gpt-image-2` for `image.generate` and `image.inpaint` with seed 001's
//! `quality`, and Seedance 2.0 (standard and fast) for `video.generate` with seed 001's
//! video settings. EvoLink runs everything as a task: `POST /v1/images/generations` or
//! `POST /v1/videos/generations` answers a task `id`, `GET /v1/tasks/{id}` reports
//! `pending`/`processing`/`completed`/`failed` and the `results` URLs.
//!
//! Inputs given only as bytes go through EvoLink's file API first
//! (`POST https://files-api.evolink.ai/api/v1/files/upload/base64`, a base64 data URL in,
//! a `file_url` out): the generation endpoints take URLs only. EvoLink documents no image
//! upscaling model and no cancel endpoint, so neither is offered.

mod errors;
mod files;
mod video;

#[cfg(test)]
mod tests;

use easel_sdk::http::Request;
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, InputMedia, Manifest, Model, Output, PollOutcome, Provider, Result, Submission};
use std::time::Duration;

/// EvoLink's API base for image, video and audio tasks.
pub const API_BASE: &str = "https://api.evolink.ai/v1";
/// EvoLink's file service (uploads of inputs that have no public URL).
pub const FILES_BASE: &str = "https://files-api.evolink.ai/api/v1";
/// The API key (bearer), for both hosts.
pub const API_KEY_SECRET: &str = "EVOLINK_API_KEY";
/// The image model, as EvoLink names it.
pub const GPT_IMAGE_2: &str = "gpt-image-2";
/// The video models, as easel lists them; the EvoLink model name adds the mode.
pub const SEEDANCE_2: &str = "seedance-2.0";
/// Seedance 2.0's fast variant.
pub const SEEDANCE_2_FAST: &str = "seedance-2.0-fast";
/// Image tasks' handles: `evolink:v1:<id>`.
const HANDLE_PREFIX: &str = "evolink:v1";
/// Video tasks' handles: `evolink:v1:video:<id>`. Image handles have one field fewer, so
/// the `video` mark is part of the prefix rather than a field.
const VIDEO_HANDLE_PREFIX: &str = "evolink:v1:video";
const IMAGE_POLL_MS: u64 = 5_000;
const VIDEO_POLL_MS: u64 = 10_000;
/// EvoLink's aspect-ratio sizes for gpt-image-2.
const SIZES: [&str; 9] = ["auto", "1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9"];

/// The provider; it keeps no state.
#[derive(Default)]
pub struct EvoLink;

easel_sdk::export!(EvoLink);

fn image_schema() -> Value {
    json!({"type": "object", "properties": {
        "quality": {"type": "string", "enum": ["low", "medium", "high"], "default": "medium",
                    "description": "Seed 001: EvoLink's generation quality."},
        "size": {"type": "string", "enum": SIZES, "default": "auto"},
        "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1}
    }, "additionalProperties": true})
}

impl Provider for EvoLink {
    fn manifest(&self) -> Manifest {
        let mut manifest = Manifest::new("evolink", env!("CARGO_PKG_VERSION"))
            .allow_host("api.evolink.ai")
            .allow_host("files-api.evolink.ai")
            // `results` links: EvoLink's task reference (https://docs.evolink.ai) shows a
            // placeholder; answers link to EvoLink's own file host.
            .allow_host("files.evolink.ai")
            .secret(API_KEY_SECRET)
            .model(
                Model::new(GPT_IMAGE_2, "GPT Image 2 (EvoLink)", "image")
                    .capability("image.generate")
                    .capability("image.inpaint")
                    .params_schema(image_schema())
                    .price_hint(3.0)
                    .extra(json!({"capabilities": {"supportsRefImage": true, "supportsInpaint": true}})),
            );
        for (key, name, price) in [(SEEDANCE_2, "Seedance 2.0 (EvoLink)", 10.0), (SEEDANCE_2_FAST, "Seedance 2.0 Fast (EvoLink)", 6.0)] {
            manifest = manifest.model(
                Model::new(key, name, "video")
                    .capability("video.generate")
                    .params_schema(video::schema())
                    .price_hint(price)
                    .extra(json!({"capabilities": {"supportsFirstFrame": true, "supportsLastFrame": true,
                                                    "supportsRefImage": true, "supportsRefVideo": true, "supportsRefAudio": true}})),
            );
        }
        manifest
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        match (request.model.as_str(), request.capability.as_str()) {
            (GPT_IMAGE_2, "image.generate" | "image.inpaint") => submit_image(&request),
            (SEEDANCE_2 | SEEDANCE_2_FAST, "video.generate") => video::submit(&request),
            (model, capability) => Err(Error::invalid(format!("evolink/{model} does not do {capability}"))),
        }
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        let (id, is_video) = parse_handle(handle)?;
        let answer = call(authorized(Request::get(format!("{API_BASE}/tasks/{id}")))?)?;
        let poll_after_ms = if is_video { VIDEO_POLL_MS } else { IMAGE_POLL_MS };
        match answer["status"].as_str().unwrap_or_default() {
            "pending" | "processing" => Ok(PollOutcome::Running {
                progress: answer["progress"].as_f64().map(|p| (p / 100.0).clamp(0.0, 1.0) as f32),
                poll_after_ms,
            }),
            "completed" => {
                let content_type = if is_video { "video/mp4" } else { "image/png" };
                let outputs: Vec<Output> = answer["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|u| !u.is_empty())
                    .map(|u| Output::Url { url: u.into(), content_type: Some(content_type.into()) })
                    .collect();
                if outputs.is_empty() {
                    return Ok(vendor_kit::outcome::succeeded_without_output("EvoLink", id, "results"));
                }
                Ok(PollOutcome::Finished(Finished::new(outputs)))
            }
            "failed" => Ok(PollOutcome::Failed(errors::task_failure(&answer["error"]))),
            other => Err(Error::upstream(format!("EvoLink reported an unknown status `{other}`"))),
        }
    }

    // No `cancel`: EvoLink's task answers carry `task_info.can_cancel`, but its API manual
    // documents no endpoint that cancels a task, so the SDK's default ("cannot cancel
    // upstream") stands and easel cancels the job on its side only.
}

fn submit_image(request: &GenerationRequest) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(GPT_IMAGE_2));
    body.insert("prompt".into(), json!(request.prompt));
    body.insert("quality".into(), json!(request.param_str("quality", "medium")?));
    body.insert("size".into(), json!(request.param_str("size", "auto")?));
    body.insert("n".into(), json!(request.param_u64("n", 1)?));
    let of_kind = |kind: &str| -> Vec<&InputMedia> { request.inputs.iter().filter(|i| i.kind == kind).collect() };
    let mut images = of_kind("image");
    let mut masks = of_kind("mask");
    if request.capability == "image.inpaint" {
        // Seed 001 sends [original, mask] as two images; a marked mask works too.
        if masks.is_empty() && images.len() == 2 {
            masks.push(images.pop().expect("two images"));
        }
        if images.len() != 1 || masks.len() != 1 {
            return Err(Error::invalid("inpainting needs the original image and a mask"));
        }
    } else if !masks.is_empty() {
        return Err(Error::invalid("a mask is only taken by image.inpaint"));
    }
    // Check every input before uploading any of them.
    for input in images.iter().chain(&masks) {
        files::check_fetchable(input, "image_urls")?;
    }
    let image_urls = images.iter().map(|i| files::url_for(i)).collect::<Result<Vec<_>>>()?;
    if let Some(mask) = masks.first() {
        body.insert("mask_url".into(), json!(files::url_for(mask)?));
    }
    if !image_urls.is_empty() {
        body.insert("image_urls".into(), json!(image_urls));
    }
    create_task("images/generations", Value::Object(body), false)
}

/// Posts a task to `path` under the API base and answers the pending handle.
fn create_task(path: &str, body: Value, is_video: bool) -> Result<Submission> {
    let answer = call(authorized(Request::post(format!("{API_BASE}/{path}")))?.json(&body))?;
    let id = answer["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::upstream(format!("EvoLink answered without a task id: {answer}")))?;
    let (prefix, poll_after_ms) =
        if is_video { (VIDEO_HANDLE_PREFIX, VIDEO_POLL_MS) } else { (HANDLE_PREFIX, IMAGE_POLL_MS) };
    Ok(Submission::pending(vendor_kit::handle::encode(prefix, &[id]), poll_after_ms))
}

/// The task id in a handle, and whether it is a video task.
fn parse_handle(handle: &str) -> Result<(&str, bool)> {
    // A task id has no `:`, so a handle the video prefix reads is never an image task's.
    let (fields, is_video) = match vendor_kit::handle::decode(VIDEO_HANDLE_PREFIX, handle, 1) {
        Ok(fields) => (fields, true),
        Err(_) => (vendor_kit::handle::decode(HANDLE_PREFIX, handle, 1)?, false),
    };
    Ok((vendor_kit::handle::task_id(fields[0])?, is_video))
}

fn authorized(request: Request) -> Result<Request> {
    let key = easel_sdk::require_secret(API_KEY_SECRET)?;
    Ok(request.bearer(&key).timeout(Duration::from_secs(60)))
}

fn call(request: Request) -> Result<Value> {
    let response = request.send()?;
    if !response.is_success() {
        return Err(errors::from_response(response.status(), response.header("retry-after"), response.body()));
    }
    response.json()
}
