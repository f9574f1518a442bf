//! easel provider plugin for Jimeng (即梦) on Volcengine's visual API
//! (`https://visual.volcengineapi.com`, API version 2022-08-31): seed 001's image engine
//! "即梦" for `image.generate` (with `scale`), `image.inpaint`, `image.upscale` and
//! `video.generate`.
//!
//! Every model is an asynchronous task: `Action=CVSync2AsyncSubmitTask` with the model's
//! `req_key`, then `Action=CVSync2AsyncGetResult` until `done`. Requests are signed with
//! Volcengine's HMAC-SHA256 scheme ([`sign`]). The API has no cancel action.

mod errors;
mod models;
mod sign;

#[cfg(test)]
mod tests;

use base64::Engine as _;
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, InputMedia, Manifest, Output, PollOutcome, Provider, Result, Submission};
use std::time::Duration;

/// The visual API's host.
pub const API_HOST: &str = "visual.volcengineapi.com";
/// Access key id (Volcengine IAM).
pub const ACCESS_KEY: &str = "JIMENG_ACCESS_KEY";
/// Secret access key.
pub const SECRET_KEY: &str = "JIMENG_SECRET_KEY";
/// Volcengine SDKs' own name for the access key, read when `JIMENG_ACCESS_KEY` is unset.
pub const VOLC_ACCESS_KEY: &str = "VOLC_ACCESSKEY";
/// Volcengine SDKs' own name for the secret key.
pub const VOLC_SECRET_KEY: &str = "VOLC_SECRETKEY";

const SUBMIT_QUERY: &str = "Action=CVSync2AsyncSubmitTask&Version=2022-08-31";
const RESULT_QUERY: &str = "Action=CVSync2AsyncGetResult&Version=2022-08-31";
const HANDLE_PREFIX: &str = "jimeng:v1";

/// The provider; it keeps no state.
#[derive(Default)]
pub struct Jimeng;

easel_sdk::export!(Jimeng);

impl Provider for Jimeng {
    fn manifest(&self) -> Manifest {
        models::manifest()
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        let body = match (request.capability.as_str(), request.model.as_str()) {
            ("image.generate", models::T2I) => generate_body(&request)?,
            ("image.inpaint", models::INPAINT) => inpaint_body(&request)?,
            ("image.upscale", models::UPSCALE) => upscale_body(&request)?,
            ("video.generate", models::VIDEO) => video_body(&request)?,
            (capability, model) => return Err(Error::invalid(format!("jimeng/{model} does not do {capability}"))),
        };
        let data = call(SUBMIT_QUERY, &body)?;
        let task_id = data["task_id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::upstream(format!("Jimeng answered without a task_id: {data}")))?;
        let handle = vendor_kit::handle::encode(HANDLE_PREFIX, &[&request.model, task_id]);
        Ok(Submission::pending(handle, poll_after(&request.model)))
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        // The task id goes into a JSON body, not a URL, so it needs no check of its own.
        let fields = vendor_kit::handle::decode(HANDLE_PREFIX, handle, 2)?;
        let (req_key, task_id) = (fields[0], fields[1]);
        if ![models::T2I, models::INPAINT, models::UPSCALE, models::VIDEO].contains(&req_key) {
            return Err(Error::invalid(format!("unknown req_key `{req_key}` in handle")));
        }
        let body = json!({"req_key": req_key, "task_id": task_id, "req_json": r#"{"return_url":true}"#});
        let data = call(RESULT_QUERY, &body)?;
        match data["status"].as_str().unwrap_or_default() {
            "in_queue" | "generating" => Ok(PollOutcome::Running { progress: None, poll_after_ms: poll_after(req_key) }),
            "done" => Ok(finished(req_key, task_id, &data)),
            "not_found" | "expired" => Ok(PollOutcome::Failed(Error::upstream(format!("Jimeng lost the task ({})", data["status"])))),
            other => Err(Error::upstream(format!("Jimeng reported an unknown status `{other}`"))),
        }
    }
}

fn poll_after(req_key: &str) -> u64 {
    if req_key == models::VIDEO { 15_000 } else { 3_000 }
}

/// Seed 001's 0–100 `scale` as Jimeng's 0–1.
fn unit_scale(request: &GenerationRequest) -> Result<f64> {
    Ok(request.param_f64("scale", 50.0)? / 100.0)
}

/// Input images as `image_urls` when all have public URLs, else as `binary_data_base64`.
fn add_images(body: &mut Map<String, Value>, inputs: &[&InputMedia]) -> Result<()> {
    if inputs.is_empty() {
        return Ok(());
    }
    if inputs.iter().all(|i| i.url.as_deref().is_some_and(|u| !u.is_empty())) {
        body.insert("image_urls".into(), json!(inputs.iter().map(|i| i.url.clone()).collect::<Vec<_>>()));
        return Ok(());
    }
    let encoded: Option<Vec<String>> =
        inputs.iter().map(|i| i.data.as_deref().map(|d| base64::engine::general_purpose::STANDARD.encode(d))).collect();
    let encoded = encoded.ok_or_else(|| Error::invalid("Jimeng takes either public URLs for all inputs or bytes for all"))?;
    body.insert("binary_data_base64".into(), json!(encoded));
    Ok(())
}

fn needs_prompt(request: &GenerationRequest) -> Result<()> {
    if request.prompt.trim().is_empty() { Err(Error::invalid("Missing required parameter: prompt")) } else { Ok(()) }
}

fn generate_body(request: &GenerationRequest) -> Result<Value> {
    needs_prompt(request)?;
    let mut body = Map::new();
    body.insert("req_key".into(), json!(models::T2I));
    body.insert("prompt".into(), json!(request.prompt));
    body.insert("width".into(), json!(request.param_u64("width", 2048)?));
    body.insert("height".into(), json!(request.param_u64("height", 2048)?));
    body.insert("scale".into(), json!(unit_scale(request)?));
    body.insert("force_single".into(), json!(request.param_bool("force_single", true)?));
    let images: Vec<&InputMedia> = request.inputs.iter().filter(|i| i.kind == "image").collect();
    add_images(&mut body, &images)?;
    Ok(Value::Object(body))
}

/// The inpainting page's body: `req_key`, `prompt` (`删除` erases the masked area), `seed`
/// (its default is 101; -1 is random) and exactly two images, the original and a
/// single-channel mask (0 keeps, 255 repaints). The page documents no strength knob, so
/// seed 001's `scale` is not sent here.
fn inpaint_body(request: &GenerationRequest) -> Result<Value> {
    needs_prompt(request)?;
    // Seed 001 passes [original, mask] as two images; a host may also mark the mask.
    let source = request.inputs.iter().find(|i| i.kind == "image");
    let mask = request.inputs.iter().find(|i| i.kind == "mask").or_else(|| request.inputs.iter().filter(|i| i.kind == "image").nth(1));
    let (Some(source), Some(mask)) = (source, mask) else {
        return Err(Error::invalid("inpainting needs the original image and a mask"));
    };
    let mut body = Map::new();
    body.insert("req_key".into(), json!(models::INPAINT));
    body.insert("prompt".into(), json!(request.prompt));
    body.insert("seed".into(), json!(request.param_value("seed").and_then(Value::as_i64).unwrap_or(models::INPAINT_SEED)));
    add_images(&mut body, &[source, mask])?;
    Ok(Value::Object(body))
}

/// The smart-upscaling body: `req_key`, one image, `resolution` `4k`/`8k` and `scale`, an
/// integer 0–100 for how much detail may be invented; no prompt.
fn upscale_body(request: &GenerationRequest) -> Result<Value> {
    let source = request.inputs.iter().find(|i| i.kind == "image").ok_or_else(|| Error::invalid("upscaling needs an input image"))?;
    let mut body = Map::new();
    body.insert("req_key".into(), json!(models::UPSCALE));
    body.insert("resolution".into(), json!(request.param_str("resolution", "4k")?));
    body.insert("scale".into(), json!(request.param_f64("scale", 50.0)?.round() as u64));
    add_images(&mut body, &[source])?;
    Ok(Value::Object(body))
}

fn video_body(request: &GenerationRequest) -> Result<Value> {
    needs_prompt(request)?;
    let mut body = Map::new();
    body.insert("req_key".into(), json!(models::VIDEO));
    body.insert("prompt".into(), json!(request.prompt));
    // 24 fps plus one frame: 121 frames are 5 s, 241 are 10 s.
    let frames = if request.param_u64("duration", 5)? <= 7 { 121 } else { 241 };
    body.insert("frames".into(), json!(frames));
    body.insert("seed".into(), json!(-1));
    let first = request.inputs.iter().find(|i| i.kind == "image" && matches!(i.role.as_deref(), None | Some("first_frame")));
    match first {
        Some(image) => add_images(&mut body, &[image])?,
        None => {
            let ratio = request.param_str("ratio", "adaptive")?;
            // Without an image there is nothing to adapt to; Jimeng's default is 16:9.
            body.insert("aspect_ratio".into(), json!(if ratio == "adaptive" { "16:9" } else { ratio }));
        }
    }
    Ok(Value::Object(body))
}

/// A task Jimeng calls done: its outputs, or a failure when it gave none.
fn finished(req_key: &str, task_id: &str, data: &Value) -> PollOutcome {
    let outputs: Vec<Output> = if req_key == models::VIDEO {
        data["video_url"].as_str().filter(|u| !u.is_empty()).map(|u| Output::Url { url: u.into(), content_type: Some("video/mp4".into()) }).into_iter().collect()
    } else {
        data["image_urls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(|u| Output::Url { url: u.into(), content_type: Some("image/png".into()) })
            .collect()
    };
    if outputs.is_empty() {
        let missing = if req_key == models::VIDEO { "video_url" } else { "image_urls" };
        return vendor_kit::outcome::succeeded_without_output("Jimeng", task_id, missing);
    }
    PollOutcome::Finished(Finished::new(outputs))
}

fn credentials() -> Result<(String, String)> {
    let read = |primary: &str, fallback: &str| {
        easel_sdk::secret(primary).filter(|s| !s.is_empty()).or_else(|| easel_sdk::secret(fallback).filter(|s| !s.is_empty()))
    };
    match (read(ACCESS_KEY, VOLC_ACCESS_KEY), read(SECRET_KEY, VOLC_SECRET_KEY)) {
        (Some(ak), Some(sk)) => Ok((ak, sk)),
        _ => Err(Error::Unauthorized("the operator has not set JIMENG_ACCESS_KEY and JIMENG_SECRET_KEY".into())),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Signs and sends one action; returns the answer's `data`.
fn call(query: &str, body: &Value) -> Result<Value> {
    let (access_key, secret_key) = credentials()?;
    let bytes = easel_sdk::serde_json::to_vec(body)?;
    let creds = sign::Credentials { access_key: &access_key, secret_key: &secret_key };
    let mut request = Request::post(format!("https://{API_HOST}/?{query}"))
        .header("Content-Type", "application/json")
        .body(bytes.clone())
        .timeout(Duration::from_secs(60));
    for (name, value) in sign::headers(&creds, API_HOST, query, &bytes, now()) {
        request = request.header(name, value);
    }
    let response = request.send()?;
    if let Some(error) = errors::from_answer(response.status(), response.header("retry-after"), response.body()) {
        return Err(error);
    }
    let answer: Value = response.json()?;
    Ok(answer["data"].clone())
}
