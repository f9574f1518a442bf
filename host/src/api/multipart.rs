//! `multipart/form-data` bodies, read one way for every route that takes files (001's asset
//! uploads, 002's generation forms): within the route's upload limit, with an oversized body
//! answered by a 413 the client actually sees (see [`body`](crate::api::body)).
//!
//! Invariant: file parts are never held whole in memory: each streams, as it arrives, into a
//! temporary file of the asset store ([`Spooled`]), which is removed unless the request is
//! accepted and the file adopted as an asset. Text fields are kept in memory, at most the JSON
//! limit in all. A form holds at most `[limits] max_upload_parts` parts, refused with a 413
//! before the next one is read (each file keeps a file open until the request ends, so parts
//! by the thousand would take the process's file descriptors). What the parts mean is the
//! dialect's.

use axum::{
    body::Bytes,
    extract::{FromRequest, Multipart, Request},
    http::{HeaderMap, StatusCode, header},
};

use crate::{
    api::{AppState, body::Unreadable},
    assets::{Spooled, content_type_from_name},
};

/// One part of the form.
pub struct Part {
    /// The field name.
    pub name: String,
    /// The file name, for file parts.
    pub file_name: Option<String>,
    /// The part's declared MIME type.
    pub content_type: Option<String>,
    /// What it holds.
    pub content: Content,
}

/// A part's content.
pub enum Content {
    /// A form field's value.
    Text(Bytes),
    /// A file, waiting in the asset store under a temporary name.
    File(Spooled),
}

/// Whether the request says it carries a multipart form.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

/// Reads every part of a multipart body of at most `limits.max_upload_bytes`; a part for
/// which `is_file(field name, file name)` holds is streamed to a temporary file.
pub async fn read_parts(
    state: &AppState,
    request: Request,
    is_file: impl Fn(&str, Option<&str>) -> bool,
) -> Result<Vec<Part>, Unreadable> {
    let limits = &state.config.limits;
    let (upload_limit, text_limit) = (limits.max_upload_bytes, limits.max_body_bytes);
    let parts_limit = limits.max_upload_parts;
    let request = crate::api::body::within_declared(request, upload_limit).await?;
    let unreadable = |error: axum::extract::multipart::MultipartError| {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Unreadable::TooLarge(upload_limit)
        } else {
            Unreadable::Malformed(format!("Malformed multipart body: {}", error.body_text()))
        }
    };
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| {
        Unreadable::Malformed(format!("Malformed multipart body: {}", e.body_text()))
    })?;
    let (mut parts, mut text_bytes) = (Vec::new(), 0usize);
    while let Some(mut field) = multipart.next_field().await.map_err(unreadable)? {
        if parts.len() == parts_limit {
            return Err(Unreadable::TooManyParts(parts_limit));
        }
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(String::from);
        let content_type = field.content_type().map(String::from);
        let content = if is_file(&name, file_name.as_deref()) {
            let mut spooled = state
                .engine
                .assets()
                .spool()
                .await
                .map_err(|error| storage_trouble(&error))?;
            while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                spooled
                    .write(&chunk)
                    .await
                    .map_err(|error| storage_trouble(&error))?;
            }
            Content::File(spooled)
        } else {
            // Counted as it arrives: a field past the limit is refused before it is held.
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                text_bytes += chunk.len();
                if text_bytes > text_limit {
                    return Err(Unreadable::Malformed(format!(
                        "Form fields other than files may hold at most {text_limit} bytes in all."
                    )));
                }
                text.extend_from_slice(&chunk);
            }
            Content::Text(text.into())
        };
        parts.push(Part {
            name,
            file_name,
            content_type,
            content,
        });
    }
    Ok(parts)
}

/// The asset store could not take an upload; the detail is logged, not shown.
fn storage_trouble(error: &anyhow::Error) -> Unreadable {
    tracing::error!(%error, "spooling an upload failed");
    Unreadable::Storage
}

impl Part {
    /// A file part's MIME type: the one the part declares, unless that is only
    /// `application/octet-stream` (what clients send for bytes they know nothing about), else
    /// the one its file name says.
    pub fn file_type(&self) -> Option<String> {
        let declared = self.content_type.clone();
        declared
            .filter(|c| c != "application/octet-stream")
            .or_else(|| content_type_from_name(self.file_name.as_deref()?))
    }

    /// The part as text, for form fields.
    pub fn text(self) -> Result<String, Unreadable> {
        let not_text = || Unreadable::Malformed(format!("Field {} is not UTF-8 text", self.name));
        match &self.content {
            Content::Text(bytes) => String::from_utf8(bytes.to_vec()).map_err(|_| not_text()),
            Content::File(_) => Err(not_text()),
        }
    }
}
