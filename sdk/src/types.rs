//! Plain-Rust mirrors of the contract's records and variants.
//!
//! These are what a [`Provider`](crate::Provider) sees and returns; the export glue converts
//! them to and from the component-model types, so the same code runs in native tests.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// One model the plugin serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Key inside this provider; the public id is `provider-id/key`.
    pub key: String,
    /// Human name.
    pub name: String,
    /// `image`, `video`, `audio` or `chat`.
    pub kind: String,
    /// Engine capabilities: `chat`, `image.generate`, `image.edit`, `image.inpaint`,
    /// `image.upscale`, `video.generate`, `audio.speech`.
    pub capabilities: Vec<String>,
    /// JSON Schema of the parameters, with defaults, enums and ranges.
    pub params_schema: Value,
    /// Suggested credits per output; operators may override.
    pub price_hint: Option<f64>,
    /// JSON object of extras the APIs show: resolutions, durations, voices.
    pub extra: Value,
}

impl Model {
    /// A model with no capabilities yet, an open parameter schema and no extras.
    pub fn new(key: impl Into<String>, name: impl Into<String>, kind: impl Into<String>) -> Self {
        Model {
            key: key.into(),
            name: name.into(),
            kind: kind.into(),
            capabilities: Vec::new(),
            params_schema: serde_json::json!({"type": "object"}),
            price_hint: None,
            extra: Value::Object(Map::new()),
        }
    }

    /// Adds an engine capability (`image.generate`, `chat`, …).
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    /// Sets the JSON Schema of the parameters.
    pub fn params_schema(mut self, schema: Value) -> Self {
        self.params_schema = schema;
        self
    }

    /// Sets the suggested price per output.
    pub fn price_hint(mut self, credits: f64) -> Self {
        self.price_hint = Some(credits);
        self
    }

    /// Sets the extras object: `resolutions`, `durations` and `voices` for model lists;
    /// `catelogid` (llmage's categories) and `i2v.required` (the frames image-to-video needs,
    /// role to field name, such as `{"first_frame": "image1_file"}`: the default) for llmage;
    /// `max_inputs` (the most inputs of each kind, such as `{"image": 9}`), counted by the
    /// host before it accepts a request, so more are refused with a 400 instead of a task
    /// that fails at submit; `image_answer: "b64_json"` for an image model that OpenAI's
    /// images API answers in base64 unless asked otherwise (as `gpt-image-1`), where the
    /// default is links.
    pub fn extra(mut self, extra: Value) -> Self {
        self.extra = extra;
        self
    }
}

/// What the plugin is and what it may touch.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Stable provider id, e.g. `dashscope`.
    pub id: String,
    /// The plugin's own version.
    pub version: String,
    /// Models served.
    pub models: Vec<Model>,
    /// Hosts it may call (`api.example.com` or `*.example.com`); the operator may narrow.
    pub allowed_hosts: Vec<String>,
    /// Names of the secrets it reads, e.g. `DASHSCOPE_API_KEY`.
    pub secrets: Vec<String>,
    /// True when submitting the same request twice cannot charge twice.
    pub idempotent_submit: bool,
}

impl Manifest {
    /// An empty manifest: no models, no hosts, no secrets, submit not idempotent.
    pub fn new(id: impl Into<String>, version: impl Into<String>) -> Self {
        Manifest {
            id: id.into(),
            version: version.into(),
            models: Vec::new(),
            allowed_hosts: Vec::new(),
            secrets: Vec::new(),
            idempotent_submit: false,
        }
    }

    /// Adds a model.
    pub fn model(mut self, model: Model) -> Self {
        self.models.push(model);
        self
    }

    /// Adds a host the plugin may call (`api.example.com` or `*.example.com`).
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }

    /// Whether easel lets this plugin reach `url`, with a request or an output link: its host
    /// is an allowed host, a subdomain of a `*.domain` entry (never the domain itself), or
    /// anything under `*`; case-insensitive, port ignored, as the host checks it.
    pub fn allows_url(&self, url: &str) -> bool {
        let Ok(parts) = crate::http::split_url(url) else { return false };
        let authority = parts.authority;
        let host = match authority.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
            None => authority.rsplit_once(':').map_or(authority.as_str(), |(host, _)| host),
        };
        self.allowed_hosts.iter().any(|pattern| easel_allowlist::host_matches(pattern, host))
    }

    /// Declares a secret the plugin reads with [`secret`](crate::secret).
    pub fn secret(mut self, name: impl Into<String>) -> Self {
        self.secrets.push(name.into());
        self
    }

    /// Declares whether submitting the same request twice cannot charge twice.
    pub fn idempotent_submit(mut self, idempotent: bool) -> Self {
        self.idempotent_submit = idempotent;
        self
    }
}

/// One input file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputMedia {
    /// `image`, `video`, `audio` or `mask`.
    pub kind: String,
    /// Role the API gave it (`first_frame`, `reference`, …).
    pub role: Option<String>,
    /// A URL the vendor can fetch.
    pub url: Option<String>,
    /// MIME type when known.
    pub content_type: Option<String>,
    /// The bytes, when the host has them and the input has no public URL.
    pub data: Option<Vec<u8>>,
}

/// A normalized generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// Engine capability.
    pub capability: String,
    /// Model key inside this provider.
    pub model: String,
    /// Prompt, empty when the capability takes none.
    pub prompt: String,
    /// JSON object of the other parameters, already validated by the host against the
    /// model's schema.
    pub params: Value,
    /// Input files.
    pub inputs: Vec<InputMedia>,
}

impl GenerationRequest {
    /// A request with no parameters and no inputs; handy in tests.
    pub fn new(capability: impl Into<String>, model: impl Into<String>, prompt: impl Into<String>) -> Self {
        GenerationRequest {
            capability: capability.into(),
            model: model.into(),
            prompt: prompt.into(),
            params: Value::Object(Map::new()),
            inputs: Vec::new(),
        }
    }

    /// Sets one parameter; handy in tests.
    pub fn param(mut self, name: &str, value: impl Into<Value>) -> Self {
        if !self.params.is_object() {
            self.params = Value::Object(Map::new());
        }
        if let Value::Object(map) = &mut self.params {
            map.insert(name.to_string(), value.into());
        }
        self
    }

    /// Adds an input file; handy in tests.
    pub fn input(mut self, input: InputMedia) -> Self {
        self.inputs.push(input);
        self
    }

    /// The raw parameter value, if present and not null.
    pub fn param_value(&self, name: &str) -> Option<&Value> {
        self.params.get(name).filter(|v| !v.is_null())
    }

    /// An unsigned integer parameter, or `default` when absent.
    /// A value of the wrong type is an [`Error::InvalidRequest`].
    pub fn param_u64(&self, name: &str, default: u64) -> Result<u64> {
        match self.param_value(name) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
                .ok_or_else(|| Error::invalid(format!("`{name}` must be a non-negative integer"))),
        }
    }

    /// A number parameter, or `default` when absent.
    pub fn param_f64(&self, name: &str, default: f64) -> Result<f64> {
        match self.param_value(name) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| Error::invalid(format!("`{name}` must be a number"))),
        }
    }

    /// A string parameter, or `default` when absent.
    pub fn param_str<'a>(&'a self, name: &str, default: &'a str) -> Result<&'a str> {
        match self.param_value(name) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| Error::invalid(format!("`{name}` must be a string"))),
        }
    }

    /// A boolean parameter, or `default` when absent.
    pub fn param_bool(&self, name: &str, default: bool) -> Result<bool> {
        match self.param_value(name) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| Error::invalid(format!("`{name}` must be true or false"))),
        }
    }
}

/// One finished output.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Bytes the plugin made, with their MIME type.
    Bytes {
        /// MIME type, e.g. `image/png`.
        content_type: String,
        /// The file.
        data: Vec<u8>,
    },
    /// A vendor URL the host copies into its asset store, with the MIME type if known.
    ///
    /// A link the host cannot copy fails the task, except a by-product: a link declared as
    /// an image, a video or a sound when the task's capability makes another of those (a
    /// video's cover or last frame). Put those after the files the task was asked for; one
    /// the host cannot copy is left out, and the task succeeds with the rest.
    Url {
        /// Where the vendor put the file.
        url: String,
        /// MIME type when known.
        content_type: Option<String>,
    },
    /// Text.
    Text(String),
}

impl Output {
    /// Bytes with a MIME type.
    pub fn bytes(content_type: impl Into<String>, data: Vec<u8>) -> Self {
        Output::Bytes { content_type: content_type.into(), data }
    }

    /// A vendor URL, MIME type unknown.
    pub fn url(url: impl Into<String>) -> Self {
        Output::Url { url: url.into(), content_type: None }
    }
}

/// Outputs plus what they cost.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Finished {
    /// The outputs.
    pub outputs: Vec<Output>,
    /// Usage in the vendor's units, if any (a JSON object).
    pub usage: Option<Value>,
}

impl Finished {
    /// Finished with these outputs and no usage.
    pub fn new(outputs: Vec<Output>) -> Self {
        Finished { outputs, usage: None }
    }

    /// Adds usage (a JSON object).
    pub fn usage(mut self, usage: Value) -> Self {
        self.usage = Some(usage);
        self
    }
}

/// A task the vendor is still working on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Opaque handle the host persists and hands back to `poll` and `cancel`. Keep in it
    /// everything needed to poll: the plugin instance may be a fresh one by then.
    pub handle: String,
    /// Milliseconds until the next poll is useful.
    pub poll_after_ms: u64,
}

/// The answer to `submit`.
#[derive(Debug, Clone, PartialEq)]
pub enum Submission {
    /// Done already.
    Finished(Finished),
    /// Accepted; poll later.
    Pending(Pending),
}

impl Submission {
    /// Done, with these outputs.
    pub fn finished(outputs: Vec<Output>) -> Self {
        Submission::Finished(Finished::new(outputs))
    }

    /// Accepted; poll `handle` again after `poll_after_ms`.
    pub fn pending(handle: impl Into<String>, poll_after_ms: u64) -> Self {
        Submission::Pending(Pending { handle: handle.into(), poll_after_ms })
    }
}

/// The answer to `poll`.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// Still going.
    Running {
        /// 0.0 to 1.0 when the vendor says.
        progress: Option<f32>,
        /// Milliseconds until the next poll is useful.
        poll_after_ms: u64,
    },
    /// Done.
    Finished(Finished),
    /// The vendor gave up.
    Failed(Error),
}

/// A chat request in OpenAI's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// Model key inside this provider.
    pub model: String,
    /// The messages, a JSON array of `{role, content}` objects.
    pub messages: Value,
    /// Temperature, max_tokens and the rest, a JSON object, checked against the model's schema;
    /// only what the schema declares should reach the vendor. The host adds `stream`: `true`
    /// when the client reads the answer as a stream, `false` when it waits for it whole. Ask
    /// the vendor for a stream either way if that is simpler (the host relays the same events),
    /// but read what you asked for: a whole JSON answer read as a stream has no events.
    pub params: Value,
}

impl ChatRequest {
    /// A request with one user message and no parameters; handy in tests.
    pub fn user(model: impl Into<String>, content: impl Into<String>) -> Self {
        ChatRequest {
            model: model.into(),
            messages: serde_json::json!([{"role": "user", "content": content.into()}]),
            params: Value::Object(Map::new()),
        }
    }

    /// The messages as `(role, text)` pairs. Content given as an array of parts keeps
    /// only the text parts, joined with newlines.
    pub fn message_texts(&self) -> Vec<(String, String)> {
        let Some(list) = self.messages.as_array() else { return Vec::new() };
        list.iter()
            .map(|m| {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("user").to_string();
                let text = match m.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                };
                (role, text)
            })
            .collect()
    }
}

/// One piece of a streamed chat answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// More text.
    Delta(String),
    /// More of the model's refusal to answer (OpenAI's `refusal`, most often to a structured
    /// `response_format`), which the client reads apart from the text.
    Refusal(String),
    /// More of what a reasoning model thinks before it answers (the `reasoning_content` of
    /// Qwen, DeepSeek, GLM and Doubao), which the client reads apart from the text.
    Reasoning(String),
    /// Token counts: prompt, completion.
    Usage {
        /// Prompt tokens.
        prompt: u64,
        /// Completion tokens.
        completion: u64,
    },
    /// The vendor's finer token counts in OpenAI's shape, a JSON object of objects of counts
    /// (`prompt_tokens_details` with `cached_tokens`, `completion_tokens_details` with
    /// `reasoning_tokens`, …), which the client sees inside the answer's usage as they are,
    /// beside the counts of [`ChatEvent::Usage`]: those stay the answer's counts, recorded and
    /// shown (the host drops any count of the same name here), and without them no details
    /// are shown. The last one sent counts; one of another shape fails the chat.
    UsageDetails(Value),
    /// What the vendor says of the answer as a whole, in OpenAI's words; send it before the
    /// first text or tool call, so that every chunk the client reads carries it (one sent
    /// later reaches only the chunks after it).
    AnswerInfo {
        /// The vendor's backend configuration (`system_fingerprint`).
        system_fingerprint: Option<String>,
        /// The tier that served the answer (`service_tier`: `default`, `flex`, …).
        service_tier: Option<String>,
    },
    /// A piece of a function call the model asks the client to make: the first piece of a
    /// call names its `id` and function `name`, later pieces with the same `index` add to its
    /// `arguments` text. An answer that makes calls finishes with `tool_calls`.
    ToolCall {
        /// Which call of the answer, from 0.
        index: u32,
        /// The call's id, in its first piece.
        id: Option<String>,
        /// The function's name, in its first piece.
        name: Option<String>,
        /// More of the arguments' JSON text.
        arguments: String,
    },
    /// Why it ended (`stop`, `length`, `tool_calls`, …); the last event, and required: the
    /// host fails a chat whose stream ends without it, or goes on after it.
    Finish(String),
}

/// A chat answer in progress. The host calls [`ChatStream::next`] until it returns an
/// empty list.
pub trait ChatStream {
    /// The next events; an empty list means the stream has ended.
    fn next(&mut self) -> Result<Vec<ChatEvent>>;
}

/// A [`ChatStream`] over a list of events known up front, handing out `batch` per call.
#[derive(Debug, Clone)]
pub struct EventList {
    events: std::collections::VecDeque<ChatEvent>,
    batch: usize,
}

impl EventList {
    /// Streams `events`, `batch` of them per call (at least one).
    pub fn new(events: Vec<ChatEvent>, batch: usize) -> Self {
        EventList { events: events.into(), batch: batch.max(1) }
    }
}

impl ChatStream for EventList {
    fn next(&mut self) -> Result<Vec<ChatEvent>> {
        let n = self.batch.min(self.events.len());
        Ok(self.events.drain(..n).collect())
    }
}

/// A [`ChatStream`] made from a closure called once per `next`.
pub struct FnStream<F>(pub F);

impl<F: FnMut() -> Result<Vec<ChatEvent>>> ChatStream for FnStream<F> {
    fn next(&mut self) -> Result<Vec<ChatEvent>> {
        (self.0)()
    }
}

/// Drains a stream into one list; handy in tests.
pub fn collect_chat(stream: &mut dyn ChatStream) -> Result<Vec<ChatEvent>> {
    let mut all = Vec::new();
    loop {
        let batch = stream.next()?;
        if batch.is_empty() {
            return Ok(all);
        }
        all.extend(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn param_helpers_default_and_check_types() {
        let r = GenerationRequest::new("image.generate", "m", "p")
            .param("w", 64)
            .param("f", 1.5)
            .param("s", "x")
            .param("b", true)
            .param("n", Value::Null)
            .param("whole", 3.0);
        assert_eq!(r.param_u64("w", 1), Ok(64));
        assert_eq!(r.param_u64("missing", 7), Ok(7));
        assert_eq!(r.param_u64("n", 7), Ok(7), "null counts as absent");
        assert_eq!(r.param_u64("whole", 0), Ok(3));
        assert!(matches!(r.param_u64("f", 0), Err(Error::InvalidRequest(_))));
        assert_eq!(r.param_f64("f", 0.0), Ok(1.5));
        assert_eq!(r.param_str("s", "d"), Ok("x"));
        assert!(r.param_str("w", "d").is_err());
        assert_eq!(r.param_bool("b", false), Ok(true));
    }

    #[test]
    fn chat_messages_flatten_text_parts() {
        let req = ChatRequest {
            model: "m".into(),
            messages: json!([
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]}
            ]),
            params: json!({}),
        };
        assert_eq!(
            req.message_texts(),
            vec![("system".to_string(), "be brief".to_string()), ("user".to_string(), "a\nb".to_string())]
        );
    }

    #[test]
    fn event_lists_stream_in_batches() {
        let events = vec![ChatEvent::Delta("a".into()), ChatEvent::Delta("b".into()), ChatEvent::Finish("stop".into())];
        let mut s = EventList::new(events.clone(), 2);
        assert_eq!(s.next().unwrap().len(), 2);
        assert_eq!(s.next().unwrap().len(), 1);
        assert!(s.next().unwrap().is_empty());
        assert_eq!(collect_chat(&mut EventList::new(events.clone(), 0)).unwrap(), events);
        let mut n = 0;
        let mut f = FnStream(move || {
            n += 1;
            Ok(if n < 3 { vec![ChatEvent::Delta(n.to_string())] } else { vec![] })
        });
        assert_eq!(collect_chat(&mut f).unwrap().len(), 2);
    }

    #[test]
    fn builders_fill_the_manifest() {
        let m = Manifest::new("p", "1")
            .allow_host("api.x.com")
            .secret("K")
            .idempotent_submit(true)
            .model(Model::new("k", "K", "image").capability("image.generate").price_hint(2.0).extra(json!({"a": 1})));
        assert_eq!(m.allowed_hosts, ["api.x.com"]);
        assert_eq!(m.secrets, ["K"]);
        assert!(m.idempotent_submit);
        assert_eq!(m.models[0].capabilities, ["image.generate"]);
        assert_eq!(m.models[0].price_hint, Some(2.0));
    }
}
