//! Seed 001's assets: multipart upload, registering an external URL, list, get, download.
//!
//! Invariants: uploads are bounded by `limits.max_upload_bytes` (413 beyond); a registered
//! URL passed the no-SSRF check; downloads of stored files honour `Range`; another client's
//! asset is a 404.

use aide::axum::{ApiRouter, routing::get_with};
use axum::{
    Json,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower::ServiceExt;

use crate::{
    api::{
        AppState, body,
        dialect::{PathOf, QueryOf},
        error::Error,
        jobs::{Client, Jobs},
        multipart::{self, Content},
        openapi::{Api, Describe},
        paging::{next_before, page},
    },
    assets::{Asset, NewFile, content_type_from_name, kind_of},
    engine::task::rfc3339,
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
                    .form_body::<UploadForm>()
                    .ok_as(201, "Created: the stored assets", false)
                    .error(413, "A file or the body is over the size limit")
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
                    .file()
                    .ok_as(206, "The range asked for (Range)", true)
                    .bodiless(307, "To the registered URL the asset stands for")
            }),
        )
}

/// `POST /api/v1/assets` as a multipart upload; it describes the form in the API document,
/// the handler streams the parts to storage as they come.
#[derive(Debug, JsonSchema)]
pub struct UploadForm {
    /// One or more files, each a part named `files`.
    #[schemars(extend("format" = "binary"))]
    pub files: Vec<String>,
}

/// An asset as the APIs show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetView {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes, for stored files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Hex SHA-256, for stored files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// External URL, for registered assets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    /// The task that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Where to download it.
    pub download_url: String,
    /// RFC 3339.
    pub created_at: String,
}

impl AssetView {
    /// How 001 shows `asset`.
    pub fn of(asset: &Asset) -> Self {
        AssetView {
            id: asset.id.clone(),
            kind: asset.kind.clone(),
            name: asset.name.clone(),
            content_type: asset.content_type.clone(),
            size: asset.size,
            sha256: asset.sha256.clone(),
            source_url: asset.url.clone(),
            job_id: asset.task_id.clone(),
            download_url: format!("/api/v1/assets/{}/download", asset.id),
            created_at: rfc3339(asset.created_at),
        }
    }
}

/// `POST /api/v1/assets` with a JSON body: register an external URL.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RegisterUrl {
    /// Public http(s) URL.
    pub url: String,
    /// File name; taken from the URL when absent.
    pub name: Option<String>,
    /// `image`, `video`, `audio` or `file`; by default what the file name's extension says
    /// (`.mp4`: `video`), else `image`.
    pub kind: Option<String>,
}

/// The kinds an asset may be registered as.
const KINDS: [&str; 4] = ["image", "video", "audio", "file"];

async fn create(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, Error> {
    if multipart::is_multipart(&headers) {
        upload(&state, &client_id, request).await
    } else {
        register(&state, &client_id, request).await
    }
}

/// A 503 for storage that failed (the bucket or the database away, a full disk): the client
/// may send the same request again shortly; the cause goes to the log.
fn store_unavailable(what: &str, error: anyhow::Error) -> Error {
    tracing::warn!(%error, "{what} failed");
    Error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The asset store is unavailable; try again shortly.".into(),
    )
}

async fn upload(state: &AppState, client_id: &str, request: Request) -> Result<Response, Error> {
    let parts = multipart::read_parts(state, request, |_, file_name| file_name.is_some()).await?;
    let files: Vec<_> = parts
        .into_iter()
        .filter_map(|part| {
            let content_type = part.file_type();
            match part.content {
                Content::File(spooled) => Some((part.file_name?, content_type, spooled)),
                Content::Text(_) => None,
            }
        })
        .collect();
    if files.is_empty() {
        return Err(Error::bad_request(
            "No files in the upload: send them as multipart field \"files\".",
        ));
    }
    if let Some((name, ..)) = files.iter().find(|(_, _, spooled)| spooled.is_empty()) {
        return Err(Error::bad_request(format!(
            "{} is empty: nothing was stored.",
            sanitize(name)
        )));
    }
    let mut stored = Vec::with_capacity(files.len());
    for (name, content_type, spooled) in files {
        let content_type = content_type.unwrap_or_else(|| "application/octet-stream".into());
        let name = sanitize(&name);
        let adopted = state
            .engine
            .assets()
            .adopt(
                NewFile {
                    client_id,
                    name: &name,
                    content_type: &content_type,
                    task_id: None,
                },
                spooled,
            )
            .await;
        match adopted {
            Ok(asset) => stored.push(asset),
            Err(error) => {
                // All or nothing: the files stored before this one go too, so a client that
                // sends the upload again gets no duplicates.
                state.engine.assets().remove_all(&stored).await;
                return Err(store_unavailable("storing an upload", error));
            }
        }
    }
    let stored: Vec<AssetView> = stored.iter().map(AssetView::of).collect();
    Ok((StatusCode::CREATED, Json(json!({ "assets": stored }))).into_response())
}

async fn register(state: &AppState, client_id: &str, request: Request) -> Result<Response, Error> {
    let bytes = body::read(request, state.config.limits.max_body_bytes).await?;
    let registration: RegisterUrl = body::parse_json(&bytes).map_err(Error::bad_request)?;
    let url = state
        .engine
        .guard()
        .check_url(&registration.url)
        .map_err(Error::bad_request)?;
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
    let name = sanitize(&name);
    // What the name says the file is (`.mp4`: a video) decides the kind when none is given,
    // and a kind given against it is refused: a job would hand the file to its model as the
    // wrong kind of input.
    let named = content_type_from_name(&name);
    let kind = match (registration.kind.as_deref(), named.as_deref()) {
        (Some(kind), _) if !KINDS.contains(&kind) => {
            return Err(Error::bad_request(
                "kind must be image, video, audio or file.",
            ));
        }
        (Some(kind), Some(content_type))
            if kind != "file" && !["file", kind].contains(&kind_of(content_type)) =>
        {
            return Err(Error::bad_request(format!(
                "kind {kind} does not match the file {name} ({content_type})."
            )));
        }
        (Some(kind), _) => kind,
        (None, Some(content_type)) => kind_of(content_type),
        (None, None) => "image",
    };
    let asset = state
        .engine
        .assets()
        .register_url(client_id, url.as_str(), &name, kind)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "asset": AssetView::of(&asset) })),
    )
        .into_response())
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
    /// 1 to 200, default 20; a page ends with every row created in the same millisecond as
    /// its last, so it may hold a few more.
    pub limit: Option<String>,
    /// ISO time: only assets created before it.
    pub before: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    QueryOf { query, .. }: QueryOf<ListQuery, Jobs>,
) -> Result<Response, Error> {
    let (limit, before) = page(query.limit.as_deref(), query.before.as_deref())?;
    let (assets, more) = state
        .engine
        .assets()
        .list(&client_id, limit, before)
        .await?;
    let views: Vec<AssetView> = assets.iter().map(AssetView::of).collect();
    let next_before = next_before(more, assets.last().map(|a| a.created_at));
    Ok(Json(json!({ "assets": views, "nextBefore": next_before })).into_response())
}

async fn show(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    PathOf { params: id, .. }: PathOf<String, Jobs>,
) -> Result<Response, Error> {
    let asset = state
        .engine
        .assets()
        .get(&client_id, &id)
        .await?
        .ok_or_else(|| Error::not_found("Asset"))?;
    Ok(Json(json!({ "asset": AssetView::of(&asset) })).into_response())
}

async fn download(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    PathOf { params: id, .. }: PathOf<String, Jobs>,
    request: Request,
) -> Result<Response, Error> {
    let asset = state
        .engine
        .assets()
        .get(&client_id, &id)
        .await?
        .ok_or_else(|| Error::not_found("Asset"))?;
    serve_asset(&state, &asset, request, true).await
}

/// Sends a stored asset's bytes (honouring a `Range` of bytes; one in another unit is ignored,
/// as RFC 9110 asks), or redirects to a registered URL;
/// `attachment` asks browsers to save rather than show it. Every file goes out with
/// `X-Content-Type-Options: nosniff`, and one a browser would render as a page (HTML, SVG,
/// XML, scripts: anything not on `renders_safely`'s list) only as an
/// `application/octet-stream` attachment, so an upload cannot run script on this origin.
pub async fn serve_asset(
    state: &AppState,
    asset: &Asset,
    mut request: Request,
    attachment: bool,
) -> Result<Response, Error> {
    if request
        .headers()
        .get(header::RANGE)
        .is_some_and(|range| !in_bytes(range))
    {
        request.headers_mut().remove(header::RANGE);
    }
    if let Some(url) = &asset.url {
        return Ok(Redirect::temporary(url).into_response());
    }
    let declared: Option<mime::Mime> = asset.content_type.parse().ok();
    let (served_as, attachment) = match declared {
        Some(mime) if renders_safely(&mime) => (mime, attachment),
        _ => (mime_octet(), true),
    };
    let mut response = match state.engine.assets().local_path(&asset.id) {
        Some(path) => {
            let file = tower_http::services::ServeFile::new_with_mime(path, &served_as);
            let response = file
                .oneshot(request)
                .await
                .map_err(|e| anyhow::anyhow!(e))?
                .map(Body::new);
            if response.status() == StatusCode::NOT_FOUND {
                return Err(Error::not_found("Asset file"));
            }
            if response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
                return Ok(unsatisfiable(asset.size.unwrap_or_default().max(0) as u64));
            }
            response
        }
        None => {
            let range = request.headers().get(header::RANGE).cloned();
            let head_only = request.method() == axum::http::Method::HEAD;
            serve_object(state, asset, range, head_only, &served_as).await?
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let disposition = if attachment { "attachment" } else { "inline" };
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{disposition}; filename=\"{}\"",
        asset.name.replace(|c: char| !c.is_ascii(), "_")
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The 416 of a `Range` a file of `size` bytes cannot satisfy (or of several ranges), in the
/// API's error shape, with the `Content-Range` that tells the client the file's length.
fn unsatisfiable(size: u64) -> Response {
    let mut response = Error(
        StatusCode::RANGE_NOT_SATISFIABLE,
        format!("Range not satisfiable: ask for one range within the file's {size} bytes."),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    response
}

/// Sends an asset kept in the bucket as [`ServeFile`](tower_http::services::ServeFile) sends
/// a file: one `Range` is a 206 of those bytes, a range it cannot satisfy (or several) a 416,
/// `HEAD` the headers alone; the bytes stream from the store as the client reads them.
async fn serve_object(
    state: &AppState,
    asset: &Asset,
    range: Option<HeaderValue>,
    head_only: bool,
    served_as: &mime::Mime,
) -> Result<Response, Error> {
    let size = asset.size.unwrap_or_default().max(0) as u64;
    let ranges = range
        .as_ref()
        .and_then(|value| value.to_str().ok())
        .map(|value| http_range_header::parse_range_header(value).and_then(|r| r.validate(size)));
    let range = match ranges {
        None => None,
        Some(Ok(ranges)) if ranges.len() == 1 => Some(ranges[0].clone()),
        Some(_) => return Ok(unsatisfiable(size)),
    };
    let length = range.as_ref().map_or(size, |r| r.end() - r.start() + 1);
    let unavailable = |error| store_unavailable(&format!("reading asset {}", asset.id), error);
    let assets = state.engine.assets();
    // `HEAD` answers as `GET` would, a missing object included.
    let body = if head_only {
        if !assets.exists(asset).await.map_err(unavailable)? {
            return Err(Error::not_found("Asset file"));
        }
        Body::empty()
    } else {
        let bytes = range.as_ref().map(|r| *r.start()..r.end() + 1);
        match assets.open(asset, bytes).await.map_err(unavailable)? {
            Some(stream) => Body::from_stream(stream),
            None => return Err(Error::not_found("Asset file")),
        }
    };
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, served_as.as_ref())
        .header(header::CONTENT_LENGTH, length)
        .header(header::ACCEPT_RANGES, "bytes");
    response = match &range {
        Some(r) => response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", r.start(), r.end()),
        ),
        None => response.status(StatusCode::OK),
    };
    Ok(response.body(body).map_err(|e| anyhow::anyhow!(e))?)
}

/// Whether a `Range` header counts bytes, the one unit assets are served in.
fn in_bytes(range: &HeaderValue) -> bool {
    range
        .as_bytes()
        .get(..6)
        .is_some_and(|unit| unit.eq_ignore_ascii_case(b"bytes="))
}

/// Types a browser shows without running anything: raster images, audio, video, plain text
/// and JSON.
fn renders_safely(mime: &mime::Mime) -> bool {
    match (mime.type_(), mime.subtype()) {
        (mime::IMAGE, subtype) => subtype != mime::SVG && !subtype.as_str().contains("xml"),
        (mime::AUDIO | mime::VIDEO, _) => true,
        (mime::TEXT, mime::PLAIN) | (mime::APPLICATION, mime::JSON) => true,
        _ => false,
    }
}

fn mime_octet() -> mime::Mime {
    mime::APPLICATION_OCTET_STREAM
}
