//! The OpenAI chat-completions wire format, streamed.
//!
//! DashScope's compatible mode, Volcengine Ark, Zhipu and OpenAI itself take the same request
//! (`model`, `messages`, `stream`, `stream_options.include_usage`, sampling parameters, and
//! `tools` / `tool_choice` / `parallel_tool_calls` for a model that declares them, see
//! [`tool_params`]) and answer with the same server-sent events: `chat.completion.chunk`
//! objects whose `choices[0].delta.content` carries text, `choices[0].delta.refusal` a model's
//! refusal to answer, `choices[0].delta.reasoning_content` what a reasoning model thinks
//! (Qwen, DeepSeek, GLM, Doubao), `choices[0].delta.tool_calls` pieces of function calls and
//! `choices[0].finish_reason` the end, then (with `include_usage`) a
//! chunk with `usage` and no choices, then `data: [DONE]`. MiniMax answers in the same shape.
//! Each plugin supplies its own URL, auth and error mapper; Zhipu and MiniMax also build their
//! own bodies.
//!
//! A vendor that also answers whole (`stream: false`, one `chat.completion` object) can be
//! asked that way when the client does not read a stream ([`client_streams`], [`whole`]).
//!
//! An error may also come inside a 2xx answer: OpenAI's `error` object, or MiniMax's
//! `base_resp` with a non-zero `status_code` (in a whole answer, a chunk, or a plain JSON body
//! sent instead of a stream); each goes to the plugin's error mapper with its status.
//!
//! Tool calls are read in both paths and become [`ChatEvent::ToolCall`] pieces: a whole
//! answer's `message.tool_calls` one whole call each, a stream's `delta.tool_calls` piece by
//! piece as they arrive (a call's id and name in its first piece, its arguments' text spread
//! over the pieces with the same index, or all in one piece as Zhipu sends them). An answer
//! that makes calls finishes with `tool_calls`, passed on as the vendor says it.
//!
//! What the vendor says of the answer beyond its text is passed on in OpenAI's words: its
//! `system_fingerprint` and `service_tier` (from the first object that has either) as
//! [`ChatEvent::AnswerInfo`], just before the first text or tool call, and its usage's
//! `prompt_tokens_details` and `completion_tokens_details` (their token counts; a `null` or
//! a fraction there is left out) as [`ChatEvent::UsageDetails`] after the usage.

use easel_sdk::http::{Request, SseEvent, SseReader};
use easel_sdk::serde_json::{Map, Value, json};
use easel_sdk::{ChatEvent, ChatRequest, ChatStream, Error, EventList, Result};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};

/// Maps a vendor error answer onto the contract's errors: the HTTP status (200 for an
/// error that arrives inside a stream), the `Retry-After` header and the body.
pub type ErrorMapper = fn(status: u16, retry_after: Option<&str>, body: &[u8]) -> Error;

/// The sampling parameters every OpenAI-style vendor takes, as JSON Schema properties.
pub fn common_params() -> Map<String, Value> {
    let schema = json!({
        "temperature": {"type": "number", "minimum": 0.0, "maximum": 2.0},
        "top_p": {"type": "number", "exclusiveMinimum": 0.0, "maximum": 1.0},
        "max_tokens": {"type": "integer", "minimum": 1},
        "presence_penalty": {"type": "number", "minimum": -2.0, "maximum": 2.0},
        "frequency_penalty": {"type": "number", "minimum": -2.0, "maximum": 2.0},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
        "seed": {"type": "integer", "minimum": 0, "maximum": i64::MAX}
    });
    match schema {
        Value::Object(map) => map,
        _ => unreachable!("literal object"),
    }
}

/// A chat params schema: [`common_params`] plus `extra` properties.
pub fn params_schema(extra: Value) -> Value {
    let mut properties = common_params();
    if let Value::Object(more) = extra {
        properties.extend(more);
    }
    json!({"type": "object", "properties": properties, "additionalProperties": true})
}

/// The parameters that ask for tool calls, for [`request_body`]'s passthrough of a model
/// whose schema declares them ([`tool_params`]).
pub const TOOL_PARAMS: [&str; 3] = ["tools", "tool_choice", "parallel_tool_calls"];

/// OpenAI's tool parameters, as JSON Schema properties: `tools` (1 to 128 functions, each
/// `{type: "function", function: {name, description?, parameters?, strict?}}`),
/// `tool_choice` (`none`, `auto`, `required` or `{type: "function", function: {name}}`) and
/// `parallel_tool_calls`. A chat model declares them only when its vendor makes tool calls:
/// the host refuses `tools` for a model whose schema does not declare it.
pub fn tool_params() -> Map<String, Value> {
    let schema = json!({
        "tools": {
            "type": "array",
            "minItems": 1,
            "maxItems": 128,
            "items": {
                "type": "object",
                "properties": {
                    "type": {"enum": ["function"]},
                    "function": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "minLength": 1, "maxLength": 64},
                            "description": {"type": "string"},
                            "parameters": {"type": "object", "description": "A JSON Schema of the arguments."},
                            "strict": {"type": ["boolean", "null"]}
                        },
                        "required": ["name"]
                    }
                },
                "required": ["type", "function"]
            },
            "description": "Functions the model may call (OpenAI's shape)."
        },
        "tool_choice": {
            "anyOf": [
                {"enum": ["none", "auto", "required"]},
                {
                    "type": "object",
                    "properties": {
                        "type": {"enum": ["function"]},
                        "function": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}},
                            "required": ["name"]
                        }
                    },
                    "required": ["type", "function"]
                }
            ]
        },
        "parallel_tool_calls": {"type": "boolean"}
    });
    match schema {
        Value::Object(map) => map,
        _ => unreachable!("literal object"),
    }
}

/// `schema` (a chat params schema, e.g. from [`params_schema`]) with [`tool_params`] added to
/// its properties.
pub fn with_tools(mut schema: Value) -> Value {
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        properties.extend(tool_params());
    }
    schema
}

/// The streamed request body: the messages as given (assistant `tool_calls` and `tool`
/// messages included), `stream: true` with usage, and those of `passthrough` parameters the
/// client set. Other parameters are dropped, so a client cannot smuggle vendor options the
/// manifest does not declare.
pub fn request_body(request: &ChatRequest, vendor_model: &str, passthrough: &[&str]) -> Value {
    let mut body = json!({
        "model": vendor_model,
        "messages": request.messages,
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    for name in passthrough {
        if let Some(value) = request.params.get(*name).filter(|v| !v.is_null()) {
            body[*name] = value.clone();
        }
    }
    body
}

/// Whether the client reads the answer as a stream: the host says so in the `stream`
/// parameter; when it does not say, a stream.
pub fn client_streams(request: &ChatRequest) -> bool {
    request.params.get("stream").and_then(Value::as_bool).unwrap_or(true)
}

/// Sends `request` (URL, auth and a body with `stream: false`) and turns the whole
/// `chat.completion` answer into the same events a stream ends with: the text, the tool calls
/// (one whole piece each, indexed by position), the usage, the finish reason. A non-2xx status
/// goes to `map_error`.
pub fn whole(request: Request, map_error: ErrorMapper) -> Result<Box<dyn ChatStream>> {
    let response = request.send()?;
    if !response.is_success() {
        return Err(map_error(response.status(), response.header("retry-after"), response.body()));
    }
    let answer: Answer = response.json()?;
    if answer.is_error() {
        return Err(map_error(response.status(), None, response.body()));
    }
    let mut events: Vec<ChatEvent> = answer.info().into_iter().collect();
    let choice = answer.choices.into_iter().next().unwrap_or_default();
    let message = choice.message.unwrap_or_default();
    if let Some(reasoning) = message.reasoning_content.filter(|t| !t.is_empty()) {
        events.push(ChatEvent::Reasoning(reasoning));
    }
    if let Some(text) = message.content.filter(|t| !t.is_empty()) {
        events.push(ChatEvent::Delta(text));
    }
    if let Some(refusal) = message.refusal.filter(|t| !t.is_empty()) {
        events.push(ChatEvent::Refusal(refusal));
    }
    // Each is a whole call: its place in the list is its index, whatever the vendor wrote.
    for (position, call) in message.tool_calls.into_iter().enumerate() {
        events.push(call.piece(position as u32));
    }
    if let Some((prompt, completion)) = answer.usage.as_ref().and_then(token_counts) {
        events.push(ChatEvent::Usage { prompt, completion });
    }
    events.extend(answer.usage.and_then(usage_details));
    let reason = choice.finish_reason.as_deref().unwrap_or("stop");
    events.push(ChatEvent::Finish(contract_reason(reason).to_string()));
    Ok(Box::new(EventList::new(events, usize::MAX)))
}

/// What the relay reads of a `chat.completion` object or a `chat.completion.chunk`; the rest
/// (ids, model, logprobs, …) is skipped without being built. A text (`content`,
/// `finish_reason`, a call's `id` and `name`), an index or a usage of another type reads as
/// absent, and `choices: null`, `tool_calls: null` or `function: null` as none; the shape
/// around them (`choices` and `tool_calls` lists, `message`, `delta`, a call and its
/// `function` objects) is the wire format's.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Answer {
    error: Option<IgnoredAny>,
    base_resp: Option<BaseResp>,
    #[serde(deserialize_with = "list_or_none")]
    choices: Vec<Choice>,
    usage: Option<Value>,
    #[serde(deserialize_with = "string_or_none")]
    system_fingerprint: Option<String>,
    #[serde(deserialize_with = "string_or_none")]
    service_tier: Option<String>,
}

/// MiniMax's status of an answer, present in successes too (`status_code` 0).
#[derive(Deserialize, Default)]
#[serde(default)]
struct BaseResp {
    #[serde(deserialize_with = "integer_or_none")]
    status_code: Option<i64>,
}

impl Answer {
    /// What it says of the answer as a whole, when it says anything.
    fn info(&self) -> Option<ChatEvent> {
        (self.system_fingerprint.is_some() || self.service_tier.is_some()).then(|| ChatEvent::AnswerInfo {
            system_fingerprint: self.system_fingerprint.clone(),
            service_tier: self.service_tier.clone(),
        })
    }

    /// Whether a 2xx answer or chunk is an error in the vendor's words.
    fn is_error(&self) -> bool {
        self.error.is_some()
            || self.base_resp.as_ref().is_some_and(|status| status.status_code.is_some_and(|code| code != 0))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Choice {
    /// A whole answer's message.
    message: Option<Text>,
    /// A chunk's delta.
    delta: Option<Text>,
    #[serde(deserialize_with = "string_or_none")]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Text {
    #[serde(deserialize_with = "string_or_none")]
    content: Option<String>,
    /// The model's refusal to answer, apart from the text.
    #[serde(deserialize_with = "string_or_none")]
    refusal: Option<String>,
    /// What a reasoning model thinks, apart from the text.
    #[serde(deserialize_with = "string_or_none")]
    reasoning_content: Option<String>,
    #[serde(deserialize_with = "list_or_none")]
    tool_calls: Vec<Call>,
}

/// One of `tool_calls`: a whole call in a `message`, a piece of one in a `delta`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Call {
    /// Which call a piece belongs to (chunks only).
    #[serde(deserialize_with = "index_or_none")]
    index: Option<u32>,
    #[serde(deserialize_with = "string_or_none")]
    id: Option<String>,
    function: Option<Function>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Function {
    #[serde(deserialize_with = "string_or_none")]
    name: Option<String>,
    #[serde(deserialize_with = "json_text_or_none")]
    arguments: Option<String>,
}

impl Call {
    /// The contract's piece with `index`; an empty id or name (some vendors repeat `"id": ""`
    /// in later pieces) is none; no arguments are "".
    fn piece(self, index: u32) -> ChatEvent {
        let function = self.function.unwrap_or_default();
        ChatEvent::ToolCall {
            index,
            id: self.id.filter(|id| !id.is_empty()),
            name: function.name.filter(|name| !name.is_empty()),
            arguments: function.arguments.unwrap_or_default(),
        }
    }
}

fn string_or_none<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(text) => Some(text),
        _ => None,
    })
}

fn list_or_none<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn index_or_none<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    Ok(Value::deserialize(d)?.as_u64().and_then(|i| u32::try_from(i).ok()))
}

fn integer_or_none<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    Ok(Value::deserialize(d)?.as_i64())
}

/// Arguments as JSON text: a string as it is; an object or a list (a vendor that sends the
/// arguments parsed) written back as text; anything else absent.
fn json_text_or_none<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(text) => Some(text),
        parsed @ (Value::Object(_) | Value::Array(_)) => Some(parsed.to_string()),
        _ => None,
    })
}

/// The prompt and completion token counts of a usage object (a missing count is 0).
fn token_counts(usage: &Value) -> Option<(u64, u64)> {
    let usage = usage.as_object()?;
    let count = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some((count("prompt_tokens"), count("completion_tokens")))
}

/// A usage object's finer counts, the fields of OpenAI's usage beside its three counts, when
/// it has any: each an object of token counts, so what a vendor writes there that is no count
/// (a `null`, a fraction) is left out rather than failing the chat.
fn usage_details(usage: Value) -> Option<ChatEvent> {
    let Value::Object(mut usage) = usage else { return None };
    let details: Map<String, Value> = ["prompt_tokens_details", "completion_tokens_details"]
        .into_iter()
        .filter_map(|name| {
            let Value::Object(mut counts) = usage.remove(name)? else { return None };
            counts.retain(|_, count| count.is_u64());
            (!counts.is_empty()).then(|| (name.to_string(), Value::Object(counts)))
        })
        .collect();
    (!details.is_empty()).then(|| ChatEvent::UsageDetails(Value::Object(details)))
}

/// A vendor's finish reason in the contract's words: Zhipu ends a moderated answer with
/// `sensitive`, the contract says OpenAI's `content_filter`.
fn contract_reason(reason: &str) -> &str {
    if reason == "sensitive" { "content_filter" } else { reason }
}

/// Sends `request` (already carrying URL, auth and body) and streams the answer. A
/// non-2xx status is read whole and handed to `map_error`.
pub fn stream(request: Request, map_error: ErrorMapper) -> Result<Box<dyn ChatStream>> {
    let response = request.send_streaming()?;
    if !(200..300).contains(&response.status()) {
        let whole = response.into_response()?;
        return Err(map_error(
            whole.status(),
            whole.header("retry-after"),
            whole.body(),
        ));
    }
    let media_type = response.header("content-type").unwrap_or_default().to_string();
    if !media_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream") {
        // Some vendors answer a failed streamed request with a plain JSON error and a 200.
        let whole = response.into_response()?;
        if easel_sdk::serde_json::from_slice::<Answer>(whole.body()).is_ok_and(|answer| answer.is_error()) {
            return Err(map_error(whole.status(), whole.header("retry-after"), whole.body()));
        }
        return Err(Error::upstream(format!(
            "the vendor answered a streamed chat with {media_type:?}, not an event stream"
        )));
    }
    Ok(Box::new(ChunkStream {
        events: Some(response.sse()),
        finish: None,
        usage: None,
        usage_details: None,
        info: None,
        told_info: false,
        map_error,
        failed: None,
    }))
}

/// Turns `chat.completion.chunk` events into chat events: deltas and tool-call pieces as they
/// come, then usage and the finish reason once the vendor says `[DONE]` (or the body ends after
/// a finish reason; one that ends before either was cut off and is an error), because the usage
/// chunk arrives after the chunk carrying `finish_reason`. Each step waits for the
/// first event that says something, then also takes every event already received, so that
/// a burst of chunks costs the host one step of the plugin, not one per chunk.
struct ChunkStream {
    events: Option<SseReader>,
    finish: Option<String>,
    usage: Option<(u64, u64)>,
    usage_details: Option<ChatEvent>,
    /// What the vendor said of the answer, held until the first text or tool call (so that
    /// it does not end a step by itself).
    info: Option<ChatEvent>,
    /// Whether the answer's info was read already (the vendor repeats it on every chunk).
    told_info: bool,
    map_error: ErrorMapper,
    /// A vendor error met after this step's first events, returned by the next step.
    failed: Option<Error>,
}

impl ChunkStream {
    fn tail(&mut self) -> Vec<ChatEvent> {
        self.events = None;
        let mut tail: Vec<ChatEvent> = self.info.take().into_iter().collect();
        if let Some((prompt, completion)) = self.usage.take() {
            tail.push(ChatEvent::Usage { prompt, completion });
        }
        tail.extend(self.usage_details.take());
        tail.push(ChatEvent::Finish(
            self.finish.take().unwrap_or_else(|| "stop".to_string()),
        ));
        tail
    }

    /// Reads one chunk's delta and tool-call pieces (into `out`), usage and finish reason. A
    /// piece that says nothing (no id, no name, no arguments) is skipped.
    fn take(&mut self, event: &SseEvent, out: &mut Vec<ChatEvent>) -> Result<()> {
        let mut chunk: Answer = event.json()?;
        if chunk.is_error() {
            self.events = None;
            return Err((self.map_error)(200, None, event.data.as_bytes()));
        }
        if let Some(counts) = chunk.usage.as_ref().and_then(token_counts) {
            self.usage = Some(counts);
        }
        if !self.told_info {
            self.info = chunk.info();
            self.told_info = self.info.is_some();
        }
        if let Some(details) = chunk.usage.take().and_then(usage_details) {
            self.usage_details = Some(details);
        }
        if let Some(choice) = chunk.choices.into_iter().next() {
            let delta = choice.delta.unwrap_or_default();
            if let Some(reasoning) = delta.reasoning_content.filter(|t| !t.is_empty()) {
                out.extend(self.info.take());
                out.push(ChatEvent::Reasoning(reasoning));
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                out.extend(self.info.take());
                out.push(ChatEvent::Delta(text));
            }
            if let Some(refusal) = delta.refusal.filter(|t| !t.is_empty()) {
                out.extend(self.info.take());
                out.push(ChatEvent::Refusal(refusal));
            }
            for (position, call) in delta.tool_calls.into_iter().enumerate() {
                // A piece's index names its call; one without takes its place in the list.
                let index = call.index.unwrap_or(position as u32);
                let piece = call.piece(index);
                if matches!(&piece, ChatEvent::ToolCall { id, name, arguments, .. }
                            if id.is_some() || name.is_some() || !arguments.is_empty())
                {
                    out.extend(self.info.take());
                    out.push(piece);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(contract_reason(&reason).to_string());
            }
        }
        Ok(())
    }
}

impl ChatStream for ChunkStream {
    fn next(&mut self) -> Result<Vec<ChatEvent>> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        let mut out = Vec::new();
        loop {
            let Some(events) = self.events.as_mut() else {
                return Ok(out);
            };
            let event = if out.is_empty() {
                events.next_event()?
            } else {
                match events.next_buffered() {
                    Some(event) => Some(event),
                    None => return Ok(out),
                }
            };
            let event = match event {
                // A body that ends before the vendor said it was done was cut off: the answer
                // is not whole, and must not be charged as if it were.
                None if self.finish.is_none() => {
                    self.events = None;
                    let error = Error::upstream(
                        "the vendor's stream ended without a finish reason or [DONE]: the \
                         answer was cut off",
                    );
                    if out.is_empty() {
                        return Err(error);
                    }
                    self.failed = Some(error);
                    return Ok(out);
                }
                None => break,
                Some(e) if e.is_done_marker() => break,
                Some(e) if e.data.trim().is_empty() => continue,
                Some(e) => e,
            };
            if let Err(error) = self.take(&event, &mut out) {
                if out.is_empty() {
                    return Err(error);
                }
                self.failed = Some(error);
                return Ok(out);
            }
        }
        out.extend(self.tail());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_sdk::collect_chat;
    use easel_sdk::testing::{Expect, Reply, Script};

    fn mapper(status: u16, _retry: Option<&str>, body: &[u8]) -> Error {
        Error::invalid(format!("{status}: {}", String::from_utf8_lossy(body)))
    }

    #[test]
    fn body_keeps_only_passthrough_params() {
        let mut req = ChatRequest::user("m", "hi");
        req.params = json!({"temperature": 0.5, "secret_option": 1, "max_tokens": null});
        let body = request_body(&req, "vendor-m", &["temperature", "max_tokens"]);
        assert_eq!(
            body,
            json!({"model": "vendor-m", "messages": [{"role": "user", "content": "hi"}], "stream": true,
                   "stream_options": {"include_usage": true}, "temperature": 0.5})
        );
    }

    /// The events [`whole`] makes of a vendor that answers `answer` with status 200.
    fn whole_events(answer: Value) -> Vec<ChatEvent> {
        let _s = Script::new()
            .exchange(Expect::post("https://chat.example/v1"), Reply::json(200, answer))
            .install();
        let mut s = whole(Request::post("https://chat.example/v1"), mapper).unwrap();
        collect_chat(s.as_mut()).unwrap()
    }

    fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> ChatEvent {
        let (id, name) = (id.map(Into::into), name.map(Into::into));
        ChatEvent::ToolCall { index, id, name, arguments: arguments.into() }
    }

    /// The events [`stream`] makes of a vendor that streams `chunks`.
    fn streamed_events<const N: usize>(chunks: [&str; N]) -> Vec<ChatEvent> {
        let _s = Script::new().exchange(Expect::post("https://chat.example/v1"), Reply::sse(chunks)).install();
        let mut s = stream(Request::post("https://chat.example/v1"), mapper).unwrap();
        collect_chat(s.as_mut()).unwrap()
    }

    #[test]
    fn tool_params_declare_openais_shape() {
        let params = tool_params();
        let mut names: Vec<&str> = params.keys().map(String::as_str).collect();
        let mut expected = TOOL_PARAMS.to_vec();
        names.sort_unstable();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(params["tools"]["minItems"], 1);
        assert_eq!(params["tools"]["maxItems"], 128);
        assert_eq!(params["tools"]["items"]["required"], json!(["type", "function"]));
        assert_eq!(params["tools"]["items"]["properties"]["function"]["required"], json!(["name"]));
        assert_eq!(params["tool_choice"]["anyOf"][0]["enum"], json!(["none", "auto", "required"]));
        assert_eq!(params["tool_choice"]["anyOf"][1]["required"], json!(["type", "function"]));
        assert_eq!(params["parallel_tool_calls"], json!({"type": "boolean"}));
        let schema = with_tools(params_schema(json!({"user": {"type": "string"}})));
        let properties = schema["properties"].as_object().unwrap();
        let names = ["temperature", "user", "tools", "tool_choice", "parallel_tool_calls"];
        assert!(names.iter().all(|p| properties.contains_key(*p)));
        assert_eq!(schema["properties"]["tools"], params["tools"]);
    }

    #[test]
    fn tool_params_and_tool_messages_pass_through_the_body() {
        let mut req = ChatRequest::user("m", "weather?");
        req.messages = json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null,
             "tool_calls": [{"id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]);
        let tools =
            json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        req.params =
            json!({"tools": tools, "tool_choice": "required", "parallel_tool_calls": false, "functions": []});
        let body = request_body(&req, "vendor-m", &TOOL_PARAMS);
        assert_eq!(
            body,
            json!({"model": "vendor-m", "messages": req.messages, "stream": true,
                   "stream_options": {"include_usage": true},
                   "tools": tools, "tool_choice": "required", "parallel_tool_calls": false})
        );
    }

    #[test]
    fn a_whole_answer_with_tool_calls_gives_one_whole_piece_per_call() {
        assert_eq!(
            whole_events(json!({"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls",
                   "message": {"role": "assistant", "content": null, "tool_calls": [
                       {"id": "call_a", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                       {"id": "call_b", "type": "function",
                        "function": {"name": "get_time", "arguments": "{\"zone\":\"CET\"}"}}]}}],
                   "usage": {"prompt_tokens": 40, "completion_tokens": 22, "total_tokens": 62}})),
            vec![
                call(0, Some("call_a"), Some("get_weather"), r#"{"city":"Paris"}"#),
                call(1, Some("call_b"), Some("get_time"), r#"{"zone":"CET"}"#),
                ChatEvent::Usage { prompt: 40, completion: 22 },
                ChatEvent::Finish("tool_calls".into())
            ]
        );
        // Text before calls comes first; parsed arguments are written back as text; a whole
        // call's index is its place in the list, even where the vendor numbered it otherwise.
        assert_eq!(
            whole_events(json!({"choices": [{"finish_reason": "tool_calls", "message": {"content": "Let me look.",
                   "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"a": [1, 2]}}},
                                  {"index": 0, "id": "d", "function": {"name": "g", "arguments": "{}"}}]}}]})),
            vec![
                ChatEvent::Delta("Let me look.".into()),
                call(0, Some("c"), Some("f"), r#"{"a":[1,2]}"#),
                call(1, Some("d"), Some("g"), "{}"),
                ChatEvent::Finish("tool_calls".into())
            ]
        );
    }

    /// A model that declines a structured answer says so in `refusal`, whole or in pieces,
    /// with no text: the client must read it apart from the answer's text.
    #[test]
    fn a_refusal_is_passed_on_apart_from_the_text() {
        let refused = "I can't help with that.";
        assert_eq!(
            whole_events(json!({"choices": [{"finish_reason": "stop",
                                              "message": {"role": "assistant", "content": null, "refusal": refused}}]})),
            vec![ChatEvent::Refusal(refused.into()), ChatEvent::Finish("stop".into())]
        );
        assert_eq!(
            streamed_events([
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":""},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{"refusal":"I can't"},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{"refusal":" help with that."},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                "[DONE]",
            ]),
            vec![
                ChatEvent::Refusal("I can't".into()),
                ChatEvent::Refusal(" help with that.".into()),
                ChatEvent::Finish("stop".into())
            ]
        );
    }

    /// A reasoning model (Qwen with `enable_thinking`, DeepSeek-R1, GLM, Doubao) thinks in
    /// `reasoning_content` before it answers, whole or in pieces: passed on apart from the text.
    #[test]
    fn reasoning_is_passed_on_apart_from_the_text() {
        assert_eq!(
            whole_events(json!({"choices": [{"finish_reason": "stop",
                                              "message": {"role": "assistant", "content": "4", "reasoning_content": "2+2 is 4."}}]})),
            vec![ChatEvent::Reasoning("2+2 is 4.".into()), ChatEvent::Delta("4".into()), ChatEvent::Finish("stop".into())]
        );
        assert_eq!(
            streamed_events([
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":"2+2"},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"","reasoning_content":" is 4."},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"4","reasoning_content":null},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                "[DONE]",
            ]),
            vec![
                ChatEvent::Reasoning("2+2".into()),
                ChatEvent::Reasoning(" is 4.".into()),
                ChatEvent::Delta("4".into()),
                ChatEvent::Finish("stop".into())
            ]
        );
    }

    /// OpenAI's answers as they come now: a fingerprint and a tier on the answer (on every
    /// chunk of a stream), finer counts inside the usage.
    #[test]
    fn what_the_vendor_says_of_the_answer_is_passed_on() {
        let usage = json!({"prompt_tokens": 40, "completion_tokens": 22, "total_tokens": 62,
                           "prompt_tokens_details": {"cached_tokens": 32, "audio_tokens": 0, "image_tokens": null},
                           "completion_tokens_details": {"reasoning_tokens": 12}, "queue_time": 0.1});
        let info = ChatEvent::AnswerInfo {
            system_fingerprint: Some("fp_a1".into()),
            service_tier: Some("default".into()),
        };
        let details = ChatEvent::UsageDetails(json!({"prompt_tokens_details": {"cached_tokens": 32, "audio_tokens": 0},
                                                      "completion_tokens_details": {"reasoning_tokens": 12}}));
        assert_eq!(
            whole_events(json!({"choices": [{"finish_reason": "stop", "message": {"content": "hi"}}],
                                "system_fingerprint": "fp_a1", "service_tier": "default", "usage": usage})),
            vec![
                info.clone(),
                ChatEvent::Delta("hi".into()),
                ChatEvent::Usage { prompt: 40, completion: 22 },
                details.clone(),
                ChatEvent::Finish("stop".into())
            ]
        );
        let chunk = |rest: &str| format!(r#"{{"system_fingerprint":"fp_a1","service_tier":"default",{rest}}}"#);
        let (opening, text, finish, counted) = (
            chunk(r#""choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]"#),
            chunk(r#""choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]"#),
            chunk(r#""choices":[{"index":0,"delta":{},"finish_reason":"stop"}]"#),
            chunk(&format!(r#""choices":[],"usage":{usage}"#)),
        );
        // The info once, held for the first text rather than sent alone.
        assert_eq!(
            streamed_events([&opening, &text, &finish, &counted, "[DONE]"]),
            vec![
                info.clone(),
                ChatEvent::Delta("hi".into()),
                ChatEvent::Usage { prompt: 40, completion: 22 },
                details,
                ChatEvent::Finish("stop".into())
            ]
        );
        // An answer with no text still says it; a vendor that says nothing of it sends neither.
        assert_eq!(
            streamed_events([&opening, &finish, "[DONE]"]),
            vec![info, ChatEvent::Finish("stop".into())]
        );
        assert_eq!(
            whole_events(json!({"choices": [{"finish_reason": "stop", "message": {"content": "hi"}}],
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "prompt_tokens_details": null,
                                          "completion_tokens_details": {"reasoning_tokens": null, "text_tokens": 0.5}}})),
            vec![
                ChatEvent::Delta("hi".into()),
                ChatEvent::Usage { prompt: 1, completion: 1 },
                ChatEvent::Finish("stop".into())
            ]
        );
    }

    /// OpenAI's way: a call's first piece names it with empty arguments, later pieces with the
    /// same index carry the arguments' text; a piece that says nothing is skipped.
    #[test]
    fn streamed_tool_calls_come_piece_by_piece_in_order() {
        assert_eq!(
            streamed_events([
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Par"}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"","function":{"name":null,"arguments":"is\"}"}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":""}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
                r#"{"choices":[],"usage":{"prompt_tokens":50,"completion_tokens":30,"total_tokens":80}}"#,
                "[DONE]",
            ]),
            vec![
                call(0, Some("call_a"), Some("get_weather"), ""),
                call(0, None, None, r#"{"ci"#),
                call(0, None, None, r#"ty":"Par"#),
                call(0, None, None, r#"is"}"#),
                call(1, Some("call_b"), Some("get_time"), ""),
                call(1, None, None, "{}"),
                ChatEvent::Usage { prompt: 50, completion: 30 },
                ChatEvent::Finish("tool_calls".into())
            ]
        );
    }

    /// Zhipu's way: each call whole in one chunk, with the finish reason and usage.
    #[test]
    fn a_whole_call_in_one_chunk_is_one_piece() {
        assert_eq!(
            streamed_events([
                r#"{"id":"1","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_-812","index":0,"type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"北京\"}"}}]}}]}"#,
                r#"{"id":"1","choices":[{"index":0,"finish_reason":"tool_calls","delta":{"role":"assistant","content":""}}],"usage":{"prompt_tokens":158,"completion_tokens":12,"total_tokens":170}}"#,
                "[DONE]",
            ]),
            vec![
                call(0, Some("call_-812"), Some("get_weather"), r#"{"city": "北京"}"#),
                ChatEvent::Usage { prompt: 158, completion: 12 },
                ChatEvent::Finish("tool_calls".into())
            ]
        );
    }

    /// Pieces without an index take their place in the list; a wrong-typed index reads as
    /// absent, `tool_calls: null` and `function: null` as none; text around calls stays.
    #[test]
    fn lenient_tool_call_pieces() {
        assert_eq!(
            streamed_events([
                r#"{"choices":[{"delta":{"content":"ok","tool_calls":null}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"id":"x","function":{"name":"f"}},{"index":"1","id":"y","function":{"name":"g","arguments":"{}"}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":null},{"index":1,"function":{"arguments":7}}]}}]}"#,
                r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
                "[DONE]",
            ]),
            vec![
                ChatEvent::Delta("ok".into()),
                call(0, Some("x"), Some("f"), ""),
                call(1, Some("y"), Some("g"), "{}"),
                ChatEvent::Finish("tool_calls".into())
            ]
        );
    }

    #[test]
    fn texts_of_another_type_and_null_parts_read_as_absent() {
        assert_eq!(
            whole_events(json!({"id": "x", "error": null, "usage": null, "choices": [{"index": 0,
                   "message": {"role": "assistant", "content": null, "tool_calls": []}, "finish_reason": 7}]})),
            vec![ChatEvent::Finish("stop".into())]
        );
        assert_eq!(
            whole_events(json!({"object": "chat.completion", "choices": null, "usage": {"prompt_tokens": 2}})),
            vec![ChatEvent::Usage { prompt: 2, completion: 0 }, ChatEvent::Finish("stop".into())]
        );
    }

    #[test]
    fn a_whole_answer_gives_the_events_a_stream_ends_with() {
        assert_eq!(
            whole_events(json!({"object": "chat.completion", "choices": [{"index": 0,
                   "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "sensitive"}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})),
            vec![
                ChatEvent::Delta("Hello".into()),
                ChatEvent::Usage { prompt: 3, completion: 1 },
                ChatEvent::Finish("content_filter".into())
            ]
        );
        let mut asked = ChatRequest::user("m", "hi");
        assert!(client_streams(&asked), "a host that does not say gets a stream");
        asked.params = json!({"stream": false});
        assert!(!client_streams(&asked));
    }

    /// Events that arrived together are one step; one still arriving is waited for in the
    /// next, and a vendor error behind deltas of the same step fails the step after them.
    #[test]
    fn a_step_takes_every_event_already_received() {
        let chunk = |text: &str| format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n");
        let _s = Script::new()
            .exchange(
                Expect::post("https://chat.example/v1"),
                Reply::status(200)
                    .header("content-type", "text/event-stream; charset=utf-8")
                    .chunk(format!("{}{}data: {{\"choices\":[", chunk("a"), chunk("b")))
                    .chunk(format!("]}}\n\n{}data: {{\"error\":{{\"message\":\"late\"}}}}\n\n", chunk("c"))),
            )
            .install();
        let mut s = stream(Request::post("https://chat.example/v1"), mapper).unwrap();
        assert_eq!(s.next().unwrap(), vec![ChatEvent::Delta("a".into()), ChatEvent::Delta("b".into())]);
        assert_eq!(s.next().unwrap(), vec![ChatEvent::Delta("c".into())]);
        let error = s.next().unwrap_err();
        assert!(error.to_string().contains("late"), "{error}");
        assert_eq!(s.next().unwrap(), Vec::new());
    }

    #[test]
    fn chunks_become_deltas_then_usage_then_finish() {
        let _s = Script::new()
            .exchange(
                Expect::post("https://chat.example/v1"),
                Reply::sse([
                    r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                    r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
                    r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"length"}]}"#,
                    r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
                    "[DONE]",
                ]),
            )
            .install();
        let mut s = stream(Request::post("https://chat.example/v1"), mapper).unwrap();
        assert_eq!(
            collect_chat(s.as_mut()).unwrap(),
            vec![
                ChatEvent::Delta("Hel".into()),
                ChatEvent::Delta("lo".into()),
                ChatEvent::Usage {
                    prompt: 3,
                    completion: 2
                },
                ChatEvent::Finish("length".into())
            ]
        );
    }

    #[test]
    fn error_statuses_and_in_stream_errors_go_through_the_mapper() {
        let _s = Script::new()
            .exchange(
                Expect::post("https://chat.example/v1"),
                Reply::json(401, json!({"error": {"code": "bad_key"}})),
            )
            .exchange(
                Expect::post("https://chat.example/v1"),
                Reply::sse([
                    r#"{"choices":[{"delta":{"content":"a"}}]}"#,
                    r#"{"error":{"code":"x"}}"#,
                ]),
            )
            .install();
        let e = stream(Request::post("https://chat.example/v1"), mapper)
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::InvalidRequest(m) if m.starts_with("401") && m.contains("bad_key"))
        );
        let mut s = stream(Request::post("https://chat.example/v1"), mapper).unwrap();
        assert_eq!(s.next().unwrap(), vec![ChatEvent::Delta("a".into())]);
        assert!(matches!(s.next(), Err(Error::InvalidRequest(m)) if m.starts_with("200")));
        assert!(
            s.next().unwrap().is_empty(),
            "the stream ends after an error"
        );
    }

    /// MiniMax's `base_resp` with a non-zero code is an error wherever it comes: as plain
    /// JSON in place of a stream, in a chunk, in a whole answer; a zero code is a success.
    #[test]
    fn a_non_zero_base_resp_is_an_error_and_a_zero_one_is_not() {
        let failed = json!({"base_resp": {"status_code": 1039, "status_msg": "token limit"}});
        let _s = Script::new()
            .exchange(Expect::post("https://chat.example/v1"), Reply::json(200, failed.clone()))
            .exchange(
                Expect::post("https://chat.example/v1"),
                Reply::sse([
                    r#"{"choices":[{"delta":{"content":"a"}}],"base_resp":{"status_code":0}}"#,
                    r#"{"base_resp":{"status_code":1027,"status_msg":"output sensitive"}}"#,
                ]),
            )
            .exchange(Expect::post("https://chat.example/v1"), Reply::json(200, failed))
            .install();
        let e = stream(Request::post("https://chat.example/v1"), mapper).err().unwrap();
        assert!(matches!(e, Error::InvalidRequest(m) if m.starts_with("200") && m.contains("1039")));
        let mut s = stream(Request::post("https://chat.example/v1"), mapper).unwrap();
        assert_eq!(s.next().unwrap(), vec![ChatEvent::Delta("a".into())]);
        assert!(matches!(s.next(), Err(Error::InvalidRequest(m)) if m.contains("1027")));
        let e = whole(Request::post("https://chat.example/v1"), mapper).err().unwrap();
        assert!(matches!(e, Error::InvalidRequest(m) if m.contains("1039")));
    }

    /// A stream cut off before the vendor's finish or `[DONE]`, and a whole answer where a
    /// stream was asked for, are failures: never an answer that looks complete.
    #[test]
    fn cut_off_or_unstreamed_answers_fail() {
        let _s = Script::new()
            .exchange(
                Expect::post("https://chat.example/v1"),
                Reply::sse([r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#]),
            )
            .exchange(
                Expect::post("https://chat.example/v1"),
                Reply::sse([r#"{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}"#]),
            )
            .exchange(
                Expect::post("https://chat.example/v1"),
                Reply::json(200, json!({"choices": [{"message": {"content": "whole"}}]})),
            )
            .install();
        let mut s = stream(Request::post("https://chat.example/v1"), mapper).unwrap();
        assert_eq!(s.next().unwrap(), vec![ChatEvent::Delta("Hel".into())]);
        assert!(matches!(s.next(), Err(Error::UpstreamUnavailable(m)) if m.contains("cut off")));
        assert!(s.next().unwrap().is_empty(), "the stream ends after an error");
        let mut s = stream(Request::post("https://chat.example/v1"), mapper).unwrap();
        assert_eq!(
            collect_chat(s.as_mut()).unwrap(),
            vec![ChatEvent::Delta("ok".into()), ChatEvent::Finish("stop".into())],
            "a finish reason without [DONE] is a whole answer"
        );
        let e = stream(Request::post("https://chat.example/v1"), mapper).err().unwrap();
        assert!(matches!(&e, Error::UpstreamUnavailable(m) if m.contains("application/json")), "{e}");
    }
}
