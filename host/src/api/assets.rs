//! Seed 001's assets: multipart upload, registering an external URL, list, get, download.
//!
//! Invariants: uploads are bounded by `limits.max_upload_bytes` (413 beyond); a registered
//! URL passed the no-SSRF check; downloads of stored files honour `Range`; another client's
//! asset is a 404.

use aide::axum::{ApiRouter, routing::get_with};
use axum::{
    Json,
    body::Body,
    extract::{FromRequest, Multipart, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt;

use crate::{
    api::{
        AppState, body,
        jobs::{Error, client, page},
        openapi::{Api, Describe},
    },
    assets::{AssetView, NewFile, content_type_from_name},
};

/// Routes of seed 001's asset API.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/api/v1/assets",
            get_with(list, |op| op.api(Api::Jobs).summary("List assets")).post_with(create, |op| {
                op.api(Api::Jobs)
                    .summary("Upload files (multipart field `files`) or register a URL (JSON)")
                    .json_body::<RegisterUrl>()
            }),
        )
        .api_route(
            "/api/v1/assets/{id}",
            get_with(show, |op| op.api(Api::Jobs).summary("Get an asset")),
        )
        .api_route(
            "/api/v1/assets/{id}/download",
            get_with(download, |op| {
                op.api(Api::Jobs)
                    .summary("Download an asset (supports Range)")
            }),
        )
}

/// `POST /api/v1/assets` with a JSON body: register an external URL.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RegisterUrl {
    /// Public http(s) URL.
    pub url: String,
    /// File name; taken from the URL when absent.
    pub name: Option<String>,
    /// `image`, `video`, `audio` or `file`.
    pub kind: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, Error> {
    let client_id = client(&state, &headers).await?;
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if is_multipart {
        upload(&state, &client_id, request).await
    } else {
        register(&state, &client_id, request).await
    }
}

async fn upload(state: &AppState, client_id: &str, request: Request) -> Result<Response, Error> {
    let limit = state.config.limits.max_upload_bytes;
    let too_large = || {
        Error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Upload is larger than {limit} bytes."),
        )
    };
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > limit) {
        // Read the body away before answering, so the client sees the 413 instead of a reset.
        drain(request.into_body(), limit.saturating_add(DRAIN_SLACK)).await;
        return Err(too_large());
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| Error::bad_request(e.body_text()))?;
    let mut files = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => {
                return Err(Error::bad_request(format!(
                    "Malformed multipart body: {}",
                    e.body_text()
                )));
            }
        };
        let Some(name) = field.file_name().map(String::from) else {
            continue;
        };
        let declared = field.content_type().map(String::from);
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => {
                return Err(Error::bad_request(format!(
                    "Malformed multipart body: {}",
                    e.body_text()
                )));
            }
        };
        files.push((name, declared, bytes));
    }
    if files.is_empty() {
        return Err(Error::bad_request(
            "No files in the upload: send them as multipart field \"files\".",
        ));
    }
    let mut stored: Vec<AssetView> = Vec::with_capacity(files.len());
    for (name, declared, bytes) in files {
        let content_type = declared
            .filter(|c| c != "application/octet-stream")
            .or_else(|| content_type_from_name(&name))
            .unwrap_or_else(|| "application/octet-stream".into());
        let name = sanitize(&name);
        let asset = state
            .engine
            .assets()
            .put(
                NewFile {
                    client_id,
                    name: &name,
                    content_type: &content_type,
                    task_id: None,
                },
                &bytes,
            )
            .await?;
        stored.push(asset.view());
    }
    Ok((StatusCode::CREATED, Json(json!({ "assets": stored }))).into_response())
}

async fn register(state: &AppState, client_id: &str, request: Request) -> Result<Response, Error> {
    let bytes = axum::body::to_bytes(request.into_body(), state.config.limits.max_body_bytes)
        .await
        .map_err(|_| {
            Error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body is too large.".into(),
            )
        })?;
    let registration: RegisterUrl = body::parse_json(&bytes).map_err(Error::bad_request)?;
    let url = state
        .engine
        .guard()
        .check_url(&registration.url)
        .map_err(Error::bad_request)?;
    let kind = registration.kind.unwrap_or_else(|| "image".into());
    if !["image", "video", "audio", "file"].contains(&kind.as_str()) {
        return Err(Error::bad_request(
            "kind must be image, video, audio or file.",
        ));
    }
    let name = registration
        .name
        .filter(|n| !n.is_empty())
        .or_else(|| {
            url.path_segments()
                .and_then(|mut s| s.next_back())
                .filter(|s| !s.is_empty())
                .map(String::from)
        })
        .unwrap_or_else(|| "asset".into());
    let asset = state
        .engine
        .assets()
        .register_url(client_id, url.as_str(), &sanitize(&name), &kind)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "asset": asset.view() }))).into_response())
}

/// How far past the limit an oversized upload is read away before the 413.
const DRAIN_SLACK: usize = 64 * 1024 * 1024;

async fn drain(body: Body, at_most: usize) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > at_most {
            break;
        }
    }
}

/// Keeps a client-given file name printable and header-safe.
fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    if clean.is_empty() {
        "file".into()
    } else {
        clean
    }
}

/// Query of `GET /api/v1/assets`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListQuery {
    /// 1 to 200, default 20.
    pub limit: Option<String>,
    /// ISO time: only assets created before it.
    pub before: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    let client_id = client(&state, &headers).await?;
    let Query(query) = query.map_err(|e| Error::bad_request(e.body_text()))?;
    let (limit, before) = page(query.limit.as_deref(), query.before.as_deref())?;
    let assets = state
        .engine
        .assets()
        .list(&client_id, limit, before)
        .await?;
    let views: Vec<AssetView> = assets.iter().map(|a| a.view()).collect();
    Ok(Json(json!({ "assets": views })).into_response())
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let client_id = client(&state, &headers).await?;
    let asset = state
        .engine
        .assets()
        .get(&client_id, &id)
        .await?
        .ok_or_else(|| Error::not_found("Asset"))?;
    Ok(Json(json!({ "asset": asset.view() })).into_response())
}

async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, Error> {
    let client_id = client(&state, &headers).await?;
    let asset = state
        .engine
        .assets()
        .get(&client_id, &id)
        .await?
        .ok_or_else(|| Error::not_found("Asset"))?;
    serve_asset(&state, &asset, request, true).await
}

/// Sends a stored asset's bytes (honouring `Range`), or redirects to a registered URL;
/// `attachment` asks browsers to save rather than show it.
pub async fn serve_asset(
    state: &AppState,
    asset: &crate::assets::Asset,
    request: Request,
    attachment: bool,
) -> Result<Response, Error> {
    if let Some(url) = &asset.url {
        return Ok(Redirect::temporary(url).into_response());
    }
    let mime: tower_http::services::fs::ServeFile = tower_http::services::ServeFile::new_with_mime(
        state.engine.assets().path_of(&asset.id),
        &asset.content_type.parse().unwrap_or(mime_octet()),
    );
    let mut response = mime
        .oneshot(request)
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .map(Body::new);
    if response.status() == StatusCode::NOT_FOUND {
        return Err(Error::not_found("Asset file"));
    }
    let disposition = if attachment { "attachment" } else { "inline" };
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{disposition}; filename=\"{}\"",
        asset.name.replace(|c: char| !c.is_ascii(), "_")
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

fn mime_octet() -> mime::Mime {
    mime::APPLICATION_OCTET_STREAM
}
