//! The OpenAPI 3.1 document, generated from the router itself (aide), and where it is read:
//! `/openapi.json` (also `/api/v1/openapi.json`), `/docs` (Swagger UI) and `/redoc` (ReDoc), both
//! viewers served from the binary.
//!
//! Invariants: every route of `api/` is registered with `ApiRouter::api_route` and its
//! operation's documentation in the same call, so a route cannot be served without being in the
//! document. Query parameters come from the handlers' `Query<T>` types, admin bodies from their
//! `Json<T>` types, path parameters from the route's path and schemas from the request types'
//! schemars derives; bodies a handler reads raw, to answer bad JSON in its API's own error shape,
//! are named beside the handler ([`Describe::json_body`]). Its unit tests keep plain axum
//! routing, hidden operations and undescribed operations out of `api/`; `tests/fuzz.rs` checks
//! that every documented operation is routed.

use std::{cell::RefCell, convert::Infallible, rc::Rc};

use aide::{
    axum::{ApiRouter, routing::get_with},
    openapi::{
        HeaderStyle, MediaType, OpenApi, Parameter, ParameterData, ParameterSchemaOrContent,
        ReferenceOr, RequestBody, Response as Answer, Responses, SchemaObject, StatusCode,
    },
    redoc::Redoc,
    transform::TransformOperation,
};
use axum::{
    Extension, Router,
    body::Bytes,
    extract::Request,
    http::header,
    response::{IntoResponse, Response},
};
use schemars::{JsonSchema, Schema, generate::SchemaSettings, json_schema};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::api::{AppState, openai, pixel, sd};

/// The APIs the document groups its operations by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// Seed 001.
    Jobs,
    /// Seed 000.
    Pixel,
    /// Seed 002.
    Llmage,
    /// OpenAI's images and chat.
    OpenAi,
    /// Seed 003.
    Sd,
    /// The operator's routes.
    Admin,
    /// This document, its viewers and public file links.
    Documents,
}

impl Api {
    /// The tag its operations carry.
    pub fn tag(self) -> &'static str {
        match self {
            Api::Jobs => "001 jobs",
            Api::Pixel => "000 Pixel",
            Api::Llmage => "002 llmage",
            Api::OpenAi => "OpenAI",
            Api::Sd => "003 SD service",
            Api::Admin => "admin",
            Api::Documents => "documents",
        }
    }

    /// The component naming its error body.
    fn error_schema(self) -> &'static str {
        match self {
            Api::Pixel => "PixelError",
            Api::Sd => "SdError",
            Api::OpenAi => "OpenAiError",
            Api::Jobs | Api::Llmage | Api::Admin | Api::Documents => "Error",
        }
    }
}

// Each API's error answers are documented by `Describe::api`; aide needs only to know the types.
impl aide::OperationOutput for crate::api::error::Error {
    type Inner = Self;
}

impl aide::OperationOutput for pixel::Error {
    type Inner = Self;
}

impl aide::OperationOutput for sd::Error {
    type Inner = Self;
}

impl aide::OperationOutput for openai::Error {
    type Inner = Self;
}

/// The schema of `T`: a reference whose definition the document's components will hold.
pub fn schema<T: JsonSchema>() -> Schema {
    aide::generate::in_context(|ctx| ctx.schema.subschema_for::<T>())
}

fn json_media(schema: Schema) -> MediaType {
    MediaType {
        schema: Some(SchemaObject {
            json_schema: schema,
            external_docs: None,
            example: None,
        }),
        ..MediaType::default()
    }
}

fn json_answer(description: &str, schema: Schema) -> ReferenceOr<Answer> {
    let mut answer = Answer {
        description: description.into(),
        ..Answer::default()
    };
    answer
        .content
        .insert("application/json".into(), json_media(schema));
    ReferenceOr::Item(answer)
}

/// What the dialects say about an operation, on top of aide's own transform.
pub trait Describe: Sized {
    /// Tags the operation with its API and documents that API's error answers (and a JSON 200
    /// unless one is known).
    fn api(self, api: Api) -> Self;
    /// The JSON body the handler reads raw, as `T`.
    fn json_body<T: JsonSchema>(self) -> Self;
    /// The JSON body the handler reads raw, as `schema`.
    fn json_body_schema(self, schema: Schema) -> Self;
    /// The `multipart/form-data` body the handler reads raw, its fields as `T`'s.
    fn form_body<T: JsonSchema>(self) -> Self;
    /// The 200 answer's JSON body.
    fn ok(self, schema: Schema) -> Self;
    /// A success under another status than 200 (201 created, 202 accepted), with the 200's
    /// body; `keep_ok` leaves the 200 listed too (an idempotent replay's answer).
    fn ok_as(self, status: u16, description: &str, keep_ok: bool) -> Self;
    /// One more error answer, in the API's error body (as [`Describe::api`] lists them).
    fn error(self, status: u16, description: &str) -> Self;
    /// A request header the operation reads.
    fn header(self, name: &str, description: &str) -> Self;
    /// The operation needs no key (documents, health, signed links): the document asks none
    /// of it and lists no 401.
    fn open(self) -> Self;
    /// The 200 answer is a file in its own type (an asset, speech), not JSON.
    fn file(self) -> Self;
    /// One more answer without a body (a redirect).
    fn bodiless(self, status: u16, description: &str) -> Self;
}

/// The mark [`Describe::open`] leaves on an operation, which [`complete`] turns into an empty
/// `security` (aide writes none for an empty list, which would leave the document's own).
const OPEN: &str = "x-easel-open";

impl Describe for TransformOperation<'_> {
    fn api(mut self, api: Api) -> Self {
        self.inner_mut().tags = vec![api.tag().into()];
        let responses = &mut responses(&mut self).responses;
        // What aide infers from extractors (axum's 415 and 422 for `Json`) is not what the
        // dialects answer: they turn rejections into their own errors, listed below.
        responses.retain(|status, _| *status == StatusCode::Code(200));
        responses
            .entry(StatusCode::Code(200))
            .or_insert_with(|| json_answer("OK", json_schema!({"type": "object"})));
        let error = Schema::new_ref(format!("#/components/schemas/{}", api.error_schema()));
        // FastAPI, which seed 003 documents, answers a request it cannot take with 422.
        let invalid = if api == Api::Sd { 422 } else { 400 };
        for (status, description) in [
            (invalid, "Invalid request"),
            (401, "Missing or invalid API key"),
            (404, "Not found, or owned by another client"),
        ] {
            responses.insert(
                StatusCode::Code(status),
                json_answer(description, error.clone()),
            );
        }
        self
    }

    fn json_body<T: JsonSchema>(self) -> Self {
        self.json_body_schema(schema::<T>())
    }

    fn json_body_schema(self, schema: Schema) -> Self {
        // Replaces what aide infers from a raw `Bytes` extractor (an octet stream).
        with_body(self, "application/json", schema)
    }

    fn form_body<T: JsonSchema>(self) -> Self {
        with_body(self, "multipart/form-data", schema::<T>())
    }

    fn ok(mut self, schema: Schema) -> Self {
        let responses = &mut responses(&mut self).responses;
        responses.insert(StatusCode::Code(200), json_answer("OK", schema));
        self
    }

    fn ok_as(mut self, status: u16, description: &str, keep_ok: bool) -> Self {
        let responses = &mut responses(&mut self).responses;
        let ok = if keep_ok {
            responses.get(&StatusCode::Code(200)).cloned()
        } else {
            responses.shift_remove(&StatusCode::Code(200))
        };
        if let Some(ReferenceOr::Item(mut answer)) = ok {
            answer.description = description.into();
            responses.insert(StatusCode::Code(status), ReferenceOr::Item(answer));
        }
        responses.sort_keys();
        self
    }

    fn error(mut self, status: u16, description: &str) -> Self {
        let responses = &mut responses(&mut self).responses;
        let like = responses
            .get(&StatusCode::Code(401))
            .cloned()
            .expect("Describe::api lists the errors first");
        if let ReferenceOr::Item(mut answer) = like {
            answer.description = description.into();
            responses.insert(StatusCode::Code(status), ReferenceOr::Item(answer));
        }
        responses.sort_keys();
        self
    }

    fn file(mut self) -> Self {
        let mut answer = Answer {
            description: "The file, in its own content type".into(),
            ..Answer::default()
        };
        let bytes = json_media(json_schema!({"type": "string", "format": "binary"}));
        answer.content.insert("*/*".into(), bytes);
        let responses = &mut responses(&mut self).responses;
        responses.insert(StatusCode::Code(200), ReferenceOr::Item(answer));
        self
    }

    fn bodiless(mut self, status: u16, description: &str) -> Self {
        let answer = Answer {
            description: description.into(),
            ..Answer::default()
        };
        let responses = &mut responses(&mut self).responses;
        responses.insert(StatusCode::Code(status), ReferenceOr::Item(answer));
        self
    }

    fn open(mut self) -> Self {
        self.inner_mut().extensions.insert(OPEN.into(), true.into());
        responses(&mut self)
            .responses
            .shift_remove(&StatusCode::Code(401));
        self
    }

    fn header(mut self, name: &str, description: &str) -> Self {
        let data = ParameterData {
            name: name.into(),
            description: Some(description.into()),
            required: false,
            deprecated: None,
            format: ParameterSchemaOrContent::Schema(SchemaObject {
                json_schema: json_schema!({"type": "string"}),
                external_docs: None,
                example: None,
            }),
            example: None,
            examples: Default::default(),
            explode: None,
            extensions: Default::default(),
        };
        self.inner_mut()
            .parameters
            .push(ReferenceOr::Item(Parameter::Header {
                parameter_data: data,
                style: HeaderStyle::Simple,
            }));
        self
    }
}

/// The operation's answers by status, made when it has none yet.
fn responses<'a>(operation: &'a mut TransformOperation<'_>) -> &'a mut Responses {
    operation
        .inner_mut()
        .responses
        .get_or_insert_with(Default::default)
}

/// `operation` with its request body: required, in `media_type`, described by `schema`; a
/// body already described in another media type is kept as the other way to send it.
fn with_body<'a>(
    mut operation: TransformOperation<'a>,
    media_type: &str,
    schema: Schema,
) -> TransformOperation<'a> {
    let mut body = match operation.inner_mut().request_body.take() {
        Some(ReferenceOr::Item(body)) if !body.content.contains_key("application/octet-stream") => {
            body
        }
        _ => RequestBody {
            required: true,
            ..RequestBody::default()
        },
    };
    body.content.insert(media_type.into(), json_media(schema));
    operation.inner_mut().request_body = Some(ReferenceOr::Item(body));
    operation
}

/// Builds the router `build` returns together with its document, as JSON. The schema settings
/// are the OpenAPI ones, and problems aide finds while describing operations are returned.
fn generate(build: impl FnOnce() -> ApiRouter<AppState>) -> (Router<AppState>, Value, Vec<String>) {
    let problems = Rc::new(RefCell::new(Vec::new()));
    aide::generate::reset_context();
    // OpenAPI 3.1's schemas are JSON Schema 2020-12 (an optional field's type lists `null`),
    // kept under the document's components.
    aide::generate::in_context(|ctx| {
        ctx.schema = SchemaSettings::draft2020_12()
            .with(|settings| {
                settings.definitions_path = "/components/schemas".into();
                settings.meta_schema = None;
            })
            .into_generator()
    });
    let noted = problems.clone();
    aide::generate::on_error(move |error| noted.borrow_mut().push(error.to_string()));
    let mut api = OpenApi::default();
    let router = build().finish_api(&mut api);
    aide::generate::reset_context();
    let document = complete(serde_json::to_value(api).expect("the document serializes"));
    let problems = problems.borrow().clone();
    (router, document, problems)
}

/// Builds the router `build` returns and serves its document.
pub fn finish(build: impl FnOnce() -> ApiRouter<AppState>) -> Router<AppState> {
    let (router, document, problems) = generate(build);
    for problem in problems {
        tracing::warn!("OpenAPI document: {problem}");
    }
    let json = serde_json::to_vec(&document).expect("the document serializes");
    router.layer(Extension(Document(Bytes::from(json))))
}

/// What aide leaves to the application: the path parameters of every route (strings), the
/// error bodies, the keys (none for an operation marked [`OPEN`]) and the document's title;
/// and without the definitions nothing refers to (the `Query<T>` types, which aide lists as
/// parameters).
fn complete(mut document: Value) -> Value {
    if let Some(paths) = document["paths"].as_object_mut() {
        // axum's catch-all `{*id}` is OpenAPI's plain `{id}` (the id may hold slashes).
        let written = std::mem::take(paths);
        *paths = written
            .into_iter()
            .map(|(path, item)| (path.replace("{*", "{"), item))
            .collect();
        for (path, item) in paths {
            let names: Vec<&str> = path
                .split('/')
                .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for operation in item
                .as_object_mut()
                .into_iter()
                .flat_map(|i| i.values_mut())
            {
                if let Some(marks) = operation.as_object_mut()
                    && marks.remove(OPEN).is_some()
                {
                    marks.insert("security".into(), json!([]));
                }
                let parameters = &mut operation["parameters"];
                if !parameters.is_array() {
                    *parameters = json!([]);
                }
                let list = parameters.as_array_mut().expect("just made an array");
                for name in &names {
                    if !list.iter().any(|p| p["name"] == *name && p["in"] == "path") {
                        list.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
                    }
                }
            }
        }
    }
    document["info"] = json!({"title": "easel", "version": env!("CARGO_PKG_VERSION")});
    let schemas = &mut document["components"]["schemas"];
    schemas["Error"] = json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}});
    schemas["PixelError"] = json!({"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}});
    schemas["SdError"] =
        json!({"type": "object", "required": ["detail"], "properties": {"detail": {}}});
    schemas["OpenAiError"] = json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"}}}}});
    document["components"]["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "zhinianKey": {"type": "apiKey", "in": "header", "name": "X-Zhinian-Api-Key"},
    });
    document["security"] = json!([{"bearer": []}, {"apiKey": []}, {"zhinianKey": []}]);
    let Value::Object(mut unused) = document["components"]["schemas"].take() else {
        unreachable!("the error bodies were just defined")
    };
    let mut kept = Map::new();
    let mut pending = Vec::new();
    references(&document, &mut pending);
    while let Some(name) = pending.pop() {
        if let Some(schema) = unused.remove(&name) {
            references(&schema, &mut pending);
            kept.insert(name, schema);
        }
    }
    document["components"]["schemas"] = Value::Object(kept);
    document
}

/// The names of the definitions `value` refers to.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                found.push(name.to_string());
            }
            map.values().for_each(|v| references(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

/// The serialized document, shared by the routes that serve it.
#[derive(Clone)]
struct Document(Bytes);

async fn serve_document(Extension(Document(json)): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The files Swagger UI's page loads from beside it.
const SWAGGER_FILES: [&str; 6] = [
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "swagger-ui-bundle.js.map",
    "swagger-ui.css.map",
    "oauth2-redirect.html",
    "oauth2-redirect.js",
];

fn this_document(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.api(Api::Documents).open().summary("This document")
}

/// The `{file}` of `/docs/{file}`: one of [`SWAGGER_FILES`].
fn swagger_file() -> Parameter {
    serde_json::from_value(json!({
        "name": "file", "in": "path", "required": true,
        "schema": {"type": "string", "enum": SWAGGER_FILES},
    }))
    .expect("a path parameter")
}

/// The document, Swagger UI (its files compiled into the binary by `swagger-ui-dist`, whose own
/// router answers under `/docs`) and ReDoc (its script inlined in the page by aide).
pub fn routes() -> ApiRouter<AppState> {
    let swagger = swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: "/docs",
        api_definition: swagger_ui_dist::OpenApiSource::Uri("/openapi.json"),
        title: Some("easel"),
    });
    let swagger_ui = move |request: Request| {
        let swagger = swagger.clone();
        async move {
            let answer: Result<Response, Infallible> = swagger.oneshot(request).await;
            answer.unwrap_or_else(|never| match never {})
        }
    };
    let redoc = Redoc::new("/openapi.json")
        .with_title("easel API")
        .axum_handler::<AppState>();
    ApiRouter::new()
        .api_route("/openapi.json", get_with(serve_document, this_document))
        .api_route(
            "/api/v1/openapi.json",
            get_with(serve_document, this_document),
        )
        .api_route(
            "/docs",
            get_with(swagger_ui.clone(), |op| {
                op.api(Api::Documents).open().summary("Swagger UI")
            }),
        )
        .api_route(
            "/docs/{file}",
            get_with(swagger_ui, |op| {
                op.api(Api::Documents)
                    .open()
                    .summary("Swagger UI's script, style and sign-in page")
                    .with(|mut op| {
                        op.inner_mut()
                            .parameters
                            .push(ReferenceOr::Item(swagger_file()));
                        op
                    })
            }),
        )
        .api_route(
            "/redoc",
            get_with(redoc, |op| op.api(Api::Documents).open().summary("ReDoc")),
        )
}

#[cfg(test)]
mod tests;
