//! Video: Wan 2.6 (text-to-video, image-to-video for Pixel's first frame,
//! reference-to-video) and HappyHorse 1.0 (t2v, i2v, r2v), all through DashScope's
//! asynchronous `video-generation/video-synthesis` task.

use crate::client::{self, Family, Region};
use crate::params;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::{Error, Finished, GenerationRequest, InputMedia, Output, PollOutcome, Result, Submission};
use vendor_kit::media::{self, Reference};

const VIDEO_SYNTHESIS: &str = "/services/aigc/video-generation/video-synthesis";
/// The clip lengths Model Studio renders for wan2.6-r2v, in seconds (its reference-to-video
/// guide: whole seconds from 2 to 10). Seed 002 also offers 15, which the vendor refuses.

/// Starts a video task.
pub fn submit(request: &GenerationRequest, region: Region) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let body = match request.model.as_str() {
        "wan2.6-t2v" => wan_t2v(request)?,
        "wan2.6-video" => pixel_wan_video(request)?,
        "wan2.6-r2v" => wan_r2v(request)?,
        "happyhorse-1.0-t2v" => happyhorse(request, None, "720P", 5)?,
        "happyhorse-1.0-i2v" => happyhorse(request, Some(("first_frame", 1)), "720P", 5)?,
        "happyhorse-1.0-r2v" => happyhorse(request, Some(("reference_image", HAPPYHORSE_MOST_REFERENCES)), "1080P", 15)?,
        other => return Err(Error::invalid(format!("dashscope/{other} is not a video model"))),
    };
    let task = client::create_task(region, Family::Video, VIDEO_SYNTHESIS, &body)?;
    Ok(Submission::pending(task.handle(), Family::Video.poll_after_ms()))
}

fn wan_input(request: &GenerationRequest) -> Result<Value> {
    let mut input = json!({"prompt": request.prompt});
    if let Some(negative) = params::negative_prompt(request)? {
        input["negative_prompt"] = json!(negative);
    }
    // Wan 2.6 lip-syncs to a driving audio track when one is given.
    if let Some(audio) = media::of_kind(&request.inputs, "audio").next() {
        input["audio_url"] = json!(media::reference(audio, Reference::UrlOnly, "audio_url")?);
    }
    Ok(input)
}

fn wan_t2v(request: &GenerationRequest) -> Result<Value> {
    let mut parameters = json!({
        "size": request.param_str("size", "1920*1080")?,
        "duration": request.param_u64("duration", 15)?,
    });
    params::copy(request, &mut parameters, &["seed", "prompt_extend", "shot_type", "audio", "watermark"]);
    Ok(json!({"model": "wan2.6-t2v", "input": wan_input(request)?, "parameters": parameters}))
}

/// Pixel's `wan2.6-video`: `duration` as `5s`/`10s`, `resolution` as `720p`/`1080p`, and
/// `imageInputs` as the first frame, which makes it Wan's image-to-video model.
fn pixel_wan_video(request: &GenerationRequest) -> Result<Value> {
    let duration = match request.param_str("duration", "5s")? {
        "5s" => 5,
        "10s" => 10,
        other => return Err(Error::invalid(format!("`duration` must be 5s or 10s, not `{other}`"))),
    };
    let resolution = request.param_str("resolution", "720p")?;
    let (tier, size) = match resolution {
        "720p" => ("720P", "1280*720"),
        "1080p" => ("1080P", "1920*1080"),
        other => return Err(Error::invalid(format!("`resolution` must be 720p or 1080p, not `{other}`"))),
    };
    let mut input = wan_input(request)?;
    let first_frame = media::with_role(&request.inputs, "image", Some("first_frame"))
        .chain(media::of_kind(&request.inputs, "image"))
        .next();
    let (model, mut parameters) = match first_frame {
        Some(image) => {
            input["img_url"] = json!(media::reference(image, Reference::UrlOrDataUrl, "img_url")?);
            ("wan2.6-i2v", json!({"resolution": tier, "duration": duration}))
        }
        None => ("wan2.6-t2v", json!({"size": size, "duration": duration})),
    };
    params::copy(request, &mut parameters, &["seed", "prompt_extend", "shot_type", "audio", "watermark"]);
    Ok(json!({"model": model, "input": input, "parameters": parameters}))
}

/// Reference-to-video: every image and video input becomes a reference, named
/// `character1`, `character2`… in the prompt by their order.
fn wan_r2v(request: &GenerationRequest) -> Result<Value> {
    let references: Vec<String> = request
        .inputs
        .iter()
        .filter(|i| i.kind == "image" || i.kind == "video")
        .map(|i| media::reference(i, Reference::UrlOnly, "reference_urls"))
        .collect::<Result<_>>()?;
    if references.is_empty() {
        return Err(Error::invalid("wan2.6-r2v needs at least one reference image or video"));
    }
    // The manifest's enum (5 or 10) kept it within what Model Studio renders.
    let duration = request.param_u64("duration", 10)?;
    let mut input = json!({"prompt": request.prompt, "reference_urls": references});
    if let Some(negative) = params::negative_prompt(request)? {
        input["negative_prompt"] = json!(negative);
    }
    let mut parameters = json!({
        "size": request.param_str("size", "1920*1080")?,
        "duration": duration,
    });
    params::copy(request, &mut parameters, &["seed", "shot_type", "audio", "watermark"]);
    Ok(json!({"model": "wan2.6-r2v", "input": input, "parameters": parameters}))
}

/// Reference images HappyHorse's reference-to-video takes at most (seed 002: "最多9个图片文件").
pub const HAPPYHORSE_MOST_REFERENCES: usize = 9;

/// HappyHorse 1.0: `media` lists the inputs by type (`first_frame` for i2v, up to nine
/// `reference_image`s for r2v); `ratio` is left to the model unless the client sets it.
fn happyhorse(
    request: &GenerationRequest,
    media_type: Option<(&str, usize)>,
    default_resolution: &str,
    default_duration: u64,
) -> Result<Value> {
    let mut input = json!({"prompt": request.prompt});
    if let Some((kind, most)) = media_type {
        let images: Vec<&InputMedia> = if kind == "first_frame" {
            media::with_role(&request.inputs, "image", Some("first_frame"))
                .chain(media::of_kind(&request.inputs, "image"))
                .take(1)
                .collect()
        } else {
            media::of_kind(&request.inputs, "image").collect()
        };
        if images.is_empty() {
            return Err(Error::invalid(format!("{} needs an image input ({kind})", request.model)));
        }
        if images.len() > most {
            return Err(Error::invalid(format!("{} takes at most {most} reference images", request.model)));
        }
        let items: Vec<Value> = images
            .into_iter()
            .map(|i| Ok(json!({"type": kind, "url": media::reference(i, Reference::UrlOrDataUrl, "media")?})))
            .collect::<Result<_>>()?;
        input["media"] = json!(items);
    }
    let mut parameters = json!({
        "resolution": request.param_str("resolution", default_resolution)?,
        "duration": request.param_u64("duration", default_duration)?,
    });
    params::copy(request, &mut parameters, &["ratio", "seed", "watermark"]);
    Ok(json!({"model": request.model, "input": input, "parameters": parameters}))
}

/// The outcome of the `SUCCEEDED` video task `task_id`: its `output.video_url`, or, when
/// the answer has none, the task's failure.
pub fn finished(answer: &Value, task_id: &str) -> PollOutcome {
    let Some(url) = answer.pointer("/output/video_url").and_then(Value::as_str).filter(|url| !url.is_empty()) else {
        return vendor_kit::outcome::succeeded_without_output("DashScope", task_id, "output.video_url");
    };
    let out = Finished::new(vec![Output::Url { url: url.to_string(), content_type: Some("video/mp4".into()) }]);
    PollOutcome::Finished(crate::image::with_usage(out, answer))
}
