//! Chat: a task whose answer streams to the client waiting for it.
//!
//! Invariants:
//! - A chat is a task like any other: recorded, priced and reserved in its insert transaction,
//!   and started and finished only through [`lifecycle`], with the whole text and the usage as
//!   its result.
//! - It is inserted already `running`, in phase `streaming` ([`lifecycle::start_streaming`]),
//!   because the process that accepted it is the one relaying the provider's stream; that
//!   process tracks it, so [`lifecycle::hold_leases`] keeps its lease meanwhile.
//! - A chat is never replayed. When its process dies mid-stream the lease lapses and the
//!   [`sweeper`](super::sweeper) fails it (refunding it): the client it was answering is gone.
//! - No task of its own relays a chat: the API reads the provider's stream through
//!   [`ChatSession::events`], one event as the client takes one (a slow client slows the
//!   provider's stream), and how the chat ended is recorded before the stream's end or error
//!   is handed on, so a client that has read the end has a recorded chat: an answer whose
//!   success could not be recorded ends in an error instead.
//! - The recorded result is the whole text, the model's refusal when it refused, its
//!   reasoning when it told any, and, when it made any, its tool calls in OpenAI's message shape ([`ToolCalls`]); every call the
//!   client sees has an id, the one recorded (a model that gave none gets
//!   `call_<task id>_<index>`).
//! - A client that goes away drops its session, or [`Engine::open_chat`] mid-way, the insert
//!   perhaps still committing: the chat's [`Held`] guard, armed before the insert, cancels the
//!   provider's call, stops tracking it and records it cancelled (refunded) at once. On SQLite
//!   that cancel is queued behind the insert (task writes commit in the order they were
//!   queued), so it always finds the chat; on PostgreSQL an insert whose commit was already on
//!   its way may land after it, and that chat is left to the sweeper. A cancel through the
//!   jobs API, on any host, ends the stream (and is recorded) at the client's next read: at
//!   once while the client waits for events, later if its socket is full.
//! - The provider gets the stored params and, as `stream`, whether the client reads the
//!   answer as a stream, so it can ask its upstream for the same.
//! - A stop whose grace runs out ([`Engine::interrupt`]) cuts the chats still answering: each
//!   is recorded failed (refunded), and its client is told easel is shutting down
//!   ([`Refusal::ShuttingDown`]) before its connection closes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::{
    Engine, NewTask, conversation,
    front_door::{Admission, Refusal},
    lifecycle::{self, Outcome},
    provider::{
        CallContext, ChatEvent, ChatRequest, ChatStream, GenerationRequest, ProgressSink,
        ProviderError, ToolCallPiece, schema::InvalidParam,
    },
    task::{Task, new_task_id},
};

/// An accepted chat: its task, and the provider's events as they come.
pub struct ChatSession {
    /// The recorded task; its id names the answer.
    pub task: Task,
    /// Deltas, usage and the finish reason, then the end once the chat is recorded; or what
    /// the client is told of the error that ended it (recorded too). Reading it drives the
    /// provider; dropping it before its end cancels the chat.
    pub events: BoxStream<'static, Result<ChatEvent, Refusal>>,
}

/// An answer's usage as its events tell it, as chats store and show it: OpenAI's usage object
/// with the answer's two counts ([`ChatEvent::Usage`]), and beside them the vendor's finer
/// counts ([`ChatEvent::UsageDetails`], the last it gave), which never replace those two.
#[derive(Debug, Default)]
pub struct AnswerUsage {
    counts: Option<(u64, u64)>,
    /// Shared with the event that carried them: the recording and the rendering of an answer
    /// read the same map, never a copy.
    details: Option<Arc<Map<String, Value>>>,
}

impl AnswerUsage {
    /// Keeps what a usage event says; whether `event` was one.
    pub fn take(&mut self, event: &ChatEvent) -> bool {
        match event {
            ChatEvent::Usage {
                prompt_tokens,
                completion_tokens,
            } => self.counts = Some((*prompt_tokens, *completion_tokens)),
            ChatEvent::UsageDetails(details) => self.details = Some(details.clone()),
            _ => return false,
        }
        true
    }

    /// OpenAI's usage object to write out; none until the vendor gave its counts.
    pub fn shown(&self) -> Option<ShownUsage<'_>> {
        Some(ShownUsage {
            counts: self.counts?,
            details: self.details.as_deref(),
        })
    }

    /// OpenAI's usage object as a value, to record.
    pub fn json(&self) -> Option<Value> {
        self.shown()
            .map(|shown| serde_json::to_value(shown).expect("a usage object is plain JSON"))
    }
}

/// OpenAI's usage object written from an answer's usage as it is: the counts, then the
/// vendor's finer counts but any that would replace them. The default is the usage of an
/// answer whose vendor gave none: zero tokens.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShownUsage<'a> {
    counts: (u64, u64),
    details: Option<&'a Map<String, Value>>,
}

impl serde::Serialize for ShownUsage<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (prompt_tokens, completion_tokens) = self.counts;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("prompt_tokens", &prompt_tokens)?;
        map.serialize_entry("completion_tokens", &completion_tokens)?;
        map.serialize_entry("total_tokens", &(prompt_tokens + completion_tokens))?;
        for (key, value) in self.details.into_iter().flatten() {
            if !COUNTS.contains(&key.as_str()) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// The counts of OpenAI's usage object, which only [`ChatEvent::Usage`] sets.
const COUNTS: [&str; 3] = ["prompt_tokens", "completion_tokens", "total_tokens"];

impl Engine {
    /// Checks and records the chat as a running task through the front door's checks
    /// (reserving its price) and opens the provider's stream, which the session's events
    /// relay; the task finishes when they end. The stored request's params carry the
    /// conversation as `messages`; the provider gets what is stored, and `stream` (whether
    /// the client reads a stream).
    pub async fn open_chat(
        &self,
        mut admission: Admission,
        messages: Vec<Value>,
        stream: bool,
    ) -> Result<ChatSession, Refusal> {
        conversation::name_the_token_cap(
            &mut admission.params,
            &admission.resolved.model.params_schema,
        );
        let resolved = &admission.resolved;
        // A chat streams from the process that accepts it: a model only another process of
        // the fleet loads (announced by a worker) is refused here, before anything is stored.
        let provider_id = resolved.provider.id();
        // Refused as the model, not as a vendor's failure: no vendor was asked, and a client
        // (the OpenAI SDKs retry a 5xx) asking again would only be refused again.
        let Some(provider) = self.registry().provider(provider_id) else {
            let served = resolved.id();
            return Err(Refusal::Invalid(InvalidParam {
                param: Some("model".into()),
                message: format!(
                    "Model {served} cannot chat through this host: its provider {provider_id} is \
                     not loaded here, and a chat is answered by the host that accepts it (the \
                     operator gives this host the plugin, EASEL_PLUGINS_DIR, to serve it)."
                ),
                ..Default::default()
            }));
        };
        let answers = conversation::Answers::of(
            &resolved.model.params_schema,
            resolved.provider.makes_tool_calls(),
        );
        conversation::check(&messages, &admission.params, answers)?;
        admission
            .inputs
            .extend(conversation::linked_files(&messages));
        let (mut new, _) = self.check(admission).await?;
        new.request
            .params
            .insert("messages".into(), Value::Array(messages));
        // Armed before the insert: a client that leaves while it commits cancels the chat too.
        let mut held = Held::new(self, new_task_id());
        let task = match lifecycle::start_streaming(self, &held.id, &new).await {
            Ok(task) => {
                held.inserted = true;
                task
            }
            Err(refused) => {
                held.refused();
                return Err(refused.into());
            }
        };
        let NewTask {
            provider: provider_id,
            request,
            client_id,
            ..
        } = new;
        // Recorded: the conversation moves on to the provider without a copy.
        let request = chat_request(request, stream);
        let ctx = CallContext {
            task_id: held.id.clone(),
            client: client_id,
            cancel: held.token.clone(),
            progress: ProgressSink::discard(),
        };
        let opened =
            crate::metrics::measure_call(&provider_id, "chat", provider.chat(&request, &ctx)).await;
        let stream = match opened {
            Ok(stream) => stream,
            Err(error) => {
                held.end(held.outcome(&error)).await;
                return Err(held.told(error));
            }
        };
        let relay = Relay {
            stream: Some(stream),
            held,
            text: String::new(),
            refusal: String::new(),
            reasoning: String::new(),
            tool_calls: ToolCalls::default(),
            usage: AnswerUsage::default(),
            finished: false,
            // The request's: a stream's body is read after its handler returned.
            span: tracing::Span::current(),
        };
        // The stream keeps the relay, and its step in flight, between reads: a read given up
        // (a timeout) loses nothing.
        let events = futures::stream::unfold(relay, |mut relay| async move {
            let span = relay.span.clone();
            let event = relay.next().instrument(span).await?;
            Some((event, relay))
        });
        Ok(ChatSession {
            task,
            events: events.boxed(),
        })
    }
}

/// A chat from its id (before its insert) to its recorded end. Dropped armed (the client went
/// away while the insert committed, before the provider answered, or mid-stream), it ends the
/// chat as a cancel: the provider's call cancelled, the chat untracked, the task cancelled and
/// refunded.
struct Held {
    engine: Engine,
    id: String,
    token: CancellationToken,
    armed: bool,
    /// Whether the insert returned (and counted the task as accepted); dropped before, the
    /// insert may still commit without being counted.
    inserted: bool,
}

impl Held {
    /// Tracks the chat about to be inserted as `id`.
    fn new(engine: &Engine, id: String) -> Self {
        Self {
            token: engine.track(&id),
            engine: engine.clone(),
            id,
            armed: true,
            inserted: false,
        }
    }

    /// The front door refused the chat: nothing was recorded, nothing is left to record.
    fn refused(mut self) {
        self.engine.untrack(&self.id);
        self.armed = false;
    }

    /// How a chat that `error` ended is recorded: a cancel (the jobs API's, on any host) as
    /// cancelled, unless easel is shutting down.
    fn outcome(&self, error: &ProviderError) -> Outcome {
        match error {
            ProviderError::Cancelled if self.engine.shutdown_token().is_cancelled() => {
                Outcome::Failed("Interrupted: easel shut down while streaming.".into())
            }
            ProviderError::Cancelled => Outcome::Cancelled,
            error => Outcome::failed_by(&self.id, error),
        }
    }

    /// What the client is told of the error that ended the chat: a cut at shutdown is not
    /// the client's cancel.
    fn told(&self, error: ProviderError) -> Refusal {
        match error {
            ProviderError::Cancelled if self.engine.shutdown_token().is_cancelled() => {
                Refusal::ShuttingDown
            }
            error => Refusal::Provider(error),
        }
    }

    /// Records how the chat ended; whether it ended so (not found live: another host's cancel
    /// or the sweeper got there first; or the database failed). Once begun, the recording
    /// completes (and is counted) even if the client leaves meanwhile: it may already be queued
    /// to commit with others.
    async fn end(&mut self, outcome: Outcome) -> bool {
        self.engine.untrack(&self.id);
        self.armed = false;
        let (engine, id) = (self.engine.clone(), self.id.clone());
        let (recorded, answer) = tokio::sync::oneshot::channel();
        RunsToEnd::new(&self.id, async move {
            let ended = match lifecycle::finish(&engine, &id, outcome).await {
                Ok(ended) => ended.is_some(),
                Err(error) => {
                    tracing::warn!(task = %id, %error, "recording a chat's end failed; the sweeper will");
                    false
                }
            };
            let _ = recorded.send(ended);
        })
        .await;
        answer.await.unwrap_or(false)
    }
}

/// A chat's recording that, dropped before it completes, completes on a task of its own.
struct RunsToEnd {
    task: String,
    work: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl RunsToEnd {
    fn new(task: &str, work: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            task: task.to_string(),
            work: Some(Box::pin(work)),
        }
    }

    /// Completes the work on a task of its own, without waiting for it.
    fn detach(self) {
        drop(self);
    }
}

impl Future for RunsToEnd {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(work) = self.work.as_mut() else {
            return Poll::Ready(());
        };
        let polled = work.as_mut().poll(cx);
        if polled.is_ready() {
            self.work = None;
        }
        polled
    }
}

impl Drop for RunsToEnd {
    fn drop(&mut self) {
        let Some(rest) = self.work.take() else {
            return;
        };
        // Outside a runtime the process is ending: the lease lapses and the sweeper decides.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(rest)),
            Err(_) => tracing::warn!(task = %self.task, "a chat's end is left to the sweeper"),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.token.cancel();
        self.engine.untrack(&self.id);
        let (engine, id, counted) = (self.engine.clone(), self.id.clone(), self.inserted);
        RunsToEnd::new(&self.id, async move {
            match lifecycle::finish(&engine, &id, Outcome::Cancelled).await {
                // Found, so inserted: counted now, so that the metrics' created and finished
                // tasks (and charged and refunded credits) still agree.
                Ok(Some(task)) if !counted => lifecycle::accepted(&task),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(task = %id, %error, "recording an abandoned chat failed; the sweeper will")
                }
            }
        })
        .detach();
    }
}

/// The provider's view of a stored chat request: `messages` apart from the other params, and
/// whether the client reads a stream.
fn chat_request(stored: GenerationRequest, stream: bool) -> ChatRequest {
    let mut params = stored.params;
    let messages = match params.remove("messages") {
        Some(Value::Array(messages)) => messages,
        _ => Vec::new(),
    };
    params.insert("stream".into(), Value::Bool(stream));
    ChatRequest {
        model: stored.model,
        messages,
        params,
    }
}

/// An open chat between the provider's stream and the API: the text and usage so far, for
/// the task's result.
struct Relay {
    /// Declared first, so that an abandoned chat stops upstream before it is recorded.
    /// `None` once the chat ended.
    stream: Option<ChatStream>,
    held: Held,
    text: String,
    /// The model's refusal to answer, apart from the text.
    refusal: String,
    /// What a reasoning model thought, apart from the text.
    reasoning: String,
    tool_calls: ToolCalls,
    usage: AnswerUsage,
    /// The provider sent its finish, which must be its last event.
    finished: bool,
    span: tracing::Span,
}

impl Relay {
    /// The provider's next event, an error as its client is told it
    /// ([`Relay::next_from_provider`]).
    async fn next(&mut self) -> Option<Result<ChatEvent, Refusal>> {
        let event = self.next_from_provider().await?;
        Some(event.map_err(|error| self.held.told(error)))
    }

    /// The provider's next event; at the end, or on an error or a cancel, the chat is
    /// recorded first. `None` after the end.
    async fn next_from_provider(&mut self) -> Option<Result<ChatEvent, ProviderError>> {
        let stream = self.stream.as_mut()?;
        let waiting = Instant::now();
        let mut event = tokio::select! {
            biased;
            () = self.held.token.cancelled() => Some(Err(ProviderError::Cancelled)),
            event = stream.next() => event,
        };
        crate::metrics::add_upstream(waiting.elapsed());
        if let Some(fault) = self.out_of_order(&event) {
            event = Some(Err(fault));
        }
        let outcome = match &mut event {
            Some(Ok(ChatEvent::Delta(delta))) => {
                self.text.push_str(delta);
                return event;
            }
            Some(Ok(ChatEvent::Refusal(piece))) => {
                self.refusal.push_str(piece);
                return event;
            }
            Some(Ok(ChatEvent::Reasoning(piece))) => {
                self.reasoning.push_str(piece);
                return event;
            }
            Some(Ok(ChatEvent::ToolCall(piece))) => {
                self.tool_calls.add(piece, &self.held.id);
                return event;
            }
            Some(Ok(counts @ (ChatEvent::Usage { .. } | ChatEvent::UsageDetails(_)))) => {
                self.usage.take(counts);
                return event;
            }
            Some(Ok(ChatEvent::AnswerInfo(_))) => return event,
            Some(Ok(ChatEvent::Finish(_))) => {
                self.finished = true;
                return event;
            }
            None => {
                let mut output = json!({ "text": std::mem::take(&mut self.text) });
                if !self.refusal.is_empty() {
                    output["refusal"] = std::mem::take(&mut self.refusal).into();
                }
                if !self.reasoning.is_empty() {
                    output["reasoning"] = std::mem::take(&mut self.reasoning).into();
                }
                if !self.tool_calls.is_empty() {
                    output["tool_calls"] = std::mem::take(&mut self.tool_calls).into_json();
                }
                Outcome::Succeeded {
                    outputs: vec![output],
                    usage: self.usage.json(),
                }
            }
            Some(Err(error)) => self.held.outcome(error),
        };
        let succeeded = matches!(outcome, Outcome::Succeeded { .. });
        // The provider's stream first, so that a cancelled answer stops upstream too.
        self.stream = None;
        if !self.held.end(outcome).await && succeeded {
            // The client must not read an end that is not on record (nor charged).
            return Some(Err(ProviderError::Internal(
                "the chat's answer could not be recorded".into(),
            )));
        }
        event
    }

    /// The provider's break of the chat contract `event` would be: anything after its finish,
    /// an end without one (an answer cut off, which must not be recorded and charged as whole),
    /// or a tool call that never got its function's name. Failing the chat tells the plugin's
    /// author; relaying it would give clients an invalid answer.
    fn out_of_order(
        &self,
        event: &Option<Result<ChatEvent, ProviderError>>,
    ) -> Option<ProviderError> {
        let fault = match event {
            Some(Ok(_)) if self.finished => "sent more of the answer after its finish".to_string(),
            None if !self.finished => "ended the answer without a finish reason".to_string(),
            None => format!(
                "made tool call {} without naming its function",
                self.tool_calls.unnamed()?
            ),
            _ => return None,
        };
        Some(ProviderError::Internal(format!("the provider {fault}")))
    }
}

/// The tool calls of one answer, put together from their pieces in the order they opened.
#[derive(Debug, Default)]
pub struct ToolCalls(Vec<ToolCall>);

/// One whole tool call, in OpenAI's shape (`{id, type: "function", function: {name,
/// arguments}}`).
#[derive(Debug, serde::Serialize)]
struct ToolCall {
    #[serde(skip)]
    index: u32,
    id: String,
    r#type: &'static str,
    function: Function,
}

#[derive(Debug, serde::Serialize)]
struct Function {
    name: String,
    arguments: String,
}

impl ToolCalls {
    /// Adds `piece` to its call, or opens the call, and leaves in `piece` what the client is
    /// to see, which adds up to what is recorded: a call opened without an id gets one made
    /// from `answer_id`; an id or a name a vendor repeats in a later piece (or an id it gives
    /// only then) is taken out, since clients join the pieces' strings.
    pub fn add(&mut self, piece: &mut ToolCallPiece, answer_id: &str) {
        if let Some(call) = self.0.iter_mut().find(|call| call.index == piece.index) {
            piece.id = None;
            if !call.function.name.is_empty() {
                piece.name = None;
            } else if let Some(name) = &piece.name {
                call.function.name.clone_from(name);
            }
            call.function.arguments.push_str(&piece.arguments);
            return;
        }
        let id = piece
            .id
            .get_or_insert_with(|| format!("call_{answer_id}_{}", piece.index));
        self.0.push(ToolCall {
            index: piece.index,
            id: id.clone(),
            r#type: "function",
            function: Function {
                name: piece.name.clone().unwrap_or_default(),
                arguments: piece.arguments.clone(),
            },
        });
    }

    /// Whether the answer made no call.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The index of a call whose function was never named, if any.
    fn unnamed(&self) -> Option<u32> {
        self.0
            .iter()
            .find(|call| call.function.name.is_empty())
            .map(|call| call.index)
    }

    /// The calls as OpenAI's `tool_calls` list.
    pub fn into_json(self) -> Value {
        serde_json::to_value(self.0).expect("tool calls are plain JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> ToolCallPiece {
        ToolCallPiece {
            index,
            id: id.map(String::from),
            name: name.map(String::from),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn tool_calls_are_put_together_from_their_pieces() {
        let mut calls = ToolCalls::default();
        let mut pieces = [
            piece(0, Some("call_a"), Some("weather"), ""),
            piece(1, None, None, "{"),
            // A vendor that repeats the id and name, or names a call only later.
            piece(0, Some("call_a"), Some("weather"), "{\"city\":"),
            piece(1, Some("late"), Some("time"), "}"),
            piece(0, None, None, "\"Oslo\"}"),
        ];
        for p in &mut pieces {
            calls.add(p, "job_1");
        }
        // What the client sees: each id once (a made one for the call opened without), each
        // name once, the arguments as they came.
        let seen: Vec<_> = pieces
            .iter()
            .map(|p| {
                (
                    p.index,
                    p.id.as_deref(),
                    p.name.as_deref(),
                    p.arguments.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (0, Some("call_a"), Some("weather"), ""),
                (1, Some("call_job_1_1"), None, "{"),
                (0, None, None, "{\"city\":"),
                (1, None, Some("time"), "}"),
                (0, None, None, "\"Oslo\"}"),
            ]
        );
        assert_eq!(
            calls.into_json(),
            json!([
                {"id": "call_a", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "call_job_1_1", "type": "function",
                 "function": {"name": "time", "arguments": "{}"}}
            ])
        );
    }
}
