//! Seed 000 (Pixel): `GET /api/v1/models` grouped by type, `POST /api/v1/generations/{image,
//! video,audio}`, and the Pixel shape of `GET /api/v1/tasks/{id}` (see [`crate::api::tasks`]).
//!
//! Every answer is the `{code, message, data}` envelope with `code` as a string; errors add
//! `request_id`. Model ids must be composite (`provider/model_key`): the two error texts for a
//! malformed or unknown id are the seed's, word for word. `resolution` (an image's is `1K` when
//! the request names none, as the seed says) and `aspectRatio` reach each model as its own
//! size parameters (see [`crate::api::pixel_size`]). The model list shows `resolutions`,
//! `durations` and `voices` in the seed's shapes, however a manifest lists them.

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with},
};
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    api::{
        AppState,
        auth::{AuthError, KEYS_UNAVAILABLE},
        body::WrongShape,
        dialect::{Body, Caller, Dialect, PathOf},
        files::public_base,
        loras,
        openapi::{Api, Describe},
        pixel_size,
        submit::{present_params, refusal_parts, stored_outputs},
    },
    assets::kind_of,
    engine::{
        front_door::{Admission, Refusal},
        inputs::Input,
        registry::{ResolveError, Resolved},
        task::{Status, Task, request_id_for_answer, rfc3339},
    },
};

/// The dialect name stored on tasks this API creates.
pub const API: &str = "pixel";

/// Pixel's error: `{"code": "400", "message": …, "request_id": …}`.
#[derive(Debug)]
pub struct Error(pub StatusCode, pub String);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.0.as_u16().to_string(),
            "message": self.1,
            "request_id": request_id_for_answer(),
        });
        (self.0, Json(body)).into_response()
    }
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(%error, "internal error");
        Self(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error".into(),
        )
    }
}

impl From<AuthError> for Error {
    fn from(error: AuthError) -> Self {
        let message = match error {
            AuthError::Missing => "Missing API key",
            AuthError::Invalid => "Invalid API key",
            AuthError::Unavailable => KEYS_UNAVAILABLE,
        };
        Self(error.status(), message.into())
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal_parts(refusal) {
            Ok((status, message)) => Self(status, message),
            Err(error) => error.into(),
        }
    }
}

/// Seed 000's dialect: the `{code, message, request_id}` envelope for every refusal.
pub struct Pixel;

impl Dialect for Pixel {
    type Error = Error;

    fn unauthenticated(error: AuthError) -> Error {
        error.into()
    }

    fn rejected(status: StatusCode, message: String) -> Error {
        Error(status, message)
    }
}

/// `{"code": "200", "message": "success", "data": …}`.
fn success(data: Value) -> Response {
    Json(json!({"code": "200", "message": "success", "data": data})).into_response()
}

/// Routes of seed 000 (the task route is shared, see [`crate::api::tasks`]).
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/api/v1/models",
            get_with(models, |op| {
                op.api(Api::Pixel).summary("Models grouped by type")
            }),
        )
        .api_route(
            "/api/v1/generations/{kind}",
            post_with(generate, |op| {
                op.api(Api::Pixel)
                    .summary("Create an image, video or audio task (kind: image, video, audio)")
                    .json_body::<GenerationRequest>()
            }),
        )
}

/// Pixel's model types and the capability each is generated through.
const TYPES: [(&str, &str); 4] = [
    ("image", "image.generate"),
    ("video", "video.generate"),
    ("audio", "audio.speech"),
    ("llm", "chat"),
];

fn pixel_type(kind: &str) -> &str {
    if kind == "chat" { "llm" } else { kind }
}

async fn models(State(state): State<AppState>, _: Caller<Pixel>) -> Result<Response, Error> {
    let registry = state.engine.registry();
    let mut grouped: Map<String, Value> = TYPES
        .iter()
        .map(|(kind, _)| (kind.to_string(), json!({})))
        .collect();
    for resolved in registry.models() {
        let kind = pixel_type(&resolved.model.kind);
        let Some((_, capability)) = TYPES.iter().find(|(k, _)| *k == kind) else {
            continue;
        };
        let id = resolved.id();
        let mut entry = json!({
            "id": id,
            "name": resolved.model.name,
            "type": kind,
            "provider": resolved.provider.id(),
            "model_key": resolved.model.key,
            "is_default": registry.default_for(capability).as_deref() == Some(id.as_str()),
            "enabled": true,
        });
        let extra = &resolved.model.extra;
        if let Some(capabilities) = extra.get("capabilities") {
            entry["capabilities"] = capabilities.clone();
        }
        if let Some(resolutions) = extra.get("resolutions") {
            entry["resolutions"] = pixel_size::seed_resolutions(resolutions);
        }
        if let Some(durations) = extra.get("durations") {
            entry["durations"] = seed_durations(durations);
        }
        if let Some(voices) = extra.get("voices") {
            entry["voices"] = seed_voices(voices);
        }
        if let Some(loras) = loras::listed_with_ids(&resolved.model, resolved.provider.id()) {
            entry["capabilities"]["supportsLora"] = true.into();
            entry["capabilities"]["loras"] = loras.into();
        }
        grouped[kind][&id] = entry;
    }
    Ok(success(Value::Object(grouped)))
}

/// A model's `durations` in seed 000's shape, `{"5s": "5秒"}`, from a list of seconds or a
/// `{min, max}` range as manifests also write them; that shape itself is kept.
fn seed_durations(listed: &Value) -> Value {
    let seconds: Vec<u64> = match listed {
        Value::Array(list) => list.iter().filter_map(Value::as_u64).collect(),
        Value::Object(range) => {
            let bound = |name: &str| range.get(name).and_then(Value::as_u64);
            match (bound("min"), bound("max")) {
                (Some(min), Some(max)) => (min..=max).collect(),
                _ => return listed.clone(),
            }
        }
        _ => return listed.clone(),
    };
    let named: Map<String, Value> = seconds
        .into_iter()
        .map(|s| (format!("{s}s"), format!("{s}秒").into()))
        .collect();
    Value::Object(named)
}

/// A model's `voices` in seed 000's shape, `[{"id", "name", …}]`: a voice listed by its id
/// alone is named by it.
fn seed_voices(listed: &Value) -> Value {
    let Some(voices) = listed.as_array() else {
        return listed.clone();
    };
    voices
        .iter()
        .map(|voice| match voice.as_str() {
            Some(id) => json!({"id": id, "name": id}),
            None => voice.clone(),
        })
        .collect()
}

/// Pixel names an adapter `{"model": "provider/adapter", "weight"}`; a model that reads
/// `{name, weight}` gets the adapter's name without the provider (`local/ink` → `ink`).
/// Other models get the list as sent.
fn name_loras(resolved: &Resolved, params: &mut Map<String, Value>) {
    if !loras::takes_named_loras(&resolved.model) {
        return;
    }
    let prefix = format!("{}/", resolved.provider.id());
    let Some(Value::Array(loras)) = params.get_mut("loras") else {
        return;
    };
    for lora in loras.iter_mut().filter_map(Value::as_object_mut) {
        if let Some(Value::String(model)) = lora.remove("model") {
            let name = model.strip_prefix(&prefix).unwrap_or(&model).to_string();
            lora.insert("name".into(), name.into());
        }
    }
}

/// `POST /api/v1/generations/{image,video,audio}`: the documented fields; anything else
/// (`seed`, `style`, …) goes to the model as a parameter.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerationRequest {
    /// What to make (for audio: the text to speak).
    pub prompt: String,
    /// `provider/model_key`.
    pub model: String,
    /// What to avoid.
    pub negative_prompt: Option<String>,
    /// `1K`, `2K` (image) or `720p`, `1080p` (video).
    pub resolution: Option<String>,
    /// `16:9`, `1:1`, …
    pub aspect_ratio: Option<String>,
    /// Outputs, default 1.
    #[schemars(range(min = 1, max = 10))]
    pub n: Option<u32>,
    /// Reference images (image) or the first frame (video), by URL.
    pub image_inputs: Option<Vec<String>>,
    /// Extra model parameters (LoRA settings, …).
    pub extra_params: Option<Map<String, Value>>,
    /// `5s`, `10s` (video).
    pub duration: Option<String>,
    /// Voice id (audio).
    pub voice: Option<String>,
    /// Speech rate, default 1.0 (audio).
    pub speed: Option<f64>,
    /// Project id, kept with the task.
    pub project_id: Option<String>,
    /// Origin label, kept with the task.
    pub source: Option<String>,
    /// Origin object id, kept with the task.
    pub source_id: Option<String>,
    /// Other model parameters, passed through.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

async fn generate(
    State(state): State<AppState>,
    Caller { client_id, .. }: Caller<Pixel>,
    headers: HeaderMap,
    PathOf { params: kind, .. }: PathOf<String, Pixel>,
    body: Body<Pixel>,
) -> Result<Response, Error> {
    let Some((_, capability)) = TYPES.iter().find(|(k, _)| *k == kind && kind != "llm") else {
        return Err(Error(
            StatusCode::NOT_FOUND,
            format!("Unknown generation type '{kind}': use image, video or audio"),
        ));
    };
    let raw = body.object()?;
    let model = match raw.get("model") {
        None | Some(Value::Null) => {
            return Err(Error(
                StatusCode::BAD_REQUEST,
                "Missing required parameter: model (a 'provider/model_key' id from \
                 /api/v1/models, e.g. 'dashscope/qwen-image')"
                    .into(),
            ));
        }
        Some(Value::String(model)) => model,
        Some(other) => {
            return Err(Error(
                StatusCode::BAD_REQUEST,
                format!(
                    "Invalid parameter model: must be a string like 'dashscope/qwen-image', not {other}"
                ),
            ));
        }
    };
    let resolved = resolve(&state, model, &kind)?;
    let request: GenerationRequest = WrongShape::check(&raw)
        .map_err(|e| Error(StatusCode::BAD_REQUEST, format!("Invalid request: {e}")))?;
    if request.prompt.trim().is_empty() {
        return Err(Error(StatusCode::BAD_REQUEST, "prompt is required".into()));
    }

    let mut params = present_params([
        ("negativePrompt", request.negative_prompt.map(Value::from)),
        // Seed 000: an image is `1K` unless the request names its level.
        (
            "resolution",
            request
                .resolution
                .or_else(|| (kind == "image").then(|| pixel_size::DEFAULT_LEVEL.into()))
                .map(Value::from),
        ),
        ("aspectRatio", request.aspect_ratio.map(Value::from)),
        ("n", request.n.map(Value::from)),
        ("duration", request.duration.map(Value::from)),
        ("voice", request.voice.map(Value::from)),
        ("speed", request.speed.map(Value::from)),
    ]);
    // Pixel writes durations as "5s"; a model that counts seconds as a number gets 5.
    if let Some(Value::String(text)) = params.get("duration")
        && resolved.model.params_schema["properties"]["duration"]["type"] == "integer"
        && let Ok(seconds) = text.trim_end_matches('s').parse::<u64>()
    {
        params.insert("duration".into(), seconds.into());
    }
    params.extend(request.other);
    params.extend(request.extra_params.unwrap_or_default());
    name_loras(&resolved, &mut params);
    let size = pixel_size::size_params(&resolved.model, &params)
        .map_err(|message| Error(StatusCode::BAD_REQUEST, message))?;
    params.extend(size);
    let role = if kind == "video" {
        "first_frame"
    } else {
        "reference"
    };
    let inputs = request
        .image_inputs
        .unwrap_or_default()
        .into_iter()
        .map(|url| Input::url("imageInputs", "image", Some(role), url))
        .collect();
    let extra = json!({
        "type": kind,
        "projectId": request.project_id,
        "source": request.source,
        "sourceId": request.source_id,
        "base": public_base(&state, &headers),
    });
    let (task, _) = state
        .engine
        .admit(Admission {
            client_id,
            api: API,
            resolved,
            capability: capability.to_string(),
            prompt: request.prompt,
            params,
            inputs,
            webhook: None,
            extra,
            idempotency: None,
            priority: None,
        })
        .await?;
    Ok(success(json!({"task_id": task.id})))
}

/// Seed 000's model-id rules, with its exact messages.
fn resolve(
    state: &AppState,
    model: &str,
    kind: &str,
) -> Result<crate::engine::registry::Resolved, Error> {
    let parts: Vec<&str> = model.split('/').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(Error(
            StatusCode::BAD_REQUEST,
            format!(
                "Model must be in format 'provider/model_key', got: '{model}'. Example: 'dashscope/qwen-image'"
            ),
        ));
    }
    match state.engine.registry().find(model) {
        Ok(resolved) if pixel_type(&resolved.model.kind) == kind => Ok(resolved),
        // Listed by /api/v1/models, under another type: "not found" would send the client
        // to a list that holds it.
        Ok(resolved) => Err(Error(
            StatusCode::BAD_REQUEST,
            format!(
                "Model '{model}' is of type '{}', and this route takes type '{kind}'. Available \
                 models can be fetched from /api/v1/models",
                pixel_type(&resolved.model.kind)
            ),
        )),
        Err(error @ ResolveError::Ambiguous { .. }) => {
            Err(Error(StatusCode::BAD_REQUEST, error.to_string()))
        }
        _ => Err(Error(
            StatusCode::NOT_FOUND,
            format!(
                "Model '{model}' not found. Available models can be fetched from /api/v1/models"
            ),
        )),
    }
}

/// Pixel's status names.
fn status_name(status: Status) -> &'static str {
    match status {
        Status::Queued => "pending",
        Status::Running => "processing",
        Status::Succeeded => "completed",
        Status::Failed | Status::Cancelled | Status::Expired => "failed",
    }
}

/// A task as seed 000 shows it, inside the envelope, its links under `base`.
pub async fn task_view(state: &AppState, task: &Task, base: &str) -> Result<Response, Error> {
    let extra: Value = serde_json::from_str(&task.extra).unwrap_or_default();
    let request = task.generation_request()?;
    let mut params = request.params.clone();
    params.insert("prompt".into(), request.prompt.clone().into());
    let mut result = Map::new();
    for asset in stored_outputs(state, task).await? {
        let url = state.links.url(base, &asset.id);
        let kind = kind_of(&asset.content_type);
        let mut entry = json!({"url": url});
        if kind == "image"
            && let Ok(head) = state.engine.assets().read_head(&asset, 64 * 1024).await
            && let Some((width, height)) = image_size(&head)
        {
            entry["width"] = width.into();
            entry["height"] = height.into();
        }
        let key = format!("{kind}s");
        result
            .entry(key)
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("inserted as an array")
            .push(entry);
    }
    let mut data = json!({
        "id": task.id,
        "type": extra["type"].as_str().unwrap_or("image"),
        "status": status_name(task.status),
        "model": format!("{}/{}", task.provider, task.model),
        "params": params,
        "result": result,
        "progress": task.progress,
        "created_at": rfc3339(task.created_at),
        "updated_at": rfc3339(task.updated_at),
    });
    if let Some(error) = &task.error {
        data["error"] = error.clone().into();
    }
    Ok(success(data))
}

/// Width and height of a PNG or JPEG file, read from its first bytes.
fn image_size(head: &[u8]) -> Option<(u32, u32)> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") && head.len() >= 24 {
        let width = u32::from_be_bytes(head[16..20].try_into().ok()?);
        let height = u32::from_be_bytes(head[20..24].try_into().ok()?);
        return Some((width, height));
    }
    if !head.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    // Walk the JPEG segments to the first start-of-frame marker.
    let mut at = 2;
    while at + 9 < head.len() {
        if head[at] != 0xFF {
            return None;
        }
        let marker = head[at + 1];
        let length = usize::from(u16::from_be_bytes([head[at + 2], head[at + 3]]));
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let height = u16::from_be_bytes([head[at + 5], head[at + 6]]);
            let width = u16::from_be_bytes([head[at + 7], head[at + 8]]);
            return Some((width.into(), height.into()));
        }
        at += 2 + length;
    }
    None
}
