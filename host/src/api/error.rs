//! The `{"error": "…"}` shape that seeds 001 (jobs, assets) and 002 (llmage) share, and that
//! the operator routes use too: a status and one sentence.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    api::{auth::AuthError, submit::refusal_parts},
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
        };
        Self(StatusCode::UNAUTHORIZED, message.into())
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
