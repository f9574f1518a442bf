//! The standard OpenAI paths on the same engine, so the official SDKs work unchanged:
//! `GET /v1/models`, `POST /v1/chat/completions` (streamed or not) and
//! `POST /v1/images/generations`.
//!
//! OpenAI answers image requests synchronously, so the handler queues a task like every other
//! API and waits for it to end (up to `[engine] queue_timeout_secs`); the task stays
//! listed and billed like any other. Errors are OpenAI's `{"error": {message, type, param,
//! code}}`.

use std::time::Duration;

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with},
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    api::{
        AppState,
        auth::AuthError,
        chat::{self, ChunkStyle},
        dialect::{Body, Caller, Dialect},
        files::public_base,
        openapi::{Api, Describe},
        submit::{refusal_parts, stored_outputs},
    },
    engine::{
        front_door::{Admission, Refusal},
        provider::ProviderError,
        registry::ResolveError,
        task::{Status, now_ms},
    },
};

/// The dialect name stored on tasks this API creates.
pub const API: &str = "openai";

/// OpenAI's error object.
#[derive(Debug)]
pub struct Error {
    status: StatusCode,
    message: String,
    param: Option<String>,
    /// Refused by a per-client limit: OpenAI's `requests` / `rate_limit_exceeded`, not
    /// `insufficient_quota`.
    rate_limited: bool,
    /// The vendor's `Retry-After`, passed on.
    retry_after_secs: Option<u64>,
}

impl Error {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            rate_limited: false,
            retry_after_secs: None,
        }
    }

    fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.into()),
            rate_limited: false,
            retry_after_secs: None,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let kind = match self.status.as_u16() {
            429 if self.rate_limited => "requests",
            401 => "authentication_error",
            429 => "insufficient_quota",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        };
        let body = json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": if self.rate_limited { "rate_limit_exceeded".into() } else { Value::Null },
        }});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl From<AuthError> for Error {
    fn from(error: AuthError) -> Self {
        let message = match error {
            AuthError::Missing => "You didn't provide an API key.",
            AuthError::Invalid => "Incorrect API key provided.",
        };
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        let param = match &refusal {
            Refusal::Invalid(invalid) => invalid.param.clone(),
            Refusal::BadInput(bad) => Some(bad.field.clone()),
            _ => None,
        };
        // A client's own limit or the vendor's: both are rate limits to OpenAI's clients, not
        // the exhausted quota (`insufficient_quota`) a 429 for a balance is.
        let rate_limited = matches!(
            refusal,
            Refusal::Limited(_) | Refusal::Provider(ProviderError::RateLimited { .. })
        );
        let retry_after_secs = match &refusal {
            Refusal::Provider(ProviderError::RateLimited { retry_after_secs }) => *retry_after_secs,
            _ => None,
        };
        match refusal_parts(refusal) {
            Ok((status, message)) => Self {
                status,
                message,
                param,
                rate_limited,
                retry_after_secs,
            },
            Err(error) => error.into(),
        }
    }
}

/// OpenAI's dialect: its `{"error": {message, type, param, code}}` object.
pub struct OpenAi;

impl Dialect for OpenAi {
    type Error = Error;

    fn unauthenticated(error: AuthError) -> Error {
        error.into()
    }

    fn rejected(status: StatusCode, message: String) -> Error {
        Error::new(status, message)
    }
}

type Client = Caller<OpenAi>;

/// Routes of the OpenAI-compatible API.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/models",
            get_with(models, |op| op.api(Api::OpenAi).summary("Models")),
        )
        .api_route(
            "/v1/models/{*id}",
            get_with(model, |op| op.api(Api::OpenAi).summary("One model")),
        )
        .api_route(
            "/v1/chat/completions",
            post_with(chat_completions, |op| {
                op.api(Api::OpenAi)
                    .summary("Chat completions, streamed or not")
                    .json_body::<ChatRequest>()
            }),
        )
        .api_route(
            "/v1/images/generations",
            post_with(images, |op| {
                op.api(Api::OpenAi)
                    .summary("Generate images (waits for the task)")
                    .json_body::<ImageRequest>()
            }),
        )
}

/// OpenAI's model objects: the chat and image models, under ids the routes accept (an
/// operator's alias may have taken a full id).
fn listed(state: &AppState) -> Vec<Value> {
    let registry = state.engine.registry();
    registry
        .models()
        .iter()
        .filter(|r| {
            r.model
                .capabilities
                .iter()
                .any(|c| c == "chat" || c == "image.generate")
        })
        .filter(|r| registry.reaches(&r.id(), r))
        .map(
            |r| json!({"id": r.id(), "object": "model", "created": 0, "owned_by": r.provider.id()}),
        )
        .collect()
}

async fn models(State(state): State<AppState>, _: Client) -> Result<Response, Error> {
    Ok(Json(json!({"object": "list", "data": listed(&state)})).into_response())
}

/// `GET /v1/models/{id}`: one of [`listed`]; the id keeps its `provider/` part.
async fn model(
    State(state): State<AppState>,
    _: Client,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    listed(&state)
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .map(|m| Json(m).into_response())
        .ok_or_else(|| {
            Error::new(
                StatusCode::NOT_FOUND,
                format!("The model `{id}` does not exist"),
            )
        })
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ChatRequest {
    /// `provider/key`, an alias, or a unique bare key.
    pub model: String,
    /// `[{role, content}]`.
    pub messages: Vec<Value>,
    /// Server-sent chunks ending with `data: [DONE]`.
    pub stream: Option<bool>,
    /// `{"include_usage": true}` adds a final usage chunk.
    pub stream_options: Option<Value>,
    /// `temperature`, `max_tokens`, … passed to the model.
    #[serde(flatten)]
    pub params: Map<String, Value>,
}

async fn chat_completions(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    body: Body<OpenAi>,
) -> Result<Response, Error> {
    let request: ChatRequest =
        body.parse(|e| Error::new(StatusCode::BAD_REQUEST, format!("Invalid request: {e}")))?;
    let resolved = chat::find_model(&state, &request.model).map_err(|error| match error {
        ResolveError::Unknown(name) => Error::new(
            StatusCode::NOT_FOUND,
            format!("The model `{name}` does not exist"),
        ),
        other => Error::invalid("model", other.to_string()),
    })?;
    let call = chat::ChatCall {
        client_id,
        api: API,
        resolved,
        messages: request.messages,
        params: request.params,
        extra: json!({}),
        stream: request.stream.unwrap_or(false),
    };
    let session = chat::open(&state, call).await?;
    if request.stream.unwrap_or(false) {
        let include_usage = chat::includes_usage(request.stream_options.as_ref());
        return Ok(chat::sse(&request.model, session, ChunkStyle::OpenAi, include_usage).await);
    }
    Ok(chat::complete(&request.model, session, ChunkStyle::OpenAi).await?)
}

/// `POST /v1/images/generations`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ImageRequest {
    /// What to draw.
    pub prompt: String,
    /// `provider/key`; the default image model when absent.
    pub model: Option<String>,
    /// Images, 1 to 10 (default 1).
    pub n: Option<u32>,
    /// `WIDTHxHEIGHT`, e.g. `1024x1024`.
    pub size: Option<String>,
    /// `url` (default) or `b64_json`.
    pub response_format: Option<String>,
    /// Other parameters (`quality`, `style`, …) passed to the model.
    #[serde(flatten)]
    pub params: Map<String, Value>,
}

async fn images(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    headers: HeaderMap,
    body: Body<OpenAi>,
) -> Result<Response, Error> {
    let request: ImageRequest =
        body.parse(|e| Error::new(StatusCode::BAD_REQUEST, format!("Invalid request: {e}")))?;
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("prompt", "prompt must not be empty"));
    }
    let n = request.n.unwrap_or(1);
    if !(1..=10).contains(&n) {
        return Err(Error::invalid("n", "n must be between 1 and 10"));
    }
    let as_base64 = match request.response_format.as_deref() {
        None | Some("url") => false,
        Some("b64_json") => true,
        Some(_) => {
            return Err(Error::invalid(
                "response_format",
                "response_format must be url or b64_json",
            ));
        }
    };
    let resolved = state
        .engine
        .registry()
        .resolve(request.model.as_deref(), "image.generate")
        .map_err(|e| Error::invalid("model", e.to_string()))?;
    let mut params = request.params;
    params.insert("n".into(), n.into());
    // `auto` (gpt-image-1's default) is passed as it is, for the model's schema to take or
    // refuse; any other size is `WIDTHxHEIGHT`.
    if request.size.as_deref() == Some("auto") {
        params.insert("size".into(), "auto".into());
    } else if let Some(size) = request.size {
        let (width, height) = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
            .ok_or_else(|| Error::invalid("size", "size must look like 1024x1024"))?;
        params.insert("size".into(), size.clone().into());
        params.insert("width".into(), width.into());
        params.insert("height".into(), height.into());
    }
    let admission = Admission {
        client_id,
        api: API,
        resolved,
        capability: "image.generate".into(),
        prompt: request.prompt,
        params,
        inputs: Vec::new(),
        webhook: None,
        extra: json!({"base": public_base(&state, &headers)}),
        idempotency: None,
        priority: None,
    };
    let (task, _) = state.engine.admit(admission).await?;
    let limit = Duration::from_secs(state.engine.config().queue_timeout_secs);
    let task = state
        .engine
        .wait_terminal(&task.id, limit)
        .await?
        .ok_or_else(|| {
            Error::new(
                StatusCode::GATEWAY_TIMEOUT,
                "The image was not ready in time",
            )
        })?;
    if let (Some(started), Some(finished)) = (task.started_at, task.finished_at) {
        // The worker's run, on whichever host: the vendor's call and its outputs' download.
        crate::metrics::add_upstream(Duration::from_millis((finished - started).max(0) as u64));
    }
    if task.status == Status::Failed {
        // Shown as the chat route shows the same error: a vendor's 400 or 429 is not a 5xx
        // that OpenAI's clients would retry (and be billed for again).
        let reason = task.error.as_deref().unwrap_or("failed");
        return Err(Refusal::Provider(ProviderError::from_recorded(reason)).into());
    }
    if task.status != Status::Succeeded {
        let reason = task
            .error
            .clone()
            .unwrap_or_else(|| task.status.to_string());
        return Err(Error::new(StatusCode::BAD_GATEWAY, reason));
    }
    let base = public_base(&state, &headers);
    let mut data = Vec::new();
    for asset in stored_outputs(&state, &task).await? {
        data.push(if as_base64 {
            let bytes = state.engine.assets().read(&asset).await?;
            json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(bytes)})
        } else {
            json!({"url": state.links.url(&base, &asset.id)})
        });
    }
    Ok(Json(json!({"created": now_ms() / 1000, "data": data})).into_response())
}
