//! Operator routes under `/admin`, guarded by `EASEL_ADMIN_KEY` (any of the three auth
//! headers): plugins, the local model's adapters, clients and their credits. Without an admin key configured they answer
//! 404, as if absent.

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with},
};
use axum::{
    Json,
    extract::{FromRequestParts, State},
    http::{HeaderMap, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{
        AppState,
        auth::presented_key,
        dialect::{Body, PathOf},
        error::Error,
        jobs::Jobs,
        keys,
        openapi::{Api, Describe},
    },
    engine::credits::{self, GrantRefused},
    store::keys::{self as store_keys, NewKey},
};

/// An operator route's JSON body: read within the JSON limit and refused in the admin
/// routes' `{"error"}` shape (400 malformed, 413 too large), as every other route's.
pub type AdminBody = Body<Jobs>;

/// The plugin routes: also all an `easel worker` serves of the operator interface, for the
/// plugins it loaded itself.
pub fn plugin_routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/admin/plugins",
            get_with(plugins, |op| {
                op.api(Api::Admin)
                    .summary("Loaded plugins with version, hash, models and last error")
            }),
        )
        .api_route(
            "/admin/plugins/reload",
            post_with(reload, |op| {
                op.api(Api::Admin).summary("Rescan the plugins folder")
            }),
        )
}

/// Routes of the operator interface.
pub fn routes() -> ApiRouter<AppState> {
    plugin_routes()
        .api_route(
            "/admin/loras",
            get_with(loras, |op| {
                op.api(Api::Admin).summary(
                    "The local model's adapters: format, family, rank, tensors, layers, hash; \
                     refused files with their unmatched keys",
                )
            }),
        )
        .api_route(
            "/admin/loras/reload",
            post_with(reload_loras, |op| {
                op.api(Api::Admin).summary("Rescan the adapter folder")
            }),
        )
        .api_route(
            "/admin/clients",
            post_with(create_client, |op| {
                op.api(Api::Admin)
                    .summary("Create a client and its key")
                    .json_body::<NewClient>()
            }),
        )
        .api_route(
            "/admin/clients/{id}/credits",
            post_with(grant, |op| {
                op.api(Api::Admin)
                    .summary("Grant (or take back) credits")
                    .json_body::<Grant>()
            }),
        )
        .api_route(
            "/admin/clients/{id}/usage",
            get_with(usage, |op| {
                op.api(Api::Admin)
                    .summary("Balance, reservations and spending per model")
            }),
        )
}

/// The operator (`EASEL_ADMIN_KEY`, in any of the three auth headers), as an extractor: a
/// handler that takes it runs only for the admin key. Without a key configured the route
/// answers 404, saying how to turn the operator's routes on.
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        authorize(state, &parts.headers).map(|()| Operator)
    }
}

// The admin key is described once in the document, like the clients' keys.
impl aide::OperationInput for Operator {}

/// What an operator's route answers on a host without an admin key.
const ADMIN_OFF: &str = "The operator's routes are off on this host: set EASEL_ADMIN_KEY.";

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Error> {
    let Some(expected) = state.config.admin_key.as_deref() else {
        return Err(Error(StatusCode::NOT_FOUND, ADMIN_OFF.into()));
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

async fn plugins(State(state): State<AppState>, _: Operator) -> Result<Response, Error> {
    let listed = state
        .plugins
        .as_ref()
        .map(|host| host.status())
        .unwrap_or_default();
    Ok(plugin_listing(&state, listed))
}

async fn reload(State(state): State<AppState>, _: Operator) -> Result<Response, Error> {
    let Some(host) = &state.plugins else {
        return Err(Error::bad_request(
            "No plugins folder is configured: set EASEL_PLUGINS_DIR.",
        ));
    };
    let listed = host.rescan().await;
    Ok(plugin_listing(&state, listed))
}

/// The plugins folder's files as the runtime loaded them, each saying whether this process
/// serves its provider: `easel worker --providers` leaves the others out, loaded but running
/// none of their tasks (`left_out` says so where `last_error` would otherwise read clean).
fn plugin_listing(state: &AppState, listed: Vec<easel_wasm::PluginStatus>) -> Response {
    let registry = state.engine.registry();
    let listed: Vec<Value> = listed
        .into_iter()
        .map(|plugin| {
            let left_out = plugin
                .provider_id
                .as_deref()
                .filter(|id| !registry.admits(id))
                .map(|id| format!("not served here: --providers leaves {id} out"));
            let served = plugin.provider_id.is_some() && left_out.is_none();
            let mut entry = serde_json::to_value(plugin).unwrap_or_default();
            entry["served"] = served.into();
            if let Some(note) = left_out {
                entry["left_out"] = note.into();
            }
            entry
        })
        .collect();
    Json(json!({ "pluginsDir": state.config.plugins_dir, "plugins": listed })).into_response()
}

fn adapter_listing(state: &AppState) -> Response {
    let listed = state
        .adapters
        .as_ref()
        .map(|library| library.list())
        .unwrap_or_default();
    Json(json!({ "loraDir": state.config.lora_dir, "loras": listed })).into_response()
}

async fn loras(State(state): State<AppState>, _: Operator) -> Result<Response, Error> {
    Ok(adapter_listing(&state))
}

async fn reload_loras(State(state): State<AppState>, _: Operator) -> Result<Response, Error> {
    if let Some(library) = state.adapters.clone() {
        tokio::task::spawn_blocking(move || library.rescan())
            .await
            .map_err(|e| Error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    Ok(adapter_listing(&state))
}

/// `POST /admin/clients`: a new client and its key (shown once; stored hashed).
#[derive(Debug, Deserialize, JsonSchema)]
struct NewClient {
    id: String,
    key: Option<String>,
}

async fn create_client(
    State(state): State<AppState>,
    _: Operator,
    body: AdminBody,
) -> Result<Response, Error> {
    let body: NewClient = body.json()?;
    if !store_keys::valid_client_id(&body.id) {
        return Err(Error::bad_request(format!(
            "id must be {}.",
            store_keys::CLIENT_ID_RULE
        )));
    }
    let key = keys::secret(body.key)?;
    if state.auth.exists(&body.id).await? {
        return Err(Error(
            StatusCode::CONFLICT,
            format!("Client {} already exists.", body.id),
        ));
    }
    let stored = state
        .auth
        .add(
            &body.id,
            NewKey {
                secret: key.clone(),
                label: None,
                expires_at: None,
            },
        )
        .await??;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": body.id, "key": key, "key_id": stored.id})),
    )
        .into_response())
}

/// `POST /admin/clients/{id}/credits` with `{"amount": 100}` (negative takes back). Nothing
/// else is kept, so any other field is refused rather than dropped unsaid.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Grant {
    amount: f64,
}

async fn grant(
    State(state): State<AppState>,
    _: Operator,
    PathOf {
        params: client_id, ..
    }: PathOf<String, Jobs>,
    body: AdminBody,
) -> Result<Response, Error> {
    let body: Grant = body.json()?;
    let amount = credits::to_micros(body.amount);
    if !body.amount.is_finite() || amount == 0 {
        return Err(Error::bad_request(
            "amount must be a non-zero number of credits (at least 0.000001).",
        ));
    }
    let balance = match state.engine.grant_credits(&client_id, amount).await? {
        Ok(balance) => balance,
        Err(refused @ GrantRefused::UnknownClient(_)) => {
            return Err(Error(StatusCode::NOT_FOUND, refused.to_string()));
        }
        Err(refused @ (GrantRefused::BelowZero | GrantRefused::AboveMaximum)) => {
            return Err(Error::bad_request(refused.to_string()));
        }
    };
    Ok(
        Json(json!({"client_id": client_id, "balance": credits::to_credits(balance)}))
            .into_response(),
    )
}

/// `GET /admin/clients/{id}/usage`: balance, credits held by running tasks, spend per model.
async fn usage(
    State(state): State<AppState>,
    _: Operator,
    PathOf {
        params: client_id, ..
    }: PathOf<String, Jobs>,
) -> Result<Response, Error> {
    crate::api::limits::known_client(&state, &client_id).await?;
    Ok(Json(state.engine.account(&client_id).await?).into_response())
}
