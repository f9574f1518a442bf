//! A small blocking HTTP client over `wasi:http`.
//!
//! Inside the component every request goes through the host's `wasi:http` gate, which
//! checks the manifest's allowed hosts and applies the operator's timeouts and response
//! size cap. In native tests the same calls go to the [`testing::Script`](crate::testing)
//! installed on the current thread, so a plugin is tested offline without changing a line.
//!
//! ```no_run
//! use easel_sdk::http::Request;
//! # fn demo() -> easel_sdk::Result<()> {
//! let answer: serde_json::Value = Request::post("https://api.example.com/v1/images")
//!     .bearer("sk-…")
//!     .json(&serde_json::json!({"prompt": "a red fox"}))
//!     .timeout(std::time::Duration::from_secs(60))
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// HTTP methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// HEAD
    Head,
}

impl Method {
    /// The method's name, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `multipart/form-data` body, for vendor routes that take files as form parts (OpenAI's
/// image edits); fields and files go in the order they are added.
///
/// Invariant: the boundary between parts occurs in no part. It is [`Form::BOUNDARY`] unless a
/// part holds that (a client's prompt or file may, to smuggle in fields of its own), in which
/// case a numbered variant that none holds is used.
#[derive(Debug, Clone, Default)]
pub struct Form {
    parts: Vec<(String, Vec<u8>)>,
}

impl Form {
    /// The boundary a form uses when no part holds it; fixed, so that a scripted test can
    /// expect the exact body.
    pub const BOUNDARY: &'static str = "easel-form-7d1f0c9a2b4e6f8a1c3e5b7d9f2a";

    /// An empty form.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a text field.
    pub fn text(self, name: &str, value: &str) -> Self {
        self.part(name, None, value.as_bytes())
    }

    /// Adds a file: its part name, file name, MIME type and bytes.
    pub fn file(self, name: &str, file_name: &str, content_type: &str, bytes: &[u8]) -> Self {
        self.part(name, Some((file_name, content_type)), bytes)
    }

    fn part(mut self, name: &str, file: Option<(&str, &str)>, bytes: &[u8]) -> Self {
        // Quotes and line breaks in names are percent-encoded, as browsers send them; a type
        // holds no line break.
        let quoted = |text: &str| text.replace('"', "%22").replace('\r', "%0D").replace('\n', "%0A");
        let mut head = format!("Content-Disposition: form-data; name=\"{}\"", quoted(name));
        if let Some((file_name, content_type)) = file {
            let content_type: String = content_type.chars().filter(|c| !c.is_control()).collect();
            head.push_str(&format!("; filename=\"{}\"\r\nContent-Type: {content_type}", quoted(file_name)));
        }
        head.push_str("\r\n\r\n");
        self.parts.push((head, bytes.to_vec()));
        self
    }

    /// The boundary this form's body uses (see the invariant).
    pub fn boundary(&self) -> String {
        let held = |boundary: &str| {
            let needle = format!("--{boundary}");
            self.parts.iter().any(|(head, bytes)| {
                head.contains(&needle) || bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            })
        };
        let mut boundary = Self::BOUNDARY.to_string();
        let mut next = 0;
        while held(&boundary) {
            next += 1;
            boundary = format!("{}-{next}", Self::BOUNDARY);
        }
        boundary
    }

    fn finish(self) -> (String, Vec<u8>) {
        let boundary = self.boundary();
        let mut body = Vec::new();
        for (head, bytes) in self.parts {
            body.extend_from_slice(format!("--{boundary}\r\n{head}").as_bytes());
            body.extend_from_slice(&bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (boundary, body)
    }
}

/// An outgoing request, built step by step and sent with [`Request::send`] or
/// [`Request::send_streaming`].
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    body_error: Option<String>,
    connect_timeout: Option<Duration>,
    first_byte_timeout: Option<Duration>,
    between_bytes_timeout: Option<Duration>,
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            body_error: None,
            connect_timeout: None,
            first_byte_timeout: None,
            between_bytes_timeout: None,
        }
    }

    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A POST request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A PUT request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// A DELETE request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Adds a header; an earlier header of the same name (any case) is replaced.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// Sets the raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a `multipart/form-data` body (fields and files, as [`Form`] holds them) and its
    /// `Content-Type`.
    pub fn form(mut self, form: Form) -> Self {
        let (boundary, body) = form.finish();
        self.body = body;
        self.header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
    }

    /// Sets a JSON body and `Content-Type: application/json`. A value that cannot be
    /// serialized makes [`Request::send`] fail with [`Error::Internal`].
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.body = bytes,
            Err(e) => self.body_error = Some(e.to_string()),
        }
        self.header("Content-Type", "application/json")
    }

    /// Sets the connect, first-byte and between-bytes timeouts at once.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self.first_byte_timeout = Some(timeout);
        self.between_bytes_timeout = Some(timeout);
        self
    }

    /// Sets the time allowed to connect.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Sets the time allowed until the first byte of the response.
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = Some(timeout);
        self
    }

    /// Sets the time allowed between two chunks of the response body.
    pub fn between_bytes_timeout(mut self, timeout: Duration) -> Self {
        self.between_bytes_timeout = Some(timeout);
        self
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// All headers, in the order given.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// A header's value (name compared without case).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The three timeouts: connect, first byte, between bytes.
    pub fn timeouts(&self) -> (Option<Duration>, Option<Duration>, Option<Duration>) {
        (self.connect_timeout, self.first_byte_timeout, self.between_bytes_timeout)
    }

    /// Sends the request and reads the whole response body.
    pub fn send(self) -> Result<Response> {
        self.send_streaming()?.into_response()
    }

    /// Sends the request and returns as soon as the status and headers are in; read the
    /// body in pieces, by line, or as server-sent events.
    pub fn send_streaming(self) -> Result<StreamingResponse> {
        if let Some(e) = &self.body_error {
            return Err(Error::internal(format!("request body is not valid JSON: {e}")));
        }
        let raw = transport::send(&self)?;
        Ok(StreamingResponse {
            status: raw.status,
            headers: raw.headers,
            body: raw.body,
            buffer: Vec::new(),
            taken: 0,
            done: false,
        })
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// Status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A header's value (name compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, consumed.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; a body that does not parse is
    /// [`Error::UpstreamUnavailable`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::upstream(format!("status {}: body is not the expected JSON: {e}: {}", self.status, snippet(&self.body)))
        })
    }

    /// Passes a 2xx response through and turns any other status into the matching
    /// [`Error`]: 401/403 → `Unauthorized`, 429 → `RateLimited` (with `Retry-After`
    /// seconds when given), other 4xx → `InvalidRequest`, the rest → `UpstreamUnavailable`.
    /// The message carries the start of the body.
    pub fn error_for_status(self) -> Result<Self> {
        match status_error(self.status, self.header("retry-after"), &self.body) {
            None => Ok(self),
            Some(e) => Err(e),
        }
    }
}

/// The [`Error`] a non-2xx status stands for, or `None` for 2xx.
pub fn status_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> Option<Error> {
    let message = format!("status {status}: {}", snippet(body));
    match status {
        200..=299 => None,
        401 | 403 => Some(Error::Unauthorized(message)),
        429 => Some(Error::RateLimited(retry_after_secs(retry_after))),
        400..=499 => Some(Error::InvalidRequest(message.into())),
        _ => Some(Error::UpstreamUnavailable(message)),
    }
}

/// The wait, in whole seconds, that an HTTP `Retry-After` header asks for: its number of
/// seconds, or the time until its HTTP date (0 once that date is past, rounded up before);
/// `None` without a header or for anything else.
pub fn retry_after_secs(value: Option<&str>) -> Option<u64> {
    let value = value?.trim();
    if let Ok(secs) = value.parse() {
        return Some(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

/// A line's text without a final `\r`; bytes that are not UTF-8 become U+FFFD.
fn line_text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match std::str::from_utf8(line) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(line).into_owned(),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if body.len() > 300 { format!("{text}…") } else { text }
}

/// A response whose body is still arriving.
pub struct StreamingResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Box<dyn transport::BodySource>,
    /// Received bytes, of which those before `taken` were handed out already.
    buffer: Vec<u8>,
    taken: usize,
    done: bool,
}

impl std::fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingResponse").field("status", &self.status).field("headers", &self.headers).finish()
    }
}

impl StreamingResponse {
    /// Status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// A header's value (name compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The next piece of the body as it arrived, or `None` at the end.
    pub fn read_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if !self.unread().is_empty() {
            return Ok(Some(self.take_rest()));
        }
        self.pull()
    }

    fn pull(&mut self) -> Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.body.read()? {
                None => {
                    self.done = true;
                    return Ok(None);
                }
                Some(chunk) if chunk.is_empty() => continue,
                Some(chunk) => return Ok(Some(chunk)),
            }
        }
    }

    /// The bytes received and not handed out yet.
    fn unread(&self) -> &[u8] {
        &self.buffer[self.taken..]
    }

    /// The bytes received and not handed out yet, leaving the buffer empty.
    fn take_rest(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buffer);
        rest.drain(..std::mem::take(&mut self.taken));
        rest
    }

    /// Appends a received chunk; a fully read buffer is replaced by it, not copied into.
    fn keep(&mut self, chunk: Vec<u8>) {
        if self.unread().is_empty() {
            self.buffer = chunk;
            self.taken = 0;
        } else {
            self.buffer.drain(..std::mem::take(&mut self.taken));
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next line of the body without its `\n` or `\r\n`, or `None` at the end. A
    /// last line without a newline is returned too.
    pub fn read_line(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(line) = self.buffered_line() {
                return Ok(Some(line));
            }
            match self.pull()? {
                Some(chunk) => self.keep(chunk),
                None => {
                    if self.unread().is_empty() {
                        return Ok(None);
                    }
                    let rest = self.take_rest();
                    return Ok(Some(line_text(&rest)));
                }
            }
        }
    }

    /// The next whole line already received (see [`StreamingResponse::read_line`]), without
    /// reading more of the body.
    pub fn buffered_line(&mut self) -> Option<String> {
        let unread = self.unread();
        let end = unread.iter().position(|&b| b == b'\n')?;
        let line = line_text(&unread[..end]);
        self.taken += end + 1;
        Some(line)
    }

    /// Reads the rest of the body into a [`Response`].
    pub fn into_response(mut self) -> Result<Response> {
        let mut body = self.take_rest();
        while let Some(chunk) = self.pull()? {
            body.extend_from_slice(&chunk);
        }
        Ok(Response { status: self.status, headers: std::mem::take(&mut self.headers), body })
    }

    /// Fails with the matching [`Error`] (see [`Response::error_for_status`]) unless the
    /// status is 2xx; the error message carries the start of the body.
    pub fn error_for_status(self) -> Result<Self> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        self.into_response()?.error_for_status()?;
        unreachable!("non-2xx status always yields an error")
    }

    /// Reads the body as server-sent events (`text/event-stream`).
    pub fn sse(self) -> SseReader {
        SseReader { response: self, parser: SseParser::default() }
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when given.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The `id:` field, when given.
    pub id: Option<String>,
}

impl SseEvent {
    /// The data parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.data)
            .map_err(|e| Error::upstream(format!("event data is not the expected JSON: {e}: {}", snippet(self.data.as_bytes()))))
    }

    /// True for OpenAI's end marker, `data: [DONE]`.
    pub fn is_done_marker(&self) -> bool {
        self.data.trim() == "[DONE]"
    }
}

/// A line-by-line parser of server-sent events, independent of where the lines come from.
#[derive(Debug, Clone, Default)]
pub struct SseParser {
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Feeds one line (without its line ending); returns an event when the line ends one.
    pub fn push_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.flush();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.current.event = Some(value.to_string()),
            "id" => self.current.id = Some(value.to_string()),
            _ => {}
        }
        None
    }

    /// Ends the input: returns the event in progress, if it has data or a name.
    pub fn flush(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.current);
        let had = std::mem::take(&mut self.has_data);
        if had || event.event.is_some() { Some(event) } else { None }
    }

    /// Parses a whole text at once.
    pub fn parse_all(text: &str) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut out: Vec<SseEvent> = text.lines().filter_map(|l| parser.push_line(l)).collect();
        out.extend(parser.flush());
        out
    }
}

/// Server-sent events read from a [`StreamingResponse`].
#[derive(Debug)]
pub struct SseReader {
    response: StreamingResponse,
    parser: SseParser,
}

impl SseReader {
    /// The next event, or `None` when the body has ended.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>> {
        loop {
            match self.response.read_line()? {
                Some(line) => {
                    if let Some(event) = self.parser.push_line(&line) {
                        return Ok(Some(event));
                    }
                }
                None => return Ok(self.parser.flush()),
            }
        }
    }

    /// The next event whose lines were all received already, without reading more of the
    /// body (and without waiting): `None` when no whole event is buffered. Lines of an event
    /// still arriving are kept for the next call of either method.
    pub fn next_buffered(&mut self) -> Option<SseEvent> {
        while let Some(line) = self.response.buffered_line() {
            if let Some(event) = self.parser.push_line(&line) {
                return Some(event);
            }
        }
        None
    }

    /// The response the events come from (status and headers).
    pub fn response(&self) -> &StreamingResponse {
        &self.response
    }
}

impl Iterator for SseReader {
    type Item = Result<SseEvent>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// The parts of an absolute `http` or `https` URL that `wasi:http` wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and optional port.
    pub authority: String,
    /// Path and query, starting with `/`; the fragment is dropped.
    pub path_with_query: String,
}

/// Splits an absolute URL; anything but `http://` and `https://` is an
/// [`Error::Internal`] (a plugin bug).
pub fn split_url(url: &str) -> Result<UrlParts> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::internal(format!("not an absolute URL: {url}")))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(Error::internal(format!("unsupported URL scheme `{scheme}`: {url}")));
    }
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err(Error::internal(format!("bad host in URL: {url}")));
    }
    let tail = &rest[end..];
    let path_with_query = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    Ok(UrlParts { scheme, authority: authority.to_string(), path_with_query })
}

pub(crate) mod transport {
    use crate::error::Result;

    /// Where response bytes come from: a `wasi:io` stream, or a script in tests.
    pub(crate) trait BodySource {
        /// The next chunk, or `None` at the end.
        fn read(&mut self) -> Result<Option<Vec<u8>>>;
    }

    pub(crate) struct RawResponse {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Box<dyn BodySource>,
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) use crate::wasm::http_send as send;

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) use crate::testing::scripted_send as send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after_secs(Some(" 12 ")), Some(12));
        let soon = std::time::SystemTime::now() + Duration::from_secs(30);
        let asked = retry_after_secs(Some(&httpdate::fmt_http_date(soon))).unwrap();
        assert!((29..=30).contains(&asked), "{asked}");
        assert_eq!(retry_after_secs(Some("Wed, 21 Oct 2015 07:28:00 GMT")), Some(0));
        assert_eq!(retry_after_secs(Some("soon")), None);
        assert_eq!(retry_after_secs(Some("-3")), None);
        assert_eq!(retry_after_secs(None), None);
    }

    #[test]
    fn splits_urls() {
        let p = split_url("https://api.example.com/v1/x?a=1#frag").unwrap();
        assert_eq!(p.scheme, "https");
        assert_eq!(p.authority, "api.example.com");
        assert_eq!(p.path_with_query, "/v1/x?a=1");
        let p = split_url("http://127.0.0.1:8080").unwrap();
        assert_eq!((p.authority.as_str(), p.path_with_query.as_str()), ("127.0.0.1:8080", "/"));
        let p = split_url("HTTP://h?q").unwrap();
        assert_eq!((p.scheme.as_str(), p.path_with_query.as_str()), ("http", "/?q"));
        assert!(split_url("ftp://x/y").is_err());
        assert!(split_url("/relative").is_err());
        assert!(split_url("https:///nohost").is_err());
    }

    #[test]
    fn sse_parser_follows_the_spec() {
        let text = ": comment\nevent: message\ndata: {\"a\":1}\nid: 7\n\ndata:first\ndata: second\n\ndata: [DONE]";
        let events = SseParser::parse_all(text);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event.as_deref(), Some("message"));
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].json::<serde_json::Value>().unwrap()["a"], 1);
        assert_eq!(events[1].data, "first\nsecond");
        assert!(events[2].is_done_marker());
        // Blank lines alone dispatch nothing.
        assert!(SseParser::parse_all("\n\n\n").is_empty());
    }

    #[test]
    fn buffered_events_are_taken_without_reading_on() {
        use crate::testing::{Expect, Reply, Script};
        let script = Script::new()
            .exchange(
                Expect::get("https://a.example/events"),
                Reply::status(200).chunk("data: a\n\ndata: b\n\ndata: c").chunk("\n\n"),
            )
            .install();
        let mut events = Request::get("https://a.example/events").send_streaming().unwrap().sse();
        assert_eq!(events.next_event().unwrap().unwrap().data, "a");
        assert_eq!(events.next_buffered().unwrap().data, "b");
        // `c` has arrived but not the blank line that ends it: nothing more without a read.
        assert_eq!(events.next_buffered(), None);
        assert_eq!(events.next_event().unwrap().unwrap().data, "c");
        assert_eq!(events.next_buffered(), None);
        assert_eq!(events.next_event().unwrap(), None);
        script.finish();
    }

    #[test]
    fn lines_chunks_and_the_rest_come_out_once_and_in_order() {
        use crate::testing::{Expect, Reply, Script};
        let script = Script::new()
            .exchange(
                Expect::get("https://a.example/l"),
                Reply::status(200).chunk("a\r").chunk(b"\nb\xff\nc".to_vec()).chunk("d\ne").chunk("f"),
            )
            .exchange(Expect::get("https://a.example/r"), Reply::status(200).chunk("x\nyz").chunk("!"))
            .install();
        let mut r = Request::get("https://a.example/l").send_streaming().unwrap();
        assert_eq!(r.read_line().unwrap().as_deref(), Some("a"));
        assert_eq!(r.read_line().unwrap().as_deref(), Some("b\u{fffd}"));
        // What follows the last whole line is handed out as it is, then the body goes on.
        assert_eq!(r.read_chunk().unwrap().as_deref(), Some(&b"c"[..]));
        assert_eq!(r.read_line().unwrap().as_deref(), Some("d"));
        assert_eq!(r.read_line().unwrap().as_deref(), Some("ef"));
        assert_eq!(r.read_line().unwrap(), None);
        let mut r = Request::get("https://a.example/r").send_streaming().unwrap();
        assert_eq!(r.read_line().unwrap().as_deref(), Some("x"));
        assert_eq!(r.into_response().unwrap().body(), b"yz!");
        script.finish();
    }

    #[test]
    fn status_errors_map_onto_provider_errors() {
        assert_eq!(status_error(200, None, b""), None);
        assert!(matches!(status_error(401, None, b"no"), Some(Error::Unauthorized(m)) if m.contains("no")));
        assert_eq!(status_error(429, Some("12"), b""), Some(Error::RateLimited(Some(12))));
        assert!(matches!(status_error(422, None, b""), Some(Error::InvalidRequest(_))));
        assert!(matches!(status_error(503, None, b""), Some(Error::UpstreamUnavailable(_))));
    }

    #[test]
    fn a_form_holds_its_fields_and_files_in_order() {
        let form = Form::new().text("prompt", "a \"kite\"").file("image[]", "k.png", "image/png", b"\x89PNG");
        let r = Request::post("https://a.example/edits").form(form);
        let boundary = Form::BOUNDARY;
        assert_eq!(r.header_value("content-type"), Some(&*format!("multipart/form-data; boundary={boundary}")));
        let mut wanted = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na \"kite\"\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"k.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        wanted.extend_from_slice(b"\x89PNG");
        wanted.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        assert_eq!(r.body_bytes(), wanted);
    }

    #[test]
    fn a_part_cannot_hold_the_boundary() {
        let smuggled = format!("x\r\n--{}\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n10", Form::BOUNDARY);
        let form = Form::new().text("prompt", &smuggled).file("image[]", "k.png", "image/png\r\nX: y", b"png");
        let boundary = form.boundary();
        assert_ne!(boundary, Form::BOUNDARY);
        let r = Request::post("https://a.example/edits").form(form);
        assert_eq!(r.header_value("content-type"), Some(&*format!("multipart/form-data; boundary={boundary}")));
        let body = String::from_utf8(r.body_bytes().to_vec()).unwrap();
        // Two parts and the end: the prompt's text is one field, whole.
        assert_eq!(body.matches(&format!("--{boundary}\r\n")).count(), 2, "{body}");
        assert!(body.contains(&format!("\r\n\r\n{smuggled}\r\n--{boundary}\r\n")), "{body}");
        assert!(body.contains("Content-Type: image/pngX: y\r\n"), "{body}");
    }

    #[test]
    fn headers_replace_case_insensitively() {
        let r = Request::get("http://x/").header("X-A", "1").header("x-a", "2").bearer("t");
        assert_eq!(r.headers().len(), 2);
        assert_eq!(r.header_value("X-A"), Some("2"));
        assert_eq!(r.header_value("authorization"), Some("Bearer t"));
    }
}
