//! Hailuo video: `POST /video_generation` answers a `task_id`; `GET
//! /query/video_generation?task_id=` reports `status` and, on `Success`, a `file_id`,
//! which `GET /files/retrieve?file_id=` turns into a download URL.

use crate::api::{authorized, call, call_keeping_base_resp};
use crate::{REGION_SECRET, api_base, models};
use base64::Engine as _;
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, InputMedia, Output, PollOutcome, Result, Submission};
use vendor_kit::region::Region;

/// The vendor part of handle prefixes; `vendor_kit::handle` adds `-cn` for mainland tasks.
const VENDOR: &str = "minimax";
const HANDLE_VERSION: &str = "v1";
/// Hailuo takes a few minutes.
const POLL_AFTER_MS: u64 = 15_000;

/// MiniMax takes a public URL or a base64 data URL for frames.
fn image_field(input: &InputMedia) -> Result<String> {
    if let Some(url) = input.url.as_deref().filter(|u| !u.is_empty()) {
        return Ok(url.to_string());
    }
    let data = input.data.as_deref().ok_or_else(|| Error::invalid("an input image has neither a URL nor bytes"))?;
    let content_type = input.content_type.as_deref().unwrap_or("image/png");
    Ok(format!("data:{content_type};base64,{}", base64::engine::general_purpose::STANDARD.encode(data)))
}

/// Submits a video task.
pub fn submit(request: &GenerationRequest) -> Result<Submission> {
    let mut body = Map::new();
    body.insert("model".into(), json!(models::VIDEO_MODEL));
    if !request.prompt.is_empty() {
        body.insert("prompt".into(), json!(request.prompt));
    }
    body.insert("duration".into(), json!(request.param_u64("duration", 6)?));
    body.insert("resolution".into(), json!(request.param_str("resolution", "768P")?));
    body.insert("prompt_optimizer".into(), json!(request.param_bool("prompt_optimizer", true)?));
    let role = |r: Option<&str>| request.inputs.iter().find(|i| i.kind == "image" && i.role.as_deref() == r);
    if request.inputs.iter().any(|i| i.kind != "image" || i.role.as_deref() == Some("reference")) {
        return Err(Error::invalid("Hailuo takes a first frame and an optional last frame"));
    }
    let first = role(Some("first_frame")).or_else(|| role(None));
    match (first, role(Some("last_frame"))) {
        (Some(first), last) => {
            body.insert("first_frame_image".into(), json!(image_field(first)?));
            if let Some(last) = last {
                body.insert("last_frame_image".into(), json!(image_field(last)?));
            }
        }
        (None, Some(_)) => return Err(Error::invalid("a last_frame needs a first_frame")),
        (None, None) if request.prompt.is_empty() => return Err(Error::invalid("Missing required parameter: prompt")),
        (None, None) => {}
    }
    let region = Region::configured(REGION_SECRET)?;
    let url = format!("{}/video_generation", api_base(region));
    let answer = call(authorized(Request::post(url))?.json(&Value::Object(body)))?;
    let task_id = answer["task_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::upstream(format!("MiniMax answered without a task_id: {answer}")))?;
    let handle = vendor_kit::handle::encode_regional(region, VENDOR, HANDLE_VERSION, &[task_id]);
    Ok(Submission::pending(handle, POLL_AFTER_MS))
}

/// Polls a video task, on the platform its handle (`minimax[-cn]:v1:<task id>`) names; on
/// success fetches the file's download URL there too. A success without a `file_id`, or a
/// file without a `download_url`, fails the task; the file fetch failing is an outage like
/// a failed query, polled again.
pub fn poll(handle: &str) -> Result<PollOutcome> {
    let (region, fields) = vendor_kit::handle::decode_regional(VENDOR, HANDLE_VERSION, handle, 1)?;
    let task_id = vendor_kit::handle::task_id(fields[0])?;
    let base = api_base(region);
    let query = Request::get(format!("{base}/query/video_generation?task_id={task_id}"));
    let answer = call_keeping_base_resp(authorized(query)?)?;
    let status = answer["status"].as_str().unwrap_or_default();
    if status != "Fail"
        && let Some(error) = crate::errors::from_base_resp(&answer, None)
    {
        return Err(error);
    }
    match status {
        "Preparing" | "Queueing" | "Processing" => Ok(PollOutcome::Running { progress: None, poll_after_ms: POLL_AFTER_MS }),
        "Success" => {
            let file_id = match &answer["file_id"] {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Ok(vendor_kit::outcome::succeeded_without_output("MiniMax", task_id, "file_id")),
            };
            let file = call(authorized(Request::get(format!("{base}/files/retrieve?file_id={file_id}")))?)?;
            let Some(url) = file["file"]["download_url"].as_str().filter(|url| !url.is_empty()) else {
                let missing = format!("file.download_url for its file {file_id}");
                return Ok(vendor_kit::outcome::succeeded_without_output("MiniMax", task_id, &missing));
            };
            let mut done = Finished::new(vec![Output::Url { url: url.to_string(), content_type: Some("video/mp4".into()) }]);
            if let (Some(w), Some(h)) = (answer["video_width"].as_u64(), answer["video_height"].as_u64()) {
                done = done.usage(json!({"video_width": w, "video_height": h}));
            }
            Ok(PollOutcome::Finished(done))
        }
        // A failed task reports why in its own base_resp (e.g. 1026 for moderation).
        "Fail" => Ok(PollOutcome::Failed(
            crate::errors::from_base_resp(&answer, None).unwrap_or_else(|| Error::upstream("the MiniMax video task failed")),
        )),
        other => Err(Error::upstream(format!("MiniMax reported an unknown task status `{other}`"))),
    }
}
