//! Building Vidu's request bodies from an easel request, and sending them with the
//! API key and the shared error mapping.

use crate::errors;
use crate::models::VIDUQ3_PRO;
use base64::Engine as _;
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{Error, GenerationRequest, InputMedia, Result};
use std::time::Duration;

/// Which endpoint to call with which body.
#[derive(Debug)]
pub struct Plan {
    /// Path below `/ent/v2`.
    pub endpoint: &'static str,
    /// The JSON body.
    pub body: Value,
    /// Whether off-peak mode was asked for.
    pub off_peak: bool,
}

/// Picks the endpoint from the input images and translates the parameters.
pub fn plan(request: &GenerationRequest) -> Result<Plan> {
    let off_peak = request.param_str("off_peak", "N")? == "Y";
    let mut body = Map::new();
    body.insert("model".into(), json!(VIDUQ3_PRO));
    if !request.prompt.is_empty() {
        body.insert("prompt".into(), json!(request.prompt));
    }
    body.insert("duration".into(), json!(request.param_u64("duration", 10)?));
    body.insert("resolution".into(), json!(request.param_str("resolution", "1080p")?));
    body.insert("off_peak".into(), json!(off_peak));
    let seed = request.param_u64("seed", 0)?;
    if seed > 0 {
        body.insert("seed".into(), json!(seed));
    }

    let images = frame_images(&request.inputs)?;
    let endpoint = match images.as_slice() {
        [] => {
            if request.prompt.is_empty() {
                return Err(Error::invalid("text-to-video needs a prompt"));
            }
            body.insert("aspect_ratio".into(), json!(request.param_str("ratio", "16:9")?));
            "text2video"
        }
        [first] => {
            body.insert("images".into(), json!([first]));
            "img2video"
        }
        [first, last] => {
            body.insert("images".into(), json!([first, last]));
            "start-end2video"
        }
        _ => unreachable!("frame_images returns at most two"),
    };
    Ok(Plan { endpoint, body: Value::Object(body), off_peak })
}

/// The start frame and the optional end frame, as URLs or base64 data URLs.
fn frame_images(inputs: &[InputMedia]) -> Result<Vec<String>> {
    let images: Vec<&InputMedia> = inputs.iter().filter(|i| i.kind == "image").collect();
    if inputs.len() != images.len() {
        return Err(Error::invalid("viduq3-pro takes only images (a first frame and an optional last frame)"));
    }
    if images.iter().any(|i| i.role.as_deref() == Some("reference")) {
        return Err(Error::invalid("viduq3-pro here takes first/last frames, not reference images"));
    }
    let first = images.iter().find(|i| i.role.as_deref() == Some("first_frame"));
    let last = images.iter().find(|i| i.role.as_deref() == Some("last_frame"));
    let plain: Vec<&&InputMedia> = images.iter().filter(|i| i.role.is_none()).collect();
    let ordered: Vec<&InputMedia> = match (first, last) {
        (Some(f), Some(l)) if images.len() == 2 => vec![f, l],
        (Some(f), None) if images.len() == 1 => vec![f],
        (None, Some(_)) => return Err(Error::invalid("a last frame needs a first frame")),
        (None, None) if plain.len() <= 2 => plain.into_iter().copied().collect(),
        _ => return Err(Error::invalid("give at most one first_frame and one last_frame image")),
    };
    ordered.into_iter().map(media_reference).collect()
}

/// Vidu accepts a public URL or a base64 data URL for each image.
fn media_reference(input: &InputMedia) -> Result<String> {
    if let Some(url) = input.url.as_deref().filter(|u| !u.is_empty()) {
        return Ok(url.to_string());
    }
    let data = input.data.as_deref().ok_or_else(|| Error::invalid("an input image has neither a URL nor bytes"))?;
    let content_type = input.content_type.as_deref().unwrap_or("image/png");
    Ok(format!("data:{content_type};base64,{}", base64::engine::general_purpose::STANDARD.encode(data)))
}

fn authorized(request: Request) -> Result<Request> {
    let key = easel_sdk::require_secret(crate::API_KEY_SECRET)?;
    Ok(request.header("Authorization", format!("Token {key}")).timeout(Duration::from_secs(60)))
}

/// A POST with the API key.
pub fn post(url: &str) -> Result<Request> {
    authorized(Request::post(url))
}

/// A GET with the API key.
pub fn get(url: &str) -> Result<Request> {
    authorized(Request::get(url))
}

/// Sends and reads the JSON answer; non-2xx answers become typed errors. An empty body
/// (cancel answers `{}` or nothing) reads as `{}`.
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
