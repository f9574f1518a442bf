//! Which Kling endpoint serves a request, and the body it gets. The route is also part of
//! the pending handle, because Kling polls each task kind under its own path.

use crate::models::{IMAGE_MODELS, VIDEO_MODELS};
use base64::Engine as _;
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{Error, GenerationRequest, InputMedia, Result};

/// Kling's task kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/v1/videos/text2video`
    TextToVideo,
    /// `/v1/videos/image2video`
    ImageToVideo,
    /// `/v1/images/generations`
    Image,
}

impl Route {
    /// The path tasks of this kind are created under (and polled below).
    pub fn path(self) -> &'static str {
        match self {
            Route::TextToVideo => "/v1/videos/text2video",
            Route::ImageToVideo => "/v1/videos/image2video",
            Route::Image => "/v1/images/generations",
        }
    }

    /// The short name kept in handles.
    pub fn tag(self) -> &'static str {
        match self {
            Route::TextToVideo => "t2v",
            Route::ImageToVideo => "i2v",
            Route::Image => "img",
        }
    }

    /// The inverse of [`Route::tag`].
    pub fn from_tag(tag: &str) -> Option<Self> {
        [Route::TextToVideo, Route::ImageToVideo, Route::Image].into_iter().find(|r| r.tag() == tag)
    }
}

/// Kling takes a public URL, or the bare base64 of the file (no `data:` prefix).
fn image_field(input: &InputMedia) -> Result<String> {
    if let Some(url) = input.url.as_deref().filter(|u| !u.is_empty()) {
        return Ok(url.to_string());
    }
    let data = input.data.as_deref().ok_or_else(|| Error::invalid("an input image has neither a URL nor bytes"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(data))
}

fn with_role<'a>(inputs: &'a [InputMedia], role: Option<&str>) -> Option<&'a InputMedia> {
    inputs.iter().find(|i| i.kind == "image" && i.role.as_deref() == role)
}

/// The route and JSON body for a request.
pub fn plan(request: &GenerationRequest) -> Result<(Route, Value)> {
    if request.inputs.iter().any(|i| i.kind != "image") {
        return Err(Error::invalid("Kling takes only image inputs"));
    }
    let mut body = Map::new();
    body.insert("model_name".into(), json!(request.model));
    if !request.prompt.is_empty() {
        body.insert("prompt".into(), json!(request.prompt));
    }
    let negative = request.param_str("negative_prompt", "")?;
    if !negative.is_empty() {
        body.insert("negative_prompt".into(), json!(negative));
    }
    let is_video = VIDEO_MODELS.iter().any(|(k, _)| *k == request.model);
    let is_image = IMAGE_MODELS.iter().any(|(k, _)| *k == request.model);
    let route = match (request.capability.as_str(), is_video, is_image) {
        ("video.generate", true, _) => video(request, &mut body)?,
        ("image.generate", _, true) => image(request, &mut body)?,
        (capability, _, _) => return Err(Error::invalid(format!("kling/{} does not do {capability}", request.model))),
    };
    Ok((route, Value::Object(body)))
}

fn video(request: &GenerationRequest, body: &mut Map<String, Value>) -> Result<Route> {
    // Kling sends durations as strings ("5", "10").
    body.insert("duration".into(), json!(request.param_u64("duration", 5)?.to_string()));
    let mode = if request.param_str("resolution", "720p")? == "1080p" { "pro" } else { "std" };
    body.insert("mode".into(), json!(mode));
    if request.param_value("cfg_scale").is_some() {
        body.insert("cfg_scale".into(), json!(request.param_f64("cfg_scale", 0.5)?));
    }
    let first = with_role(&request.inputs, Some("first_frame")).or_else(|| with_role(&request.inputs, None));
    let last = with_role(&request.inputs, Some("last_frame"));
    if with_role(&request.inputs, Some("reference")).is_some() {
        return Err(Error::invalid("Kling video takes a first frame and an optional last frame, not references"));
    }
    match (first, last) {
        (None, None) => {
            if request.prompt.is_empty() {
                return Err(Error::invalid("Missing required parameter: prompt"));
            }
            body.insert("aspect_ratio".into(), json!(request.param_str("ratio", "16:9")?));
            Ok(Route::TextToVideo)
        }
        (Some(first), last) => {
            body.insert("image".into(), json!(image_field(first)?));
            if let Some(last) = last {
                body.insert("image_tail".into(), json!(image_field(last)?));
            }
            Ok(Route::ImageToVideo)
        }
        (None, Some(_)) => Err(Error::invalid("a last_frame needs a first_frame")),
    }
}

fn image(request: &GenerationRequest, body: &mut Map<String, Value>) -> Result<Route> {
    if request.prompt.is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    body.insert("n".into(), json!(request.param_u64("n", 1)?));
    body.insert("aspect_ratio".into(), json!(request.param_str("aspectRatio", "1:1")?));
    body.insert("resolution".into(), json!(request.param_str("resolution", "1K")?.to_ascii_lowercase()));
    if let Some(reference) = request.inputs.first() {
        body.insert("image".into(), json!(image_field(reference)?));
    }
    Ok(Route::Image)
}
