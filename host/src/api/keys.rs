//! Operator routes for a client's API keys, under `/admin/clients/{id}/keys` and guarded like
//! every admin route: list (never a secret), create, rotate and revoke. A secret is shown
//! once, in the answer that made it.

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with},
};
use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    api::{
        AppState,
        admin::{AdminBody, Operator},
        body,
        dialect::PathOf,
        error::Error,
        jobs::Jobs,
        openapi::{Api, Describe},
    },
    engine::task::{now_ms, parse_time, rfc3339},
    store::keys::{Key, KeyError, NewKey},
};

/// Routes of the key interface.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/admin/clients/{id}/keys",
            get_with(list, |op| {
                op.api(Api::Admin).summary(
                    "A client's keys: id, label, source, times, active (never the secret)",
                )
            })
            .post_with(create, |op| {
                op.api(Api::Admin)
                    .summary("Create a key (the secret is shown once)")
                    .json_body::<CreateKey>()
            }),
        )
        .api_route(
            "/admin/clients/{id}/keys/{key_id}/rotate",
            post_with(rotate, |op| {
                op.api(Api::Admin)
                    .summary("Replace a key with a new secret of the same label; the old one is revoked, or expires after grace_secs")
                    .json_body::<RotateKey>()
            }),
        )
        .api_route(
            "/admin/clients/{id}/keys/{key_id}/revoke",
            post_with(revoke, |op| {
                op.api(Api::Admin)
                    .summary("Revoke a key for good")
                    .json_body::<RevokeKey>()
            }),
        )
}

/// The longest expiry or grace time accepted, in seconds (about a hundred years).
const MAX_SECS: u64 = 100 * 366 * 24 * 3600;

/// The longest label or revocation reason accepted, in characters.
const MAX_TEXT_CHARS: usize = 200;

/// The key an admin route stores: `given`, or a new random one. A given key must be one that
/// every accepted header can carry unchanged (headers are trimmed).
pub fn secret(given: Option<String>) -> Result<String, Error> {
    let key = given.unwrap_or_else(|| format!("sk-{}", uuid::Uuid::new_v4().simple()));
    if !(16..=256).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::bad_request(
            "key must be 16 to 256 printable ASCII characters, without spaces.",
        ));
    }
    Ok(key)
}

impl From<KeyError> for Error {
    fn from(refused: KeyError) -> Self {
        let status = match refused {
            KeyError::UnknownClient(_) | KeyError::UnknownKey(_) => StatusCode::NOT_FOUND,
            KeyError::InUse | KeyError::Inactive(_) | KeyError::Rotated(..) => StatusCode::CONFLICT,
        };
        Self(status, refused.to_string())
    }
}

/// A key as the admin routes show it; `secret` only in the answer that made it.
fn view(key: &Key, secret: Option<&str>) -> Value {
    let mut shown = json!({
        "id": key.id,
        "client_id": key.client_id,
        "label": key.label,
        "source": key.source,
        "created_at": rfc3339(key.created_at),
        "expires_at": key.expires_at.map(rfc3339),
        "revoked_at": key.revoked_at.map(rfc3339),
        "revoked_reason": key.revoked_reason,
        "replaced_by": key.replaced_by,
        "active": key.active_at(now_ms()),
    });
    if let Some(secret) = secret {
        shown["key"] = json!(secret);
    }
    shown
}

/// An optional text field of at most [`MAX_TEXT_CHARS`]; empty counts as left out.
fn short_text(field: &str, text: Option<String>) -> Result<Option<String>, Error> {
    match text {
        Some(text) if text.chars().count() > MAX_TEXT_CHARS => Err(Error::bad_request(format!(
            "{field} must be at most {MAX_TEXT_CHARS} characters."
        ))),
        text => Ok(text.filter(|text| !text.is_empty())),
    }
}

/// An optional JSON body: empty means every field left out.
fn optional_body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    body::parse_json(bytes).map_err(Error::bad_request)
}

/// Milliseconds `secs` from now, within [`MAX_SECS`].
fn from_now(field: &str, secs: u64) -> Result<i64, Error> {
    if secs == 0 || secs > MAX_SECS {
        return Err(Error::bad_request(format!(
            "{field} must be 1 to {MAX_SECS} seconds."
        )));
    }
    Ok(now_ms() + secs as i64 * 1000)
}

/// When a new key expires: `expires_at` (RFC 3339, in the future) or `expires_in_secs`.
fn expiry(expires_at: Option<&str>, expires_in_secs: Option<u64>) -> Result<Option<i64>, Error> {
    match (expires_at, expires_in_secs) {
        (Some(_), Some(_)) => Err(Error::bad_request(
            "Give expires_at or expires_in_secs, not both.",
        )),
        (Some(text), None) => match parse_time(text) {
            Some(at) if at <= now_ms() => {
                Err(Error::bad_request("expires_at must be in the future."))
            }
            Some(at) if at - now_ms() > MAX_SECS as i64 * 1000 => Err(Error::bad_request(
                "expires_at must be within a hundred years.",
            )),
            Some(at) => Ok(Some(at)),
            None => Err(Error::bad_request(
                "expires_at must be an RFC 3339 time, e.g. 2030-01-01T00:00:00Z.",
            )),
        },
        (None, Some(secs)) => from_now("expires_in_secs", secs).map(Some),
        (None, None) => Ok(None),
    }
}

/// `POST /admin/clients/{id}/keys`: all fields optional.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    key: Option<String>,
    label: Option<String>,
    expires_at: Option<String>,
    expires_in_secs: Option<u64>,
}

/// `POST /admin/clients/{id}/keys/{key_id}/rotate`: all fields optional; the label is kept,
/// and so is the lifetime (from now) unless an expiry is given.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    key: Option<String>,
    expires_at: Option<String>,
    expires_in_secs: Option<u64>,
    /// How long the old key keeps working; revoked at once without it.
    grace_secs: Option<u64>,
}

/// `POST /admin/clients/{id}/keys/{key_id}/revoke`: an optional reason, kept with the key.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RevokeKey {
    reason: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _: Operator,
    PathOf {
        params: client_id, ..
    }: PathOf<String, Jobs>,
) -> Result<Response, Error> {
    let Some(keys) = state.auth.keys(&client_id).await? else {
        return Err(KeyError::UnknownClient(client_id).into());
    };
    let keys: Vec<Value> = keys.iter().map(|key| view(key, None)).collect();
    Ok(Json(json!({"client_id": client_id, "keys": keys})).into_response())
}

async fn create(
    State(state): State<AppState>,
    _: Operator,
    PathOf {
        params: client_id, ..
    }: PathOf<String, Jobs>,
    body: AdminBody,
) -> Result<Response, Error> {
    let body: CreateKey = optional_body(&body.bytes)?;
    let new = NewKey {
        secret: secret(body.key)?,
        label: short_text("label", body.label)?,
        expires_at: expiry(body.expires_at.as_deref(), body.expires_in_secs)?,
    };
    let key = state.auth.add_key(&client_id, new.clone()).await??;
    Ok((StatusCode::CREATED, Json(view(&key, Some(&new.secret)))).into_response())
}

async fn rotate(
    State(state): State<AppState>,
    _: Operator,
    PathOf {
        params: (client_id, key_id),
        ..
    }: PathOf<(String, String), Jobs>,
    body: AdminBody,
) -> Result<Response, Error> {
    let body: RotateKey = optional_body(&body.bytes)?;
    let new = NewKey {
        secret: secret(body.key)?,
        label: None,
        expires_at: expiry(body.expires_at.as_deref(), body.expires_in_secs)?,
    };
    let grace_until = body
        .grace_secs
        .map(|secs| from_now("grace_secs", secs))
        .transpose()?;
    let rotation = state
        .auth
        .rotate(&client_id, &key_id, new.clone(), grace_until)
        .await??;
    let mut shown = view(&rotation.new, Some(&new.secret));
    shown["previous"] = view(&rotation.old, None);
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

async fn revoke(
    State(state): State<AppState>,
    _: Operator,
    PathOf {
        params: (client_id, key_id),
        ..
    }: PathOf<(String, String), Jobs>,
    body: AdminBody,
) -> Result<Response, Error> {
    let body: RevokeKey = optional_body(&body.bytes)?;
    let reason = short_text("reason", body.reason)?;
    match state
        .auth
        .revoke(&client_id, &key_id, reason.as_deref())
        .await?
    {
        Some(key) => Ok(Json(view(&key, None)).into_response()),
        None => Err(KeyError::UnknownKey(key_id).into()),
    }
}
