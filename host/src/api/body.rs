//! Request bodies read by hand: whole within the route's own limit (the JSON limit for JSON
//! routes, whatever `DefaultBodyLimit` a router layer set), with an oversized body answered by
//! a 413 the client actually sees, and JSON parsed so that a malformed body gets the calling
//! API's own 400 instead of axum's plain-text rejection.

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderMap, StatusCode, header},
};
use serde::de::DeserializeOwned;

use crate::api::error::Error;

/// How far past the limit an oversized body is read away before the 413, so a client still
/// sending is not reset before it can read the answer.
const DRAIN_SLACK: usize = 64 * 1024 * 1024;

/// Why a body could not be read.
pub enum Unreadable {
    /// Over the route's limit (the limit, in bytes).
    TooLarge(usize),
    /// A multipart body of more parts than `[limits] max_upload_parts` (the limit).
    TooManyParts(usize),
    /// Not a well-formed body; the sentence says why.
    Malformed(String),
    /// The host could not keep what it received (details are logged, never shown).
    Storage,
}

impl Unreadable {
    /// The status and client-facing sentence, for each dialect's own shape.
    pub fn parts(self) -> (StatusCode, String) {
        match self {
            Unreadable::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body is larger than {limit} bytes."),
            ),
            Unreadable::TooManyParts(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("A form may hold at most {limit} parts (files and fields)."),
            ),
            Unreadable::Malformed(message) => (StatusCode::BAD_REQUEST, message),
            Unreadable::Storage => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The upload could not be stored.".into(),
            ),
        }
    }
}

impl From<Unreadable> for Error {
    fn from(reason: Unreadable) -> Self {
        let (status, message) = reason.parts();
        Error(status, message)
    }
}

/// The length the request declares, if any.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// Refuses a request whose declared length is over `limit` before reading it (the body is
/// drained first, see `DRAIN_SLACK`); hands the request back otherwise.
pub async fn within_declared(request: Request, limit: usize) -> Result<Request, Unreadable> {
    if declared_length(request.headers()).is_some_and(|length| length > limit) {
        drain(request.into_body(), limit.saturating_add(DRAIN_SLACK)).await;
        return Err(Unreadable::TooLarge(limit));
    }
    Ok(request)
}

/// The whole body of `request`, of at most `limit` bytes.
pub async fn read(request: Request, limit: usize) -> Result<Bytes, Unreadable> {
    use futures::StreamExt;
    let request = within_declared(request, limit).await?;
    let mut stream = request.into_body().into_data_stream();
    let mut whole = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|_| Unreadable::Malformed("The request body could not be read.".into()))?;
        if whole.len() + chunk.len() > limit {
            return Err(Unreadable::TooLarge(limit));
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(whole.into())
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

/// Parses `bytes` as `T`, or explains why not in one sentence, naming the field that was
/// wrong when a value was (`requests_per_minute: invalid type: string "30", expected a whole
/// number`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut reader).map_err(|error| {
        if error.inner().is_data() && error.path().iter().next().is_some() {
            let (field, what) = (error.path(), wrong_shape(error.inner()));
            format!("Invalid JSON body: {field}: {what}")
        } else {
            malformed(bytes, error.inner())
        }
    })?;
    reader
        .end()
        .map_err(|trailing| malformed(bytes, &trailing))?;
    Ok(parsed)
}

/// Why `bytes` did not parse as JSON, in one sentence.
pub fn malformed(bytes: &[u8], error: &serde_json::Error) -> String {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        "Request body must be a JSON object.".into()
    } else {
        format!("Invalid JSON body: {error}")
    }
}

/// What was wrong with a well-formed body of another shape, in the client's terms: serde
/// names the Rust type it wanted ("expected struct ChatRequest"), which means nothing to a
/// client.
pub fn wrong_shape(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let Some((head, tail)) = text.split_once("expected ") else {
        return text;
    };
    let (wanted, position) = tail.split_at(tail.find(" at line").unwrap_or(tail.len()));
    let wanted = match wanted {
        _ if wanted.starts_with("struct ") => "a JSON object",
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a sequence" => "a JSON array",
        "a map" => "a JSON object",
        _ => return text,
    };
    format!("{head}expected {wanted}{position}")
}

/// A well-formed body of another shape than `T`: where it went wrong (`n`, `messages[0]`),
/// when that is a field, and what ([`wrong_shape`]); shown as `field: what`.
#[derive(Debug)]
pub struct WrongShape {
    /// The field, as the client wrote its path.
    pub field: Option<String>,
    /// What was wrong there.
    pub message: String,
}

impl WrongShape {
    /// Why `bytes` did not deserialize as `T` with `error`. Parsed again to learn the field,
    /// so a body that deserializes pays nothing for it.
    pub fn of<T: DeserializeOwned>(bytes: &[u8], error: &serde_json::Error) -> Self {
        Self {
            field: wrong_field::<T, _>(&mut serde_json::Deserializer::from_slice(bytes)),
            message: wrong_shape(error),
        }
    }

    /// `value` as a `T`, or why it is not one. Read again to learn the field only when it is
    /// not, so a value that deserializes pays nothing for it.
    pub fn check<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, Self> {
        T::deserialize(value).map_err(|error| Self {
            field: wrong_field::<T, _>(value),
            message: wrong_shape(&error),
        })
    }
}

/// Where `input` fails to deserialize as `T`, when that is a field.
fn wrong_field<'de, T: DeserializeOwned, D: serde::Deserializer<'de>>(input: D) -> Option<String> {
    serde_path_to_error::deserialize::<_, T>(input)
        .err()
        .map(|wrong| wrong.path().to_string())
        .filter(|path| path != ".")
}

impl std::fmt::Display for WrongShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A canonical form of a JSON body (sorted keys, no whitespace), for idempotency hashing.
pub fn canonical(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{WrongShape, wrong_shape};

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct ChatRequest {
        model: String,
    }

    #[test]
    fn a_body_of_another_shape_is_described_without_rust_names() {
        let text = serde_json::from_slice::<ChatRequest>(br#""hi""#).unwrap_err();
        assert_eq!(
            wrong_shape(&text),
            r#"invalid type: string "hi", expected a JSON object at line 1 column 4"#
        );
        let array = serde_json::from_slice::<ChatRequest>(b"[]").unwrap_err();
        assert!(!wrong_shape(&array).contains("struct"), "{array}");
        let missing = serde_json::from_slice::<ChatRequest>(b"{}").unwrap_err();
        assert_eq!(wrong_shape(&missing), missing.to_string());
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Counted {
            n: u32,
            t: f64,
        }
        let count = serde_json::from_slice::<Counted>(br#"{"n": "2"}"#).unwrap_err();
        assert_eq!(
            wrong_shape(&count),
            r#"invalid type: string "2", expected a whole number, 0 or more at line 1 column 9"#
        );
        let number = serde_json::from_value::<Counted>(serde_json::json!({"n": 1, "t": "x"}));
        assert_eq!(
            wrong_shape(&number.unwrap_err()),
            r#"invalid type: string "x", expected a number"#
        );
    }

    #[test]
    fn a_wrong_field_is_named() {
        let body = br#"{"model": 1}"#;
        let error = serde_json::from_slice::<ChatRequest>(body).unwrap_err();
        let wrong = WrongShape::of::<ChatRequest>(body, &error);
        assert_eq!(wrong.field.as_deref(), Some("model"));
        assert!(
            wrong
                .to_string()
                .starts_with("model: invalid type: integer `1`"),
            "{wrong}"
        );
        let checked = WrongShape::check::<ChatRequest>(&serde_json::json!({"model": [1]}));
        assert_eq!(checked.unwrap_err().field.as_deref(), Some("model"));
        // Where nothing but the whole is wrong, nothing is named.
        let missing = WrongShape::check::<ChatRequest>(&serde_json::json!({})).unwrap_err();
        assert_eq!(missing.field, None);
        assert_eq!(missing.to_string(), "missing field `model`");
    }
}
