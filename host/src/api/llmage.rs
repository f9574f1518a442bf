//! Seed 002 (llmage, OpenAI-compatible): `/llmage/v1/models`, `/chat/completions`,
//! `/image/generations`, `/video/generations` (JSON or multipart with files) and
//! `/tasks?taskid=`.
//!
//! Models are named bare (`wan2.6-t2v`) and resolve through aliases or when unique; the model
//! list shows each model under a name that resolves to it (the full `provider/key` where two
//! providers share a key), and an ambiguous name is refused with its candidates. Every
//! parameter is checked against the model's schema before anything is stored, with llmage's
//! messages (`Missing required parameter: prompt`); errors are `{"error": "…"}`. With
//! `[credits] enforce`, a task reserves its price and a short balance is
//! `429 {"error": "Insufficient balance"}`.

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
use schemars::{JsonSchema, json_schema};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    api::{
        AppState,
        auth::{AuthError, KEYS_UNAVAILABLE},
        body,
        chat::{self, ChunkStyle},
        dialect::{Body, Caller, Dialect, QueryOf},
        error::Error,
        files::public_base,
        loras, multipart,
        openapi::{Api, Describe},
        submit::stored_outputs,
    },
    assets::kind_of,
    engine::{
        front_door::{Admission, Refusal},
        inputs::Input,
        provider::ModelInfo,
        registry::{ResolveError, Resolved},
        task::{Status, Task},
    },
};

/// The dialect name stored on tasks this API creates.
pub const API: &str = "llmage";

/// Routes of seed 002.
pub fn routes() -> ApiRouter<AppState> {
    // Three named fields, the rest per model.
    let generation = json_schema!({
        "type": "object",
        "required": ["model", "catelogid", "prompt"],
        "properties": {
            "model": {"type": "string"},
            "catelogid": {"type": "string", "enum": ["t2i", "i2i", "t2v", "i2v", "ref2v"]},
            "prompt": {"type": "string"},
        },
        "additionalProperties": true,
    });
    ApiRouter::new()
        .api_route(
            "/llmage/v1/models",
            get_with(models, |op| {
                op.api(Api::Llmage)
                    .summary("Models, optionally of one catelogid")
            }),
        )
        .api_route(
            "/llmage/v1/chat/completions",
            post_with(chat_completions, |op| {
                op.api(Api::Llmage)
                    .summary("Chat, streamed (SSE) or not")
                    .json_body::<ChatCompletionRequest>()
            }),
        )
        .api_route(
            "/llmage/v1/image/generations",
            post_with(image_generations, |op| {
                op.api(Api::Llmage)
                    .summary("Create an image task")
                    .json_body_schema(generation.clone())
            }),
        )
        .api_route(
            "/llmage/v1/video/generations",
            post_with(video_generations, |op| {
                op.api(Api::Llmage)
                    .summary("Create a video task (JSON, or multipart with image_file, image1_file/image2_file, image_file1/image_file2, image_files, video_files, audio_files)")
                    .json_body_schema(generation)
            }),
        )
        .api_route(
            "/llmage/v1/tasks",
            get_with(task, |op| {
                op.api(Api::Llmage)
                    .summary("A task's status, usage and media")
            }),
        )
}

fn bad(message: impl Into<String>) -> Error {
    Error::bad_request(message)
}

fn missing(name: &str) -> Error {
    bad(format!("Missing required parameter: {name}"))
}

/// Seed 002's dialect: 001's `{"error": …}` shape with llmage's own words for a bad key.
pub struct Llmage;

impl Dialect for Llmage {
    type Error = Error;

    fn unauthenticated(error: AuthError) -> Error {
        match error {
            AuthError::Unavailable => Error(error.status(), KEYS_UNAVAILABLE.into()),
            AuthError::Missing | AuthError::Invalid => {
                Error(StatusCode::UNAUTHORIZED, "Invalid API Key".into())
            }
        }
    }

    fn rejected(status: StatusCode, message: String) -> Error {
        Error(status, message)
    }
}

/// llmage's refusal of a model name: `Model not found: …`, or an ambiguous name's candidates.
fn unresolved(error: ResolveError) -> Error {
    match error {
        ResolveError::Unknown(name) => bad(format!("Model not found: {name}")),
        other => bad(other.to_string()),
    }
}

type Client = Caller<Llmage>;

/// The frames a model's `i2v` needs, each as its role and the field a refusal names: the
/// manifest's `i2v.required` (`{"first_frame": "image1_file", "last_frame": "image2_file"}`;
/// `{}` when both are optional, as seed 002's tables differ per model), else the first frame
/// as `image_file`.
fn required_frames(model: &ModelInfo) -> Vec<(String, String)> {
    match model.extra.get("i2v").and_then(|i2v| i2v.get("required")) {
        Some(Value::Object(required)) => required
            .iter()
            .map(|(role, field)| (role.clone(), field.as_str().unwrap_or(role).to_string()))
            .collect(),
        _ => vec![("first_frame".into(), "image_file".into())],
    }
}

/// The llmage categories a model serves: its manifest's `catelogid` (one or a list), else
/// what its capabilities imply.
pub fn catelogids(model: &ModelInfo) -> Vec<String> {
    match model.extra.get("catelogid") {
        Some(Value::String(one)) => return vec![one.clone()],
        Some(Value::Array(many)) => {
            return many
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
        }
        _ => {}
    }
    let mut ids = Vec::new();
    for capability in &model.capabilities {
        let implied: &[&str] = match capability.as_str() {
            "chat" => &["t2t"],
            "image.generate" => &["t2i"],
            "image.edit" => &["i2i"],
            "video.generate" => &["t2v", "i2v"],
            "audio.speech" => &["t2a"],
            _ => &[],
        };
        ids.extend(implied.iter().map(|s| s.to_string()));
    }
    ids
}

/// Query of `GET /llmage/v1/models`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ModelsQuery {
    /// Only models of this category: `t2t`, `t2i`, `t2v`, `i2v`, `ref2v`, …
    pub catelogid: Option<String>,
}

async fn models(
    State(state): State<AppState>,
    _: Client,
    QueryOf { query, .. }: QueryOf<ModelsQuery, Llmage>,
) -> Result<Response, Error> {
    let wanted = query.catelogid.filter(|c| !c.is_empty());
    let registry = state.engine.registry();
    let data: Vec<Value> = registry
        .models()
        .into_iter()
        .filter_map(|resolved| {
            let ids = catelogids(&resolved.model);
            if let Some(wanted) = &wanted
                && !ids.contains(wanted)
            {
                return None;
            }
            let id = registry.listed_name(&resolved)?;
            let mut listed = json!({
                "id": id,
                "object": "model",
                "created": 0,
                "owned_by": resolved.provider.id(),
                "name": resolved.model.name,
                "catelogid": ids,
                "price": state.engine.credit_settings().prices.get(&resolved.id()).copied().or(resolved.model.price_hint),
                "parameters": resolved.model.params_schema,
            });
            if let Some(loras) = loras::listed(&resolved.model) {
                listed["loras"] = loras.into();
            }
            // The input kinds its vendor takes only as links it fetches.
            if let Some(kinds) = resolved.model.extra.get("url_inputs") {
                listed["url_inputs"] = kinds.clone();
            }
            Some(listed)
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

/// `POST /llmage/v1/chat/completions`: llmage's `prompt` and `sys_prompt`, with OpenAI
/// `messages` as the conversation before the prompt (or instead of it).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ChatCompletionRequest {
    /// Model name, e.g. `qwen3-max`.
    pub model: Option<String>,
    /// `t2t` (the default).
    pub catelogid: Option<String>,
    /// The question.
    pub prompt: Option<String>,
    /// System prompt.
    pub sys_prompt: Option<String>,
    /// OpenAI-style messages: the conversation so far, before `prompt` (after `sys_prompt`).
    pub messages: Option<Vec<Value>>,
    /// Stream server-sent chunks.
    pub stream: Option<bool>,
    /// OpenAI's `{"include_usage": true}`: a final chunk with the usage.
    pub stream_options: Option<Value>,
    /// Other parameters (`temperature`, `max_tokens`, …).
    #[serde(flatten)]
    pub params: Map<String, Value>,
}

async fn chat_completions(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    body: Body<Llmage>,
) -> Result<Response, Error> {
    let request: ChatCompletionRequest = body.parse(|e| bad(format!("Invalid request: {e}")))?;
    let name = request
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| missing("model"))?;
    if let Some(catelogid) = request.catelogid.filter(|c| !c.is_empty())
        && catelogid != "t2t"
    {
        return Err(bad("catelogid must be t2t for chat completions"));
    }
    let resolved = chat::find_model(&state, &name).map_err(unresolved)?;
    // The system prompt, the conversation so far, then the question: each as given.
    let prompt = request.prompt.filter(|p| !p.trim().is_empty());
    let history = request.messages.unwrap_or_default();
    if prompt.is_none() && history.is_empty() {
        return Err(missing("prompt"));
    }
    let system = request.sys_prompt.filter(|s| !s.is_empty());
    let messages = (system.map(|system| json!({"role": "system", "content": system})))
        .into_iter()
        .chain(history)
        .chain(prompt.map(|prompt| json!({"role": "user", "content": prompt})))
        .collect();
    let stream = request.stream.unwrap_or(false);
    let include_usage = chat::includes_usage(stream, request.stream_options.as_ref())?;
    let call = chat::ChatCall {
        client_id,
        api: API,
        resolved,
        messages,
        params: request.params,
        extra: json!({"catelogid": "t2t", "model": name}),
        stream,
    };
    let session = match chat::open(&state, call).await {
        Ok(session) => session,
        Err(refusal) => return Ok(refused(refusal)),
    };
    if stream {
        return Ok(chat::sse(&name, session, ChunkStyle::Llmage, include_usage).await);
    }
    Ok(chat::complete(&name, session, ChunkStyle::Llmage)
        .await
        .unwrap_or_else(refused))
}

/// A chat's refusal as llmage shows it, with the vendor's `Retry-After` when it asked for a
/// wait.
fn refused(refusal: Refusal) -> Response {
    let wait = refusal.vendor_retry_after();
    let mut response = Error::from(refusal).into_response();
    if let Some(secs) = wait {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    response
}

/// A generation request however it came: JSON fields, or multipart fields and files (waiting
/// under temporary names until the engine accepts the request; no asset exists before).
struct Form {
    fields: Map<String, Value>,
    inputs: Vec<Input>,
}

/// Which input each documented file field is: kind and role.
fn file_field(name: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match name {
        "image_file" | "image1_file" | "image_file1" => ("image", Some("first_frame")),
        "image2_file" | "image_file2" => ("image", Some("last_frame")),
        "image_files" => ("image", Some("reference")),
        "video_files" => ("video", Some("reference")),
        "audio_files" => ("audio", Some("reference")),
        _ => return None,
    })
}

async fn read_form(state: &AppState, headers: &HeaderMap, request: Request) -> Result<Form, Error> {
    if !multipart::is_multipart(headers) {
        let bytes = body::read(request, state.config.limits.max_body_bytes).await?;
        let Value::Object(mut fields) = body::parse_json(&bytes).map_err(bad)? else {
            return Err(bad("Request body must be a JSON object"));
        };
        // In JSON, file fields carry URLs (or data URLs), one or a list.
        let mut inputs = Vec::new();
        for name in [
            "image_file",
            "image1_file",
            "image_file1",
            "image2_file",
            "image_file2",
            "image_files",
            "video_files",
            "audio_files",
        ] {
            let Some(value) = fields.remove(name) else {
                continue;
            };
            let (kind, role) = file_field(name).expect("listed above");
            let not_urls = || bad(format!("{name} must be a URL or a list of URLs"));
            let urls = match value {
                Value::String(url) => vec![url],
                // Every item, or none: a reference left out would change what is made.
                Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(url) => Ok(url),
                        _ => Err(not_urls()),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(not_urls()),
            };
            for url in urls {
                inputs.push(Input::url(name, kind, role, url));
            }
        }
        return Ok(Form { fields, inputs });
    }
    let mut form = Form {
        fields: Map::new(),
        inputs: Vec::new(),
    };
    // A file part (one with a file name) streams to disk; a file field sent as a text part
    // is a URL, as in JSON; a file under another field is refused, not read as text.
    let is_file = |_: &str, file_name: Option<&str>| file_name.is_some();
    for part in multipart::read_parts(state, request, is_file).await? {
        let (field, sent_file) = (file_field(&part.name), part.file_name.is_some());
        let Some((kind, role)) = field else {
            if sent_file {
                return Err(bad(format!(
                    "{} is not a file field: files go in image_file (or image1_file, \
                     image_file1), image2_file (or image_file2), image_files, video_files or \
                     audio_files",
                    part.name
                )));
            }
            let name = part.name.clone();
            form.fields.insert(name, Value::String(part.text()?));
            continue;
        };
        if !sent_file {
            let name = part.name.clone();
            form.inputs
                .push(Input::url(&name, kind, role, part.text()?));
            continue;
        }
        let content_type = part
            .file_type()
            .unwrap_or_else(|| format!("{kind}/octet-stream"));
        let multipart::Content::File(spooled) = part.content else {
            unreachable!("file fields are spooled")
        };
        let file_name = part.file_name.unwrap_or_else(|| part.name.clone());
        form.inputs.push(Input::upload(
            &part.name,
            kind,
            role,
            file_name,
            content_type,
            spooled,
        ));
    }
    Ok(form)
}

async fn image_generations(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, Error> {
    generate(state, client, headers, request, &["t2i", "i2i"]).await
}

async fn video_generations(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, Error> {
    generate(state, client, headers, request, &["t2v", "i2v", "ref2v"]).await
}

/// Seed 002's text fields that go on to the model as parameters: a value of another JSON type
/// is refused naming the field, whether or not the model's schema declares it.
const TEXT_PARAMS: [&str; 5] = ["negative_prompt", "resolution", "ratio", "size", "off_peak"];

fn not_text(name: &str) -> Error {
    bad(format!("Invalid parameter {name}: must be of type string"))
}

/// The text field `name`, taken out of `fields`: `None` when absent, null or blank; refused
/// when of another JSON type.
fn text_field(fields: &mut Map<String, Value>, name: &str) -> Result<Option<String>, Error> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok((!text.trim().is_empty()).then_some(text)),
        Some(_) => Err(not_text(name)),
    }
}

async fn generate(
    state: AppState,
    Client { client_id, .. }: Client,
    headers: HeaderMap,
    request: Request,
    allowed: &[&str],
) -> Result<Response, Error> {
    let Form { mut fields, inputs } = read_form(&state, &headers, request).await?;
    let name = text_field(&mut fields, "model")?.ok_or_else(|| missing("model"))?;
    let catelogid = text_field(&mut fields, "catelogid")?.ok_or_else(|| missing("catelogid"))?;
    let prompt = text_field(&mut fields, "prompt")?.ok_or_else(|| missing("prompt"))?;
    if let Some(name) = TEXT_PARAMS.into_iter().find(|name| {
        fields
            .get(*name)
            .is_some_and(|v| !v.is_string() && !v.is_null())
    }) {
        return Err(not_text(name));
    }
    if !allowed.contains(&catelogid.as_str()) {
        return Err(bad(format!(
            "catelogid must be one of {}",
            allowed.join(", ")
        )));
    }
    let resolved: Resolved = state.engine.registry().find(&name).map_err(unresolved)?;
    if !catelogids(&resolved.model).contains(&catelogid) {
        return Err(bad(format!(
            "Model {name} does not support catelogid {catelogid}"
        )));
    }
    let has = |role: &str| inputs.iter().any(|i| i.role.as_deref() == Some(role));
    match catelogid.as_str() {
        "i2v" => {
            if let Some((_, field)) = required_frames(&resolved.model)
                .into_iter()
                .find(|(role, _)| !has(role))
            {
                return Err(missing(&field));
            }
        }
        "ref2v" if !has("reference") => return Err(missing("image_files")),
        "i2i" if inputs.is_empty() => return Err(missing("image_file")),
        _ => {}
    }
    let capability = match catelogid.as_str() {
        "t2i" => "image.generate",
        "i2i" => "image.edit",
        _ => "video.generate",
    };
    if !resolved.model.capabilities.iter().any(|c| c == capability) {
        return Err(bad(format!("Model {name} does not serve {catelogid}")));
    }
    let admission = Admission {
        client_id,
        api: API,
        resolved,
        capability: capability.into(),
        prompt,
        params: fields,
        inputs,
        webhook: None,
        // `usage.model` shows the model as the client named it (the seed's `viduq3-pro`).
        extra: json!({"catelogid": catelogid, "base": public_base(&state, &headers), "model": name}),
        idempotency: None,
        priority: None,
    };
    let (task, _) = state.engine.admit(admission).await?;
    Ok(Json(json!({"taskid": task.id, "status": "CREATED"})).into_response())
}

/// llmage's status names.
fn status_name(status: Status) -> &'static str {
    match status {
        Status::Queued => "PENDING",
        Status::Running => "RUNNING",
        Status::Succeeded => "SUCCEEDED",
        Status::Failed | Status::Cancelled | Status::Expired => "FAILED",
    }
}

/// Query of `GET /llmage/v1/tasks`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskQuery {
    /// The `taskid` a generation returned.
    pub taskid: Option<String>,
}

async fn task(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    headers: HeaderMap,
    QueryOf { query, .. }: QueryOf<TaskQuery, Llmage>,
) -> Result<Response, Error> {
    let id = query
        .taskid
        .filter(|t| !t.is_empty())
        .ok_or_else(|| missing("taskid"))?;
    let task = state
        .engine
        .get(&client_id, &id)
        .await?
        .filter(|t| t.api == API)
        .ok_or_else(|| Error(StatusCode::NOT_FOUND, "Task not found".into()))?;
    let base = public_base(&state, &headers);
    Ok(Json(task_view(&state, &task, &base).await?).into_response())
}

/// A task as seed 002 shows it, its links under `base`.
async fn task_view(state: &AppState, task: &Task, base: &str) -> anyhow::Result<Value> {
    let extra: Value = serde_json::from_str(&task.extra).unwrap_or_default();
    let status = task.status;
    let mut view = json!({"taskid": task.id, "status": status_name(status)});
    // Seed 002 has one `image` and one `video`; a task that made several (`n`) lists them all
    // under `images` and `videos` too, so none that was charged is out of reach.
    let mut links: [(&str, &str, Vec<Value>); 2] = [
        ("image", "images", Vec::new()),
        ("video", "videos", Vec::new()),
    ];
    for asset in stored_outputs(state, task).await? {
        let kind = kind_of(&asset.content_type);
        if let Some((_, _, found)) = links.iter_mut().find(|(slot, _, _)| *slot == kind) {
            found.push(state.links.url(base, &asset.id).into());
        }
    }
    for (slot, list, found) in links {
        if let Some(first) = found.first() {
            view[slot] = first.clone();
        }
        if found.len() > 1 {
            view[list] = found.into();
        }
    }
    // Seed 002 gives a video its cover as `image`; without one from the vendor, a null keeps
    // the answer's shape.
    if view.get("video").is_some() && view.get("image").is_none() {
        view["image"] = Value::Null;
    }
    if status == Status::Succeeded {
        let request = task.generation_request()?;
        let catelogid = extra["catelogid"].as_str().unwrap_or_default();
        // The name the client asked for; a task made on another route keeps none, so its full
        // id, which every route takes (its bare key may be ambiguous).
        let model = extra["model"]
            .as_str()
            .map_or_else(|| format!("{}/{}", task.provider, task.model), String::from);
        let mut usage = json!({
            "action": catelogid,
            "credits": whole_as_integer(task.reserved_credits()),
            "type": usage_type(catelogid),
            "model": model,
        });
        for name in ["resolution", "duration", "ratio", "size"] {
            if let Some(value) = request.params.get(name) {
                usage[name] = value.clone();
            }
        }
        // Asked as `Y` or `N`, shown as a boolean (the seed's example usage).
        if let Some(off_peak) = request.params.get("off_peak") {
            usage["off_peak"] = (off_peak.as_str() == Some("Y")).into();
        }
        if let Some(reported) = task.usage_json() {
            usage["provider"] = reported;
        }
        view["usage"] = usage;
    }
    if let Some(answer) = task.outputs_json()[0]["text"].as_str() {
        view["content"] = answer.into();
    }
    if let Some(error) = &task.error {
        view["error"] = error.clone().into();
    }
    Ok(view)
}

fn usage_type(catelogid: &str) -> &'static str {
    match catelogid {
        "t2i" => "text2image",
        "i2i" => "image2image",
        "t2v" => "text2video",
        "i2v" => "image2video",
        "ref2v" => "reference2video",
        "t2t" => "text2text",
        _ => "generation",
    }
}

/// A number as seed 002 writes it: a whole one as an integer (`"credits": 10`, not `10.0`,
/// which a client that reads an integer refuses), a fraction as it is.
fn whole_as_integer(number: f64) -> Value {
    const EXACT: f64 = (1u64 << 53) as f64;
    if number.fract() == 0.0 && number.abs() < EXACT {
        Value::from(number as i64)
    } else {
        Value::from(number)
    }
}
