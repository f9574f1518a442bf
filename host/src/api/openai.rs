//! The standard OpenAI paths on the same engine, so the official SDKs work unchanged:
//! `GET /v1/models`, `POST /v1/chat/completions` (streamed or not),
//! `POST /v1/images/generations`, `POST /v1/images/edits` and `POST /v1/audio/speech`.
//!
//! OpenAI answers image and speech requests synchronously, so the handler queues a task like
//! every other API and waits for it to end (up to `[engine] queue_timeout_secs`); the task
//! stays listed and billed like any other. This answer is the client's only way to the result,
//! so a client that leaves before the task ends (a timeout its SDK then retries) and a wait that
//! runs out cancel the task, which refunds it. Errors are OpenAI's `{"error": {message, type,
//! param, code}}`.

use std::time::Duration;

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with},
};
use axum::{
    Json,
    extract::{Request, State},
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
        auth::{AuthError, KEYS_UNAVAILABLE},
        body::{Unreadable, WrongShape},
        chat::{self, ChunkStyle},
        dialect::{Body, Caller, Dialect, PathOf},
        files::public_base,
        multipart,
        openapi::{Api, Describe},
        pixel_size,
        submit::{refusal_parts, stored_outputs},
    },
    engine::{
        Engine,
        front_door::{Admission, Refusal},
        inputs::Input,
        limits::{self, LimitKind},
        provider::ProviderError,
        registry::ResolveError,
        task::{CancelledBy, Status, Task, now_ms},
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
    /// Refused by a rate limit (the client's requests per minute or tasks at once, or the
    /// vendor's): OpenAI's `rate_limit_exceeded`, with this `type` (`requests`, `tasks`). A
    /// 429 without it is an exhausted quota (a balance, a budget): `insufficient_quota`.
    rate_limit: Option<&'static str>,
    /// The vendor's `Retry-After`, passed on.
    retry_after_secs: Option<u64>,
    /// OpenAI's `code` where the status alone does not say it (`model_not_found`, or the
    /// vendor's own: `context_length_exceeded`).
    code: Option<String>,
}

impl Error {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            rate_limit: None,
            retry_after_secs: None,
            code: None,
        }
    }

    /// The same error about parameter `to` where it named `from` (a parameter passed on to
    /// the model under another name).
    fn renamed(mut self, from: &str, to: &str) -> Self {
        if self.param.as_deref() == Some(from) {
            self.param = Some(to.into());
            self.message =
                self.message
                    .replacen(&format!("parameter {from}"), &format!("parameter {to}"), 1);
        }
        self
    }

    /// A model name resolved to nothing (404 `model_not_found`, as OpenAI answers it), or
    /// to an ambiguous or unsuitable model (400 naming `model`).
    fn unresolved(error: ResolveError) -> Self {
        match error {
            ResolveError::Unknown(name) => Self {
                param: Some("model".into()),
                code: Some("model_not_found".into()),
                ..Self::new(
                    StatusCode::NOT_FOUND,
                    format!("The model `{name}` does not exist"),
                )
            },
            other => Self::invalid("model", other.to_string()),
        }
    }

    /// A body of another shape than the route takes, naming the field where serde could.
    fn wrong_shape(wrong: WrongShape) -> Self {
        Self {
            param: wrong.field.clone(),
            ..Self::new(StatusCode::BAD_REQUEST, format!("Invalid request: {wrong}"))
        }
    }

    fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.into()),
            rate_limit: None,
            retry_after_secs: None,
            code: None,
        }
    }
}

impl Error {
    /// OpenAI's error object, `{"error": {message, type, param, code}}`.
    fn body(&self) -> Value {
        let kind = match self.status.as_u16() {
            429 if let Some(kind) = self.rate_limit => kind,
            401 => "authentication_error",
            429 => "insufficient_quota",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        };
        let code = match self.status.as_u16() {
            _ if self.rate_limit.is_some() => Some("rate_limit_exceeded"),
            401 => Some("invalid_api_key"),
            429 => Some("insufficient_quota"),
            _ => self.code.as_deref(),
        };
        json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": code,
        }})
    }
}

/// The event a stream ends with when `refusal` cut it: the error object an answer's body
/// would carry, as OpenAI streams it.
pub(crate) fn error_event(refusal: Refusal) -> Value {
    Error::from(refusal).body()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
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
            AuthError::Unavailable => KEYS_UNAVAILABLE,
        };
        Self::new(error.status(), message)
    }
}

impl From<Unreadable> for Error {
    fn from(reason: Unreadable) -> Self {
        let (status, message) = reason.parts();
        Error::new(status, message)
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        let (param, code, vendor_said) = match &refusal {
            Refusal::Invalid(invalid) => (invalid.param.clone(), None, None),
            Refusal::BadInput(bad) => (Some(bad.field.clone()), None, None),
            // What the vendor said of the request, as OpenAI says it: its words as they are,
            // its code and parameter apart from them (the `type` says the request was refused;
            // rejected content without a code of its own is OpenAI's `content_policy_violation`).
            Refusal::Provider(ProviderError::InvalidRequest(fault)) => (
                fault.param.clone(),
                fault.code.clone(),
                Some(fault.message.clone()),
            ),
            Refusal::Provider(ProviderError::ContentRejected(fault)) => (
                fault.param.clone(),
                Some(
                    fault
                        .code
                        .clone()
                        .unwrap_or_else(|| "content_policy_violation".into()),
                ),
                Some(fault.message.clone()),
            ),
            _ => (None, None, None),
        };
        // A client's rate or concurrency limit, or the vendor's rate limit; a budget is the
        // client's quota.
        let rate_limit = match &refusal {
            Refusal::Limited(limited) => match limited.kind {
                LimitKind::Requests => Some("requests"),
                LimitKind::Tasks => Some("tasks"),
                LimitKind::Budget => None,
            },
            Refusal::Provider(ProviderError::RateLimited { .. }) => Some("requests"),
            _ => None,
        };
        let retry_after_secs = refusal.vendor_retry_after();
        match refusal_parts(refusal) {
            Ok((status, message)) => Self {
                status,
                message: vendor_said.unwrap_or(message),
                param,
                rate_limit,
                retry_after_secs,
                code,
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
        .api_route(
            "/v1/images/edits",
            post_with(image_edits, |op| {
                op.api(Api::OpenAi)
                    .summary(
                        "Edit an image, or inpaint it with a mask (multipart; waits for the task)",
                    )
                    .form_body::<ImageEditForm>()
            }),
        )
        .api_route(
            "/v1/audio/speech",
            post_with(speech, |op| {
                op.api(Api::OpenAi)
                    .summary("Speak text; the answer is the audio file (waits for the task)")
                    .json_body::<SpeechRequest>()
                    .file()
            }),
        )
}

/// The capabilities this API's routes serve, whose models `/v1/models` lists.
const LISTED: [&str; 5] = [
    "chat",
    "image.generate",
    "image.edit",
    "image.inpaint",
    "audio.speech",
];

/// OpenAI's model objects: the models of [`LISTED`] capabilities, under ids the routes accept
/// (an operator's alias may have taken a full id), chat models only where this host loads
/// their provider.
fn listed(state: &AppState) -> Vec<Value> {
    let registry = state.engine.registry();
    registry
        .models()
        .iter()
        .filter(|r| {
            r.model
                .capabilities
                .iter()
                .any(|c| LISTED.contains(&c.as_str()))
        })
        .filter(|r| registry.reaches(&r.id(), r))
        // A chat is answered by the host that accepts it: a chat model only another process
        // of the fleet loads would be refused here, so it is not offered here.
        .filter(|r| {
            !r.model.capabilities.iter().any(|c| c == "chat")
                || registry.provider(r.provider.id()).is_some()
        })
        .map(
            |r| json!({"id": r.id(), "object": "model", "created": 0, "owned_by": r.provider.id()}),
        )
        .collect()
}

async fn models(State(state): State<AppState>, _: Client) -> Result<Response, Error> {
    Ok(Json(json!({"object": "list", "data": listed(&state)})).into_response())
}

/// `GET /v1/models/{id}`: one of [`listed`], named as a request may name it (`provider/key`,
/// an alias, a bare key one provider serves) and answered under the name asked.
async fn model(
    State(state): State<AppState>,
    _: Client,
    PathOf { params: id, .. }: PathOf<String, OpenAi>,
) -> Result<Response, Error> {
    let resolved = state
        .engine
        .registry()
        .find(&id)
        .map_err(Error::unresolved)?
        .id();
    let mut model = listed(&state)
        .into_iter()
        .find(|m| m["id"] == resolved.as_str())
        .ok_or_else(|| Error::unresolved(ResolveError::Unknown(id.clone())))?;
    model["id"] = id.into();
    Ok(Json(model).into_response())
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ChatRequest {
    /// `provider/key`, an alias, or a unique bare key.
    pub model: String,
    /// `[{role, content}]`; an assistant's `tool_calls` and `tool` messages answering them
    /// by `tool_call_id`.
    pub messages: Vec<Value>,
    /// Server-sent chunks ending with `data: [DONE]`.
    pub stream: Option<bool>,
    /// `{"include_usage": true}` adds a final usage chunk.
    pub stream_options: Option<Value>,
    /// `temperature`, `max_tokens`, … passed to the model; `tools`, `tool_choice` and
    /// `parallel_tool_calls` for a model whose schema declares them.
    #[serde(flatten)]
    pub params: Map<String, Value>,
}

async fn chat_completions(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    body: Body<OpenAi>,
) -> Result<Response, Error> {
    let request: ChatRequest = body.parse(Error::wrong_shape)?;
    let resolved = chat::find_model(&state, &request.model).map_err(Error::unresolved)?;
    let stream = request.stream.unwrap_or(false);
    let include_usage = chat::includes_usage(stream, request.stream_options.as_ref())?;
    let call = chat::ChatCall {
        client_id,
        api: API,
        resolved,
        messages: request.messages,
        params: request.params,
        extra: json!({}),
        stream,
    };
    let session = chat::open(&state, call).await?;
    if stream {
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
    let request: ImageRequest = body.parse(Error::wrong_shape)?;
    let call = ImageCall {
        capability: "image.generate",
        request,
        inputs: Vec::new(),
    };
    answer_images(&state, client_id, &headers, call).await
}

/// `POST /v1/images/edits`, a multipart form: `image` (or `image[]`, repeated) and an
/// optional `mask` as files, the other fields as [`ImageRequest`]'s. It describes the form
/// in the API document; the handler reads the parts as they stream in.
#[derive(Debug, JsonSchema)]
pub struct ImageEditForm {
    /// The image to change (a file part; `image[]` for several).
    #[schemars(extend("format" = "binary"))]
    pub image: String,
    /// Where to change it (a file part): with a mask the task is `image.inpaint`, without
    /// one `image.edit`.
    #[schemars(extend("format" = "binary"))]
    pub mask: Option<String>,
    /// The other fields, as the generation route takes them.
    #[serde(flatten)]
    pub fields: ImageRequest,
}

async fn image_edits(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, Error> {
    if !multipart::is_multipart(&headers) {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            "Send the image as a multipart/form-data file part named image",
        ));
    }
    // Every file part is received, so that one this route does not take is refused by name.
    let is_file = |name: &str, file_name: Option<&str>| {
        file_name.is_some() || matches!(name, "image" | "image[]" | "mask")
    };
    let mut fields = Map::new();
    let mut inputs = Vec::new();
    let mut masked = false;
    for part in multipart::read_parts(&state, request, is_file).await? {
        if matches!(part.content, multipart::Content::Text(_)) {
            let name = part.name.clone();
            fields.insert(name, Value::String(part.text()?));
            continue;
        }
        let kind = match part.name.as_str() {
            "image" | "image[]" => "image",
            "mask" => "mask",
            other => {
                return Err(Error::invalid(
                    other,
                    format!(
                        "{other} is not a file this route takes: send image (or image[]) and mask"
                    ),
                ));
            }
        };
        masked |= kind == "mask";
        let declared = part.file_type();
        let multipart::Content::File(spooled) = part.content else {
            unreachable!("file parts are spooled")
        };
        let content_type = match declared {
            Some(declared) => declared,
            None => sniffed_image_type(spooled.path())
                .await
                .unwrap_or_else(|| "image/png".into()),
        };
        let file_name = part.file_name.unwrap_or_else(|| part.name.clone());
        inputs.push(Input::upload(
            &part.name,
            kind,
            None,
            file_name,
            content_type,
            spooled,
        ));
    }
    if !inputs.iter().any(|i| i.kind.as_deref() == Some("image")) {
        return Err(Error::invalid(
            "image",
            "image is required: the file to change",
        ));
    }
    let mut text = |name: &str| match fields.remove(name) {
        Some(Value::String(value)) => Some(value),
        _ => None,
    };
    let n = text("n")
        .map(|n| n.trim().parse::<u32>())
        .transpose()
        .map_err(|_| Error::invalid("n", "n must be a whole number"))?;
    let request = ImageRequest {
        prompt: text("prompt").unwrap_or_default(),
        model: text("model"),
        n,
        size: text("size"),
        response_format: text("response_format"),
        params: fields,
    };
    let capability = if masked {
        "image.inpaint"
    } else {
        "image.edit"
    };
    let call = ImageCall {
        capability,
        request,
        inputs,
    };
    answer_images(&state, client_id, &headers, call).await
}

/// Whether a parameter's value asks for something: not absent, false or zero, in JSON or as
/// a form field's text.
fn asks_for_something(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(asked) => *asked,
        Value::Number(number) => number.as_f64() != Some(0.0),
        Value::String(text) => !matches!(text.trim(), "" | "false" | "0"),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The type of the image file at `path`, from its first bytes, when the image crate knows
/// its format: the SDKs send bytes given without a name as `application/octet-stream`.
async fn sniffed_image_type(path: &std::path::Path) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::with_capacity(64);
    let file = tokio::fs::File::open(path).await.ok()?;
    file.take(64).read_to_end(&mut head).await.ok()?;
    let format = image::guess_format(&head).ok()?;
    Some(format.to_mime_type().to_string())
}

/// An image request on its way to the engine, from either image route.
struct ImageCall {
    capability: &'static str,
    request: ImageRequest,
    inputs: Vec<Input>,
}

/// Runs `call` and answers OpenAI's `{created, data: [{url} or {b64_json}], usage?}`.
async fn answer_images(
    state: &AppState,
    client_id: String,
    headers: &HeaderMap,
    ImageCall {
        capability,
        request,
        inputs,
    }: ImageCall,
) -> Result<Response, Error> {
    if request.prompt.trim().is_empty() {
        return Err(Error::invalid("prompt", "prompt must not be empty"));
    }
    let n = request.n.unwrap_or(1);
    if !(1..=10).contains(&n) {
        return Err(Error::invalid("n", "n must be between 1 and 10"));
    }
    // The answer is the whole images, never partial ones streamed as events.
    for name in ["stream", "partial_images"] {
        if request.params.get(name).is_some_and(asks_for_something) {
            return Err(Error::invalid(
                name,
                format!("{name} is not supported: the answer holds the whole images"),
            ));
        }
    }
    let resolved = state
        .engine
        .registry()
        .resolve(request.model.as_deref(), capability)
        .map_err(Error::unresolved)?;
    // OpenAI answers links by default, but base64 for the models that have no links to give
    // (gpt-image-1): a model's `image_answer` extra says which it is.
    let as_base64 = match request.response_format.as_deref() {
        None => resolved.model.extra.get("image_answer") == Some(&json!("b64_json")),
        Some("url") => false,
        Some("b64_json") => true,
        Some(_) => {
            return Err(Error::invalid(
                "response_format",
                "response_format must be url or b64_json",
            ));
        }
    };
    let mut params = request.params;
    params.insert("n".into(), n.into());
    // `auto` (gpt-image-1's default) is passed as it is, for the model's schema to take or
    // refuse; any other size is `WIDTHxHEIGHT`, passed as the model's free size writes it.
    if request.size.as_deref() == Some("auto") {
        params.insert("size".into(), "auto".into());
    } else if let Some(size) = &request.size {
        let (width, height) = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
            .ok_or_else(|| Error::invalid("size", "size must look like 1024x1024"))?;
        let own = pixel_size::own_size_form(&resolved.model, size);
        params.insert("size".into(), own.into());
        params.insert("width".into(), width.into());
        params.insert("height".into(), height.into());
    }
    let base = public_base(state, headers);
    let admission = Admission {
        client_id,
        api: API,
        resolved,
        capability: capability.into(),
        prompt: request.prompt,
        params,
        inputs,
        webhook: None,
        extra: json!({"base": base}),
        idempotency: None,
        priority: None,
    };
    // The model's checks name `width` and `height`; the client sent `size`.
    let size = request.size;
    let task = run_to_end(state, admission, "The image")
        .await
        .map_err(|error| match &size {
            Some(size) if matches!(error.param.as_deref(), Some("width" | "height")) => Error {
                param: Some("size".into()),
                message: format!("size {size} is not offered: {}", error.message),
                ..error
            },
            _ => error,
        })?;
    let mut data = Vec::new();
    for asset in stored_outputs(state, &task).await? {
        data.push(if as_base64 {
            let bytes = state.engine.assets().read(&asset).await?;
            json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(bytes)})
        } else {
            json!({"url": state.links.url(&base, &asset.id)})
        });
    }
    let mut answer = json!({"created": now_ms() / 1000, "data": data});
    if let Some(usage) = token_usage(task.usage.as_deref()) {
        answer["usage"] = usage;
    }
    Ok(Json(answer).into_response())
}

/// The vendor's usage of an image answer when it is OpenAI's (gpt-image's token counts), as
/// OpenAI shows it; another vendor's units (an image count, seconds) are not shown, since an
/// OpenAI client reads `usage` as tokens.
fn token_usage(recorded: Option<&str>) -> Option<Value> {
    let usage: Value = serde_json::from_str(recorded?).ok()?;
    ["input_tokens", "output_tokens", "total_tokens"]
        .iter()
        .all(|count| usage[count].is_u64())
        .then_some(usage)
}

/// Admits `admission` and waits for its task to end: the succeeded task, or the error the
/// client sees (`what`, e.g. "The image", names the product in a timeout's message).
async fn run_to_end(state: &AppState, admission: Admission, what: &str) -> Result<Task, Error> {
    // Admitted on a task of its own, so that a client who leaves while the task is being
    // stored still has it cancelled: the guard then drops with the spawned task's output.
    let engine = state.engine.clone();
    let mut waiting = limits::detached(async move {
        let (task, _) = engine.admit(admission).await?;
        Ok::<_, Refusal>(Waiting {
            engine,
            task: Some(task),
        })
    })
    .await
    .map_err(|stopped| {
        Refusal::Internal(anyhow::anyhow!("admitting the task stopped: {stopped}"))
    })??;
    let id = waiting
        .task
        .as_ref()
        .expect("a task just admitted")
        .id
        .clone();
    let limit = Duration::from_secs(state.engine.config().queue_timeout_secs);
    let task = state
        .engine
        .wait_terminal(&id, limit)
        .await?
        .ok_or_else(|| {
            Error::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("{what} was not ready in time"),
            )
        })?;
    waiting.task = None;
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
    Ok(task)
}

/// A task whose client waits for it in the answer: dropped before it ended (the client left,
/// or the wait ran out), it cancels the task, since nobody can collect the result any more.
struct Waiting {
    engine: Engine,
    /// `None` once the task ended.
    task: Option<Task>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        let engine = self.engine.clone();
        let cancel = async move {
            if let Err(error) = engine
                .cancel(&task.client_id, &task.id, CancelledBy::Client)
                .await
            {
                tracing::warn!(task = %task.id, %error, "cancelling an abandoned task failed");
            }
        };
        // Outside a runtime the process is ending; the task then runs on and is recorded.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(cancel);
        }
    }
}

/// `POST /v1/audio/speech`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SpeechRequest {
    /// `provider/key`; the default speech model when absent.
    pub model: Option<String>,
    /// The text to speak.
    pub input: String,
    /// One of the model's voices (as the model names them); its default when absent.
    pub voice: Option<Value>,
    /// The audio format (`mp3`, `wav`, …) among those the model offers; its default when
    /// absent. Refused for a model that does not let the client choose.
    pub response_format: Option<String>,
    /// `audio` (default): the file. `sse` is refused: the answer is never streamed as events.
    pub stream_format: Option<String>,
    /// Other parameters (`speed`, `instructions`, …) passed to the model.
    #[serde(flatten)]
    pub params: Map<String, Value>,
}

async fn speech(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    body: Body<OpenAi>,
) -> Result<Response, Error> {
    let request: SpeechRequest = body.parse(Error::wrong_shape)?;
    if request.input.trim().is_empty() {
        return Err(Error::invalid("input", "input must not be empty"));
    }
    if request
        .stream_format
        .as_deref()
        .is_some_and(|f| f != "audio")
    {
        return Err(Error::invalid(
            "stream_format",
            "stream_format must be audio: the answer is the whole audio file",
        ));
    }
    let resolved = state
        .engine
        .registry()
        .resolve(request.model.as_deref(), "audio.speech")
        .map_err(Error::unresolved)?;
    let mut params = request.params;
    if let Some(voice) = request.voice {
        params.insert("voice".into(), voice);
    }
    let mut format_named = None;
    if let Some(format) = request.response_format {
        // Plugins name the choice as their vendor does: OpenAI's own name, seed 000's, or
        // Doubao's.
        let declared = &resolved.schema.raw()["properties"];
        let name = ["response_format", "format", "encoding"]
            .into_iter()
            .find(|name| declared.get(name).is_some())
            .ok_or_else(|| {
                Error::invalid(
                    "response_format",
                    format!(
                        "{} answers in a format of its own; leave response_format out",
                        resolved.id()
                    ),
                )
            })?;
        params.insert(name.into(), format.into());
        format_named = Some(name);
    }
    let admission = Admission {
        client_id,
        api: API,
        resolved,
        capability: "audio.speech".into(),
        prompt: request.input,
        params,
        inputs: Vec::new(),
        webhook: None,
        extra: json!({}),
        idempotency: None,
        priority: None,
    };
    let task =
        run_to_end(&state, admission, "The speech")
            .await
            .map_err(|error| match format_named {
                Some(name) => error.renamed(name, "response_format"),
                None => error,
            })?;
    let audio = stored_outputs(&state, &task).await?.into_iter().next();
    let audio = audio
        .ok_or_else(|| Error::new(StatusCode::BAD_GATEWAY, "The model answered without audio"))?;
    crate::api::assets::serve_asset(&state, &audio, Default::default(), false)
        .await
        .map_err(|crate::api::error::Error(status, message)| Error::new(status, message))
}
