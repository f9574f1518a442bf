//! Chat: a task whose answer streams to the client waiting for it.
//!
//! Invariants:
//! - A chat is a task like any other: recorded, priced and reserved in its insert transaction,
//!   and started and finished only through [`lifecycle`], with the whole text and the usage as
//!   its result.
//! - It is inserted already `running`, in phase `streaming` ([`lifecycle::start_streaming`]),
//!   because the process that accepted it is the one relaying the provider's stream; that
//!   process holds its lease meanwhile.
//! - A chat is never replayed. When its process dies mid-stream the lease lapses and the
//!   [`sweeper`](super::sweeper) fails it (refunding it): the client it was answering is gone.
//! - A client that goes away cancels it (the relay stops at its next event), and so does a
//!   cancel through the jobs API, on any host. One that goes away before the provider's first
//!   byte drops [`Engine::open_chat`] mid-way, its insert perhaps still committing: its
//!   [`Opening`] guard cancels the call, stops tracking it and records it cancelled
//!   (refunded) at once, as the relay would. On SQLite that cancel is queued behind the
//!   insert (task writes commit in the order they were queued), so it always finds the chat;
//!   on PostgreSQL an insert whose commit was already on its way may land after it, and that
//!   chat is left to the sweeper.
//! - The provider gets the stored params and, as `stream`, whether the client reads the
//!   answer as a stream, so it can ask its upstream for the same.

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::{
    Engine, NewTask,
    front_door::{Admission, Refusal},
    lifecycle::{self, Outcome},
    provider::{
        CallContext, ChatEvent, ChatRequest, ChatStream, GenerationRequest, ProgressSink,
        ProviderError,
    },
    task::{Task, new_id},
};

/// Events relayed to the API between the provider and the client; a few are buffered so a
/// slow reader slows the provider's stream rather than growing memory.
const RELAY_BUFFER: usize = 32;

/// An accepted chat: its task, and the provider's events as they come.
pub struct ChatSession {
    /// The recorded task; its id names the answer.
    pub task: Task,
    /// Deltas, usage and the finish reason, or the error that ended the stream. Dropping the
    /// receiver cancels the chat.
    pub events: mpsc::Receiver<Result<ChatEvent, ProviderError>>,
}

/// OpenAI's usage object, as chats store and show it.
pub fn usage_json(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

impl Engine {
    /// Checks and records the chat as a running task through the front door's checks
    /// (reserving its price), opens the provider's stream and starts relaying it; the task
    /// finishes when the stream does. The stored request's params carry the conversation as
    /// `messages`; the provider gets what is stored, and `stream` (whether the client reads
    /// a stream).
    pub async fn open_chat(
        &self,
        admission: Admission,
        messages: Vec<Value>,
        stream: bool,
    ) -> Result<ChatSession, Refusal> {
        let (mut new, _) = self.check(admission).await?;
        new.request
            .params
            .insert("messages".into(), Value::Array(messages));
        let id = new_id("job");
        let token = self.track(&id);
        // Armed before the insert: a client that leaves while it commits cancels the chat too.
        let mut opening = Opening {
            engine: self.clone(),
            id: id.clone(),
            token: token.clone(),
            armed: true,
            inserted: false,
        };
        let task = match lifecycle::start_streaming(self, &id, &new).await {
            Ok(task) => {
                opening.inserted = true;
                task
            }
            Err(refused) => {
                opening.end_here();
                return Err(refused.into());
            }
        };
        let NewTask {
            provider: provider_id,
            request,
            ..
        } = new;
        // Recorded: the conversation moves on to the provider without a copy.
        let request = chat_request(request, stream);
        let Some(provider) = self.registry().provider(&provider_id) else {
            opening.end_here();
            let error = ProviderError::UpstreamUnavailable(format!(
                "Provider {provider_id} is not loaded."
            ));
            self.fail_chat(&id, &error).await;
            return Err(Refusal::Provider(error));
        };
        let ctx = CallContext {
            task_id: id.clone(),
            cancel: token.clone(),
            progress: ProgressSink::discard(),
        };
        let opened =
            crate::metrics::measure_call(&provider_id, "chat", provider.chat(&request, &ctx)).await;
        let stream = match opened {
            Ok(stream) => stream,
            Err(error) => {
                opening.end_here();
                self.fail_chat(&id, &error).await;
                return Err(Refusal::Provider(error));
            }
        };
        opening.disarm();
        let (events, received) = mpsc::channel(RELAY_BUFFER);
        // The relay outlives the request; its lines carry the task id.
        let span = tracing::info_span!(
            "task",
            task_id = %id,
            request_id = task.request_id.as_deref(),
        );
        tokio::spawn(relay(self.clone(), id, stream, token, events).instrument(span));
        Ok(ChatSession {
            task,
            events: received,
        })
    }

    async fn fail_chat(&self, id: &str, error: &ProviderError) {
        if let Err(stored) = lifecycle::finish(self, id, Outcome::Failed(error.to_string())).await {
            tracing::warn!(task = id, error = %stored, "recording a failed chat failed; the sweeper will");
        }
    }
}

/// A chat from its id (before its insert) to the start of its relay. Dropped armed (the client
/// went away while the insert committed or the provider had not answered yet, so the API
/// dropped [`Engine::open_chat`]), it ends the chat as the relay ends one whose client left:
/// the provider's call cancelled, the token untracked, the task cancelled and refunded.
struct Opening {
    engine: Engine,
    id: String,
    token: CancellationToken,
    armed: bool,
    /// Whether the insert returned (and counted the task as accepted); dropped before, the
    /// insert may still commit without being counted.
    inserted: bool,
}

impl Opening {
    /// The chat reached its relay, which now holds it.
    fn disarm(mut self) {
        self.armed = false;
    }

    /// The chat ends before its relay, on a path that records how itself (or was refused, so
    /// there is nothing to record): no longer tracked.
    fn end_here(self) {
        self.engine.untrack(&self.id);
        self.disarm();
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.token.cancel();
        self.engine.untrack(&self.id);
        let (engine, id, counted) = (self.engine.clone(), self.id.clone(), self.inserted);
        let finish = async move {
            match lifecycle::finish(&engine, &id, Outcome::Cancelled).await {
                // Found, so inserted: counted now, so that the metrics' created and finished
                // tasks (and charged and refunded credits) still agree.
                Ok(Some(task)) if !counted => lifecycle::accepted(&task),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(task = %id, %error, "recording an abandoned chat failed; the sweeper will")
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(finish)),
            Err(_) => tracing::warn!(task = %self.id, "an abandoned chat is left to the sweeper"),
        }
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

/// Relays the provider's stream to the API while holding the task's lease, then records how
/// it ended. The API dropping its receiver means the client went away: that is its cancel.
async fn relay(
    engine: Engine,
    id: String,
    mut stream: ChatStream,
    token: CancellationToken,
    events: mpsc::Sender<Result<ChatEvent, ProviderError>>,
) {
    // Held within this task (not a task of its own): one spawn and one abort fewer per chat.
    let lease = lifecycle::hold_lease(engine.clone(), id.clone(), token.clone());
    tokio::pin!(lease);
    let mut lease_held = true;
    let mut text = String::new();
    let mut usage = None;
    let outcome = loop {
        let event = tokio::select! {
            () = &mut lease, if lease_held => {
                // No longer held, or the database cannot tell: the sweeper decides.
                lease_held = false;
                continue;
            }
            _ = token.cancelled() => {
                let _ = events.try_send(Err(ProviderError::Cancelled));
                break if engine.shutdown_token().is_cancelled() {
                    Outcome::Failed("Interrupted: easel shut down while streaming.".into())
                } else {
                    Outcome::Cancelled
                };
            }
            _ = events.closed() => break Outcome::Cancelled,
            event = stream.next() => event,
        };
        let Some(event) = event else {
            break Outcome::Succeeded {
                outputs: vec![json!({ "text": std::mem::take(&mut text) })],
                usage: usage.take(),
            };
        };
        let failure = match &event {
            Ok(ChatEvent::Delta(delta)) => {
                text.push_str(delta);
                None
            }
            Ok(ChatEvent::Usage {
                prompt_tokens,
                completion_tokens,
            }) => {
                usage = Some(usage_json(*prompt_tokens, *completion_tokens));
                None
            }
            Ok(ChatEvent::Finish(_)) => None,
            Err(ProviderError::Cancelled) => Some(Outcome::Cancelled),
            Err(error) => Some(Outcome::Failed(error.to_string())),
        };
        // A slow client holds the answer back; the lease is kept meanwhile.
        let room = loop {
            tokio::select! {
                () = &mut lease, if lease_held => lease_held = false,
                room = events.reserve() => break room,
            }
        };
        let Ok(room) = room else {
            break Outcome::Cancelled;
        };
        room.send(event);
        if let Some(outcome) = failure {
            break outcome;
        }
    };
    // Drop the provider's stream first, so an abandoned answer stops upstream too.
    drop(stream);
    engine.untrack(&id);
    if let Err(error) = lifecycle::finish(&engine, &id, outcome).await {
        tracing::warn!(task = %id, %error, "recording a chat's end failed; the sweeper will");
    }
}
