//! The offline test harness, for native `cargo test` runs of a plugin.
//!
//! A [`Script`] lists the HTTP exchanges a test expects, in order: each expected request
//! (method, URL, the headers that matter, the body) with the canned [`Reply`] to give.
//! While the script is installed on the test's thread, every [`Request`] the plugin sends
//! is checked against the next expectation; a mismatch or an unexpected request panics with
//! both sides shown, and dropping the guard panics if expected requests were never made.
//!
//! ```
//! use easel_sdk::http::Request;
//! use easel_sdk::testing::{Expect, Reply, Script};
//!
//! let script = Script::new()
//!     .secret("EXAMPLE_KEY", "k-123")
//!     .exchange(
//!         Expect::post("https://api.example.com/v1/echo")
//!             .header("authorization", "Bearer k-123")
//!             .json(serde_json::json!({"say": "hi"})),
//!         Reply::json(200, serde_json::json!({"said": "hi"})),
//!     )
//!     .install();
//!
//! let key = easel_sdk::secret("EXAMPLE_KEY").unwrap();
//! let answer: serde_json::Value = Request::post("https://api.example.com/v1/echo")
//!     .bearer(&key)
//!     .json(&serde_json::json!({"say": "hi"}))
//!     .send()
//!     .unwrap()
//!     .json()
//!     .unwrap();
//! assert_eq!(answer["said"], "hi");
//! script.finish();
//! ```
//!
//! This module exists only off wasm32; the component never carries it.

use crate::error::{Error, Result};
use crate::types::{Manifest, Output, Submission};
use crate::host::Level;
use crate::http::transport::{BodySource, RawResponse};
use crate::http::{Method, Request};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

thread_local! {
    static SCRIPT: RefCell<Option<State>> = const { RefCell::new(None) };
    static SECRETS: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

struct State {
    pending: VecDeque<(Expect, Reply)>,
    seen: Vec<Request>,
    within: Option<Manifest>,
}

/// What an expected request must look like.
#[derive(Debug, Clone)]
pub struct Expect {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: BodyMatch,
}

#[derive(Debug, Clone)]
enum BodyMatch {
    Any,
    Exact(Vec<u8>),
    Json(Value),
}

impl Expect {
    /// Expects `method` on exactly `url`; headers and body are not checked until asked.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Expect { method, url: url.into(), headers: Vec::new(), body: BodyMatch::Any }
    }

    /// Expects a GET.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// Expects a POST.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// Expects a PUT.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// Expects a DELETE.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// The request must carry this header with exactly this value (name without case).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The body must be exactly these bytes.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = BodyMatch::Exact(body.into());
        self
    }

    /// The body must be JSON equal to `value` (key order and spacing do not matter).
    pub fn json(mut self, value: Value) -> Self {
        self.body = BodyMatch::Json(value);
        self
    }

    fn check(&self, index: usize, req: &Request) {
        let where_ = format!("request #{index} ({} {})", req.method(), req.url());
        assert!(
            self.method == req.method() && self.url == req.url(),
            "{where_}: expected {} {}",
            self.method,
            self.url
        );
        for (name, value) in &self.headers {
            match req.header_value(name) {
                Some(v) if v == value => {}
                Some(v) => panic!("{where_}: header `{name}` is `{v}`, expected `{value}`"),
                None => panic!("{where_}: header `{name}` missing, expected `{value}`; sent {:?}", req.headers()),
            }
        }
        match &self.body {
            BodyMatch::Any => {}
            BodyMatch::Exact(bytes) => assert!(
                bytes.as_slice() == req.body_bytes(),
                "{where_}: body is {:?}, expected {:?}",
                String::from_utf8_lossy(req.body_bytes()),
                String::from_utf8_lossy(bytes)
            ),
            BodyMatch::Json(expected) => {
                let actual: Value = serde_json::from_slice(req.body_bytes()).unwrap_or_else(|e| {
                    panic!("{where_}: body is not JSON ({e}): {:?}", String::from_utf8_lossy(req.body_bytes()))
                });
                assert!(
                    &actual == expected,
                    "{where_}: JSON body differs\n  sent:     {actual}\n  expected: {expected}"
                );
            }
        }
    }
}

/// The canned answer to one expected request.
#[derive(Debug, Clone)]
pub struct Reply {
    outcome: std::result::Result<Canned, Error>,
}

/// Status, headers and body chunks of a canned response.
type Canned = (u16, Vec<(String, String)>, Vec<Vec<u8>>);

impl Reply {
    /// An empty body with this status.
    pub fn status(status: u16) -> Self {
        Reply { outcome: Ok((status, Vec::new(), Vec::new())) }
    }

    /// A text body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::status(status).header("content-type", "text/plain").chunk(body.into().into_bytes())
    }

    /// A JSON body with `content-type: application/json`.
    pub fn json(status: u16, body: Value) -> Self {
        Self::status(status).header("content-type", "application/json").chunk(body.to_string().into_bytes())
    }

    /// A `text/event-stream` body: each item becomes one `data:` event, delivered as its
    /// own chunk so line reassembly is exercised.
    pub fn sse<I, S>(events: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut reply = Self::status(200).header("content-type", "text/event-stream");
        for data in events {
            reply = reply.chunk(format!("data: {}\n\n", data.into()).into_bytes());
        }
        reply
    }

    /// The transport fails with `error` before any response arrives (a timeout, a host
    /// the gate refused, a connection reset).
    pub fn fail(error: Error) -> Self {
        Reply { outcome: Err(error) }
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Ok((_, headers, _)) = &mut self.outcome {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// Appends one body chunk, delivered by its own read.
    pub fn chunk(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        if let Ok((_, _, chunks)) = &mut self.outcome {
            chunks.push(bytes.into());
        }
        self
    }
}

/// The exchanges a test expects, in order, plus the secrets it lends.
#[derive(Debug, Clone, Default)]
#[must_use = "a script does nothing until installed"]
pub struct Script {
    exchanges: Vec<(Expect, Reply)>,
    secrets: Vec<(String, String)>,
    within: Option<Manifest>,
}

impl Script {
    /// An empty script: any HTTP request panics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one expected request and its reply.
    pub fn exchange(mut self, expect: Expect, reply: Reply) -> Self {
        self.exchanges.push((expect, reply));
        self
    }

    /// Also checks every request against `manifest`'s allowed hosts, and every secret read
    /// against its declared secrets, as easel will: a request to any other host, or a read of
    /// an undeclared secret (easel withholds it), panics, naming it.
    pub fn within(mut self, manifest: &Manifest) -> Self {
        self.within = Some(manifest.clone());
        self
    }

    /// Lends a secret to [`secret`](crate::secret) while installed.
    pub fn secret(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.secrets.push((name.into(), value.into()));
        self
    }

    /// Installs the script on this thread (replacing any other) until the guard drops.
    pub fn install(self) -> ScriptGuard {
        for (name, value) in &self.secrets {
            set_secret(name, value);
        }
        LOGS.with(|l| l.borrow_mut().clear());
        SCRIPT.with(|s| {
            *s.borrow_mut() =
                Some(State { pending: self.exchanges.into(), seen: Vec::new(), within: self.within });
        });
        ScriptGuard { secrets: self.secrets.into_iter().map(|(n, _)| n).collect() }
    }
}

/// Keeps a [`Script`] installed; dropping it uninstalls and checks every expected request
/// was made.
#[derive(Debug)]
#[must_use = "dropping the guard uninstalls the script at once"]
pub struct ScriptGuard {
    secrets: Vec<String>,
}

impl ScriptGuard {
    /// The requests sent so far, as sent (timeouts included).
    pub fn requests(&self) -> Vec<Request> {
        SCRIPT.with(|s| s.borrow().as_ref().map(|st| st.seen.clone()).unwrap_or_default())
    }

    /// How many expected requests are still to come.
    pub fn remaining(&self) -> usize {
        SCRIPT.with(|s| s.borrow().as_ref().map_or(0, |st| st.pending.len()))
    }

    /// Uninstalls the script, panicking if expected requests were never made.
    pub fn finish(self) {
        drop(self)
    }
}

impl Drop for ScriptGuard {
    fn drop(&mut self) {
        let state = SCRIPT.with(|s| s.borrow_mut().take());
        SECRETS.with(|s| {
            let mut s = s.borrow_mut();
            for name in &self.secrets {
                s.remove(name);
            }
        });
        if let Some(state) = state
            && !state.pending.is_empty()
            && !std::thread::panicking()
        {
            let missing: Vec<String> =
                state.pending.iter().map(|(e, _)| format!("{} {}", e.method, e.url)).collect();
            panic!("{} expected request(s) never made: {}", missing.len(), missing.join(", "));
        }
    }
}

/// Sets a secret for this thread, as the host would lend it.
pub fn set_secret(name: &str, value: &str) {
    SECRETS.with(|s| s.borrow_mut().insert(name.to_string(), value.to_string()));
}

/// Removes every secret set on this thread.
pub fn clear_secrets() {
    SECRETS.with(|s| s.borrow_mut().clear());
}

/// The lines logged on this thread since the last [`Script::install`] or [`clear_logs`].
pub fn logs() -> Vec<(Level, String)> {
    LOGS.with(|l| l.borrow().clone())
}

/// Forgets the lines logged on this thread.
pub fn clear_logs() {
    LOGS.with(|l| l.borrow_mut().clear());
}

pub(crate) fn native_log(level: Level, message: &str) {
    eprintln!("[plugin {level:?}] {message}");
    LOGS.with(|l| l.borrow_mut().push((level, message.to_string())));
}

pub(crate) fn native_secret(name: &str) -> Option<String> {
    let undeclared = SCRIPT.with(|s| {
        s.borrow()
            .as_ref()
            .and_then(|state| state.within.as_ref())
            .is_some_and(|manifest| !manifest.secrets.iter().any(|declared| declared == name))
    });
    if undeclared {
        panic!(
            "secret {name}: the manifest does not declare it, so easel withholds it; declare it \
             with .secret(\"{name}\")"
        );
    }
    SECRETS.with(|s| s.borrow().get(name).cloned())
}

/// Panics unless every output link `submission` returns is on a host `manifest` allows:
/// easel copies a link only from an allowed host, and fails the task otherwise.
pub fn assert_links_allowed(manifest: &Manifest, submission: &Submission) {
    let Submission::Finished(done) = submission else { return };
    for output in &done.outputs {
        if let Output::Url { url, .. } = output {
            assert!(
                manifest.allows_url(url),
                "output link {url}: its host is not in the manifest's allowed hosts ({}); easel \
                 would refuse to copy it",
                manifest.allowed_hosts.join(", ")
            );
        }
    }
}

struct Chunks(VecDeque<Vec<u8>>);

impl BodySource for Chunks {
    fn read(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self.0.pop_front())
    }
}

pub(crate) fn scripted_send(req: &Request) -> Result<RawResponse> {
    crate::http::split_url(req.url())?;
    let (index, expect, reply) = SCRIPT.with(|s| {
        let mut s = s.borrow_mut();
        let Some(state) = s.as_mut() else {
            panic!(
                "HTTP {} {} sent with no testing::Script installed on this thread; \
                 native tests never touch the network",
                req.method(),
                req.url()
            );
        };
        state.seen.push(req.clone());
        let index = state.seen.len();
        if let Some(manifest) = &state.within
            && !manifest.allows_url(req.url())
        {
            panic!(
                "request #{index}: {} {}: its host is not in the manifest's allowed hosts ({}); \
                 easel would refuse it",
                req.method(),
                req.url(),
                manifest.allowed_hosts.join(", ")
            );
        }
        match state.pending.pop_front() {
            Some((expect, reply)) => (index, expect, reply),
            None => panic!("unexpected request #{index}: {} {} (the script has no more exchanges)", req.method(), req.url()),
        }
    });
    expect.check(index, req);
    let (status, headers, chunks) = reply.outcome?;
    Ok(RawResponse { status, headers, body: Box::new(Chunks(chunks.into())) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Request;
    use serde_json::json;

    #[test]
    fn hosts_are_checked_as_easel_checks_them() {
        let manifest = Manifest::new("acme", "1").allow_host("api.acme.example").allow_host("*.cdn.example");
        for allowed in ["https://API.acme.example/v1", "http://api.acme.example:8080/", "https://eu.cdn.example/1.png"] {
            assert!(manifest.allows_url(allowed), "{allowed}");
        }
        for refused in ["https://cdn.example/1.png", "https://acme.example/", "https://api.acme.example.evil/", "not a url"] {
            assert!(!manifest.allows_url(refused), "{refused}");
        }
        let outside = std::panic::catch_unwind(|| {
            let _guard = Script::new()
                .within(&manifest)
                .exchange(Expect::get("https://files.acme.example/1"), Reply::text(200, "x"))
                .install();
            let _ = Request::get("https://files.acme.example/1").send();
        });
        assert!(outside.is_err(), "a request to a host outside the manifest panics");
        let undeclared = std::panic::catch_unwind(|| {
            let _guard = Script::new().within(&manifest).secret("ACME_KEY", "k").install();
            crate::secret("ACME_KEY")
        });
        assert!(undeclared.is_err(), "reading a secret the manifest does not declare panics");
        let declared = manifest.clone().secret("ACME_KEY");
        let _guard = Script::new().within(&declared).secret("ACME_KEY", "k").install();
        assert_eq!(crate::secret("ACME_KEY").as_deref(), Some("k"));
        let link = Submission::finished(vec![Output::url("https://files.acme.example/1.png")]);
        assert!(std::panic::catch_unwind(|| assert_links_allowed(&manifest, &link)).is_err());
        assert_links_allowed(&manifest, &Submission::finished(vec![Output::url("https://eu.cdn.example/1.png")]));
    }

    #[test]
    fn scripted_exchanges_are_checked_in_order() {
        let guard = Script::new()
            .exchange(Expect::get("https://a.example/one").header("x-k", "v"), Reply::text(200, "first"))
            .exchange(Expect::post("https://a.example/two").json(json!({"b": 2, "a": 1})), Reply::json(201, json!({"ok": true})))
            .install();
        let r = Request::get("https://a.example/one").header("X-K", "v").send().unwrap();
        assert_eq!(r.text(), "first");
        let r = Request::post("https://a.example/two")
            .json(&json!({"a": 1, "b": 2}))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.json::<Value>().unwrap()["ok"], true);
        assert_eq!(guard.requests()[1].timeouts().1, Some(std::time::Duration::from_secs(5)));
        assert_eq!(guard.remaining(), 0);
        guard.finish();
    }

    #[test]
    #[should_panic(expected = "JSON body differs")]
    fn a_wrong_body_panics() {
        let _g = Script::new().exchange(Expect::post("https://a.example/").json(json!({"a": 1})), Reply::status(200)).install();
        let _ = Request::post("https://a.example/").json(&json!({"a": 2})).send();
    }

    #[test]
    #[should_panic(expected = "header `authorization` missing")]
    fn a_missing_header_panics() {
        let _g = Script::new().exchange(Expect::get("https://a.example/").header("authorization", "Bearer k"), Reply::status(200)).install();
        let _ = Request::get("https://a.example/").send();
    }

    #[test]
    #[should_panic(expected = "expected GET https://a.example/x")]
    fn a_wrong_url_panics() {
        let _g = Script::new().exchange(Expect::get("https://a.example/x"), Reply::status(200)).install();
        let _ = Request::get("https://a.example/y").send();
    }

    #[test]
    #[should_panic(expected = "never made")]
    fn unmade_requests_panic_on_drop() {
        let _g = Script::new().exchange(Expect::get("https://a.example/x"), Reply::status(200)).install();
    }

    #[test]
    #[should_panic(expected = "no testing::Script installed")]
    fn no_script_no_network() {
        let _ = Request::get("https://a.example/").send();
    }

    #[test]
    fn secrets_logs_and_failures() {
        let g = Script::new()
            .secret("K", "v")
            .exchange(Expect::get("https://a.example/"), Reply::fail(Error::upstream("timed out")))
            .exchange(Expect::get("https://a.example/"), Reply::json(429, json!({})).header("Retry-After", "3"))
            .install();
        assert_eq!(crate::secret("K").as_deref(), Some("v"));
        assert!(crate::require_secret("MISSING").is_err());
        crate::log(Level::Info, "hello");
        assert_eq!(logs(), vec![(Level::Info, "hello".to_string())]);
        assert_eq!(Request::get("https://a.example/").send().unwrap_err(), Error::upstream("timed out"));
        let e = Request::get("https://a.example/").send().unwrap().error_for_status().unwrap_err();
        assert_eq!(e, Error::RateLimited(Some(3)));
        g.finish();
        assert_eq!(crate::secret("K"), None);
    }

    #[test]
    fn streamed_sse_reassembles_lines_across_chunks() {
        let g = Script::new()
            .exchange(
                Expect::post("https://a.example/chat"),
                Reply::status(200)
                    .chunk("data: {\"t\":\"he")
                    .chunk("llo\"}\r\n\r\nda")
                    .chunk("ta: {\"t\":\" world\"}\n\n: keep-alive\n\n")
                    .chunk("data: [DONE]\n\n"),
            )
            .install();
        let mut events = Request::post("https://a.example/chat").send_streaming().unwrap().sse();
        let mut text = String::new();
        while let Some(ev) = events.next_event().unwrap() {
            if ev.is_done_marker() {
                break;
            }
            text.push_str(ev.json::<Value>().unwrap()["t"].as_str().unwrap());
        }
        assert_eq!(text, "hello world");
        assert_eq!(Reply::sse(["a", "b"]).outcome.unwrap().2.len(), 2);
        g.finish();
    }

    #[test]
    fn read_line_and_error_for_status_on_streams() {
        let g = Script::new()
            .exchange(Expect::get("https://a.example/l"), Reply::status(200).chunk("one\ntw").chunk("o\r\nthree"))
            .exchange(Expect::get("https://a.example/e"), Reply::text(500, "down"))
            .install();
        let mut r = Request::get("https://a.example/l").send_streaming().unwrap();
        let mut lines = Vec::new();
        while let Some(l) = r.read_line().unwrap() {
            lines.push(l);
        }
        assert_eq!(lines, ["one", "two", "three"]);
        let e = Request::get("https://a.example/e").send_streaming().unwrap().error_for_status().unwrap_err();
        assert!(matches!(e, Error::UpstreamUnavailable(m) if m.contains("down")));
        g.finish();
    }
}
