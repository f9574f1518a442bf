//! The task body ModelArk documents (`model`, `content[]` with roles, and the top-level
//! `ratio`, `duration`, `resolution`, …), and the authorized, error-mapped call.

use crate::errors;
use base64::Engine as _;
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{Error, GenerationRequest, InputMedia, Result};
use std::time::Duration;

/// The JSON body of `POST /contents/generations/tasks`.
pub fn task_body(request: &GenerationRequest) -> Result<Value> {
    let mut content = Vec::new();
    if !request.prompt.is_empty() {
        content.push(json!({"type": "text", "text": request.prompt}));
    }
    for input in &request.inputs {
        content.push(content_item(input)?);
    }
    if content.is_empty() {
        return Err(Error::invalid("Seedance needs a prompt or at least one input"));
    }
    check_roles(&request.inputs)?;
    // Seed 002's defaults differ in reference mode (any input that is not a frame).
    let frame = |input: &InputMedia| matches!(input.role.as_deref(), Some("first_frame" | "last_frame"));
    let (resolution, duration) = match request.inputs.iter().any(|input| !frame(input)) {
        true => ("1080p", 12),
        false => ("720p", 5),
    };

    let mut body = Map::new();
    body.insert("model".into(), json!(crate::models::SEEDANCE_2_0));
    body.insert("content".into(), Value::Array(content));
    body.insert("ratio".into(), json!(request.param_str("ratio", "adaptive")?));
    body.insert("duration".into(), json!(request.param_u64("duration", duration)?));
    body.insert("resolution".into(), json!(request.param_str("resolution", resolution)?));
    body.insert("generate_audio".into(), json!(request.param_bool("generate_audio", true)?));
    body.insert("watermark".into(), json!(request.param_bool("watermark", false)?));
    for name in ["seed", "return_last_frame"] {
        if let Some(value) = request.param_value(name) {
            body.insert(name.into(), value.clone());
        }
    }
    Ok(Value::Object(body))
}

/// Frames and references do not mix, and each frame appears at most once.
fn check_roles(inputs: &[InputMedia]) -> Result<()> {
    let count = |role: &str| inputs.iter().filter(|i| i.role.as_deref() == Some(role)).count();
    let frames = count("first_frame") + count("last_frame");
    if count("first_frame") > 1 || count("last_frame") > 1 {
        return Err(Error::invalid("give at most one first_frame and one last_frame"));
    }
    if count("last_frame") == 1 && count("first_frame") == 0 {
        return Err(Error::invalid("a last_frame needs a first_frame"));
    }
    if frames > 0 && inputs.len() > frames {
        return Err(Error::invalid("first/last frames cannot be mixed with reference inputs"));
    }
    Ok(())
}

/// One input as a `content` item: image, video or audio with its ModelArk role.
fn content_item(input: &InputMedia) -> Result<Value> {
    let (kind, default_role) = match input.kind.as_str() {
        "image" => ("image_url", "reference_image"),
        "video" => ("video_url", "reference_video"),
        "audio" => ("audio_url", "reference_audio"),
        other => return Err(Error::invalid(format!("Seedance does not take `{other}` inputs"))),
    };
    let role = match (input.kind.as_str(), input.role.as_deref()) {
        ("image", Some("first_frame")) => "first_frame",
        ("image", Some("last_frame")) => "last_frame",
        // No role on a lone image would read as a first frame elsewhere; ModelArk's
        // multimodal reference mode is the general case, so plain inputs are references.
        (_, None | Some("reference")) => default_role,
        (kind, Some(role)) => return Err(Error::invalid(format!("a {kind} input cannot be a {role}"))),
    };
    let url = match input.url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => url.to_string(),
        // ModelArk takes base64 images inline; videos and audio must be fetchable URLs.
        None if input.kind == "image" => {
            let data = input.data.as_deref().ok_or_else(|| Error::invalid("an input image has neither a URL nor bytes"))?;
            let content_type = input.content_type.as_deref().unwrap_or("image/png");
            format!("data:{content_type};base64,{}", base64::engine::general_purpose::STANDARD.encode(data))
        }
        None => return Err(Error::invalid(format!("ModelArk needs a public URL for {} inputs", input.kind))),
    };
    Ok(json!({"type": kind, kind: {"url": url}, "role": role}))
}

/// Adds the API key (`ARK_API_KEY`, else `BYTEPLUS_API_KEY`) and a timeout.
pub fn authorized(request: Request) -> Result<Request> {
    let key = easel_sdk::secret(crate::ARK_API_KEY)
        .filter(|k| !k.is_empty())
        .or_else(|| easel_sdk::secret(crate::BYTEPLUS_API_KEY).filter(|k| !k.is_empty()))
        .ok_or_else(|| Error::Unauthorized("the operator has set neither ARK_API_KEY nor BYTEPLUS_API_KEY".into()))?;
    Ok(request.bearer(&key).timeout(Duration::from_secs(60)))
}

/// Sends and reads the JSON answer; non-2xx answers become typed errors; an empty body
/// (DELETE answers nothing) reads as `{}`.
pub fn call(request: Request) -> Result<Value> {
    let response = request.send()?;
    if !response.is_success() {
        return Err(errors::from_response(response.status(), response.header("retry-after"), response.body()));
    }
    if response.body().iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    response.json()
}
