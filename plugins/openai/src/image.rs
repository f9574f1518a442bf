//! Image generation: `POST /v1/images/generations`, synchronous. `gpt-image-1` always
//! answers base64 (`data[].b64_json`), returned as bytes; `dall-e-3` is asked for URLs
//! (`response_format: url`, valid for an hour), returned as URL outputs for the host to copy.

use crate::{client, errors};
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, Output, Result, Submission};
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
        if let Some(background) = request.param_value("background") {
            body["background"] = background.clone();
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
