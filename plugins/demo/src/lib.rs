//! easel's offline demo provider (`demo`). Every output is made from the prompt, so the
//! same request always gives the same bytes and nothing touches the network:
//!
//! - `demo/image` (`image.generate`, `image.edit`): PNG pictures of the asked size;
//! - `demo/video` (`video.generate`): a small H.264 MP4 that browsers play inline, returned
//!   through a pending handle that carries the whole request, so the host's poller is
//!   exercised;
//! - `demo/speech` (`audio.speech`): a WAV tone sequence, one tone per letter;
//! - `demo/chat` (`chat`): an answer streamed word by word, with usage, its finer counts and
//!   what a vendor says of an answer (a fingerprint and a tier); given `tools`, it
//!   calls one (the one `tool_choice` names, else the first) with `{"text": <the last user
//!   message>}`, and answers a `tool` message by quoting it, so a client's tool loop can be
//!   tried with no vendor.
//!
//! The schemas accept every example value of the seeds' documents, so each documented request
//! can be tried on the demo: sides up to 2560 (seed 001's 1440×2560), durations as seconds
//! or `5s` (seed 000), the seeds' video levels `480p`–`1080p` (rendered at an eighth of their
//! size, shaped by `ratio`, each side rounded up to even as 4:2:0 video needs) and seed 000's
//! voice `zh_female_qingxin`.

pub mod media;

use easel_media::fnv1a;
use easel_sdk::serde_json::{self, Value, json};
use easel_sdk::{
    ChatEvent, ChatRequest, ChatStream, Error, EventList, Finished, GenerationRequest, Level, Manifest, Model, Output,
    PollOutcome, Provider, Result, Submission,
};
use media::Look;

/// The provider; it keeps no state.
#[derive(Default)]
pub struct Demo;

easel_sdk::export!(Demo);

const HANDLE_PREFIX: &str = "demo-video:v1:";
const VIDEO_POLL_AFTER_MS: u64 = 200;
const STYLES: [&str; 3] = ["gradient", "stripes", "checker"];
const RESOLUTIONS: [&str; 4] = ["64x64", "160x90", "160x160", "320x180"];
/// The seeds' video levels by their short side; the demo draws them at an eighth of that.
const LEVELS: [(&str, u32); 4] = [("480p", 480), ("540p", 540), ("720p", 720), ("1080p", 1080)];
const LEVEL_SCALE: u32 = 8;
/// The seeds' aspect ratios; `adaptive` (follow an input picture) is 16:9 here.
const RATIOS: [&str; 7] = ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"];
/// Longest video in seconds (the seeds ask for 1 to 16).
const MAX_SECONDS: u64 = 16;
/// Bytes of one video's frames as drawn (RGB): those of 3 s of 320x180 at 15 fps. Its MP4 is
/// half that (1.5 bytes a pixel), held at most twice while written: within a plugin's memory.
const MAX_FRAME_BYTES: u64 = 320 * 180 * 3 * 15 * 3;
/// Longest picture side (seed 001 asks for 1440×2560).
const MAX_SIDE: u64 = 2560;
/// Pixels of all the pictures of one request: four of 2048×2048, as many as fit the plugin's
/// memory at once.
const MAX_PIXELS: u64 = 4 * 2048 * 2048;
const VOICES: [(&str, f32); 4] = [("alto", 220.0), ("tenor", 165.0), ("soprano", 330.0), ("zh_female_qingxin", 294.0)];

fn image_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "width": {"type": "integer", "minimum": 16, "maximum": MAX_SIDE, "default": 512},
            "height": {"type": "integer", "minimum": 16, "maximum": MAX_SIDE, "default": 512},
            "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
            "seed": {"type": "integer", "minimum": 0, "description": "Mixed into the prompt's hash."},
            "style": {"type": "string", "enum": STYLES, "default": "gradient"},
            "strength": {"type": "number", "minimum": 0.0, "maximum": 1.0, "default": 0.6,
                          "description": "image.edit only: how far from the input to go."}
        },
        "additionalProperties": true
    })
}

/// The video's `resolution` values: its own frame sizes, then the seeds' levels as they
/// write them (`720p`, `720P`).
fn video_resolutions() -> Vec<String> {
    let levels = LEVELS.iter().flat_map(|(name, _)| [name.to_string(), name.to_uppercase()]);
    RESOLUTIONS.iter().map(|r| r.to_string()).chain(levels).collect()
}

fn video_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "resolution": {"type": "string", "enum": video_resolutions(), "default": "160x90",
                           "description": "A frame size, or a seed's level drawn at an eighth of its size."},
            "ratio": {"type": "string", "enum": RATIOS, "default": "16:9",
                      "description": "Shape of a level's frame; `adaptive` is 16:9. A frame size keeps its own shape."},
            "duration": {"type": ["integer", "string"], "minimum": 1, "maximum": MAX_SECONDS,
                         "pattern": "^([1-9]|1[0-6])s?$", "default": 2,
                         "description": "Seconds, 1 to 16: a number, or text such as `5` or `5s` (seed 000)."},
            "fps": {"type": "integer", "minimum": 4, "maximum": 15, "default": 8},
            "seed": {"type": "integer", "minimum": 0},
            "style": {"type": "string", "enum": STYLES, "default": "gradient"}
        },
        "additionalProperties": true
    })
}

fn speech_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "voice": {"type": "string", "enum": VOICES.map(|v| v.0), "default": "alto",
                      "description": "A pitch; zh_female_qingxin is seed 000's example voice."},
            "speed": {"type": "number", "minimum": 0.5, "maximum": 2.0, "default": 1.0},
            "sample_rate": {"type": "integer", "enum": [16000, 22050, 24000], "default": 24000},
            "format": {"type": "string", "enum": ["wav"], "default": "wav"}
        },
        "additionalProperties": true
    })
}

fn chat_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "temperature": {"type": "number", "minimum": 0.0, "maximum": 2.0, "default": 1.0},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096, "default": 256},
            "tools": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"enum": ["function"]},
                        "function": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
                    },
                    "required": ["type", "function"]
                }
            },
            "tool_choice": {
                "anyOf": [
                    {"enum": ["none", "auto", "required"]},
                    {"type": "object", "properties": {"function": {"type": "object", "required": ["name"]}}, "required": ["function"]}
                ]
            }
        },
        "additionalProperties": true
    })
}

impl Provider for Demo {
    fn manifest(&self) -> Manifest {
        Manifest::new("demo", env!("CARGO_PKG_VERSION"))
            .idempotent_submit(true)
            .model(
                Model::new("image", "Demo image", "image")
                    .capability("image.generate")
                    .capability("image.edit")
                    .params_schema(image_schema())
                    .price_hint(1.0)
                    .extra(json!({"resolutions": ["256x256", "512x512", "1024x1024"], "styles": STYLES})),
            )
            .model(
                Model::new("video", "Demo video", "video")
                    .capability("video.generate")
                    .params_schema(video_schema())
                    .price_hint(5.0)
                    .extra(json!({
                        "resolutions": video_resolutions(),
                        "durations": (1..=MAX_SECONDS).collect::<Vec<_>>(),
                        "catelogid": ["t2v", "i2v", "ref2v"],
                        "format": "mp4"
                    })),
            )
            .model(
                Model::new("speech", "Demo speech", "audio")
                    .capability("audio.speech")
                    .params_schema(speech_schema())
                    .price_hint(1.0)
                    .extra(json!({"voices": VOICES.map(|v| v.0), "formats": ["wav"]})),
            )
            .model(
                Model::new("chat", "Demo chat", "chat")
                    .capability("chat")
                    .params_schema(chat_schema())
                    .price_hint(0.1)
                    .extra(json!({"context_window": 4096})),
            )
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        match (request.model.as_str(), request.capability.as_str()) {
            ("image", "image.generate") | ("image", "image.edit") => image(&request),
            ("video", "video.generate") => video_submit(&request),
            ("speech", "audio.speech") => speech(&request),
            (model, capability) => Err(Error::invalid(format!("demo/{model} does not do {capability}"))),
        }
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        let spec = VideoSpec::decode(handle)?;
        easel_sdk::log(Level::Debug, &format!("rendering demo video {}x{}", spec.width, spec.height));
        Ok(PollOutcome::Finished(spec.render()))
    }

    fn cancel(&self, handle: &str) -> Result<()> {
        // Nothing runs between submit and poll, so there is nothing to stop.
        VideoSpec::decode(handle).map(|_| ())
    }

    fn chat(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>> {
        if request.model != "chat" {
            return Err(Error::invalid(format!("demo/{} does not do chat", request.model)));
        }
        let messages = request.message_texts();
        let last = messages
            .iter()
            .rev()
            .find(|(role, _)| role == "user")
            .map(|(_, text)| text.as_str())
            .ok_or_else(|| Error::invalid("no user message"))?;
        let max_tokens = request.params.get("max_tokens").and_then(Value::as_u64).unwrap_or(256).max(1);
        let prompt_tokens: u64 = messages.iter().map(|(_, t)| t.split_whitespace().count() as u64).sum();

        let answered = messages.last().filter(|(role, _)| role == "tool").map(|(_, text)| text.as_str());
        if let (None, Some(tool)) = (answered, tool_to_call(&request.params)?) {
            let arguments = json!({"text": last}).to_string();
            let (head, tail) = arguments.split_at(arguments.floor_char_boundary(arguments.len() / 2));
            // As vendors stream a call: its id and name first, then its arguments in pieces.
            let events = vec![
                ChatEvent::ToolCall {
                    index: 0,
                    id: Some(format!("call_demo_{:016x}", fnv1a(last.as_bytes()))),
                    name: Some(tool.to_string()),
                    arguments: String::new(),
                },
                ChatEvent::ToolCall { index: 0, id: None, name: None, arguments: head.to_string() },
                ChatEvent::ToolCall { index: 0, id: None, name: None, arguments: tail.to_string() },
                ChatEvent::Usage { prompt: prompt_tokens, completion: 1 },
                ChatEvent::Finish("tool_calls".into()),
            ];
            return Ok(Box::new(EventList::new(events, 1)));
        }

        let answer = match answered {
            Some(result) => format!("The tool answered: {}", result.trim()),
            None => chat_answer(last),
        };
        let words: Vec<&str> = answer.split_whitespace().collect();
        let take = words.len().min(max_tokens as usize);
        // What a vendor says of the answer as a whole comes first, so every chunk carries it;
        // its finer counts go beside the usage (nothing here is cached or reasoned).
        let mut events = vec![ChatEvent::AnswerInfo {
            system_fingerprint: Some(format!("fp_demo_{}", env!("CARGO_PKG_VERSION"))),
            service_tier: Some("default".into()),
        }];
        events.extend(
            words[..take]
                .iter()
                .enumerate()
                .map(|(i, w)| ChatEvent::Delta(if i == 0 { w.to_string() } else { format!(" {w}") })),
        );
        events.push(ChatEvent::UsageDetails(json!({
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
        })));
        events.push(ChatEvent::Usage { prompt: prompt_tokens, completion: take as u64 });
        events.push(ChatEvent::Finish(if take < words.len() { "length" } else { "stop" }.to_string()));
        Ok(Box::new(EventList::new(events, 1)))
    }
}

/// The function a chat asked with `tools` calls: the one `tool_choice` names (which must be
/// one of them), else the first; none without tools or with `tool_choice: "none"`.
fn tool_to_call(params: &Value) -> Result<Option<&str>> {
    let choice = params.get("tool_choice");
    let names: Vec<&str> = params
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| tool.pointer("/function/name").and_then(Value::as_str))
        .collect();
    if names.is_empty() || choice.and_then(Value::as_str) == Some("none") {
        return Ok(None);
    }
    match choice.and_then(|c| c.pointer("/function/name")).and_then(Value::as_str) {
        Some(named) if !names.contains(&named) => {
            Err(Error::invalid(format!("tool_choice names {named}, which is not one of the tools")))
        }
        Some(named) => Ok(Some(named)),
        None => Ok(Some(names[0])),
    }
}

/// The demo's deterministic reply to `text`.
pub fn chat_answer(text: &str) -> String {
    let words = text.split_whitespace().count();
    let h = fnv1a(text.as_bytes());
    let moods = ["Certainly.", "Interesting.", "Noted.", "Good question."];
    format!(
        "{} You said {words} word{}: \"{}\". This answer comes from the easel demo provider and is the same every time.",
        moods[(h % moods.len() as u64) as usize],
        if words == 1 { "" } else { "s" },
        text.trim()
    )
}

fn seed_of(request: &GenerationRequest) -> Result<u64> {
    let mut seed = fnv1a(request.prompt.as_bytes());
    if request.param_value("seed").is_some() {
        seed ^= request.param_u64("seed", 0)?.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    Ok(seed)
}

fn style_of(request: &GenerationRequest) -> Result<u8> {
    let style = request.param_str("style", "gradient")?;
    STYLES
        .iter()
        .position(|s| *s == style)
        .map(|p| p as u8)
        .ok_or_else(|| Error::invalid(format!("`style` must be one of {STYLES:?}")))
}

fn dimension(request: &GenerationRequest, name: &str) -> Result<u32> {
    let v = request.param_u64(name, 512)?;
    if !(16..=MAX_SIDE).contains(&v) {
        return Err(Error::invalid(format!("`{name}` must be between 16 and {MAX_SIDE}")));
    }
    Ok(v as u32)
}

fn image(request: &GenerationRequest) -> Result<Submission> {
    let (width, height) = (dimension(request, "width")?, dimension(request, "height")?);
    let n = request.param_u64("n", 1)?;
    if !(1..=4).contains(&n) {
        return Err(Error::invalid("`n` must be between 1 and 4"));
    }
    if u64::from(width) * u64::from(height) * n > MAX_PIXELS {
        return Err(Error::invalid(format!(
            "{n} pictures of {width}x{height} are more than the demo draws at once ({MAX_PIXELS} pixels): \
             lower `n` or the size"
        )));
    }
    let mut seed = seed_of(request)?;
    if request.capability == "image.edit" {
        let input = request
            .inputs
            .iter()
            .find(|i| i.kind == "image")
            .ok_or_else(|| Error::invalid("image.edit needs an input image"))?;
        let strength = request.param_f64("strength", 0.6)?;
        if !(0.0..=1.0).contains(&strength) {
            return Err(Error::invalid("`strength` must be between 0 and 1"));
        }
        let source = match (&input.data, &input.url) {
            (Some(data), _) => fnv1a(data),
            (None, Some(url)) => fnv1a(url.as_bytes()),
            (None, None) => {
                return Err(Error::invalid("the input image has neither bytes nor URL"));
            }
        };
        seed ^= source.rotate_left((strength * 32.0) as u32);
    }
    let style = style_of(request)?;
    let outputs = (0..n)
        .map(|i| {
            let look = Look::new(seed.wrapping_add(i), style);
            Output::bytes("image/png", media::png_rgb(width, height, &look.render(width, height, 0.0)))
        })
        .collect();
    Ok(Submission::Finished(
        Finished::new(outputs).usage(json!({"images": n, "pixels": width as u64 * height as u64 * n})),
    ))
}

fn speech(request: &GenerationRequest) -> Result<Submission> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("audio.speech needs text"));
    }
    let voice = request.param_str("voice", "alto")?;
    let base_hz = VOICES
        .iter()
        .find(|v| v.0 == voice)
        .map(|v| v.1)
        .ok_or_else(|| Error::invalid(format!("`voice` must be one of {:?}", VOICES.map(|v| v.0))))?;
    let speed = request.param_f64("speed", 1.0)?;
    if !(0.5..=2.0).contains(&speed) {
        return Err(Error::invalid("`speed` must be between 0.5 and 2"));
    }
    let rate = request.param_u64("sample_rate", 24000)?;
    if ![16000, 22050, 24000].contains(&rate) {
        return Err(Error::invalid("`sample_rate` must be 16000, 22050 or 24000"));
    }
    let format = request.param_str("format", "wav")?;
    if format != "wav" {
        return Err(Error::invalid("`format` must be wav"));
    }
    let samples = media::speak(&request.prompt, rate as u32, base_hz, speed as f32, 30.0);
    let seconds = samples.len() as f64 / rate as f64;
    Ok(Submission::Finished(
        Finished::new(vec![Output::bytes("audio/wav", easel_media::wav_mono16(rate as u32, &samples))])
            .usage(json!({"characters": request.prompt.chars().count(), "seconds": seconds})),
    ))
}

/// Everything a demo video needs, carried in its pending handle.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSpec {
    /// Picture seed.
    pub seed: u64,
    /// Pattern index.
    pub style: u8,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Seconds.
    pub duration: u32,
    /// Frames per second.
    pub fps: u32,
}

impl VideoSpec {
    fn from_request(request: &GenerationRequest) -> Result<Self> {
        let resolution = request.param_str("resolution", "160x90")?;
        let (width, height) = frame_size(resolution, request.param_str("ratio", "16:9")?)?;
        let fps = request.param_u64("fps", 8)?;
        if !(4..=15).contains(&fps) {
            return Err(Error::invalid("`fps` must be between 4 and 15"));
        }
        let spec = VideoSpec {
            seed: seed_of(request)?,
            style: style_of(request)?,
            width,
            height,
            duration: seconds(request)? as u32,
            fps: fps as u32,
        };
        if spec.frame_bytes() > MAX_FRAME_BYTES {
            return Err(Error::invalid(format!(
                "{width}x{height} for {} s at {fps} fps is {} bytes of frames, more than a demo video's \
                 {MAX_FRAME_BYTES}: lower `duration`, `fps` or `resolution`",
                spec.duration,
                spec.frame_bytes()
            )));
        }
        Ok(spec)
    }

    /// Bytes of all its frames as drawn.
    fn frame_bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * 3 * u64::from(self.duration) * u64::from(self.fps)
    }

    /// The pending handle: a prefix and the spec as JSON, hex-encoded.
    pub fn encode(&self) -> String {
        let body = json!({"seed": self.seed.to_string(), "style": self.style, "w": self.width, "h": self.height,
                          "d": self.duration, "fps": self.fps})
        .to_string();
        let hex: String = body.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{HANDLE_PREFIX}{hex}")
    }

    /// Reads a handle made by [`VideoSpec::encode`].
    pub fn decode(handle: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("not a demo video handle: {handle:.60}"));
        let hex = handle.strip_prefix(HANDLE_PREFIX).ok_or_else(bad)?;
        if hex.len() % 2 != 0 || hex.len() > 4096 {
            return Err(bad());
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let num = |k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(bad);
        let spec = VideoSpec {
            seed: v.get("seed").and_then(Value::as_str).and_then(|s| s.parse().ok()).ok_or_else(bad)?,
            style: num("style")?.min(2) as u8,
            width: num("w")? as u32,
            height: num("h")? as u32,
            duration: num("d")? as u32,
            fps: num("fps")? as u32,
        };
        let ok = (16..=320).contains(&spec.width)
            && (16..=320).contains(&spec.height)
            && spec.width.is_multiple_of(2)
            && spec.height.is_multiple_of(2)
            && (1..=MAX_SECONDS).contains(&u64::from(spec.duration))
            && (4..=15).contains(&spec.fps)
            && spec.frame_bytes() <= MAX_FRAME_BYTES;
        if ok { Ok(spec) } else { Err(bad()) }
    }

    /// Renders the MP4.
    pub fn render(&self) -> Finished {
        let look = Look::new(self.seed, self.style);
        let count = self.duration * self.fps;
        let (w, h) = (self.width, self.height);
        let mp4 = easel_media::mp4(w, h, self.fps, count, |f, x, y| look.pixel(x, y, w, h, f as f32 / count as f32));
        Finished::new(vec![Output::bytes("video/mp4", mp4)]).usage(json!({"seconds": self.duration, "frames": count}))
    }
}

/// Width and height of the frames for `resolution` (a frame size or a level) and `ratio`.
fn frame_size(resolution: &str, ratio: &str) -> Result<(u32, u32)> {
    if let Some((w, h)) = resolution.split_once('x').filter(|_| RESOLUTIONS.contains(&resolution)) {
        return Ok((w.parse().expect("numeric"), h.parse().expect("numeric")));
    }
    let Some(&(_, short)) = LEVELS.iter().find(|(name, _)| name.eq_ignore_ascii_case(resolution)) else {
        return Err(Error::invalid(format!(
            "`resolution` must be one of {RESOLUTIONS:?} or {:?}",
            LEVELS.map(|(name, _)| name)
        )));
    };
    if !RATIOS.contains(&ratio) {
        return Err(Error::invalid(format!("`ratio` must be one of {RATIOS:?}")));
    }
    let (across, down) = match ratio.split_once(':') {
        Some((w, h)) => (w.parse::<u32>().expect("numeric"), h.parse::<u32>().expect("numeric")),
        None => (16, 9),
    };
    // 4:2:0 video has even sides.
    let even = |side: u32| side.next_multiple_of(2);
    let short = even(short / LEVEL_SCALE);
    let long = |long_part: u32, short_part: u32| even((short * long_part + short_part / 2) / short_part);
    Ok(if across >= down { (long(across, down), short) } else { (short, long(down, across)) })
}

/// The video's length: a number of seconds, or text such as `5` or `5s` (seed 000).
fn seconds(request: &GenerationRequest) -> Result<u64> {
    let seconds = match request.param_value("duration") {
        Some(Value::String(text)) => {
            let text = text.trim();
            text.strip_suffix('s').unwrap_or(text).parse().ok()
        }
        _ => Some(request.param_u64("duration", 2)?),
    };
    seconds
        .filter(|s| (1..=MAX_SECONDS).contains(s))
        .ok_or_else(|| Error::invalid(format!("`duration` must be 1 to {MAX_SECONDS} seconds, as a number or as `5s`")))
}

fn video_submit(request: &GenerationRequest) -> Result<Submission> {
    let spec = VideoSpec::from_request(request)?;
    Ok(Submission::pending(spec.encode(), VIDEO_POLL_AFTER_MS))
}

#[cfg(test)]
mod tests;
