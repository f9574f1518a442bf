//! `multipart/form-data` bodies, read one way for every route that takes files (001's asset
//! uploads, 002's generation forms): within the route's upload limit, with an oversized body
//! answered by a 413 the client actually sees (the body is read away first, so the client is
//! not reset mid-send). The parts are handed back whole; what they mean is the dialect's.

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, Multipart, Request},
    http::{HeaderMap, StatusCode, header},
};

use crate::api::error::Error;

/// How far past the limit an oversized upload is read away before the 413.
const DRAIN_SLACK: usize = 64 * 1024 * 1024;

/// One part of the form.
pub struct Part {
    /// The field name.
    pub name: String,
    /// The file name, for file parts.
    pub file_name: Option<String>,
    /// The part's declared MIME type.
    pub content_type: Option<String>,
    /// Its bytes.
    pub bytes: Bytes,
}

/// Why a form could not be read.
pub enum Unreadable {
    /// Over the upload limit (the limit, in bytes).
    TooLarge(usize),
    /// Not a well-formed multipart body; the sentence says why.
    Malformed(String),
}

impl From<Unreadable> for Error {
    fn from(reason: Unreadable) -> Self {
        match reason {
            Unreadable::TooLarge(limit) => Error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Upload is larger than {limit} bytes."),
            ),
            Unreadable::Malformed(message) => Error::bad_request(message),
        }
    }
}

/// Whether the request says it carries a multipart form.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

/// Reads every part of a multipart body of at most `limit` bytes.
pub async fn read_parts(request: Request, limit: usize) -> Result<Vec<Part>, Unreadable> {
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > limit) {
        drain(request.into_body(), limit.saturating_add(DRAIN_SLACK)).await;
        return Err(Unreadable::TooLarge(limit));
    }
    let unreadable = |error: axum::extract::multipart::MultipartError| {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Unreadable::TooLarge(limit)
        } else {
            Unreadable::Malformed(format!("Malformed multipart body: {}", error.body_text()))
        }
    };
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| {
        Unreadable::Malformed(format!("Malformed multipart body: {}", e.body_text()))
    })?;
    let mut parts = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(String::from);
        let content_type = field.content_type().map(String::from);
        let bytes = field.bytes().await.map_err(unreadable)?;
        parts.push(Part {
            name,
            file_name,
            content_type,
            bytes,
        });
    }
    Ok(parts)
}

impl Part {
    /// The part as text, for form fields.
    pub fn text(self) -> Result<String, Unreadable> {
        String::from_utf8(self.bytes.to_vec())
            .map_err(|_| Unreadable::Malformed(format!("Field {} is not UTF-8 text", self.name)))
    }
}

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
