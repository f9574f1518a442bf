//! Seedance 2.0 on EvoLink (`POST /v1/videos/generations`). EvoLink names one model per
//! mode and speed: `seedance-2.0-{text,image,reference}-to-video` and the same with
//! `seedance-2.0-fast-`. easel lists two models (`seedance-2.0`, `seedance-2.0-fast`) and
//! picks the mode from the inputs:
//!
//! - no inputs → text-to-video;
//! - images with role `first_frame` (and `last_frame`) → image-to-video, `image_urls` =
//!   `[first, last]` (EvoLink reads one image as the first frame, two as first and last);
//! - images without a role or with `reference`, videos and audio → reference-to-video,
//!   `image_urls` (≤ 9), `video_urls` (≤ 3), `audio_urls` (≤ 3, never alone).
//!
//! Seed 001's settings map onto EvoLink's fields: `ratio` → `aspect_ratio`, `duration`
//! (4–15 s) → `duration`, `resolution` → `quality`; `generate_audio` passes through.

use crate::{SEEDANCE_2_FAST, create_task, files};
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{Error, GenerationRequest, InputMedia, Result, Submission};

/// Seed 001's video ratios (EvoLink's `aspect_ratio` values).
const RATIOS: [&str; 7] = ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"];
/// Seed 001's resolutions (EvoLink's `quality` values).
const RESOLUTIONS: [&str; 3] = ["480p", "720p", "1080p"];
const MAX_IMAGES: usize = 9;
const MAX_VIDEOS: usize = 3;
const MAX_AUDIOS: usize = 3;

/// The parameters both Seedance models take.
pub fn schema() -> Value {
    json!({"type": "object", "properties": {
        "ratio": {"type": "string", "enum": RATIOS, "default": "16:9",
                  "description": "Seed 001: aspect ratio (EvoLink `aspect_ratio`)."},
        "duration": {"type": "integer", "minimum": 4, "maximum": 15, "default": 5,
                     "description": "Seed 001: seconds, 4–15."},
        "resolution": {"type": "string", "enum": RESOLUTIONS, "default": "720p",
                       "description": "Seed 001: output resolution (EvoLink `quality`)."},
        "generate_audio": {"type": "boolean", "default": true,
                           "description": "EvoLink: synthesize a soundtrack with the video."}
    }, "additionalProperties": true})
}

/// What the inputs ask for.
enum Mode<'a> {
    Text,
    Frames { first: &'a InputMedia, last: Option<&'a InputMedia> },
    References { images: Vec<&'a InputMedia>, videos: Vec<&'a InputMedia>, audios: Vec<&'a InputMedia> },
}

impl Mode<'_> {
    fn suffix(&self) -> &'static str {
        match self {
            Mode::Text => "text-to-video",
            Mode::Frames { .. } => "image-to-video",
            Mode::References { .. } => "reference-to-video",
        }
    }
}

fn mode(inputs: &[InputMedia]) -> Result<Mode<'_>> {
    let (mut firsts, mut lasts, mut images, mut videos, mut audios) = (vec![], vec![], vec![], vec![], vec![]);
    for input in inputs {
        match (input.kind.as_str(), input.role.as_deref()) {
            ("image", Some("first_frame")) => firsts.push(input),
            ("image", Some("last_frame")) => lasts.push(input),
            ("image", None | Some("reference")) => images.push(input),
            ("video", None | Some("reference")) => videos.push(input),
            ("audio", None | Some("reference")) => audios.push(input),
            (kind, Some(role)) => return Err(Error::invalid(format!("EvoLink's Seedance 2.0 cannot take a {kind} input as {role}"))),
            (kind, None) => return Err(Error::invalid(format!("EvoLink's Seedance 2.0 takes no {kind} input"))),
        }
    }
    let references = images.len() + videos.len() + audios.len();
    if firsts.len() > 1 || lasts.len() > 1 {
        return Err(Error::invalid("give at most one first_frame and one last_frame"));
    }
    if firsts.is_empty() && !lasts.is_empty() {
        return Err(Error::invalid("a last_frame needs a first_frame"));
    }
    if let Some(first) = firsts.first() {
        if references > 0 {
            return Err(Error::invalid("first/last frames cannot be mixed with reference inputs"));
        }
        return Ok(Mode::Frames { first, last: lasts.first().copied() });
    }
    if references == 0 {
        return Ok(Mode::Text);
    }
    if images.len() > MAX_IMAGES || videos.len() > MAX_VIDEOS || audios.len() > MAX_AUDIOS {
        return Err(Error::invalid(format!(
            "EvoLink takes at most {MAX_IMAGES} reference images, {MAX_VIDEOS} videos and {MAX_AUDIOS} audio clips"
        )));
    }
    if !audios.is_empty() && images.is_empty() && videos.is_empty() {
        return Err(Error::invalid("reference audio needs at least one reference image or video beside it"));
    }
    Ok(Mode::References { images, videos, audios })
}

/// Creates a Seedance 2.0 task for `request`.
pub fn submit(request: &GenerationRequest) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("Missing required parameter: prompt"));
    }
    let ratio = request.param_str("ratio", "16:9")?;
    if !RATIOS.contains(&ratio) {
        return Err(Error::invalid(format!("ratio must be one of {}", RATIOS.join(", "))));
    }
    let duration = request.param_u64("duration", 5)?;
    if !(4..=15).contains(&duration) {
        return Err(Error::invalid("duration must be 4–15 seconds"));
    }
    let resolution = request.param_str("resolution", "720p")?;
    if !RESOLUTIONS.contains(&resolution) {
        return Err(Error::invalid(format!("resolution must be one of {}", RESOLUTIONS.join(", "))));
    }
    let mode = mode(&request.inputs)?;
    let family = if request.model == SEEDANCE_2_FAST { "seedance-2.0-fast" } else { "seedance-2.0" };

    let mut body = Map::new();
    body.insert("model".into(), json!(format!("{family}-{}", mode.suffix())));
    body.insert("prompt".into(), json!(request.prompt));
    body.insert("duration".into(), json!(duration));
    body.insert("quality".into(), json!(resolution));
    body.insert("aspect_ratio".into(), json!(ratio));
    body.insert("generate_audio".into(), json!(request.param_bool("generate_audio", true)?));
    match mode {
        Mode::Text => {}
        Mode::Frames { first, last } => {
            let frames: Vec<&InputMedia> = std::iter::once(first).chain(last).collect();
            body.insert("image_urls".into(), json!(urls(&frames, "image_urls")?));
        }
        Mode::References { images, videos, audios } => {
            // Check every input before uploading any of them.
            for (inputs, field) in [(&images, "image_urls"), (&videos, "video_urls"), (&audios, "audio_urls")] {
                for input in inputs {
                    files::check_fetchable(input, field)?;
                }
            }
            for (inputs, field) in [(images, "image_urls"), (videos, "video_urls"), (audios, "audio_urls")] {
                if !inputs.is_empty() {
                    body.insert(field.into(), json!(urls(&inputs, field)?));
                }
            }
        }
    }
    create_task("videos/generations", Value::Object(body), true)
}

fn urls(inputs: &[&InputMedia], field: &str) -> Result<Vec<String>> {
    for input in inputs {
        files::check_fetchable(input, field)?;
    }
    inputs.iter().map(|i| files::url_for(i)).collect()
}
