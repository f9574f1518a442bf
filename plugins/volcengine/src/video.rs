//! Seedance video through Ark's asynchronous content-generation tasks.
//!
//! The request is `{model, content: [...], resolution, ratio, duration, …}` where
//! `content` holds the prompt as a `text` item and each input as an `image_url`,
//! `video_url` or `audio_url` item with a `role`: `first_frame`/`last_frame` for frames,
//! `reference_image`/`reference_video`/`reference_audio` for references (Seedance 2.0).

use crate::client;
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, Output, PollOutcome, Result, Submission};
use vendor_kit::media::{self, Reference};

/// Seedance 2.0 and its fast variant.
pub const SEEDANCE_2: [&str; 2] = ["doubao-seedance-2-0-260128", "doubao-seedance-2-0-fast-260128"];
/// Seedance 1.5 pro.
pub const SEEDANCE_1_5_PRO: &str = "doubao-seedance-1-5-pro-251215";
const TASKS: &str = "/contents/generations/tasks";
const POLL_AFTER_MS: u64 = 10_000;

/// Starts a Seedance task.
pub fn submit(request: &GenerationRequest) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let is_v2 = SEEDANCE_2.contains(&request.model.as_str());
    let (content, uses_references) = content(request, is_v2)?;
    // Seed 002 gives Seedance 2.0 other defaults in reference mode (1080p, 12 s) than for
    // text and frames (720p, 5 s); Seedance 1.5 pro defaults to 1080p and 12 s.
    let (resolution, duration) = match (is_v2, uses_references) {
        (true, false) => ("720p", 5),
        _ => ("1080p", 12),
    };
    let mut body = json!({
        "model": request.model,
        "content": content,
        "resolution": request.param_str("resolution", resolution)?,
        "duration": request.param_u64("duration", duration)?,
    });
    match request.param_value("ratio") {
        Some(ratio) => body["ratio"] = ratio.clone(),
        // 2.0's documented default is "adaptive"; 1.5 pro leaves the ratio to the model.
        None if is_v2 => body["ratio"] = json!("adaptive"),
        None => {}
    }
    for name in ["seed", "watermark", "generate_audio", "camera_fixed", "return_last_frame"] {
        if let Some(value) = request.param_value(name) {
            body[name] = value.clone();
        }
    }
    let answer = client::send(Request::post(client::ark(TASKS)).json(&body), client::QUICK)?;
    let id = answer
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::upstream(format!("Ark accepted the task but sent no id: {answer}")))?;
    Ok(Submission::pending(client::handle(id), POLL_AFTER_MS))
}

/// The `content` list, and whether it uses references (Seedance 2.0's reference mode).
fn content(request: &GenerationRequest, is_v2: bool) -> Result<(Vec<Value>, bool)> {
    let mut items = vec![json!({"type": "text", "text": request.prompt})];
    let mut plain_frames = 0;
    let mut uses_references = false;
    for input in &request.inputs {
        let role = match (input.kind.as_str(), input.role.as_deref()) {
            ("image", Some("first_frame")) => "first_frame",
            ("image", Some("last_frame")) => "last_frame",
            ("image", Some("reference")) => "reference_image",
            // Plain images are frames in order: first, then last.
            ("image", None) => {
                plain_frames += 1;
                match plain_frames {
                    1 => "first_frame",
                    2 => "last_frame",
                    _ => return Err(Error::invalid("give at most two frame images (first and last), or mark references")),
                }
            }
            ("video", _) => "reference_video",
            ("audio", _) => "reference_audio",
            (kind, role) => return Err(Error::invalid(format!("Seedance takes no {kind} input with role {role:?}"))),
        };
        let is_reference = role.starts_with("reference");
        if is_reference && !is_v2 && role != "reference_image" {
            return Err(Error::invalid(format!("{} takes no video or audio references; Seedance 2.0 does", request.model)));
        }
        uses_references |= is_reference;
        let (field, accepts) = match input.kind.as_str() {
            "image" => ("image_url", Reference::UrlOrDataUrl),
            "video" => ("video_url", Reference::UrlOnly),
            _ => ("audio_url", Reference::UrlOnly),
        };
        let url = media::reference(input, accepts, field)?;
        items.push(json!({"type": field, field: {"url": url}, "role": role}));
    }
    Ok((items, uses_references))
}

/// Reads a task: `queued`/`running` → running; `succeeded` → `content.video_url`, then
/// `content.last_frame_url` when the client asked for it (`return_last_frame`; a by-product the
/// host may leave out), or failed when there is no `video_url`; `failed` → the mapped `error`;
/// `cancelled`/`expired` → failed.
pub fn poll(handle: &str) -> Result<PollOutcome> {
    let id = client::task_id(handle)?;
    let answer = client::send(Request::get(client::ark(&format!("{TASKS}/{id}"))), client::QUICK)?;
    let status = answer.get("status").and_then(Value::as_str).unwrap_or("");
    Ok(match status {
        "queued" | "running" => PollOutcome::Running { progress: None, poll_after_ms: POLL_AFTER_MS },
        "succeeded" => {
            let Some(url) = answer.pointer("/content/video_url").and_then(Value::as_str).filter(|url| !url.is_empty()) else {
                return Ok(vendor_kit::outcome::succeeded_without_output("Ark", &id, "content.video_url"));
            };
            let mut outputs = vec![Output::Url { url: url.to_string(), content_type: Some("video/mp4".into()) }];
            if let Some(frame) = answer.pointer("/content/last_frame_url").and_then(Value::as_str) {
                outputs.push(Output::Url { url: frame.to_string(), content_type: Some("image/png".into()) });
            }
            let mut done = Finished::new(outputs);
            if let Some(usage) = answer.get("usage").filter(|u| u.is_object()) {
                done = done.usage(usage.clone());
            }
            PollOutcome::Finished(done)
        }
        "failed" => PollOutcome::Failed(crate::errors::from_failed_task(answer.get("error").unwrap_or(&Value::Null))),
        "cancelled" => PollOutcome::Failed(Error::internal("the task was cancelled at Ark")),
        "expired" => PollOutcome::Failed(Error::upstream("the task expired at Ark before it ran")),
        other => return Err(Error::upstream(format!("Ark sent an unknown task status `{other}`"))),
    })
}

/// `DELETE /contents/generations/tasks/{id}`: Ark cancels a task that is still queued
/// (and refuses one already running).
pub fn cancel(handle: &str) -> Result<()> {
    let id = client::task_id(handle)?;
    client::send(Request::delete(client::ark(&format!("{TASKS}/{id}"))), client::QUICK).map(|_| ())
}
