//! Seed 001 (智念 NianAIGC open API): `/api/v1/jobs` and `/api/v1/capabilities`; errors are
//! [`error::Error`](crate::api::error::Error)'s `{"error": "..."}`.

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
use schemars::{JsonSchema, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{
    api::{
        AppState,
        auth::AuthError,
        body,
        dialect::{Body, Caller, Dialect, PathOf, QueryOf},
        error::Error,
        files::public_base,
        loras,
        openapi::{self, Api, Describe},
        paging::{next_before, page},
    },
    engine::{
        TaskFilter,
        front_door::Admission,
        inputs::Input,
        provider::Capability,
        request_hash,
        task::{CancelledBy, PRIORITIES, Status, Task, priority_range, rfc3339},
    },
};

/// The dialect name stored on tasks this API creates.
pub const API: &str = "jobs";

/// Seed 001's dialect: `{"error": …}` for every refusal, also on the asset routes.
pub struct Jobs;

impl Dialect for Jobs {
    type Error = Error;

    fn unauthenticated(error: AuthError) -> Error {
        error.into()
    }

    fn rejected(status: StatusCode, message: String) -> Error {
        Error(status, message)
    }
}

/// The calling client, refused in 001's shape.
pub type Client = Caller<Jobs>;

/// Routes of seed 001's job API.
pub fn routes() -> ApiRouter<AppState> {
    let job = openapi::schema::<JobView>();
    let one =
        json_schema!({"type": "object", "properties": {"job": job, "reused": {"type": "boolean"}}});
    let page = json_schema!({
        "type": "object",
        "properties": {"jobs": {"type": "array", "items": job}, "nextBefore": {"type": ["string", "null"]}},
    });
    ApiRouter::new()
        .api_route(
            "/api/v1/jobs",
            post_with(create, |op| {
                op.api(Api::Jobs)
                    .summary("Create a job (honours Idempotency-Key)")
                    .json_body::<JobRequest>()
                    .header(
                        "Idempotency-Key",
                        "Retries with the same key and body answer the first request's job (200, \
                         reused); the same key with another body is a 409",
                    )
                    .ok(one.clone())
                    .ok_as(202, "Accepted: the new job, queued", true)
                    .error(409, "The Idempotency-Key was used with another body")
                    .error(413, "The body is over the size limit")
                    .error(429, "A per-client limit or the balance refused it")
            })
            .get_with(list, |op| op.api(Api::Jobs).summary("List jobs").ok(page)),
        )
        .api_route(
            "/api/v1/jobs/{id}",
            get_with(show, |op| {
                op.api(Api::Jobs).summary("Get a job").ok(one.clone())
            }),
        )
        .api_route(
            "/api/v1/jobs/{id}/cancel",
            post_with(cancel, |op| {
                op.api(Api::Jobs)
                    .summary("Cancel a job")
                    .description(
                        "200 with the job once cancelled (a running job is waited for up to \
                         2 s); 202 with the job while it is still stopping; 409 when it had \
                         already ended, or ended before the cancel reached it.",
                    )
                    .ok(one.clone())
                    .ok_as(202, "Still stopping: the job as it is now", true)
                    .error(409, "The job had already ended")
            }),
        )
        .api_route(
            "/api/v1/capabilities",
            get_with(capabilities, |op| {
                op.api(Api::Jobs)
                    .summary("List capabilities and their models")
            }),
        )
}

/// Video settings of seed 001.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct VideoSettings {
    /// `16:9`, `4:3`, `1:1`, `3:4`, `9:16`, `21:9` or `adaptive`.
    pub ratio: Option<String>,
    /// Seconds, 4 to 15.
    pub duration: Option<i64>,
    /// `480p`, `720p` or `1080p`.
    pub resolution: Option<String>,
}

/// One video material of seed 001.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Material {
    /// `image`, `video` or `audio`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it is.
    pub url: Option<String>,
    /// An easel asset id instead of a URL.
    #[serde(rename = "assetId")]
    pub asset_id: Option<String>,
    /// How the prompt refers to it (`@图片1`).
    pub label: Option<String>,
}

/// `POST /api/v1/jobs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRequest {
    /// `image.generate`, `image.inpaint`, `image.upscale`, `video.generate` (or any capability
    /// `GET /api/v1/capabilities` lists).
    pub capability: String,
    /// `provider/model_key`; the capability's default model when absent.
    pub model: Option<String>,
    /// What to make.
    pub prompt: Option<String>,
    /// Pixels.
    pub width: Option<i64>,
    /// Pixels.
    pub height: Option<i64>,
    /// Called when the job ends.
    pub webhook_url: Option<String>,
    /// Input images by URL.
    pub image_urls: Option<Vec<String>>,
    /// Input files by URL.
    pub input_urls: Option<Vec<String>>,
    /// Input files by asset id.
    pub input_asset_ids: Option<Vec<String>>,
    /// Video settings.
    pub settings: Option<VideoSettings>,
    /// Video materials.
    pub materials: Option<Vec<Material>>,
    /// Claim order among queued jobs, -1000 to 1000 (higher first, then older); the client's
    /// default when absent.
    pub priority: Option<i64>,
    /// Engine-specific parameters (`scale`, `quality`, `force_single`, `resolution`, …).
    #[serde(flatten)]
    pub params: Map<String, Value>,
}

/// A job as seed 001 shows it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// `job_…`.
    pub id: String,
    /// Capability.
    pub capability: String,
    /// `queued`, `running`, `succeeded`, `failed`, `expired` or `cancelled`.
    pub status: String,
    /// `provider/model_key`.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// 0 to 1.
    pub progress: f64,
    /// Claim order: higher first, then older.
    pub priority: i64,
    /// While queued, on a single job's read: 1 when it is claimed next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<i64>,
    /// Output assets, once succeeded.
    pub output_asset_ids: Vec<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a queued job is not being taken (`waiting for a worker that serves <provider>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What it cost, in the provider's units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// Renders a task as a 001 job.
pub fn view(task: &Task) -> JobView {
    let prompt = task
        .generation_request()
        .map(|r| r.prompt)
        .unwrap_or_default();
    JobView {
        id: task.id.clone(),
        capability: task.capability.clone(),
        status: task.status.to_string(),
        model: format!("{}/{}", task.provider, task.model),
        prompt,
        progress: task.progress,
        priority: task.priority,
        queue_position: None,
        output_asset_ids: task.output_asset_ids(),
        error: task.error.clone(),
        message: task.notice.clone(),
        usage: task.usage_json(),
        created_at: rfc3339(task.created_at),
        updated_at: rfc3339(task.updated_at),
        started_at: task.started_at.map(rfc3339),
        finished_at: task.finished_at.map(rfc3339),
    }
}

/// The webhook body of seed 001.
pub fn webhook(task: &Task) -> Value {
    json!({ "event": format!("generation.{}", task.status), "job": view(task) })
}

const RATIOS: [&str; 7] = ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"];
const RESOLUTIONS: [&str; 3] = ["480p", "720p", "1080p"];

/// `url` as the asset views hand it out (`downloadUrl`, relative) when it is this host's own
/// download link under `base`, the address the client reached it at: seed 001's examples
/// write every path after the host's address, so a client may send the link so. Any other URL
/// as sent.
fn own_link(base: &str, url: String) -> String {
    match url.strip_prefix(base.trim_end_matches('/')) {
        Some(path) if path.starts_with("/api/v1/assets/") => path.to_string(),
        _ => url,
    }
}

/// Checks 001's own fields and turns the body into the engine's admission; `base` is the
/// host's address as the client reached it.
fn normalize(
    state: &AppState,
    client_id: &str,
    job: JobRequest,
    base: &str,
) -> Result<Admission, Error> {
    if Capability::parse(&job.capability).is_none_or(|c| c == Capability::Chat) {
        return Err(Error::bad_request(format!(
            "Unsupported capability: {}",
            job.capability
        )));
    }
    let resolved = state
        .engine
        .registry()
        .resolve(job.model.as_deref(), &job.capability)
        .map_err(|e| Error::bad_request(e.to_string()))?;
    if job.priority.is_some_and(|p| !PRIORITIES.contains(&p)) {
        return Err(Error::bad_request(priority_range("priority")));
    }
    let prompt = job.prompt.unwrap_or_default();
    if prompt.trim().is_empty() && job.capability != "image.upscale" {
        return Err(Error::bad_request("prompt is required."));
    }
    let mut params = job.params;
    for (name, value) in [("width", job.width), ("height", job.height)] {
        if let Some(pixels) = value {
            if !(16..=8192).contains(&pixels) {
                return Err(Error::bad_request(format!(
                    "{name} must be between 16 and 8192."
                )));
            }
            params.insert(name.into(), pixels.into());
        }
    }
    if let Some(settings) = job.settings {
        if let Some(duration) = settings.duration {
            if !(4..=15).contains(&duration) {
                return Err(Error::bad_request(
                    "settings.duration must be between 4 and 15.",
                ));
            }
            params.insert("duration".into(), duration.into());
        }
        if let Some(ratio) = settings.ratio {
            if !RATIOS.contains(&ratio.as_str()) {
                return Err(Error::bad_request(format!(
                    "settings.ratio must be one of {}.",
                    RATIOS.join(", ")
                )));
            }
            params.insert("ratio".into(), ratio.into());
        }
        if let Some(resolution) = settings.resolution {
            // The seed's video levels mean nothing to an image model, whose size is its width
            // and height (or `settings.ratio`): refused by name, not by the model's own levels.
            if job.capability != "video.generate" {
                return Err(Error::bad_request(format!(
                    "settings.resolution is a video setting ({}); give {} a width and height \
                     or settings.ratio",
                    RESOLUTIONS.join(", "),
                    job.capability
                )));
            }
            if !RESOLUTIONS.contains(&resolution.as_str()) {
                return Err(Error::bad_request(format!(
                    "settings.resolution must be one of {}.",
                    RESOLUTIONS.join(", ")
                )));
            }
            params.insert("resolution".into(), resolution.into());
        }
    }
    if let Some(scale) = params.get("scale")
        && !scale.as_f64().is_some_and(|s| (0.0..=100.0).contains(&s))
    {
        return Err(Error::bad_request(
            "scale must be a number between 0 and 100.",
        ));
    }
    if let Some(quality) = params.get("quality")
        && !quality
            .as_str()
            .is_some_and(|q| ["low", "medium", "high"].contains(&q))
    {
        return Err(Error::bad_request("quality must be low, medium or high."));
    }
    if params
        .get("force_single")
        .is_some_and(|single| !single.is_boolean())
    {
        return Err(Error::bad_request("force_single must be true or false."));
    }
    let size = crate::api::pixel_size::job_size_params(&resolved.model, &params)
        .map_err(Error::bad_request)?;
    params.extend(size);

    let mut inputs = Vec::new();
    for url in job.image_urls.unwrap_or_default() {
        inputs.push(Input::url("imageUrls", "image", None, own_link(base, url)));
    }
    for url in job.input_urls.unwrap_or_default() {
        let kind = crate::assets::content_type_from_name(url.split('?').next().unwrap_or_default())
            .map_or("image", |m| crate::assets::kind_of(&m));
        inputs.push(Input::url("inputUrls", kind, None, own_link(base, url)));
    }
    for id in job.input_asset_ids.unwrap_or_default() {
        inputs.push(Input::asset("inputAssetIds", None, None, id));
    }
    // Seed 001 inpaints with the original image, then its mask.
    if job.capability == "image.inpaint"
        && inputs.len() > 1
        && let Some(mask) = inputs.last_mut()
    {
        mask.kind = Some("mask".into());
    }
    for material in job.materials.unwrap_or_default() {
        if !["image", "video", "audio"].contains(&material.kind.as_str()) {
            return Err(Error::bad_request(
                "materials[].type must be image, video or audio.",
            ));
        }
        let role = material.label.as_deref();
        inputs.push(match (material.url, material.asset_id) {
            (Some(url), _) => Input::url("materials", &material.kind, role, own_link(base, url)),
            (None, Some(id)) => Input::asset("materials", Some(&material.kind), role, id),
            (None, None) => {
                return Err(Error::bad_request(
                    "Each material needs a url or an assetId.",
                ));
            }
        });
    }
    if matches!(
        job.capability.as_str(),
        "image.upscale" | "image.inpaint" | "image.edit"
    ) && inputs.is_empty()
    {
        return Err(Error::bad_request(format!(
            "{} needs an input image (imageUrls or inputAssetIds).",
            job.capability
        )));
    }
    Ok(Admission {
        client_id: client_id.to_string(),
        api: API,
        resolved,
        capability: job.capability,
        prompt,
        params,
        inputs,
        webhook: job
            .webhook_url
            .filter(|url| !url.is_empty())
            .map(|url| ("webhookUrl", url)),
        extra: json!({}),
        idempotency: None,
        priority: job.priority,
    })
}

async fn create(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    headers: HeaderMap,
    body: Body<Jobs>,
) -> Result<Response, Error> {
    let raw = body.object()?;
    let job: JobRequest = body::WrongShape::check(&raw)
        .map_err(|e| Error::bad_request(format!("Invalid request: {e}")))?;
    let base = public_base(&state, &headers);
    let mut admission = normalize(&state, &client_id, job, &base)?;
    let idempotency = match headers.get("idempotency-key") {
        Some(value) => {
            let key = value
                .to_str()
                .map_err(|_| Error::bad_request("Idempotency-Key must be visible ASCII."))?;
            if key.is_empty() || key.len() > 255 {
                return Err(Error::bad_request(
                    "Idempotency-Key must be 1 to 255 characters.",
                ));
            }
            Some((key.to_string(), request_hash(&body::canonical(&raw))))
        }
        None => None,
    };
    admission.idempotency = idempotency;
    match state.engine.admit(admission).await {
        Ok((task, reused)) => {
            let status = if reused {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok((
                status,
                Json(json!({ "job": view(&task), "reused": reused })),
            )
                .into_response())
        }
        Err(refused) => Err(refused.into()),
    }
}

async fn show(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    PathOf { params: id, .. }: PathOf<String, Jobs>,
) -> Result<Response, Error> {
    let task = state
        .engine
        .get(&client_id, &id)
        .await?
        .ok_or_else(|| Error::not_found("Job"))?;
    let mut job = view(&task);
    job.queue_position = state.engine.queue_position(&task).await?;
    Ok(Json(json!({ "job": job })).into_response())
}

/// Query of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListQuery {
    /// Only jobs in this status.
    pub status: Option<String>,
    /// Only jobs of this capability.
    pub capability: Option<String>,
    /// Only jobs of this model: `provider/key`, or a bare key of any provider.
    pub model: Option<String>,
    /// 1 to 200, default 20; a page ends with every row created in the same millisecond as
    /// its last, so it may hold a few more.
    pub limit: Option<String>,
    /// ISO time: only jobs created before it.
    pub before: Option<String>,
}

impl ListQuery {
    /// The filter it asks for, or why it is refused.
    pub fn filter(self) -> Result<TaskFilter, Error> {
        let status = match self.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(name) => Some(Status::parse(name).ok_or_else(|| {
                Error::bad_request(
                    "status must be one of queued, running, succeeded, failed, expired, cancelled.",
                )
            })?),
        };
        if let Some(capability) = self.capability.as_deref().filter(|c| !c.is_empty())
            && Capability::parse(capability).is_none()
        {
            return Err(Error::bad_request(format!(
                "Unsupported capability: {capability}"
            )));
        }
        let (limit, before) = page(self.limit.as_deref(), self.before.as_deref())?;
        Ok(TaskFilter {
            status,
            capability: self.capability.filter(|c| !c.is_empty()),
            api: None,
            model: self.model.filter(|m| !m.is_empty()),
            before,
            limit,
        })
    }
}

/// A page of jobs as 001 lists them, each rendered by `render`.
pub fn page_of<T: Serialize>(tasks: &[Task], more: bool, render: impl Fn(&Task) -> T) -> Value {
    let next_before = next_before(more, tasks.last().map(|t| t.created_at));
    let jobs: Vec<T> = tasks.iter().map(render).collect();
    json!({ "jobs": jobs, "nextBefore": next_before })
}

async fn list(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    QueryOf { query, .. }: QueryOf<ListQuery, Jobs>,
) -> Result<Response, Error> {
    let (tasks, more) = state.engine.list(&client_id, &query.filter()?).await?;
    Ok(Json(page_of(&tasks, more, view)).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    PathOf { params: id, .. }: PathOf<String, Jobs>,
) -> Result<Response, Error> {
    let before = state
        .engine
        .get(&client_id, &id)
        .await?
        .ok_or_else(|| Error::not_found("Job"))?;
    if before.status.is_terminal() {
        return Err(Error(
            StatusCode::CONFLICT,
            format!("Job is already {}.", before.status),
        ));
    }
    let task = state
        .engine
        .cancel(&client_id, &id, CancelledBy::Client)
        .await?
        .ok_or_else(|| Error::not_found("Job"))?;
    // A running job stops when its worker or poller sees the request: a moment's wait lets
    // the answer say how it ended instead of that it was still running.
    let task = match task.status.is_terminal() {
        true => task,
        false => state
            .engine
            .wait_terminal(&task.id, CANCEL_WAIT)
            .await?
            .unwrap_or(task),
    };
    match task.status {
        Status::Cancelled => Ok(Json(json!({ "job": view(&task) })).into_response()),
        // Its outcome arrived before the cancel could stop it: kept, and charged as it is.
        status if status.is_terminal() => Err(Error(
            StatusCode::CONFLICT,
            format!("Job is already {status}: it ended before the cancel reached it."),
        )),
        // Still stopping (a vendor that is slow to answer its cancel, a poll on another host):
        // it ends `cancelled` unless its outcome arrives first.
        _ => Ok((StatusCode::ACCEPTED, Json(json!({ "job": view(&task) }))).into_response()),
    }
}

/// How long a cancel waits for a running job to stop before answering 202.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn describe(capability: Capability) -> &'static str {
    match capability {
        Capability::ImageGenerate => "图片生成",
        Capability::ImageEdit => "图片编辑",
        Capability::ImageInpaint => "局部重绘",
        Capability::ImageUpscale => "智能超清",
        Capability::VideoGenerate => "视频生成",
        Capability::AudioSpeech => "语音合成",
        Capability::Chat => "对话",
    }
}

async fn capabilities(State(state): State<AppState>, _: Client) -> Result<Response, Error> {
    let registry = state.engine.registry();
    let models = registry.models();
    let listed: Vec<Value> = Capability::ALL
        .into_iter()
        .filter(|c| *c != Capability::Chat)
        .filter_map(|capability| {
            let name = capability.as_str();
            let serving: Vec<String> = models
                .iter()
                .filter(|m| m.model.capabilities.iter().any(|c| c == name))
                .map(|m| m.id())
                .collect();
            (!serving.is_empty()).then(|| {
                let mut listed = json!({
                    "capability": name,
                    "description": describe(capability),
                    "models": serving,
                    "defaultModel": registry.default_for(name),
                });
                let loras: Map<String, Value> = models
                    .iter()
                    .filter(|m| m.model.capabilities.iter().any(|c| c == name))
                    .filter_map(|m| Some((m.id(), loras::listed(&m.model)?.into())))
                    .collect();
                if !loras.is_empty() {
                    listed["loras"] = Value::Object(loras);
                }
                listed
            })
        })
        .collect();
    Ok(Json(json!({ "capabilities": listed })).into_response())
}
