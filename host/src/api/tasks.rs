//! `GET /api/v1/tasks/{id}`, the path seeds 000 (Pixel) and 003 (SD service) share: a task
//! answers in the shape of the API that created it. A task of another dialect (or another
//! client) is not found here; the not-found body carries both dialects' fields, since the
//! caller's dialect cannot be known.

use aide::axum::{ApiRouter, routing::get_with};
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    api::{
        AppState,
        auth::{AuthError, KEYS_UNAVAILABLE},
        dialect::{Caller, Dialect, PathOf},
        files::public_base,
        openapi::{Api, Describe},
        pixel, sd,
        shape::Shape,
    },
    engine::task::request_id_for_answer,
};

/// The shared route.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/api/v1/tasks/{id}",
        get_with(show, |op| {
            op.api(Api::Pixel)
                .summary("A Pixel or SD-service task, in the shape of the API that created it")
        }),
    )
}

fn answer(status: StatusCode, message: &str, detail: &str) -> Response {
    let body = json!({
        "code": status.as_u16().to_string(),
        "message": message,
        "request_id": request_id_for_answer(),
        "detail": detail,
    });
    (status, Json(body)).into_response()
}

/// The shared route's refusals carry both dialects' fields: the caller's is not known.
pub struct Shared;

impl Dialect for Shared {
    type Error = Response;

    fn unauthenticated(error: AuthError) -> Response {
        match &error {
            AuthError::Missing => answer(
                StatusCode::UNAUTHORIZED,
                "Missing API key",
                "Missing API Key",
            ),
            AuthError::Invalid => answer(
                StatusCode::UNAUTHORIZED,
                "Invalid API key",
                "Invalid API Key",
            ),
            AuthError::Unavailable => answer(error.status(), KEYS_UNAVAILABLE, KEYS_UNAVAILABLE),
        }
    }

    fn rejected(status: StatusCode, message: String) -> Response {
        answer(status, &message, &message)
    }
}

async fn show(
    State(state): State<AppState>,
    Caller { client_id, .. }: Caller<Shared>,
    PathOf { params: id, .. }: PathOf<String, Shared>,
    headers: HeaderMap,
) -> Response {
    // Links for the host and name this request came through, not the submitting one's.
    let base = public_base(&state, &headers);
    let task = match state.engine.get(&client_id, &id).await {
        Ok(Some(task)) => task,
        Ok(None) => return not_found(),
        Err(error) => return pixel::Error::from(error).into_response(),
    };
    match Shape::of(&task) {
        Some(Shape::Sd) => Json(sd::task_view(&state.links, &task, &base)).into_response(),
        Some(Shape::Pixel) => pixel::task_view(&state, &task, &base)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        _ => not_found(),
    }
}

fn not_found() -> Response {
    answer(StatusCode::NOT_FOUND, "Task not found", "任务不存在")
}
