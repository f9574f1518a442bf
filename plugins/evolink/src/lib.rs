//! easel provider plugin for EvoLink (`https://api.evolink.ai`), seed 001's "EvoLink"
//! image engine: `gpt-image-2` for `image.generate` and `image.inpaint`, with seed 001's
//! `quality`. EvoLink runs every image as a task: `POST /v1/images/generations` answers a
//! task `id`, `GET /v1/tasks/{id}` reports `pending`/`processing`/`completed`/`failed` and
//! the `results` URLs.

mod errors;

#[cfg(test)]
mod tests;

use easel_sdk::http::Request;
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, Manifest, Model, Output, PollOutcome, Provider, Result, Submission};
use std::time::Duration;

/// EvoLink's API base for image, video and audio tasks.
pub const API_BASE: &str = "https://api.evolink.ai/v1";
/// The API key (bearer).
pub const API_KEY_SECRET: &str = "EVOLINK_API_KEY";
/// The model, as EvoLink names it.
pub const GPT_IMAGE_2: &str = "gpt-image-2";
const HANDLE_PREFIX: &str = "evolink:v1:";
const POLL_AFTER_MS: u64 = 5_000;
/// EvoLink's aspect-ratio sizes for gpt-image-2.
const SIZES: [&str; 9] = ["auto", "1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9"];

/// The provider; it keeps no state.
#[derive(Default)]
pub struct EvoLink;

easel_sdk::export!(EvoLink);

fn schema() -> Value {
    json!({"type": "object", "properties": {
        "quality": {"type": "string", "enum": ["low", "medium", "high"], "default": "medium",
                    "description": "Seed 001: EvoLink's generation quality."},
        "size": {"type": "string", "enum": SIZES, "default": "auto"},
        "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1}
    }, "additionalProperties": true})
}

impl Provider for EvoLink {
    fn manifest(&self) -> Manifest {
        Manifest::new("evolink", env!("CARGO_PKG_VERSION"))
            .allow_host("api.evolink.ai")
            .secret(API_KEY_SECRET)
            .model(
                Model::new(GPT_IMAGE_2, "GPT Image 2 (EvoLink)", "image")
                    .capability("image.generate")
                    .capability("image.inpaint")
                    .params_schema(schema())
                    .price_hint(3.0)
                    .extra(json!({"capabilities": {"supportsRefImage": true, "supportsInpaint": true}})),
            )
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        if request.model != GPT_IMAGE_2 || !matches!(request.capability.as_str(), "image.generate" | "image.inpaint") {
            return Err(Error::invalid(format!("evolink/{} does not do {}", request.model, request.capability)));
        }
        if request.prompt.trim().is_empty() {
            return Err(Error::invalid("Missing required parameter: prompt"));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(GPT_IMAGE_2));
        body.insert("prompt".into(), json!(request.prompt));
        body.insert("quality".into(), json!(request.param_str("quality", "medium")?));
        body.insert("size".into(), json!(request.param_str("size", "auto")?));
        body.insert("n".into(), json!(request.param_u64("n", 1)?));
        // EvoLink fetches inputs itself, so every input needs a public URL.
        let urls = |kind: &str| -> Result<Vec<String>> {
            request
                .inputs
                .iter()
                .filter(|i| i.kind == kind)
                .map(|i| i.url.clone().filter(|u| !u.is_empty()).ok_or_else(|| Error::invalid("EvoLink needs public URLs for input images")))
                .collect()
        };
        let mut images = urls("image")?;
        let mut masks = urls("mask")?;
        if request.capability == "image.inpaint" {
            // Seed 001 sends [original, mask] as two images; a marked mask works too.
            if masks.is_empty() && images.len() == 2 {
                masks.push(images.pop().expect("two images"));
            }
            if images.len() != 1 || masks.len() != 1 {
                return Err(Error::invalid("inpainting needs the original image and a mask"));
            }
            body.insert("mask_url".into(), json!(masks[0]));
        }
        if !images.is_empty() {
            body.insert("image_urls".into(), json!(images));
        }
        let answer = call(authorized(Request::post(format!("{API_BASE}/images/generations")))?.json(&Value::Object(body)))?;
        let id = answer["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::upstream(format!("EvoLink answered without a task id: {answer}")))?;
        Ok(Submission::pending(format!("{HANDLE_PREFIX}{id}"), POLL_AFTER_MS))
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        let id = handle
            .strip_prefix(HANDLE_PREFIX)
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .ok_or_else(|| Error::invalid(format!("not an EvoLink task handle: {handle}")))?;
        let answer = call(authorized(Request::get(format!("{API_BASE}/tasks/{id}")))?)?;
        match answer["status"].as_str().unwrap_or_default() {
            "pending" | "processing" => Ok(PollOutcome::Running {
                progress: answer["progress"].as_f64().map(|p| (p / 100.0).clamp(0.0, 1.0) as f32),
                poll_after_ms: POLL_AFTER_MS,
            }),
            "completed" => {
                let outputs: Vec<Output> = answer["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|u| Output::Url { url: u.into(), content_type: Some("image/png".into()) })
                    .collect();
                if outputs.is_empty() {
                    return Err(Error::upstream(format!("EvoLink reported completion without results: {answer}")));
                }
                Ok(PollOutcome::Finished(Finished::new(outputs)))
            }
            "failed" => Ok(PollOutcome::Failed(errors::task_failure(&answer["error"]))),
            other => Err(Error::upstream(format!("EvoLink reported an unknown status `{other}`"))),
        }
    }
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
