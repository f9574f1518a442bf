//! Images: Wan text-to-image and Qwen-Image through DashScope's asynchronous
//! `text2image/image-synthesis` task, and Qwen-Image edits (when the request brings an
//! image) through the synchronous `multimodal-generation/generation` call with
//! `qwen-image-edit`.

use crate::client::{self, Family, Region};
use crate::params;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, Output, PollOutcome, Result, Submission};
use vendor_kit::media::{self, Reference};

const TEXT2IMAGE: &str = "/services/aigc/text2image/image-synthesis";
const MULTIMODAL: &str = "/services/aigc/multimodal-generation/generation";
/// The model DashScope edits Qwen-Image pictures with.
pub const EDIT_MODEL: &str = "qwen-image-edit";

/// Qwen-Image renders these sizes only; Pixel's `aspectRatio` picks one.
pub const QWEN_IMAGE_SIZES: [(&str, &str); 5] =
    [("16:9", "1664*928"), ("4:3", "1472*1140"), ("1:1", "1328*1328"), ("3:4", "1140*1472"), ("9:16", "928*1664")];

/// Starts an image job for a Wan text-to-image model or `qwen-image`.
pub fn submit(request: &GenerationRequest, region: Region) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    if request.model == "qwen-image"
        && let Some(source) = media::of_kind(&request.inputs, "image").next()
    {
        return edit(request, region, source);
    }
    let body = text2image_body(request)?;
    let task = client::create_task(region, Family::Image, TEXT2IMAGE, &body)?;
    Ok(Submission::pending(task.handle(), Family::Image.poll_after_ms()))
}

fn text2image_body(request: &GenerationRequest) -> Result<Value> {
    let mut input = json!({"prompt": request.prompt});
    if let Some(negative) = params::negative_prompt(request)? {
        input["negative_prompt"] = json!(negative);
    }
    let (size, n) = if request.model == "qwen-image" {
        (qwen_image_size(request)?, request.param_u64("n", 1)?)
    } else {
        // The manifest's `sizeBounds` ([`size_bounds`]) kept it within what the model renders.
        let size = request.param_str("size", default_size(&request.model))?;
        (size.to_string(), request.param_u64("n", 1)?)
    };
    let mut parameters = json!({"size": size, "n": n});
    params::copy(request, &mut parameters, &["seed", "prompt_extend", "watermark"]);
    Ok(json!({"model": request.model, "input": input, "parameters": parameters}))
}

/// The sizes each Wan text-to-image model renders, as its schema's `sizeBounds`: Wan 2.5
/// any shape between 768×768 and 1440×1440 pixels in all with a ratio within 1:4 and 4:1,
/// the others 512 to 1440 pixels a side.
pub fn size_bounds(model: &str) -> Value {
    if model == "wan2.5-t2i-preview" {
        json!({"minPixels": 768 * 768, "maxPixels": 1440 * 1440, "maxRatio": 4})
    } else {
        json!({"minSide": 512, "maxSide": 1440})
    }
}

/// The default `size` of each Wan text-to-image model.
pub fn default_size(model: &str) -> &'static str {
    if model == "wan2.5-t2i-preview" { "1280*1280" } else { "1024*1024" }
}

fn qwen_image_size(request: &GenerationRequest) -> Result<String> {
    let ratio = request.param_str("aspectRatio", "1:1")?;
    QWEN_IMAGE_SIZES
        .iter()
        .find(|(r, _)| *r == ratio)
        .map(|(_, size)| size.to_string())
        .ok_or_else(|| Error::invalid(format!("`aspectRatio` must be one of 16:9, 4:3, 1:1, 3:4, 9:16, not `{ratio}`")))
}

fn edit(request: &GenerationRequest, region: Region, source: &easel_sdk::InputMedia) -> Result<Submission> {
    let image = media::reference(source, Reference::UrlOrDataUrl, "image")?;
    let mut parameters = json!({});
    if let Some(negative) = params::negative_prompt(request)? {
        parameters["negative_prompt"] = json!(negative);
    }
    params::copy(request, &mut parameters, &["seed", "watermark"]);
    let body = json!({
        "model": EDIT_MODEL,
        "input": {"messages": [{"role": "user", "content": [{"image": image}, {"text": request.prompt}]}]},
        "parameters": parameters
    });
    let answer = client::call(region, MULTIMODAL, &body)?;
    let outputs: Vec<Output> = answer
        .pointer("/output/choices/0/message/content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|part| part.get("image").and_then(Value::as_str))
        .map(|url| Output::Url { url: url.to_string(), content_type: Some("image/png".into()) })
        .collect();
    if outputs.is_empty() {
        return Err(Error::upstream(format!("DashScope answered the edit without an image: {answer}")));
    }
    Ok(Submission::Finished(with_usage(Finished::new(outputs), &answer)))
}

/// The outcome of the `SUCCEEDED` image task `task_id`: every `output.results[].url`.
/// Results that failed on their own carry `code`/`message`; if none succeeded the first
/// error wins, and a success with neither images nor errors fails the task too.
pub fn finished(answer: &Value, task_id: &str) -> PollOutcome {
    let results = answer.pointer("/output/results").and_then(Value::as_array).cloned().unwrap_or_default();
    let outputs: Vec<Output> = results
        .iter()
        .filter_map(|r| r.get("url").and_then(Value::as_str).filter(|url| !url.is_empty()))
        .map(|url| Output::Url { url: url.to_string(), content_type: Some("image/png".into()) })
        .collect();
    if outputs.is_empty() {
        return match results.iter().find(|r| r.get("code").is_some()) {
            Some(failed) => PollOutcome::Failed(crate::errors::from_failed_task(failed)),
            None => vendor_kit::outcome::succeeded_without_output("DashScope", task_id, "output.results[].url"),
        };
    }
    PollOutcome::Finished(with_usage(Finished::new(outputs), answer))
}

/// Attaches the answer's `usage` object, when there is one.
pub fn with_usage(finished: Finished, answer: &Value) -> Finished {
    match answer.get("usage").filter(|u| u.is_object()) {
        Some(usage) => finished.usage(usage.clone()),
        None => finished,
    }
}
