//! A fake BytePlus ModelArk (the overseas Seedance route), after the document the plugin's
//! README names: ModelArk "Video Generation API" (create / query / cancel a content
//! generation task). ModelArk speaks Volcengine Ark's task protocol on its own host, so the
//! handlers are [`super::volcengine`]'s: `POST /api/v3/contents/generations/tasks`,
//! `GET` and `DELETE …/tasks/{id}`, `Authorization: Bearer <key>`, statuses `queued`,
//! `running`, `succeeded`, `failed`, and `{"error": {"code", "message"}}` errors.

use axum::{
    Router,
    routing::{get, post},
};

use super::{FakeState, volcengine};

/// The key the host is given (as `BYTEPLUS_API_KEY`, the plugin's second name for it).
pub const KEY: &str = volcengine::ARK_KEY;
/// The vendor host the plugin calls.
pub const HOST: &str = "ark.ap-southeast.bytepluses.com";

/// ModelArk's task routes.
pub fn routes() -> Router<FakeState> {
    Router::new()
        .route(
            "/api/v3/contents/generations/tasks",
            post(volcengine::create_task),
        )
        .route(
            "/api/v3/contents/generations/tasks/{id}",
            get(volcengine::query_task).delete(volcengine::cancel_task),
        )
}

pub use volcengine::error_detail;
