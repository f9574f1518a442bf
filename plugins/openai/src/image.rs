//! Image generation: `POST /v1/images/generations`, synchronous. `gpt-image-1` always
//! answers base64 (`data[].b64_json`), returned as bytes; `dall-e-3` is asked for URLs
//! (`response_format: url`, valid for an hour), returned as URL outputs for the host to copy.
//! `gpt-image-1` also edits (`image.edit`) and inpaints (`image.inpaint`, with a mask) through
//! `POST /v1/images/edits`, a multipart form holding the images (`image[]`) and the mask.

use crate::{client, errors};
use easel_sdk::serde_json::{Value, json};
use easel_sdk::http::Form;
use easel_sdk::{Error, Finished, GenerationRequest, InputMedia, Output, Result, Submission};
use std::time::Duration;

/// The image models.
pub const MODELS: [&str; 2] = ["gpt-image-1", "dall-e-3"];

/// Generates and answers the images.
pub fn submit(request: &GenerationRequest) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let mut body = json!({"model": request.model, "prompt": request.prompt, "n": request.param_u64("n", 1)?});
    let format = if request.model == "gpt-image-1" {
        body["size"] = json!(request.param_str("size", "auto")?);
        body["quality"] = json!(request.param_str("quality", "auto")?);
        let format = request.param_str("output_format", "png")?;
        body["output_format"] = json!(format);
        for name in ["background", "output_compression"] {
            if let Some(value) = request.param_value(name) {
                body[name] = value.clone();
            }
        }
        format
    } else {
        body["size"] = json!(request.param_str("size", "1024x1024")?);
        body["quality"] = json!(request.param_str("quality", "standard")?);
        body["style"] = json!(request.param_str("style", "vivid")?);
        body["response_format"] = json!("url");
        "png"
    };
    let response = client::post("/images/generations")?.json(&body).timeout(Duration::from_secs(300)).send()?;
    answered(response, format)
}

/// The most images one edit takes.
const MAX_EDIT_IMAGES: usize = 16;

/// Edits the input images as the prompt says (`image.edit`), or redraws where the mask is
/// transparent (`image.inpaint`), with `gpt-image-1`.
pub fn edit(request: &GenerationRequest) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let format = request.param_str("output_format", "png")?;
    let mut form = Form::new()
        .text("model", &request.model)
        .text("prompt", &request.prompt)
        .text("n", &request.param_u64("n", 1)?.to_string())
        .text("size", request.param_str("size", "auto")?)
        .text("quality", request.param_str("quality", "auto")?)
        .text("output_format", format);
    for name in ["background", "input_fidelity", "output_compression"] {
        match request.param_value(name) {
            Some(Value::String(text)) => form = form.text(name, text),
            Some(Value::Number(number)) => form = form.text(name, &number.to_string()),
            _ => {}
        }
    }
    let images: Vec<&InputMedia> = request.inputs.iter().filter(|i| i.kind == "image").collect();
    if images.is_empty() || images.len() > MAX_EDIT_IMAGES {
        return Err(Error::invalid(format!("an edit takes 1 to {MAX_EDIT_IMAGES} input images")));
    }
    for (index, image) in images.into_iter().enumerate() {
        let (content_type, bytes) = file_of(image, &["image/png", "image/jpeg", "image/webp"])?;
        form = form.file("image[]", &format!("image-{index}.{}", extension(content_type)), content_type, bytes);
    }
    let masks: Vec<&InputMedia> = request.inputs.iter().filter(|i| i.kind == "mask").collect();
    match (request.capability.as_str(), masks.as_slice()) {
        ("image.inpaint", [mask]) => {
            // OpenAI reads the mask's alpha channel, so only a PNG will do.
            let (content_type, bytes) = file_of(mask, &["image/png"])?;
            form = form.file("mask", "mask.png", content_type, bytes);
        }
        ("image.inpaint", _) => return Err(Error::invalid("inpainting needs exactly one mask")),
        (_, []) => {}
        (_, _) => return Err(Error::invalid("a mask makes the task image.inpaint, not image.edit")),
    }
    let response = client::post("/images/edits")?.form(form).timeout(Duration::from_secs(300)).send()?;
    answered(response, format)
}

/// An input's type, as its bytes announce it, and the bytes: OpenAI's edits take files (not
/// links) of the `accepted` types.
fn file_of<'a>(input: &'a InputMedia, accepted: &[&'static str]) -> Result<(&'static str, &'a [u8])> {
    let bytes = input.data.as_deref().ok_or_else(|| {
        Error::invalid(format!("OpenAI's edits take the {} itself: upload it rather than link it", input.kind))
    })?;
    let content_type = vendor_kit::media::sniff_content_type(&input.kind, bytes);
    match accepted.iter().find(|accepted| **accepted == content_type) {
        Some(accepted) => Ok((accepted, bytes)),
        None => Err(Error::invalid(format!(
            "OpenAI's edits take {} files as the {}; this one is {content_type}",
            accepted.join(", "),
            input.kind
        ))),
    }
}

fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        _ => "png",
    }
}

/// The images of an answer from either route, with its usage.
fn answered(response: easel_sdk::http::Response, format: &str) -> Result<Submission> {
    let answer: Value = errors::checked(response)?.json()?;
    let mime = format!("image/{}", if format == "jpeg" { "jpeg" } else { format });
    let mut outputs = Vec::new();
    for item in answer.get("data").and_then(Value::as_array).into_iter().flatten() {
        if let Some(encoded) = item.get("b64_json").and_then(Value::as_str) {
            outputs.push(Output::bytes(mime.clone(), vendor_kit::media::decode_base64(encoded)?));
        } else if let Some(url) = item.get("url").and_then(Value::as_str) {
            outputs.push(Output::Url { url: url.to_string(), content_type: Some(mime.clone()) });
        }
    }
    if outputs.is_empty() {
        return Err(Error::upstream(format!("OpenAI answered without images: {answer}")));
    }
    let mut done = Finished::new(outputs);
    if let Some(usage) = answer.get("usage").filter(|u| u.is_object()) {
        done = done.usage(usage.clone());
    }
    Ok(Submission::Finished(done))
}
