//! The `Provider` trait: the one seam between easel's engine and whatever makes outputs
//! (WebAssembly plugins, native diffusion, the built-in offline provider).
//!
//! Invariants every implementation keeps:
//! - `submit` either finishes (outputs in hand) or hands back a pending handle; the engine
//!   persists that handle before doing anything else, so a handle must stay valid across a
//!   host restart (it is plain text the provider can parse again).
//! - `poll` and `cancel` take only the handle: no state may live in the provider object
//!   between calls, because the poll after a restart, or on another host, reaches a fresh one.
//! - `submit_is_idempotent` is a promise: when true, the engine re-submits a task that was
//!   interrupted mid-submit; when false, it fails the task instead of risking a double charge.
//! - Errors are typed ([`ProviderError`]) so every API can map them onto its own status codes.
//! - The engine downloads an [`Output::Url`] only from a host `output_link_refused` accepts:
//!   a plugin's links lie within the hosts its own requests may reach.
//!
//! It also holds the vocabulary the engine, the plugin runtime and the APIs share, so none of
//! them depends on another for it: [`Capability`] (the one list of capabilities), [`net`] (the
//! one no-SSRF rule), [`resolver`] (the one way names become addresses), [`ProviderSink`]
//! (where a plugin host publishes providers) and [`folder`] (the one watched folder, for
//! plugins and for adapters).

#![deny(missing_docs)]

mod capability;
pub mod folder;
pub mod net;
pub mod resolver;
pub mod schema;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use capability::{Capability, UnknownCapability};

/// The native diffusion model's provider id: seed 003's routes, progress per denoising step
/// and the default capacity of one image at a time are tied to it.
pub const LOCAL_PROVIDER: &str = "local";

/// The offline test provider's id (`EASEL_OFFLINE_PROVIDER`).
pub const OFFLINE_PROVIDER: &str = "offline";

/// The provider ids of easel's own providers: routes, capacity settings and `--providers`
/// name them, so no plugin may take one.
pub const BUILT_IN_PROVIDERS: [&str; 2] = [LOCAL_PROVIDER, OFFLINE_PROVIDER];

/// What a task asks for, normalized from whichever API received it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerationRequest {
    /// Engine capability, e.g. `image.generate` (`chat`, `image.generate`, `image.edit`, `image.inpaint`,
    /// `image.upscale`, `video.generate`, `audio.speech`).
    pub capability: String,
    /// The model's key inside its provider (the part after `provider/`).
    pub model: String,
    /// The prompt, empty when the capability takes none (upscale).
    pub prompt: String,
    /// Every other parameter, already validated against the model's schema.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Input media: URLs the provider may fetch, or easel assets resolved to URLs/bytes.
    pub inputs: Vec<InputMedia>,
}

/// One input file handed to a provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputMedia {
    /// `image`, `video`, `audio` or `mask`.
    pub kind: String,
    /// The role the API gave it (`first_frame`, `reference`, `@图片1`, …), if any.
    pub role: Option<String>,
    /// A URL the provider can reach, when the input is remote.
    pub url: Option<String>,
    /// The easel asset id, when the input was uploaded or registered here.
    pub asset_id: Option<String>,
    /// MIME type when known.
    pub content_type: Option<String>,
    /// The bytes, filled in by the engine from the asset store (or a `data:` URL) just
    /// before the call, so providers never read files or fetch private URLs themselves.
    #[serde(skip)]
    pub data: Option<Bytes>,
}

/// One finished output.
#[derive(Debug, Clone)]
pub enum Output {
    /// Bytes made by the provider itself (native diffusion, offline provider, plugins).
    Bytes {
        /// MIME type, e.g. `image/png`.
        content_type: String,
        /// The file.
        data: Bytes,
    },
    /// A vendor link; the engine copies it into the asset store before it expires.
    Url {
        /// Where to fetch it.
        url: String,
        /// MIME type when the vendor says.
        content_type: Option<String>,
    },
    /// Text (chat completions run as tasks).
    Text(String),
}

/// Usage figures a provider reports; free-form so each vendor's units survive.
pub type Usage = serde_json::Map<String, serde_json::Value>;

/// The answer to `submit`.
#[derive(Debug, Clone)]
pub enum Submission {
    /// Done already.
    Finished {
        /// The files or text made.
        outputs: Vec<Output>,
        /// What it cost, in the provider's units.
        usage: Option<Usage>,
    },
    /// Accepted upstream; poll `handle` again after `poll_after`.
    Pending {
        /// Opaque to the engine, persisted as-is.
        handle: String,
        /// When the next poll is useful.
        poll_after: Duration,
    },
}

/// The answer to `poll`.
#[derive(Debug, Clone)]
pub enum PollOutcome {
    /// Still going.
    Running {
        /// 0.0..=1.0 when the vendor says.
        progress: Option<f32>,
        /// When the next poll is useful.
        poll_after: Duration,
    },
    /// Done.
    Finished {
        /// The files or text made.
        outputs: Vec<Output>,
        /// What it cost, in the provider's units.
        usage: Option<Usage>,
    },
    /// The vendor gave up.
    Failed(ProviderError),
}

/// A request refused as the client's fault: what is wrong and, where the vendor says them
/// (contract 0.4.0 on), its error code and the parameter at fault, which OpenAI's clients read
/// as `code` and `param`. It reads (and is recorded) as its message followed by what it has of
/// the two (`… [code: context_length_exceeded; param: messages]`), which [`Fault::recorded`]
/// reads back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// What is wrong.
    pub message: String,
    /// The vendor's error code (`context_length_exceeded`).
    pub code: Option<String>,
    /// The request parameter at fault (`messages`).
    pub param: Option<String>,
}

impl Fault {
    /// The fault its recorded text ([`Fault`]'s `Display`) was written from.
    pub fn recorded(text: &str) -> Fault {
        let said = text
            .strip_suffix(']')
            .and_then(|rest| rest.rsplit_once(" ["))
            .filter(|(_, said)| said.starts_with("code: ") || said.starts_with("param: "));
        let Some((message, said)) = said else {
            return text.into();
        };
        let mut fault = Fault::from(message);
        for part in said.split("; ") {
            if let Some(code) = part.strip_prefix("code: ") {
                fault.code = Some(code.to_string());
            } else if let Some(param) = part.strip_prefix("param: ") {
                fault.param = Some(param.to_string());
            }
        }
        fault
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        let said: Vec<String> = [("code", &self.code), ("param", &self.param)]
            .into_iter()
            .filter_map(|(name, value)| Some(format!("{name}: {}", value.as_ref()?)))
            .collect();
        if !said.is_empty() {
            write!(f, " [{}]", said.join("; "))?;
        }
        Ok(())
    }
}

impl From<String> for Fault {
    fn from(message: String) -> Self {
        Fault {
            message,
            ..Fault::default()
        }
    }
}

impl From<&str> for Fault {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// Typed failures; each maps onto an HTTP outcome in every API.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum ProviderError {
    /// The request is wrong for this model (400).
    #[error("invalid request: {0}")]
    InvalidRequest(Fault),
    /// The provider's credentials or account were refused: a bad key, a balance run out (502
    /// to the client: it is the operator's account, and no wait makes it pass).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Slow down; `retry_after` seconds when the vendor says.
    #[error("rate limited{}", .retry_after_secs.map(|s| format!(" (retry after {s}s)")).unwrap_or_default())]
    RateLimited {
        /// Seconds to wait, when known.
        retry_after_secs: Option<u64>,
    },
    /// Moderation refused the prompt or an input.
    #[error("content rejected: {0}")]
    ContentRejected(Fault),
    /// The vendor is down, timed out or answered nonsense.
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    /// The vendor could not be reached at all (its host not resolved, no connection made):
    /// unlike [`ProviderError::UpstreamUnavailable`], it was asked nothing, so a submit may be
    /// tried again whether or not it is idempotent.
    #[error("upstream unreached: {0}")]
    UpstreamUnreached(String),
    /// Anything else, including a plugin trap.
    #[error("internal error: {0}")]
    Internal(String),
    /// The call observed its cancellation token and stopped.
    #[error("cancelled")]
    Cancelled,
}

impl ProviderError {
    /// The error a task's recorded reason was written from (its `Display` text); a reason in
    /// no provider error's words (an interrupted task, an output that could not be stored) is
    /// the vendor side's failure, [`ProviderError::UpstreamUnavailable`].
    pub fn from_recorded(reason: &str) -> ProviderError {
        if let Some(rest) = reason.strip_prefix("rate limited") {
            // What follows the wait (how the task ended) is the engine's, not the vendor's.
            let retry_after_secs = rest
                .strip_prefix(" (retry after ")
                .and_then(|r| r.split_once("s)"))
                .and_then(|(secs, _)| secs.parse().ok());
            return ProviderError::RateLimited { retry_after_secs };
        }
        if reason == "cancelled" {
            return ProviderError::Cancelled;
        }
        // The `#[error]` prefixes above, each with the variant it writes.
        let worded: [(&str, fn(String) -> ProviderError); 6] = [
            ("invalid request: ", |m| {
                ProviderError::InvalidRequest(Fault::recorded(&m))
            }),
            ("unauthorized: ", ProviderError::Unauthorized),
            ("content rejected: ", |m| {
                ProviderError::ContentRejected(Fault::recorded(&m))
            }),
            ("upstream unavailable: ", ProviderError::UpstreamUnavailable),
            ("upstream unreached: ", ProviderError::UpstreamUnreached),
            ("internal error: ", ProviderError::Internal),
        ];
        worded
            .into_iter()
            .find_map(|(prefix, error)| reason.strip_prefix(prefix).map(|rest| error(rest.into())))
            .unwrap_or_else(|| ProviderError::UpstreamUnavailable(reason.to_string()))
    }
}

/// Everything the engine lends a provider for one call.
#[derive(Clone)]
pub struct CallContext {
    /// The task being served (for logs).
    pub task_id: String,
    /// The client the task belongs to. A plugin instance kept between chats serves one
    /// client only, so chats and submits name it; polls, cancels and tests may leave it empty.
    pub client: String,
    /// Fired when the client cancels; long local work checks it between steps.
    pub cancel: CancellationToken,
    /// Reports progress in 0.0..=1.0; cheap to call every step.
    pub progress: ProgressSink,
}

/// A cheap, cloneable progress reporter.
#[derive(Clone)]
pub struct ProgressSink(std::sync::Arc<dyn Fn(f32) + Send + Sync>);

impl ProgressSink {
    /// Wraps a callback.
    pub fn new(report: impl Fn(f32) + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(report))
    }

    /// A sink that drops every report.
    pub fn discard() -> Self {
        Self::new(|_| {})
    }

    /// Reports `fraction`, clamped to 0.0..=1.0.
    pub fn report(&self, fraction: f32) {
        (self.0)(fraction.clamp(0.0, 1.0))
    }
}

impl CallContext {
    /// A context with no cancellation and no progress listener (tests, benchmarks).
    pub fn detached(task_id: impl Into<String>) -> Self {
        Self {
            task_id: task_id.into(),
            client: String::new(),
            cancel: CancellationToken::new(),
            progress: ProgressSink::discard(),
        }
    }
}

/// What a model is, as the registry and `GET /models` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// The key inside the provider (`wan2.2-t2i-plus`); the public id is `provider/key`.
    pub key: String,
    /// Human name.
    pub name: String,
    /// `image`, `video`, `audio` or `chat`.
    pub kind: String,
    /// Engine capabilities it serves.
    pub capabilities: Vec<String>,
    /// JSON Schema of its parameters (defaults, enums, ranges).
    pub params_schema: serde_json::Value,
    /// Credits per output unit, when the provider suggests one; operators may override.
    pub price_hint: Option<f64>,
    /// Free-form extras the APIs show (`resolutions`, `durations`, `voices`, …).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One piece of a streamed chat answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// More text.
    Delta(String),
    /// More of the model's refusal to answer, which the client reads apart from the text
    /// (OpenAI's `refusal`; contract 0.4.0 on).
    Refusal(String),
    /// More of what a reasoning model thinks before it answers, which the client reads apart
    /// from the text (`reasoning_content`; contract 0.5.0 on).
    Reasoning(String),
    /// Token counts, usually once near the end.
    Usage {
        /// Prompt tokens.
        prompt_tokens: u64,
        /// Completion tokens.
        completion_tokens: u64,
    },
    /// The vendor's finer token counts in OpenAI's shape (`prompt_tokens_details`,
    /// `completion_tokens_details`), shown inside the answer's usage (contract 0.3.0 on).
    UsageDetails(Arc<serde_json::Map<String, serde_json::Value>>),
    /// What the vendor says of the answer as a whole, shown on it and on each of its chunks
    /// (contract 0.3.0 on).
    AnswerInfo(AnswerInfo),
    /// A piece of a function call the model asks the client to make (contract 0.2.0 on).
    ToolCall(ToolCallPiece),
    /// Why the answer ended (`stop`, `length`, `tool_calls`, …); the last event.
    Finish(String),
}

/// What a vendor says of a chat answer as a whole, in OpenAI's words.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnswerInfo {
    /// The vendor's backend configuration (`system_fingerprint`).
    pub system_fingerprint: Option<String>,
    /// The tier that served the answer (`service_tier`).
    pub service_tier: Option<String>,
}

/// A piece of a tool call. A call's first piece carries its id and the function's name; later
/// pieces with the same index add to its arguments, JSON text whole only once all arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallPiece {
    /// Which call of the answer, from 0.
    pub index: u32,
    /// The call's id, in its first piece.
    pub id: Option<String>,
    /// The function's name, in its first piece.
    pub name: Option<String>,
    /// More of the arguments' text.
    pub arguments: String,
}

/// A chat request in OpenAI's shape, which every dialect normalizes to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatRequest {
    /// The model's key inside its provider.
    pub model: String,
    /// `[{role, content}]`, content as the client sent it.
    pub messages: Vec<serde_json::Value>,
    /// Temperature, max_tokens and the rest.
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// A stream of chat events.
pub type ChatStream = BoxStream<'static, Result<ChatEvent, ProviderError>>;

/// A source of outputs: a WebAssembly plugin, native diffusion, or the built-in offline one.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Stable id, the `provider` half of model ids.
    fn id(&self) -> &str;

    /// Version string shown by the registry.
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// The models it serves.
    fn models(&self) -> Vec<ModelInfo>;

    /// Whether re-running `submit` for the same request is safe (see the module docs).
    fn submit_is_idempotent(&self) -> bool;

    /// Whether its chats can answer with tool calls ([`ChatEvent::ToolCall`]); a plugin built
    /// for a contract without them cannot, whatever its models' schemas declare.
    fn makes_tool_calls(&self) -> bool {
        false
    }

    /// Whether it needs input files as bytes: the engine then fetches remote inputs for it
    /// (through the no-SSRF client) instead of handing it URLs a vendor would fetch.
    fn reads_input_bytes(&self) -> bool {
        false
    }

    /// Why the engine must not download this provider's output link on `host`, if it must
    /// not. Built-in providers hand out no links, so by default every host is refused.
    fn output_link_refused(&self, host: &str) -> Option<String> {
        Some(format!(
            "provider {} hands out no links, so its link to {host} is refused",
            self.id()
        ))
    }

    /// Checks what a schema cannot say (that a named adapter exists and fits the loaded
    /// model, say) on parameters the model's schema already accepted. The front door calls
    /// it before anything is stored; the default accepts everything.
    fn check_params(
        &self,
        model: &str,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), schema::InvalidParam> {
        let _ = (model, params);
        Ok(())
    }

    /// Starts (or does) the work.
    async fn submit(
        &self,
        request: &GenerationRequest,
        ctx: &CallContext,
    ) -> Result<Submission, ProviderError>;

    /// Asks about a pending handle.
    async fn poll(&self, handle: &str, ctx: &CallContext) -> Result<PollOutcome, ProviderError> {
        let _ = (handle, ctx);
        Err(ProviderError::Internal(format!(
            "provider {} returned a pending handle but cannot poll",
            self.id()
        )))
    }

    /// Cancels a pending handle upstream; best effort.
    async fn cancel(&self, handle: &str, ctx: &CallContext) -> Result<(), ProviderError> {
        let _ = (handle, ctx);
        Ok(())
    }

    /// Streams a chat answer.
    async fn chat(
        &self,
        request: &ChatRequest,
        ctx: &CallContext,
    ) -> Result<ChatStream, ProviderError> {
        let _ = (request, ctx);
        Err(ProviderError::InvalidRequest(
            format!("provider {} does not chat", self.id()).into(),
        ))
    }
}

/// Where a plugin host publishes the providers it loads (the engine's registry implements it).
///
/// Swaps must be atomic from a caller's point of view: a lookup sees the old provider or the
/// new one, never neither, and an `Arc` handed out earlier keeps serving its call.
pub trait ProviderSink: Send + Sync {
    /// Adds or atomically replaces the provider with `p.id()`.
    fn upsert(&self, p: Arc<dyn Provider>);
    /// Removes the provider with this id.
    fn remove(&self, id: &str);
    /// Whether [`ProviderSink::upsert`] publishes provider `id` here (a process may serve only
    /// some providers); all by default.
    fn admits(&self, id: &str) -> bool {
        let _ = id;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::ProviderError;

    #[test]
    fn a_recorded_reason_reads_back_as_the_error_it_was_written_from() {
        for error in [
            ProviderError::InvalidRequest("prompt too long".into()),
            ProviderError::InvalidRequest(super::Fault {
                message: "This model's maximum context length is 128000 tokens.".into(),
                code: Some("context_length_exceeded".into()),
                param: Some("messages".into()),
            }),
            ProviderError::ContentRejected(super::Fault {
                message: "Rejected [by policy]".into(),
                code: Some("content_policy_violation".into()),
                param: None,
            }),
            ProviderError::Unauthorized("bad key".into()),
            ProviderError::RateLimited {
                retry_after_secs: Some(7),
            },
            ProviderError::RateLimited {
                retry_after_secs: None,
            },
            ProviderError::ContentRejected("moderated".into()),
            ProviderError::UpstreamUnavailable("502 from vendor".into()),
            ProviderError::UpstreamUnreached("connection refused".into()),
            ProviderError::Internal("trap".into()),
            ProviderError::Cancelled,
        ] {
            assert_eq!(ProviderError::from_recorded(&error.to_string()), error);
        }
        assert_eq!(
            ProviderError::RateLimited {
                retry_after_secs: Some(7)
            }
            .to_string(),
            "rate limited (retry after 7s)"
        );
        // The engine's words after the vendor's wait do not hide it.
        assert_eq!(
            ProviderError::from_recorded(
                "rate limited (retry after 7s); its vendor refused all 3 of its submits for now, so it failed"
            ),
            ProviderError::RateLimited {
                retry_after_secs: Some(7)
            }
        );
        assert_eq!(
            ProviderError::from_recorded("Interrupted while streaming"),
            ProviderError::UpstreamUnavailable("Interrupted while streaming".into())
        );
    }
}
