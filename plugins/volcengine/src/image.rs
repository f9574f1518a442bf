//! Seedream images through Ark's synchronous `POST /api/v3/images/generations`; input
//! images (URLs or data URLs) make it an edit.

use crate::client;
use easel_sdk::http::Request;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, Output, Result, Submission};
use vendor_kit::media::{self, Reference};

/// The Seedream model key (Ark's model name).
pub const SEEDREAM: &str = "doubao-seedream-4-0-250828";

/// Generates (or edits) and answers the image URLs.
pub fn submit(request: &GenerationRequest) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let mut body = json!({
        "model": SEEDREAM,
        "prompt": request.prompt,
        "size": request.param_str("size", "2K")?,
        "response_format": "url",
        "sequential_image_generation": "disabled",
        "watermark": request.param_bool("watermark", false)?,
    });
    if let Some(seed) = request.param_value("seed") {
        body["seed"] = seed.clone();
    }
    let images: Vec<String> = media::of_kind(&request.inputs, "image")
        .map(|i| media::reference(i, Reference::UrlOrDataUrl, "image"))
        .collect::<Result<_>>()?;
    match images.len() {
        0 => {}
        1 => body["image"] = json!(images[0]),
        _ => body["image"] = json!(images),
    }
    let answer = client::send(Request::post(client::ark("/images/generations")).json(&body), client::SLOW)?;
    let outputs: Vec<Output> = answer
        .get("data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("url").and_then(Value::as_str))
        .map(|url| Output::Url { url: url.to_string(), content_type: Some("image/jpeg".into()) })
        .collect();
    if outputs.is_empty() {
        return Err(Error::upstream(format!("Ark answered without images: {answer}")));
    }
    let mut done = Finished::new(outputs);
    if let Some(usage) = answer.get("usage").filter(|u| u.is_object()) {
        done = done.usage(usage.clone());
    }
    Ok(Submission::Finished(done))
}
