//! Operator routes under `/admin`, guarded by `EASEL_ADMIN_KEY` (any of the three auth
//! headers). Without an admin key configured they answer 404, as if absent.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use crate::api::{AppState, auth::presented_key, jobs::Error};

/// Routes of the operator interface.
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/plugins", get(plugins)).route("/admin/plugins/reload", post(reload))
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Error> {
    let Some(expected) = state.config.admin_key.as_deref() else {
        return Err(Error::not_found("Route"));
    };
    match presented_key(headers) {
        Some(key) if constant_time_eq(key.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(Error(StatusCode::UNAUTHORIZED, "Invalid admin key.".into())),
        None => Err(Error(StatusCode::UNAUTHORIZED, "Missing admin key.".into())),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

async fn plugins(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Error> {
    authorize(&state, &headers)?;
    let listed = state.plugins.as_ref().map(|host| host.status()).unwrap_or_default();
    Ok(Json(json!({ "pluginsDir": state.config.plugins_dir, "plugins": listed })).into_response())
}

async fn reload(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Error> {
    authorize(&state, &headers)?;
    let Some(host) = &state.plugins else {
        return Err(Error::bad_request("No plugins folder is configured: set EASEL_PLUGINS_DIR."));
    };
    let listed = host.rescan().await;
    Ok(Json(json!({ "pluginsDir": state.config.plugins_dir, "plugins": listed })).into_response())
}
