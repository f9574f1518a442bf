//! Seed 003 (the Stable Diffusion service): `/health`, `/api/health`, `POST /api/v1/generate`,
//! its flat shape of `GET /api/v1/tasks/{id}` (see [`crate::api::tasks`]) and its callback.
//!
//! The model is the native `local` one when configured, else whatever the operator aliases as
//! `sd`, else the default `image.generate` model. A mapped model is asked in its own terms:
//! the image count as its `n` when it has no `num_images`, and `width` × `height` as the listed
//! `aspectRatio` of that shape when it takes a ratio and no width and height. Errors are
//! FastAPI's: `{"detail": "…"}`, and 422 with a `detail` list naming the field the client sent
//! for validation failures; numbers are taken as FastAPI takes them (`2.0`, `"512"`).
//!
//! Adapters: A1111's `<lora:name:weight>` (weight default 1.0, several allowed) is taken out
//! of the prompt before it reaches the model and joins the `loras: [{name, weight}]` field;
//! the model's front door checks them like any parameter.

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
use easel_provider::schema::InvalidParam;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    api::{
        AppState,
        auth::{AuthError, KEYS_UNAVAILABLE},
        dialect::{Body, Caller, Dialect},
        files::{self, Links, public_base},
        openapi::{Api, Describe},
        pixel_size,
        submit::{present_params, refusal_parts},
    },
    engine::{
        front_door::{Admission, Refusal},
        inputs::Input,
        provider::LOCAL_PROVIDER,
        registry::Resolved,
        task::{Status, Task},
    },
};

/// The dialect name stored on tasks this API creates.
pub const API: &str = "sd";

/// The nine scheduler names of seed 003, as the native pipeline implements them.
pub use easel_diffusion::schedulers::SCHEDULER_NAMES as SCHEDULERS;

/// A FastAPI-style error.
#[derive(Debug)]
pub enum Error {
    /// `{"detail": "…"}` with this status.
    Plain(StatusCode, String),
    /// 422 `{"detail": [{"loc": ["body", …], "msg": …, "type": …}]}`, the `loc` below the
    /// body: a field, or a field, an index and a key within it.
    Field(Vec<Value>, String, &'static str),
    /// 422 with one such entry per refused field, as FastAPI lists every one.
    Fields(Vec<Error>),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Plain(status, detail) => {
                (status, Json(json!({"detail": detail}))).into_response()
            }
            Error::Field(..) | Error::Fields(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"detail": self.field_entries()})),
            )
                .into_response(),
        }
    }
}

impl Error {
    /// A 422 naming a field of the body.
    fn field(name: impl Into<String>, message: impl Into<String>, kind: &'static str) -> Error {
        Error::Field(vec![Value::String(name.into())], message.into(), kind)
    }

    /// The body's field a 422 names first.
    fn named_field(&self) -> Option<&str> {
        match self {
            Error::Field(loc, ..) => loc.first().and_then(Value::as_str),
            _ => None,
        }
    }

    /// None of `refused`, or a 422 naming each.
    fn all(mut refused: Vec<Error>) -> Result<(), Error> {
        match refused.len() {
            0 => Ok(()),
            1 => Err(refused.remove(0)),
            _ => Err(Error::Fields(refused)),
        }
    }

    /// FastAPI's `detail` entries of a 422.
    fn field_entries(&self) -> Vec<Value> {
        match self {
            Error::Field(below, msg, kind) => {
                let loc: Vec<Value> = std::iter::once(json!("body"))
                    .chain(below.clone())
                    .collect();
                vec![json!({"loc": loc, "msg": msg, "type": kind})]
            }
            Error::Fields(each) => each.iter().flat_map(Error::field_entries).collect(),
            Error::Plain(..) => Vec::new(),
        }
    }
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(%error, "internal error");
        Error::Plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error".into(),
        )
    }
}

impl From<AuthError> for Error {
    fn from(error: AuthError) -> Self {
        let detail = match error {
            AuthError::Missing => "Missing API Key",
            AuthError::Invalid => "Invalid API Key",
            AuthError::Unavailable => KEYS_UNAVAILABLE,
        };
        Error::Plain(error.status(), detail.into())
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        // FastAPI answers a parameter it cannot take with 422, naming it.
        match refusal {
            Refusal::Invalid(invalid) => {
                let Some(field) = invalid.param else {
                    return Error::Plain(StatusCode::UNPROCESSABLE_ENTITY, invalid.message);
                };
                let loc = std::iter::once(Value::String(field))
                    .chain(invalid.within)
                    .collect();
                return Error::Field(loc, invalid.message, "value_error");
            }
            Refusal::BadInput(bad) => return Error::field(bad.field, bad.message, "value_error"),
            _ => {}
        }
        match refusal_parts(refusal) {
            Ok((status, detail)) => Error::Plain(status, detail),
            Err(error) => error.into(),
        }
    }
}

/// Seed 003's dialect: FastAPI's `{"detail": …}`, 422 naming the field for bad JSON.
pub struct Sd;

impl Dialect for Sd {
    type Error = Error;

    fn unauthenticated(error: AuthError) -> Error {
        error.into()
    }

    fn rejected(status: StatusCode, message: String) -> Error {
        Error::Plain(status, message)
    }

    fn malformed_json(message: String) -> Error {
        Error::field("body", message, "value_error.jsondecode")
    }
}

/// Routes of seed 003 (the task route is shared, see [`crate::api::tasks`]).
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/health",
            get_with(health, |op| {
                op.api(Api::Sd)
                    .open()
                    .summary("Service status and whether a model is loaded")
            }),
        )
        .api_route(
            "/api/health",
            get_with(health, |op| {
                op.api(Api::Sd).open().summary("Same as /health")
            }),
        )
        .api_route(
            "/api/v1/generate",
            post_with(generate, |op| {
                op.api(Api::Sd)
                    .summary("txt2img, or img2img with init_image")
                    .json_body::<GenerateRequest>()
                    .error(413, "The body is over the size limit")
                    .error(429, "A per-client limit or the balance refused it")
                    .error(503, "No image model is loaded")
            }),
        )
}

/// For a model that takes no `width` and `height` but renders a listed set of `aspectRatio`s
/// (Qwen-Image): the listed ratio of the asked size, so a 1024×576 request is not answered
/// square; a size of no listed ratio is refused naming `width`.
fn shape_by_ratio(
    schema: &Value,
    width: i64,
    height: i64,
    params: &mut Map<String, Value>,
) -> Result<(), Error> {
    let properties = &schema["properties"];
    let Some(listed) = properties["aspectRatio"]["enum"].as_array() else {
        return Ok(());
    };
    if properties.get("width").is_some() || width <= 0 || height <= 0 {
        return Ok(());
    }
    let asked = width as f64 / height as f64;
    let ratios: Vec<&str> = listed.iter().filter_map(Value::as_str).collect();
    let near = ratios.iter().find(|ratio| {
        pixel_size::parse_ratio(ratio).is_some_and(|r| pixel_size::same_ratio(r, asked))
    });
    match near {
        Some(ratio) => {
            params.insert("aspectRatio".into(), (*ratio).into());
            Ok(())
        }
        None => Err(Error::field(
            "width",
            format!(
                "{width}x{height} is not a shape this model renders: it takes the aspect ratios {}",
                ratios.join(", ")
            ),
            "value_error",
        )),
    }
}

/// The model seed 003 runs on, as the module docs order them.
pub fn sd_model(state: &AppState) -> Option<Resolved> {
    let registry = state.engine.registry();
    registry
        .models()
        .into_iter()
        .find(|r| r.provider.id() == LOCAL_PROVIDER)
        .or_else(|| registry.find("sd").ok())
        .or_else(|| registry.resolve(None, "image.generate").ok())
}

async fn health(State(state): State<AppState>) -> Response {
    let database = state.engine.store().answers().await;
    let (status, body) = health_answer(sd_model(&state).as_ref(), database);
    (status, Json(body)).into_response()
}

/// Seed 003's health answer; a host whose database does not answer is unavailable (503), so
/// that a load balancer stops sending it requests it could only refuse.
fn health_answer(model: Option<&Resolved>, database: bool) -> (StatusCode, Value) {
    let mut body = json!({"status": "ok", "model_loaded": model.is_some()});
    if let Some(model) = model {
        body["model"] = model.id().into();
        if let Some(device) = model.model.extra.get("device") {
            body["device"] = device.clone();
        }
    }
    if !database {
        body["status"] = "unavailable".into();
        body["detail"] = "The database does not answer.".into();
        return (StatusCode::SERVICE_UNAVAILABLE, body);
    }
    (StatusCode::OK, body)
}

/// How the model takes the output format `asked` (`png`, `jpg` or `jpeg`): the value for
/// its own `output_format` when its schema has one that takes the format (`jpg` and `jpeg`
/// are one format, and an `output_format` listing no values takes any); `None` when it
/// cannot, and the host converts its images once they arrive (`image_format` in the task's
/// extra fields, see `engine::outputs`).
fn model_format(properties: &Value, asked: &str) -> Option<String> {
    let declared = properties.get("output_format")?;
    let Some(listed) = declared["enum"].as_array() else {
        return Some(asked.to_string());
    };
    let spellings: &[&str] = if asked == "png" {
        &["png"]
    } else {
        &["jpeg", "jpg"]
    };
    let takes = |spelling: &str| listed.iter().any(|value| *value == *spelling);
    if takes(asked) {
        return Some(asked.to_string());
    }
    spellings
        .iter()
        .find(|spelling| takes(spelling))
        .map(|spelling| spelling.to_string())
}

/// The content type of an output format the checks accepted.
fn content_type_of_format(format: &str) -> &'static str {
    if format == "png" {
        "image/png"
    } else {
        "image/jpeg"
    }
}

/// `POST /api/v1/generate`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GenerateRequest {
    /// What to draw.
    pub prompt: String,
    /// `data:image/png;base64,…` or `data:image/jpeg;base64,…`: img2img when present.
    pub init_image: Option<String>,
    /// What to avoid.
    pub negative_prompt: Option<String>,
    /// Pixels, a multiple of 8 (txt2img only).
    pub width: Option<i64>,
    /// Pixels, a multiple of 8 (txt2img only).
    pub height: Option<i64>,
    /// 1 to 10, default 1.
    pub num_images: Option<i64>,
    /// Denoising steps, 1 to 500.
    pub num_inference_steps: Option<i64>,
    /// Classifier-free guidance scale, 0 to 50.
    pub guidance_scale: Option<f64>,
    /// img2img strength, 0 to 1.
    pub strength: Option<f64>,
    /// One of the nine scheduler names.
    pub scheduler: Option<String>,
    /// Same seed, same image; none (or -1) draws one. Any 64-bit unsigned value.
    pub seed: Option<u64>,
    /// `png` (default), `jpg` or `jpeg`.
    pub output_format: Option<String>,
    /// Receives the result by POST.
    pub callback_url: Option<String>,
    /// Adapters from the adapter folder, by name; `<lora:name:weight>` in the prompt adds
    /// to them (and is taken out of the prompt).
    pub loras: Option<Vec<LoraChoice>>,
}

/// One adapter of a request; any other key is refused (a misspelt `weight` would otherwise
/// run the adapter at 1.0).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraChoice {
    /// The adapter's file stem.
    pub name: String,
    /// Default 1.0; 0 leaves the model as it is.
    pub weight: Option<f64>,
}

/// A number as FastAPI's validation takes one: a JSON number, or a string holding one
/// (`"7.5"`, `"512"`), as clients that build bodies from form inputs send them.
fn lax_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

/// `number` as an integer when it is one (`2.0` is 2; `2.5` is not an integer).
fn whole(number: f64) -> Option<i64> {
    (number.fract() == 0.0 && number.abs() < 9.0e15).then_some(number as i64)
}

/// A seed written as a float or a string (`42.0`, `"42"`) as the integer it is; seeds above
/// 2^53 only survive as JSON integers, which pass as they are.
fn lax_seed(value: &Value) -> Value {
    if let Value::String(text) = value
        && let Ok(seed) = text.trim().parse::<u64>()
    {
        return seed.into();
    }
    match value {
        Value::Number(number) if number.is_i64() || number.is_u64() => value.clone(),
        other => lax_number(other)
            .and_then(whole)
            .map_or_else(|| other.clone(), Value::from),
    }
}

fn type_error(loc: Vec<Value>, kind: &'static str) -> Error {
    let (message, code) = match kind {
        "integer" => ("value is not a valid integer", "type_error.integer"),
        "float" => ("value is not a valid float", "type_error.float"),
        "list" => ("value is not a valid list", "type_error.list"),
        "dict" => ("value is not a valid dict", "type_error.dict"),
        _ => ("str type expected", "type_error.str"),
    };
    Error::Field(loc, message.into(), code)
}

/// An object's fields read one by one (the body's, or an entry's within it, at `at`); each
/// one of the wrong type is noted and read as absent, so the 422 names every such field, as
/// FastAPI does.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    at: Vec<Value>,
    refused: Vec<Error>,
}

impl<'a> Fields<'a> {
    fn of(object: &'a Map<String, Value>, at: Vec<Value>) -> Self {
        Self {
            object,
            at,
            refused: Vec::new(),
        }
    }

    /// Where field `name` is, below the body.
    fn loc(&self, name: &str) -> Vec<Value> {
        let mut loc = self.at.clone();
        loc.push(name.into());
        loc
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|v| !v.is_null())
    }

    /// `found`'s value, or the type error it makes noted and none.
    fn note<T>(&mut self, found: Option<Result<T, Error>>) -> Option<T> {
        match found? {
            Ok(value) => Some(value),
            Err(error) => {
                self.refused.push(error);
                None
            }
        }
    }

    fn text(&mut self, name: &str) -> Option<String> {
        let found = self.present(name).map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| type_error(self.loc(name), "string"))
        });
        self.note(found)
    }

    /// [`Fields::text`], noting it missing when absent.
    fn required_text(&mut self, name: &str) -> Option<String> {
        if self.present(name).is_none() {
            let missing = Error::Field(
                self.loc(name),
                "field required".into(),
                "value_error.missing",
            );
            self.refused.push(missing);
        }
        self.text(name)
    }

    fn integer(&mut self, name: &str) -> Option<i64> {
        let found = self.present(name).map(|v| {
            lax_number(v)
                .and_then(whole)
                .ok_or_else(|| type_error(self.loc(name), "integer"))
        });
        self.note(found)
    }

    fn float(&mut self, name: &str) -> Option<f64> {
        let found = self
            .present(name)
            .map(|v| lax_number(v).ok_or_else(|| type_error(self.loc(name), "float")));
        self.note(found)
    }

    /// Notes every field but `known`: a misspelt one would otherwise be dropped unsaid.
    fn only(&mut self, known: &[&str]) {
        for name in self
            .object
            .keys()
            .filter(|name| !known.contains(&name.as_str()))
        {
            let extra = Error::Field(
                self.loc(name),
                "extra fields not permitted".into(),
                "value_error.extra",
            );
            self.refused.push(extra);
        }
    }

    fn seed(&mut self) -> Option<u64> {
        let found = self.present("seed").map(lax_seed).and_then(|v| {
            match (v.as_u64(), v.as_i64()) {
                (Some(seed), _) => Some(Ok(seed)),
                // -1 is A1111's "a random seed", which leaving it out means here.
                (None, Some(-1)) => None,
                // Seeds are 64-bit unsigned (above i64's range too, as A1111 hands them out).
                (None, Some(_)) => Some(Err(Error::field(
                    "seed",
                    "ensure this value is greater than or equal to 0",
                    "value_error.number.not_ge",
                ))),
                (None, None) => Some(Err(type_error(self.loc("seed"), "integer"))),
            }
        });
        self.note(found)
    }

    /// `loras`: a list of `{name, weight}`, each entry's errors located inside it; any other
    /// key is refused (a misspelt `weight` would otherwise run the adapter at 1.0).
    fn loras(&mut self) -> Option<Vec<LoraChoice>> {
        let list = self.present("loras")?;
        let Some(list) = list.as_array() else {
            self.refused.push(type_error(self.loc("loras"), "list"));
            return None;
        };
        let mut choices = Vec::with_capacity(list.len());
        for (index, entry) in list.iter().enumerate() {
            let at = vec!["loras".into(), index.into()];
            let Some(entry) = entry.as_object() else {
                self.refused.push(type_error(at, "dict"));
                continue;
            };
            let mut choice = Fields::of(entry, at);
            choice.only(&["name", "weight"]);
            let name = choice.required_text("name");
            let weight = choice.float("weight");
            self.refused.append(&mut choice.refused);
            if let Some(name) = name {
                choices.push(LoraChoice { name, weight });
            }
        }
        Some(choices)
    }
}

/// The body's fields in the seed's order, which FastAPI lists a 422's entries in.
const FIELD_ORDER: [&str; 14] = [
    "prompt",
    "init_image",
    "negative_prompt",
    "width",
    "height",
    "num_images",
    "num_inference_steps",
    "guidance_scale",
    "strength",
    "scheduler",
    "seed",
    "output_format",
    "callback_url",
    "loras",
];

/// Reads the body field by field: every field of the wrong type (or missing) is named in
/// FastAPI's 422 shape and read as absent; returns the request and those refusals, to which
/// [`check`] adds the fields out of their ranges.
fn parse(raw: &Value) -> Result<(GenerateRequest, Vec<Error>), Error> {
    let Some(object) = raw.as_object() else {
        return Err(type_error(vec!["body".into()], "dict"));
    };
    let mut fields = Fields::of(object, Vec::new());
    let request = GenerateRequest {
        prompt: fields.required_text("prompt").unwrap_or_default(),
        // Empty is none, as for `callback_url`: what a form left blank sends.
        init_image: fields.text("init_image").filter(|image| !image.is_empty()),
        negative_prompt: fields.text("negative_prompt"),
        width: fields.integer("width"),
        height: fields.integer("height"),
        num_images: fields.integer("num_images"),
        num_inference_steps: fields.integer("num_inference_steps"),
        guidance_scale: fields.float("guidance_scale"),
        strength: fields.float("strength"),
        scheduler: fields.text("scheduler"),
        seed: fields.seed(),
        output_format: fields.text("output_format"),
        callback_url: fields.text("callback_url"),
        loras: fields.loras(),
    };
    Ok((request, fields.refused))
}

fn range_error(field: &'static str, message: String) -> Error {
    Error::field(field, message, "value_error")
}

/// The prompt without its adapter tags, and each tag's `(name, weight)`.
type Tagged = (String, Vec<(String, f64)>);

/// The documented ranges and names of the fields that `parse` read; every field out of them
/// is named, beside those `parse` refused (`refused`), in the body's order, as FastAPI lists
/// them. The prompt is checked without its adapter tags (tags alone are no prompt), which it
/// returns.
fn check(request: &GenerateRequest, mut refused: Vec<Error>) -> Result<Tagged, Error> {
    let prompt_read = !refused
        .iter()
        .any(|error| error.named_field() == Some("prompt"));
    let tagged = easel_diffusion::adapters::prompt::extract(&request.prompt)
        .map_err(|message| {
            if prompt_read {
                refused.push(range_error("prompt", message));
            }
        })
        .ok();
    if let Some((prompt, _)) = &tagged
        && prompt_read
        && prompt.trim().is_empty()
    {
        let message = if request.prompt.trim().is_empty() {
            "prompt must not be empty"
        } else {
            "prompt must not be empty (besides its adapter tags)"
        };
        refused.push(range_error("prompt", message.into()));
    }
    for (field, value) in [("width", request.width), ("height", request.height)] {
        if let Some(pixels) = value
            && !(64..=2048).contains(&pixels) | (pixels % 8 != 0)
        {
            refused.push(range_error(
                field,
                format!("{field} must be a multiple of 8 between 64 and 2048"),
            ));
        }
    }
    if let Some(n) = request.num_images
        && !(1..=10).contains(&n)
    {
        refused.push(range_error(
            "num_images",
            "num_images must be between 1 and 10".into(),
        ));
    }
    if let Some(steps) = request.num_inference_steps
        && !(1..=500).contains(&steps)
    {
        refused.push(range_error(
            "num_inference_steps",
            "num_inference_steps must be between 1 and 500".into(),
        ));
    }
    if let Some(scale) = request.guidance_scale
        && !(0.0..=50.0).contains(&scale)
    {
        refused.push(range_error(
            "guidance_scale",
            "guidance_scale must be between 0 and 50".into(),
        ));
    }
    if let Some(strength) = request.strength
        && !(0.0..=1.0).contains(&strength)
    {
        refused.push(range_error(
            "strength",
            "strength must be between 0.0 and 1.0".into(),
        ));
    }
    if let Some(scheduler) = &request.scheduler
        && !SCHEDULERS.contains(&scheduler.as_str())
    {
        refused.push(range_error(
            "scheduler",
            format!("scheduler must be one of {}", SCHEDULERS.join(", ")),
        ));
    }
    if let Some(format) = &request.output_format
        && !["png", "jpg", "jpeg"].contains(&format.as_str())
    {
        refused.push(range_error(
            "output_format",
            "output_format must be png, jpg or jpeg".into(),
        ));
    }
    if let Some(image) = &request.init_image
        && !(image.starts_with("data:image/png;base64,")
            || image.starts_with("data:image/jpeg;base64,")
            || image.starts_with("data:image/jpg;base64,"))
    {
        refused.push(range_error(
            "init_image",
            "init_image must be a data URL: data:image/png;base64,… or data:image/jpeg;base64,…"
                .into(),
        ));
    }
    refused.sort_by_key(|error| {
        let field = error.named_field().unwrap_or_default();
        FIELD_ORDER.iter().position(|name| *name == field)
    });
    Error::all(refused)?;
    // Refused above when the tags could not be read.
    Ok(tagged.unwrap_or_default())
}

async fn generate(
    State(state): State<AppState>,
    Caller { client_id, .. }: Caller<Sd>,
    headers: HeaderMap,
    body: Body<Sd>,
) -> Result<Response, Error> {
    let raw: Value = body.json()?;
    let (request, refused) = parse(&raw)?;
    let (prompt, tags) = check(&request, refused)?;
    let resolved = sd_model(&state).ok_or_else(|| {
        Error::Plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "No image model is loaded: the operator sets EASEL_SD_MODEL to a Stable Diffusion \
             model, or loads a plugin that makes images"
                .into(),
        )
    })?;
    let count = request.num_images.unwrap_or(1);
    // Adapters named only in the prompt's tags are refused naming `prompt`, the field sent.
    let tagged_only = request.loras.as_ref().is_none_or(Vec::is_empty) && !tags.is_empty();
    let adapters = AdapterSources {
        listed: request.loras.as_ref().map_or(0, Vec::len),
        tags: tags.clone(),
    };
    let loras: Vec<Value> = request
        .loras
        .unwrap_or_default()
        .into_iter()
        .map(|lora| (lora.name, lora.weight.unwrap_or(1.0)))
        .chain(tags)
        .map(|(name, weight)| json!({"name": name, "weight": weight}))
        .collect();
    let mut params = present_params([
        ("negative_prompt", request.negative_prompt.map(Value::from)),
        ("width", request.width.map(Value::from)),
        ("height", request.height.map(Value::from)),
        ("num_images", Some(count.into())),
        (
            "num_inference_steps",
            request.num_inference_steps.map(Value::from),
        ),
        ("guidance_scale", request.guidance_scale.map(Value::from)),
        ("strength", request.strength.map(Value::from)),
        ("scheduler", request.scheduler.map(Value::from)),
        ("seed", request.seed.map(Value::from)),
        ("loras", (!loras.is_empty()).then(|| Value::from(loras))),
    ]);
    // A mapped model that counts its outputs as `n` gets the count under that name, and its
    // refusal of the count names the field the client sent.
    let properties = &resolved.model.params_schema["properties"];
    let count_as_n = properties.get("num_images").is_none() && properties.get("n").is_some();
    if count_as_n {
        params.insert("n".into(), count.into());
    }
    if let (Some(width), Some(height)) = (request.width, request.height) {
        shape_by_ratio(&resolved.model.params_schema, width, height, &mut params)?;
    }
    let asked = request.output_format.as_deref().unwrap_or("png");
    let mut extra = json!({"base": public_base(&state, &headers)});
    match model_format(properties, asked) {
        Some(format) => {
            params.insert("output_format".into(), format.into());
        }
        None => extra["image_format"] = content_type_of_format(asked).into(),
    }
    let (capability, inputs) = match request.init_image {
        Some(image) => (
            "image.edit",
            vec![Input::url("init_image", "image", None, image)],
        ),
        None => ("image.generate", Vec::new()),
    };
    let (task, _) = state
        .engine
        .admit(Admission {
            client_id,
            api: API,
            resolved,
            capability: capability.into(),
            prompt,
            params,
            inputs,
            webhook: request
                .callback_url
                .filter(|url| !url.is_empty())
                .map(|url| ("callback_url", url)),
            extra,
            idempotency: None,
            priority: None,
        })
        .await
        .map_err(|refusal| match refusal {
            Refusal::Invalid(mut invalid) => {
                if count_as_n {
                    invalid = invalid.renamed("n", "num_images");
                }
                invalid = adapters.locate(invalid);
                if tagged_only {
                    invalid = invalid.renamed("loras", "prompt");
                }
                Refusal::Invalid(invalid)
            }
            other => other,
        })?;
    Ok(Json(json!({
        "task_id": task.id,
        "status": "pending",
        "message": "任务已创建，正在处理中",
    }))
    .into_response())
}

/// Where the adapters a task was given came from: the `loras` field's entries first, then
/// the prompt's tags, in that order in the task's `loras`.
struct AdapterSources {
    /// How many entries the `loras` field had.
    listed: usize,
    /// The prompt's tags, `(name, weight)`.
    tags: Vec<(String, f64)>,
}

impl AdapterSources {
    /// A refusal of the task's `loras` entry that came from a prompt tag, about that tag in
    /// `prompt` (the field sent): `Invalid parameter prompt: adapter tag <lora:ink:12>: weight
    /// must be between -10 and 10`. Any other refusal is left as it is.
    fn locate(&self, invalid: InvalidParam) -> InvalidParam {
        let index = match (invalid.param.as_deref(), invalid.within.first()) {
            (Some("loras"), Some(Value::Number(index))) => index.as_u64().unwrap_or(0) as usize,
            _ => return invalid,
        };
        let Some((name, weight)) = index
            .checked_sub(self.listed)
            .and_then(|tag| self.tags.get(tag))
        else {
            return invalid;
        };
        let said = invalid.said_of_entry();
        InvalidParam {
            param: Some("prompt".into()),
            within: Vec::new(),
            message: format!(
                "Invalid parameter prompt: adapter tag <lora:{name}:{weight}>: {said}"
            ),
        }
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Queued => "pending",
        Status::Running => "processing",
        Status::Succeeded => "completed",
        Status::Failed | Status::Cancelled | Status::Expired => "failed",
    }
}

fn urls(links: &Links, task: &Task, base: &str) -> Vec<String> {
    task.output_asset_ids()
        .iter()
        .map(|id| links.url(base, id))
        .collect()
}

/// A time as seed 003 shows it: ISO 8601 in UTC without an offset, Python's
/// `datetime.isoformat()` of a naive time (`2024-01-01T12:00:00.250000`), which every Python
/// `datetime.fromisoformat` reads (a trailing `Z` only from 3.11 on).
fn iso_utc(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// A task in seed 003's flat shape, its links under `base`.
pub fn task_view(links: &Links, task: &Task, base: &str) -> Value {
    let urls = urls(links, task, base);
    let (one, many) = match urls.len() {
        0 => (Value::Null, Value::Null),
        1 => (urls[0].clone().into(), Value::Null),
        _ => (Value::Null, urls.into()),
    };
    json!({
        "task_id": task.id,
        "status": status_name(task.status),
        "result_url": one,
        "result_urls": many,
        "error_message": task.error,
        "progress": task.progress,
        "created_at": iso_utc(task.created_at),
        "updated_at": iso_utc(task.updated_at),
    })
}

/// The callback body of seed 003: `image_url` for one image, `image_urls` for several.
pub fn webhook(links: &Links, task: &Task) -> Value {
    let mut body = json!({"task_id": task.id, "status": status_name(task.status)});
    let urls = urls(links, task, &files::submitted_base(task));
    match urls.len() {
        0 => {}
        1 => body["image_url"] = urls[0].clone().into(),
        _ => body["image_urls"] = urls.into(),
    }
    if let Some(error) = &task.error {
        body["error_message"] = error.clone().into();
    }
    body
}

#[cfg(test)]
mod tests {
    #[test]
    fn health_is_unavailable_while_the_database_does_not_answer() {
        let (status, body) = super::health_answer(None, true);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"status": "ok", "model_loaded": false}));
        let (status, body) = super::health_answer(None, false);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "unavailable");
    }

    use super::*;

    #[test]
    fn the_format_goes_to_a_model_that_takes_it_in_its_own_spelling() {
        let listed = |values: Value| json!({"output_format": {"type": "string", "enum": values}});
        let native = listed(json!(["png", "jpg", "jpeg"]));
        assert_eq!(model_format(&native, "jpg").as_deref(), Some("jpg"));
        let openai = listed(json!(["png", "jpeg", "webp"]));
        assert_eq!(model_format(&openai, "jpg").as_deref(), Some("jpeg"));
        assert_eq!(model_format(&openai, "png").as_deref(), Some("png"));
        let only_jpg = listed(json!(["jpg"]));
        assert_eq!(model_format(&only_jpg, "jpeg").as_deref(), Some("jpg"));
        assert_eq!(
            model_format(&only_jpg, "png"),
            None,
            "converted by the host"
        );
        let any = json!({"output_format": {"type": "string"}});
        assert_eq!(model_format(&any, "jpeg").as_deref(), Some("jpeg"));
        assert_eq!(
            model_format(&json!({}), "jpg"),
            None,
            "converted by the host"
        );
    }
}
