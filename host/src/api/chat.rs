//! Chat for llmage and the OpenAI paths: find the model, accept the chat as a task on the
//! engine (see [`crate::engine::chat`]), and render its events as OpenAI's `chat.completion`
//! object or `chat.completion.chunk` server-sent events. The task's id is the answer's id.
//!
//! A stream that breaks mid-way (the vendor's failure, or a stop whose grace ran out) ends with
//! an error event, and its task fails (refunded); it is never retried. Each dialect adds its
//! own fields to the chunks through [`ChunkStyle`].

use std::convert::Infallible;
use std::task::Poll;
use std::time::Duration;

use axum::{
    Json,
    body::{Body, Bytes},
    http::header,
    response::{IntoResponse, Response},
};
use futures::{StreamExt, stream};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    api::AppState,
    engine::{
        chat::{AnswerUsage, ChatSession, ShownUsage, ToolCalls},
        front_door::{Admission, Refusal},
        provider::{AnswerInfo, ChatEvent, ToolCallPiece, schema::InvalidParam},
        registry::{ResolveError, Resolved},
        task::now_ms,
    },
};

/// Extra fields a dialect puts on each chunk and on the final object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkStyle {
    /// Plain OpenAI.
    OpenAi,
    /// llmage: also top-level `content`, `reasoning_content` and `finish` ("0"/"1"); tool
    /// calls only in `choices`, as OpenAI puts them.
    Llmage,
}

impl ChunkStyle {
    /// The event a stream ends with when `refusal` cut it: OpenAI's error object (its
    /// `message`, `type`, `param` and `code`), or llmage's `{"error": {"message"}}`.
    fn error_event(self, refusal: Refusal) -> Value {
        match self {
            ChunkStyle::OpenAi => crate::api::openai::error_event(refusal),
            ChunkStyle::Llmage => {
                let crate::api::error::Error(_, message) = refusal.into();
                json!({"error": {"message": message}})
            }
        }
    }
}

/// A chat a dialect has parsed.
pub struct ChatCall {
    /// Owner.
    pub client_id: String,
    /// Dialect name stored on the task.
    pub api: &'static str,
    /// The model that answers.
    pub resolved: Resolved,
    /// `[{role, content}]`.
    pub messages: Vec<Value>,
    /// Temperature, max_tokens and the rest, checked against the model's schema.
    pub params: Map<String, Value>,
    /// What the dialect needs later to render the task.
    pub extra: Value,
    /// Whether the client reads the answer as server-sent events.
    pub stream: bool,
}

/// Checks, prices and records the chat through the engine's front door, and opens the
/// model's stream.
pub async fn open(state: &AppState, call: ChatCall) -> Result<ChatSession, Refusal> {
    let ChatCall {
        client_id,
        api,
        resolved,
        messages,
        params,
        extra,
        stream,
    } = call;
    let admission = Admission {
        client_id,
        api,
        resolved,
        capability: "chat".into(),
        prompt: last_user_text(&messages),
        params,
        inputs: Vec::new(),
        webhook: None,
        extra,
        idempotency: None,
        priority: None,
    };
    state.engine.open_chat(admission, messages, stream).await
}

/// Whether OpenAI's `stream_options` ask for a final usage chunk (`include_usage: true`), or,
/// as OpenAI answers them, why they are refused: options for an answer that is not streamed,
/// or not an object with a boolean `include_usage`.
pub fn includes_usage(stream: bool, stream_options: Option<&Value>) -> Result<bool, Refusal> {
    let Some(options) = stream_options.filter(|options| !options.is_null()) else {
        return Ok(false);
    };
    let invalid = |message: &str| {
        Refusal::Invalid(InvalidParam {
            param: Some("stream_options".into()),
            message: message.into(),
            ..Default::default()
        })
    };
    if !stream {
        return Err(invalid(
            "stream_options is only allowed when stream is true",
        ));
    }
    match options.get("include_usage") {
        None | Some(Value::Null) if options.is_object() => Ok(false),
        Some(Value::Bool(include)) => Ok(*include),
        _ => Err(invalid(
            "stream_options must be an object whose include_usage is a boolean",
        )),
    }
}

/// The text of the last user message (a string, or the text parts of a list), as the task's
/// prompt.
fn last_user_text(messages: &[Value]) -> String {
    let Some(content) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
    else {
        return String::new();
    };
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The whole answer, for `stream: false`: OpenAI's `chat.completion` object.
pub async fn complete(
    model_name: &str,
    mut session: ChatSession,
    style: ChunkStyle,
) -> Result<Response, Refusal> {
    let (mut text, mut refusal, mut reasoning) = (String::new(), String::new(), String::new());
    let mut tool_calls = ToolCalls::default();
    let mut usage = AnswerUsage::default();
    let mut info = AnswerInfo::default();
    let mut finish = "stop".to_string();
    while let Some(event) = session.events.next().await {
        match event? {
            ChatEvent::Delta(delta) => text.push_str(&delta),
            ChatEvent::Refusal(piece) => refusal.push_str(&piece),
            ChatEvent::Reasoning(piece) => reasoning.push_str(&piece),
            ChatEvent::ToolCall(mut piece) => tool_calls.add(&mut piece, &session.task.id),
            ChatEvent::AnswerInfo(told) => info = told,
            ChatEvent::Finish(reason) => finish = reason,
            counts @ (ChatEvent::Usage { .. } | ChatEvent::UsageDetails(_)) => {
                usage.take(&counts);
            }
        }
    }
    let llmage = style == ChunkStyle::Llmage;
    let completion = Answer {
        id: &session.task.id,
        object: "chat.completion",
        created: now_ms() / 1000,
        model: model_name,
        choices: [CompletionChoice {
            index: 0,
            message: Message {
                role: "assistant",
                // OpenAI's: no text beside tool calls or a refusal is `null`, not "".
                content: ((tool_calls.is_empty() && refusal.is_empty()) || !text.is_empty())
                    .then_some(text.as_str()),
                refusal: (!refusal.is_empty()).then_some(refusal.as_str()),
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning.as_str()),
                annotations: [],
                tool_calls: (!tool_calls.is_empty()).then(|| tool_calls.into_json()),
            },
            logprobs: None,
            finish_reason: &finish,
        }],
        usage: Some(usage.shown().unwrap_or_default()),
        service_tier: info.service_tier.as_deref(),
        system_fingerprint: info.system_fingerprint.as_deref(),
        // llmage's one text field: a model's refusal is what it said.
        content: llmage.then_some(if text.is_empty() { &refusal } else { &text }),
        reasoning_content: (llmage && !reasoning.is_empty()).then_some(Some(&reasoning)),
        finish: llmage.then_some("1"),
    };
    Ok(Json(completion).into_response())
}

/// A `chat.completion` (choices with a `message`) or a `chat.completion.chunk` (choices with
/// a `delta`), written straight from its parts. llmage adds the text (or the refusal) as
/// `content`, the reasoning as `reasoning_content` (on chunks `null` where they hold none), and
/// `finish` (`"1"` once finished, `"0"` before).
#[derive(Serialize)]
struct Answer<'a, C> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: C,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ShownUsage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    /// `Some(None)` writes `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish: Option<&'static str>,
}

/// OpenAI's choice; `logprobs` is always there, `null` (easel offers none), as OpenAI's typed
/// clients read it.
#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
}

/// OpenAI's message; `refusal` is always there, `null` when the model did not refuse, and so
/// are `annotations`, empty (no vendor's citations are passed on). A reasoning model's
/// thinking is `reasoning_content`, as Qwen, DeepSeek, GLM and Doubao write it, when it has
/// any.
#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    annotations: [(); 0],
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Value>,
}

/// Builds the `chat.completion.chunk` events of one answer.
struct Chunks {
    id: String,
    created: i64,
    model: String,
    style: ChunkStyle,
    /// What the vendor said of the answer, on every chunk from when it said it.
    info: AnswerInfo,
}

impl Chunks {
    /// One chunk: a delta, the finishing chunk, or OpenAI's usage-only chunk (no choices).
    fn event(
        &self,
        delta: Delta<'_>,
        finish: Option<&str>,
        usage: Option<ShownUsage<'_>>,
    ) -> Bytes {
        let choice = Choice {
            index: 0,
            delta,
            logprobs: (),
            finish_reason: finish,
        };
        let llmage = self.style == ChunkStyle::Llmage;
        let chunk = Answer {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: if usage.is_some() {
                &[][..]
            } else {
                std::slice::from_ref(&choice)
            },
            usage,
            service_tier: self.info.service_tier.as_deref(),
            system_fingerprint: self.info.system_fingerprint.as_deref(),
            content: llmage.then(|| {
                let Delta {
                    content, refusal, ..
                } = &choice.delta;
                content.or(*refusal).unwrap_or("")
            }),
            reasoning_content: llmage.then_some(choice.delta.reasoning_content),
            // The usage chunk comes after the finishing one: the answer is done there too.
            finish: llmage.then_some(if finish.is_some() || usage.is_some() {
                "1"
            } else {
                "0"
            }),
        };
        json_event(&chunk)
    }
}

/// A server-sent event whose data is `value` as compact JSON, which holds no line break
/// (JSON escapes those inside strings), so one `data:` line carries all of it.
fn json_event(value: &impl Serialize) -> Bytes {
    let mut event = b"data: ".to_vec();
    serde_json::to_writer(&mut event, value).expect("an event is plain JSON");
    event.extend_from_slice(b"\n\n");
    event.into()
}

/// The event that ends every stream.
const DONE: Bytes = Bytes::from_static(b"data: [DONE]\n\n");

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    delta: Delta<'a>,
    /// Always `null`.
    logprobs: (),
    finish_reason: Option<&'a str>,
}

/// What a chunk adds to the answer: the role (the opening chunk), some text, some of a
/// refusal or of the reasoning, a piece of a tool call, or nothing (the finishing and usage
/// chunks).
#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

/// A piece of a tool call as OpenAI streams it: the piece with the call's id also says
/// `type: "function"`; the function's name comes once, in the piece that first has it.
#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    r#type: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

impl<'a> From<&'a ToolCallPiece> for ToolCallDelta<'a> {
    fn from(piece: &'a ToolCallPiece) -> Self {
        Self {
            index: piece.index,
            id: piece.id.as_deref(),
            r#type: piece.id.is_some().then_some("function"),
            function: FunctionDelta {
                name: piece.name.as_deref(),
                arguments: &piece.arguments,
            },
        }
    }
}

/// How long a streamed answer's head waits for the provider's first event: what arrived by
/// then goes out with the head in one write, and a slow first token does not hold the head
/// back longer than this.
const FIRST_EVENT_WAIT: Duration = Duration::from_millis(50);

/// How long the chunks read together with the provider's finish wait for the end (the chat
/// being recorded) to go out with it.
const END_WAIT: Duration = Duration::from_millis(50);

/// The answer as server-sent `chat.completion.chunk` events ending with `data: [DONE]`.
/// `include_usage` adds OpenAI's final usage-only chunk. Events are rendered as the client
/// reads them, so a slow client slows the relay, and one that goes away cancels the chat.
/// Writes are few: the head waits for the first event (at most [`FIRST_EVENT_WAIT`]), each
/// write carries every event already read, and the finishing chunk waits for the end, which
/// follows once the chat is recorded (and what was read with it, at most [`END_WAIT`]).
pub async fn sse(
    model_name: &str,
    session: ChatSession,
    style: ChunkStyle,
    include_usage: bool,
) -> Response {
    let chunks = Chunks {
        id: session.task.id.clone(),
        created: now_ms() / 1000,
        model: model_name.to_string(),
        style,
        info: AnswerInfo::default(),
    };
    let mut relay = SseRelay {
        events: session.events,
        opening: true,
        chunks,
        include_usage,
        usage: AnswerUsage::default(),
        finish: None,
        ended: false,
    };
    let head = match tokio::time::timeout(FIRST_EVENT_WAIT, relay.first_chunk_event()).await {
        Ok(first) => relay.batch_from(first).await,
        // The headers go out alone; the opening chunk waits for the first event, which says
        // what the answer begins with, and comes after what the vendor says of the answer.
        Err(_) => Vec::new(),
    };
    // Each event is a frame of its own (an HTTP chunk); a batch's frames leave in one write.
    let rest = stream::unfold(relay, |mut relay| async move {
        let batch = relay.next_batch().await?;
        Some((stream::iter(batch), relay))
    })
    .flatten();
    let all = stream::iter(head).chain(rest);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(all.map(Ok::<_, Infallible>)),
    )
        .into_response()
}

/// The state of one streamed answer between the engine's events and the client.
struct SseRelay {
    events: futures::stream::BoxStream<'static, Result<ChatEvent, Refusal>>,
    /// Whether the role-only chunk every answer opens with has yet to go out.
    opening: bool,
    chunks: Chunks,
    include_usage: bool,
    usage: AnswerUsage,
    /// The finishing chunk's reason, held until the engine's events end (the chat is being
    /// recorded meanwhile), so that it and `[DONE]` go out together.
    finish: Option<String>,
    ended: bool,
}

impl SseRelay {
    /// The role-only chunk the answer opens with, once, before the first event that makes a
    /// chunk: its `content` is `""` when the answer begins with text (as OpenAI's text answers
    /// begin), and left out when it begins with a tool call, a refusal or reasoning, so that
    /// a client that joins the pieces keeps no text (`null`) beside them.
    fn open(&mut self, begins_with_text: bool) -> Option<Bytes> {
        if !std::mem::take(&mut self.opening) {
            return None;
        }
        let delta = Delta {
            role: Some("assistant"),
            content: begins_with_text.then_some(""),
            ..Delta::default()
        };
        Some(self.chunks.event(delta, None, None))
    }

    /// Keeps what an event says of the answer as a whole (its info, its usage), which makes no
    /// chunk of its own; whether `event` was such.
    fn keep(&mut self, event: &Option<Result<ChatEvent, Refusal>>) -> bool {
        match event {
            Some(Ok(ChatEvent::AnswerInfo(info))) => self.chunks.info = info.clone(),
            Some(Ok(counts)) => return self.usage.take(counts),
            _ => return false,
        }
        true
    }

    /// The engine's first event that makes a chunk, what came before it kept; cancelling it
    /// loses nothing.
    async fn first_chunk_event(&mut self) -> Option<Result<ChatEvent, Refusal>> {
        loop {
            let event = self.events.next().await;
            if !self.keep(&event) {
                return event;
            }
        }
    }

    /// The chunks of the engine's next event and what follows it; `None` once `[DONE]` has
    /// gone out.
    async fn next_batch(&mut self) -> Option<Vec<Bytes>> {
        if self.ended {
            return None;
        }
        let event = self.events.next().await;
        Some(self.batch_from(event).await)
    }

    /// The chunks of `event` and of every one already waiting behind it, rendered together
    /// so that they go out in one write; once the finish is held, also of what follows until
    /// the end (at most [`END_WAIT`]). The opening chunk leads the first batch that makes one.
    async fn batch_from(&mut self, mut event: Option<Result<ChatEvent, Refusal>>) -> Vec<Bytes> {
        let mut batch = Vec::new();
        loop {
            self.render(event, &mut batch);
            if self.ended {
                return batch;
            }
            event = if batch.is_empty() {
                self.events.next().await
            } else if self.finish.is_some() {
                // The end follows the finish once the chat is recorded; what was read with
                // the finish waits for it, a while at most, so that all leave in one write.
                match tokio::time::timeout(END_WAIT, self.events.next()).await {
                    Ok(event) => event,
                    Err(_) => return batch,
                }
            } else {
                match futures::poll!(self.events.next()) {
                    Poll::Ready(event) => event,
                    Poll::Pending => return batch,
                }
            };
        }
    }

    /// Adds the chunks of one engine event to `batch`: none for the usage and the finish,
    /// which wait for the end, nor for the answer's info, which later chunks carry.
    fn render(&mut self, event: Option<Result<ChatEvent, Refusal>>, batch: &mut Vec<Bytes>) {
        if self.keep(&event) {
            return;
        }
        let begins_with_text = !matches!(
            event,
            Some(Ok(ChatEvent::ToolCall(_)
                | ChatEvent::Refusal(_)
                | ChatEvent::Reasoning(_)))
        );
        batch.extend(self.open(begins_with_text));
        // The held finish goes out before whatever follows it: the end, or a provider going
        // on after its finish (a late delta, an error).
        if let Some(reason) = self.finish.take() {
            batch.push(self.chunks.event(Delta::default(), Some(&reason), None));
        }
        match event {
            None => {
                self.ended = true;
                if let Some(usage) = self.usage.shown().filter(|_| self.include_usage) {
                    batch.push(self.chunks.event(Delta::default(), None, Some(usage)));
                }
                batch.push(DONE);
            }
            Some(Ok(ChatEvent::Delta(text))) => {
                let delta = Delta {
                    content: Some(&text),
                    ..Delta::default()
                };
                batch.push(self.chunks.event(delta, None, None));
            }
            Some(Ok(ChatEvent::Refusal(piece))) => {
                let delta = Delta {
                    refusal: Some(&piece),
                    ..Delta::default()
                };
                batch.push(self.chunks.event(delta, None, None));
            }
            Some(Ok(ChatEvent::Reasoning(piece))) => {
                let delta = Delta {
                    reasoning_content: Some(&piece),
                    ..Delta::default()
                };
                batch.push(self.chunks.event(delta, None, None));
            }
            Some(Ok(ChatEvent::ToolCall(piece))) => {
                let delta = Delta {
                    tool_calls: Some([ToolCallDelta::from(&piece)]),
                    ..Delta::default()
                };
                batch.push(self.chunks.event(delta, None, None));
            }
            Some(Ok(ChatEvent::Finish(reason))) => self.finish = Some(reason),
            // Kept above: what they say goes on other chunks.
            Some(Ok(
                ChatEvent::Usage { .. } | ChatEvent::UsageDetails(_) | ChatEvent::AnswerInfo(_),
            )) => {}
            Some(Err(refusal)) => {
                self.ended = true;
                batch.push(json_event(&self.chunks.style.error_event(refusal)));
                batch.push(DONE);
            }
        }
    }
}

/// A chat model by name (`provider/key`, alias, or a unique bare key); a model that exists
/// but does not chat is refused as such ([`ResolveError::Unsupported`]), not as unknown.
pub fn find_model(state: &AppState, name: &str) -> Result<Resolved, ResolveError> {
    let found = state.engine.registry().find(name)?;
    found.serves("chat")?;
    Ok(found)
}
