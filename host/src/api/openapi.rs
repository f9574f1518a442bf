//! `/openapi.json` (also at `/api/v1/openapi.json`), `/docs` (Swagger UI, served from the
//! binary) and `/redoc`, built from the request types themselves (schemars) and one table of
//! routes covering all four APIs, so the document cannot drift from the code.

use axum::{
    Json, Router,
    extract::State,
    response::{Html, IntoResponse},
    routing::get,
};
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use crate::api::{AppState, assets, jobs, llmage, openai, pixel, sd};

/// One documented operation.
struct Operation {
    method: &'static str,
    path: &'static str,
    /// The API it belongs to; also names its error schema.
    tag: &'static str,
    summary: &'static str,
    body: Option<Value>,
    response: Option<Value>,
    query: &'static [(&'static str, &'static str)],
}

fn op(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        tag,
        summary,
        body: None,
        response: None,
        query: &[],
    }
}

impl Operation {
    fn body(mut self, schema: Value) -> Self {
        self.body = Some(schema);
        self
    }

    fn response(mut self, schema: Value) -> Self {
        self.response = Some(schema);
        self
    }

    fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    serde_json::to_value(generator.subschema_for::<T>()).unwrap_or(Value::Null)
}

/// The body of llmage's generation routes: three named fields, the rest per model.
fn llmage_generation() -> Value {
    json!({
        "type": "object",
        "required": ["model", "catelogid", "prompt"],
        "properties": {
            "model": {"type": "string"},
            "catelogid": {"type": "string", "enum": ["t2i", "i2i", "t2v", "i2v", "ref2v"]},
            "prompt": {"type": "string"},
        },
        "additionalProperties": true,
    })
}

const JOBS: &str = "001 jobs";
const PIXEL: &str = "000 Pixel";
const LLMAGE: &str = "002 llmage";
const OPENAI: &str = "OpenAI";
const SD: &str = "003 SD service";
const ADMIN: &str = "admin";
const DOCS: &str = "documents";

fn operations(generator: &mut SchemaGenerator) -> Vec<Operation> {
    let job = schema::<jobs::JobView>(generator);
    let job_envelope =
        json!({"type": "object", "properties": {"job": job, "reused": {"type": "boolean"}}});
    let pages: &[(&str, &str)] = &[("limit", "1 to 200"), ("before", "ISO time")];
    vec![
        op("post", "/api/v1/jobs", JOBS, "Create a job (honours Idempotency-Key)")
            .body(schema::<jobs::JobRequest>(generator))
            .response(job_envelope.clone()),
        op("get", "/api/v1/jobs", JOBS, "List jobs")
            .response(json!({"type": "object", "properties": {"jobs": {"type": "array", "items": job}, "nextBefore": {"type": ["string", "null"]}}}))
            .query(&[
                ("status", "queued, running, succeeded, failed, expired or cancelled"),
                ("capability", "a capability"),
                ("limit", "1 to 200"),
                ("before", "ISO time"),
            ]),
        op("get", "/api/v1/jobs/{id}", JOBS, "Get a job").response(job_envelope.clone()),
        op("post", "/api/v1/jobs/{id}/cancel", JOBS, "Cancel a job").response(job_envelope),
        op("get", "/api/v1/capabilities", JOBS, "List capabilities and their models"),
        op("post", "/api/v1/assets", JOBS, "Upload files (multipart field `files`) or register a URL (JSON)")
            .body(schema::<assets::RegisterUrl>(generator)),
        op("get", "/api/v1/assets", JOBS, "List assets").query(pages),
        op("get", "/api/v1/assets/{id}", JOBS, "Get an asset"),
        op("get", "/api/v1/assets/{id}/download", JOBS, "Download an asset (supports Range)"),
        op("get", "/api/v1/models", PIXEL, "Models grouped by type"),
        op("post", "/api/v1/generations/{kind}", PIXEL, "Create an image, video or audio task (kind: image, video, audio)")
            .body(schema::<pixel::GenerationRequest>(generator)),
        op("get", "/api/v1/tasks/{id}", PIXEL, "A Pixel or SD-service task, in the shape of the API that created it"),
        op("get", "/health", SD, "Service status and whether a model is loaded"),
        op("get", "/api/health", SD, "Same as /health"),
        op("post", "/api/v1/generate", SD, "txt2img, or img2img with init_image")
            .body(schema::<sd::GenerateRequest>(generator)),
        op("get", "/llmage/v1/models", LLMAGE, "Models, optionally of one catelogid")
            .query(&[("catelogid", "t2t, t2i, t2v, i2v, ref2v, …")]),
        op("post", "/llmage/v1/chat/completions", LLMAGE, "Chat, streamed (SSE) or not")
            .body(schema::<llmage::ChatCompletionRequest>(generator)),
        op("post", "/llmage/v1/image/generations", LLMAGE, "Create an image task").body(llmage_generation()),
        op("post", "/llmage/v1/video/generations", LLMAGE, "Create a video task (JSON, or multipart with image_file, image1_file/image2_file, image_file1/image_file2, image_files, video_files, audio_files)")
            .body(llmage_generation()),
        op("get", "/llmage/v1/tasks", LLMAGE, "A task's status, usage and media").query(&[("taskid", "the task id")]),
        op("get", "/v1/models", OPENAI, "Models"),
        op("post", "/v1/chat/completions", OPENAI, "Chat completions, streamed or not")
            .body(schema::<openai::ChatRequest>(generator)),
        op("post", "/v1/images/generations", OPENAI, "Generate images (waits for the task)")
            .body(schema::<openai::ImageRequest>(generator)),
        op("get", "/files/{asset_id}/{signature}", DOCS, "A public, signed link to an output file"),
        op("get", "/admin/plugins", ADMIN, "Loaded plugins with version, hash, models and last error"),
        op("post", "/admin/plugins/reload", ADMIN, "Rescan the plugins folder"),
        op("post", "/admin/clients", ADMIN, "Create a client and its key")
            .body(json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "key": {"type": "string"}}})),
        op("post", "/admin/clients/{id}/credits", ADMIN, "Grant (or take back) credits")
            .body(json!({"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}})),
        op("get", "/admin/clients/{id}/usage", ADMIN, "Balance, reservations and spending per model"),
        op("get", "/admin/clients/{id}/keys", ADMIN, "A client's keys: id, label, source, times, active (never the secret)"),
        op("post", "/admin/clients/{id}/keys", ADMIN, "Create a key (the secret is shown once)")
            .body(json!({"type": "object", "properties": {"key": {"type": "string"}, "label": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}, "expires_in_secs": {"type": "integer"}}})),
        op("post", "/admin/clients/{id}/keys/{key_id}/rotate", ADMIN, "Replace a key with a new secret of the same label; the old one is revoked, or expires after grace_secs")
            .body(json!({"type": "object", "properties": {"key": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}, "expires_in_secs": {"type": "integer"}, "grace_secs": {"type": "integer"}}})),
        op("post", "/admin/clients/{id}/keys/{key_id}/revoke", ADMIN, "Revoke a key for good")
            .body(json!({"type": "object", "properties": {"reason": {"type": "string"}}})),
        op("get", "/openapi.json", DOCS, "This document"),
        op("get", "/api/v1/openapi.json", DOCS, "This document"),
        op("get", "/docs", DOCS, "Swagger UI"),
        op("get", "/redoc", DOCS, "ReDoc"),
    ]
}

/// The error body of each API.
fn error_schema(tag: &str) -> &'static str {
    match tag {
        PIXEL => "PixelError",
        SD => "SdError",
        OPENAI => "OpenAiError",
        _ => "Error",
    }
}

/// The `{name}` segments of a path.
fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

/// The OpenAPI 3.1 document of every route.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for op in operations(&mut generator) {
        let mut parameters: Vec<Value> = op
            .query
            .iter()
            .map(|(name, description)| json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(path_parameters(op.path));
        let error = json!({"$ref": format!("#/components/schemas/{}", error_schema(op.tag))});
        let mut operation = json!({
            "tags": [op.tag],
            "summary": op.summary,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": op.response.unwrap_or(json!({"type": "object"}))}}},
                "400": {"description": "Invalid request", "content": {"application/json": {"schema": error}}},
                "401": {"description": "Missing or invalid API key", "content": {"application/json": {"schema": error}}},
                "404": {"description": "Not found, or owned by another client", "content": {"application/json": {"schema": error}}},
            },
        });
        if let Some(body) = op.body {
            operation["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": body}}});
        }
        paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}))[op.method] = operation;
    }
    let mut schemas =
        serde_json::to_value(generator.take_definitions(true)).unwrap_or_else(|_| json!({}));
    schemas["Error"] = json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}});
    schemas["PixelError"] = json!({"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}});
    schemas["SdError"] =
        json!({"type": "object", "required": ["detail"], "properties": {"detail": {}}});
    schemas["OpenAiError"] = json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "properties": {"message": {"type": "string"}, "type": {"type": "string"}}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "easel", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "zhinianKey": {"type": "apiKey", "in": "header", "name": "X-Zhinian-Api-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}, {"zhinianKey": []}],
        "paths": paths,
    })
}

/// Serves the document and the two viewers. Swagger UI's files are compiled into the binary;
/// ReDoc's page loads its viewer script from the ReDoc CDN in the reader's browser.
pub fn routes() -> Router<AppState> {
    let document = |State(_): State<AppState>| async { Json(document()) };
    Router::new()
        .route("/openapi.json", get(document))
        .route("/api/v1/openapi.json", get(document))
        .route("/redoc", get(|| async { Html(REDOC_PAGE).into_response() }))
}

/// Swagger UI at `/docs`, reading `/openapi.json`.
pub fn swagger_ui() -> Router {
    swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: "/docs",
        api_definition: swagger_ui_dist::OpenApiSource::Uri("/openapi.json"),
        title: Some("easel"),
    })
}

const REDOC_PAGE: &str = r#"<!DOCTYPE html>
<html>
  <head>
    <title>easel API</title>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="https://cdn.redoc.ly/redoc/v2.5.1/bundles/redoc.standalone.js"></script>
  </body>
</html>
"#;
