//! `GET /api/v1/tasks/{id}`, the path seeds 000 (Pixel) and 003 (SD service) share: a task
//! answers in the shape of the API that created it. A task of another dialect (or another
//! client) is not found here; the not-found body carries both dialects' fields, since the
//! caller's dialect cannot be known.

use aide::axum::{ApiRouter, routing::get_with};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    api::{
        AppState,
        auth::AuthError,
        openapi::{Api, Describe},
        pixel, sd,
    },
    engine::task::new_id,
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
        "request_id": new_id("req"),
        "detail": detail,
    });
    (status, Json(body)).into_response()
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let client_id = match state.auth.client(&headers).await {
        Ok(client) => client,
        Err(AuthError::Missing) => {
            return answer(
                StatusCode::UNAUTHORIZED,
                "Missing API key",
                "Missing API Key",
            );
        }
        Err(AuthError::Invalid) => {
            return answer(
                StatusCode::UNAUTHORIZED,
                "Invalid API key",
                "Invalid API Key",
            );
        }
    };
    let task = match state.engine.get(&client_id, &id).await {
        Ok(Some(task)) if [pixel::API, sd::API].contains(&task.api.as_str()) => task,
        Ok(_) => return answer(StatusCode::NOT_FOUND, "Task not found", "任务不存在"),
        Err(error) => return pixel::Error::from(error).into_response(),
    };
    if task.api == sd::API {
        return Json(sd::task_view(&state.links, &task)).into_response();
    }
    pixel::task_view(&state, &task)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
