//! `GET /api/v1/openapi.json`, built from the request and response types themselves
//! (schemars) and one table of routes, so the document cannot drift from the code.

use axum::{Json, Router, extract::State, routing::get};
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use crate::api::{AppState, assets, jobs};

/// One documented operation.
struct Operation {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: Option<Value>,
    response: Option<Value>,
    query: &'static [(&'static str, &'static str)],
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    serde_json::to_value(generator.subschema_for::<T>()).unwrap_or(Value::Null)
}

fn operations(generator: &mut SchemaGenerator) -> Vec<Operation> {
    let job = schema::<jobs::JobView>(generator);
    let job_envelope =
        json!({"type": "object", "properties": {"job": job, "reused": {"type": "boolean"}}});
    vec![
        Operation {
            method: "post",
            path: "/api/v1/jobs",
            summary: "Create a job (honours Idempotency-Key)",
            body: Some(schema::<jobs::JobRequest>(generator)),
            response: Some(job_envelope.clone()),
            query: &[],
        },
        Operation {
            method: "get",
            path: "/api/v1/jobs",
            summary: "List jobs",
            body: None,
            response: Some(
                json!({"type": "object", "properties": {"jobs": {"type": "array", "items": job}, "nextBefore": {"type": ["string", "null"]}}}),
            ),
            query: &[
                (
                    "status",
                    "queued, running, succeeded, failed, expired or cancelled",
                ),
                ("capability", "a capability"),
                ("limit", "1 to 200"),
                ("before", "ISO time"),
            ],
        },
        Operation {
            method: "get",
            path: "/api/v1/jobs/{id}",
            summary: "Get a job",
            body: None,
            response: Some(job_envelope.clone()),
            query: &[],
        },
        Operation {
            method: "post",
            path: "/api/v1/jobs/{id}/cancel",
            summary: "Cancel a job",
            body: None,
            response: Some(job_envelope),
            query: &[],
        },
        Operation {
            method: "get",
            path: "/api/v1/capabilities",
            summary: "List capabilities and their models",
            body: None,
            response: None,
            query: &[],
        },
        Operation {
            method: "post",
            path: "/api/v1/assets",
            summary: "Upload files (multipart field `files`) or register a URL (JSON)",
            body: Some(schema::<assets::RegisterUrl>(generator)),
            response: None,
            query: &[],
        },
        Operation {
            method: "get",
            path: "/api/v1/assets",
            summary: "List assets",
            body: None,
            response: None,
            query: &[("limit", "1 to 200"), ("before", "ISO time")],
        },
        Operation {
            method: "get",
            path: "/api/v1/assets/{id}",
            summary: "Get an asset",
            body: None,
            response: None,
            query: &[],
        },
        Operation {
            method: "get",
            path: "/api/v1/assets/{id}/download",
            summary: "Download an asset (supports Range)",
            body: None,
            response: None,
            query: &[],
        },
        Operation {
            method: "get",
            path: "/api/v1/openapi.json",
            summary: "This document",
            body: None,
            response: None,
            query: &[],
        },
    ]
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
        if op.path.contains("{id}") {
            parameters.push(
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}),
            );
        }
        let mut operation = json!({
            "summary": op.summary,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": op.response.unwrap_or(json!({"type": "object"}))}}},
                "400": {"description": "Invalid request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "401": {"description": "Missing or invalid API key"},
                "404": {"description": "Not found, or owned by another client"},
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

/// Serves the document.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/openapi.json",
        get(|State(_): State<AppState>| async { Json(document()) }),
    )
}
