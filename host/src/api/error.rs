//! The `{"error": "…"}` shape that seeds 001 (jobs, assets) and 002 (llmage) share, and that
//! the operator routes use too: a status and one sentence. It is also the shape of the errors
//! no API owns (an unknown path); a method a documented route does not take is answered in
//! that route's API's own shape.

use axum::{
    Json,
    extract::Request,
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    api::{
        auth::{AuthError, KEYS_UNAVAILABLE},
        dialect::Dialect,
        openai::OpenAi,
        pixel::Pixel,
        sd::Sd,
        submit::refusal_parts,
        tasks,
    },
    engine::front_door::Refusal,
};

/// Seed 001's error: `{"error": "..."}` with its status code.
#[derive(Debug)]
pub struct Error(pub StatusCode, pub String);

impl Error {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self(StatusCode::NOT_FOUND, format!("{what} not found."))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// Gives an error that axum answered with an empty body (an unknown path, a method the route
/// does not take) a body in the shape of the API whose path it is ([`bare_error_dialect`]);
/// every other response passes unchanged.
pub async fn shape_bare_errors(request: Request, next: Next) -> Response {
    let rejected = bare_error_dialect(request.uri().path());
    shape_bare_error(next.run(request).await, rejected)
}

/// [`shape_bare_errors`] for a router that serves no API (a worker's metrics address): every
/// bare error in the `{"error"}` shape, whatever API its path would belong to on an API host.
pub async fn shape_bare_errors_plainly(request: Request, next: Next) -> Response {
    shape_bare_error(next.run(request).await, |status, message| {
        Error(status, message).into_response()
    })
}

/// `response`, or when it is an error without a body, that error as `rejected` words it.
fn shape_bare_error(response: Response, rejected: fn(StatusCode, String) -> Response) -> Response {
    let status = response.status();
    if status.as_u16() < 400 || response.headers().contains_key(header::CONTENT_TYPE) {
        return response;
    }
    let sentence = match status {
        StatusCode::NOT_FOUND => "Route not found.".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed on this route.".to_string(),
        other => other.canonical_reason().unwrap_or("Error").to_string() + ".",
    };
    let mut shaped = rejected(status, sentence);
    // `Allow` (405) and the like stay.
    for (name, value) in response.headers() {
        if name != header::CONTENT_LENGTH {
            shaped.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    shaped
}

/// How the API that documents `path` says no: seed 000's envelope on Pixel's paths, seed
/// 003's `{"detail"}` on the SD service's, OpenAI's error object under `/v1/`, the shared
/// task route's both-dialect answer, and `{"error"}` everywhere else.
fn bare_error_dialect(path: &str) -> fn(StatusCode, String) -> Response {
    fn shape<D: Dialect>(status: StatusCode, message: String) -> Response {
        D::rejected(status, message).into_response()
    }
    match path {
        "/api/v1/models" => shape::<Pixel>,
        _ if path.starts_with("/api/v1/generations/") => shape::<Pixel>,
        "/api/v1/generate" | "/health" | "/api/health" => shape::<Sd>,
        _ if path.starts_with("/api/v1/tasks/") => shape::<tasks::Shared>,
        _ if path.starts_with("/v1/") => shape::<OpenAi>,
        _ => |status, message| Error(status, message).into_response(),
    }
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(%error, "internal error");
        Self(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error.".into(),
        )
    }
}

impl From<AuthError> for Error {
    fn from(error: AuthError) -> Self {
        let message = match error {
            AuthError::Missing => "Missing API key.",
            AuthError::Invalid => "Invalid API key.",
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
