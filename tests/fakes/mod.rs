//! Fake vendor upstreams for the end-to-end plugin tests, and the scaffold they share.
//!
//! Each vendor module (`dashscope`, `kling`, …) implements that vendor's documented wire
//! format as an axum [`Router`] over a [`Fake`]: the paths, the auth scheme it checks, the
//! body fields it reads, its task states and its error bodies. This module supplies what is
//! the same for every vendor:
//!
//! - [`Fake::start`] serves a vendor router on loopback, plus `/files/{name}` with the small
//!   result files of [`files`] that the fake's answers link to, so the host can copy "the
//!   vendor's" output into its asset store;
//! - [`Call`], an extractor every vendor handler takes, records each API request (method,
//!   path, query, headers, body) so tests can assert what the plugin sent, and requests to
//!   undocumented paths are kept apart as strays;
//! - [`scenario`]: the [`Scenario`] a prompt's `scenario:<name>` token asks for (so one host
//!   can play every scenario at once) and the vendor-neutral task lifecycle, [`Tasks`];
//! - [`easel`]: the host side, a real easel with the plugin routed to the fake, and the
//!   scenario drivers and job checks every vendor test shares.

#![allow(dead_code, unused_imports)] // Each test binary uses the parts of the scaffold its API needs.

pub mod dashscope;
pub mod easel;
pub mod evolink;
pub mod files;
pub mod jimeng;
pub mod kling;
pub mod minimax;
pub mod modelscope;
pub mod openai;
pub mod scenario;
pub mod seedance_overseas;
pub mod vidu;
pub mod volcengine;
pub mod zhipu;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::Value;

pub use files::{MP3_HEADER, MP4_HEADER, PNG_1X1, WAV_HEADER};
pub use scenario::{Phase, RETRY_AFTER_PASSED_ON, RETRY_AFTER_SECS, Scenario, Tasks};

/// One API request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
}

impl Recorded {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `METHOD /path`, for assertions and messages.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// State shared by a fake's handlers.
#[derive(Debug)]
pub struct Shared {
    /// Where result links point: `http://127.0.0.1:PORT` until a host routes a vendor host
    /// name here ([`Shared::link_files_through`]).
    pub base: Mutex<String>,
    /// Every API request, in arrival order.
    pub calls: Mutex<Vec<Recorded>>,
    /// The vendor's tasks.
    pub tasks: Tasks,
    /// Requests to paths the vendor does not document (the fallback route).
    pub strays: Mutex<Vec<String>>,
}

impl Shared {
    /// A link to a result file this fake serves (`name` ends in .png, .mp4, .mp3 or .wav).
    pub fn file_url(&self, name: &str) -> String {
        format!("{}/files/{name}", self.base.lock().unwrap())
    }

    /// Makes result links name `host` (which easel routes here), in https as a vendor's own
    /// links name its own hosts: easel fetches a plugin's links only from hosts the plugin
    /// allows, and one routed by `connect_to` in plain HTTP, as the plugin's requests.
    pub fn link_files_through(&self, host: &str) {
        *self.base.lock().unwrap() = format!("https://{host}");
    }
}

/// The state handle vendor routers are built over.
pub type FakeState = Arc<Shared>;

/// A running fake vendor.
pub struct Fake {
    /// Its loopback address: the target of `[plugins] connect_to`.
    pub addr: SocketAddr,
    /// Its state, for assertions.
    pub state: FakeState,
    /// TCP connections it accepted.
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Fake {
    /// Serves `routes` (a vendor's API) and the result files on a free loopback port.
    pub async fn start(routes: fn() -> Router<FakeState>) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Shared {
            base: Mutex::new(format!("http://{addr}")),
            calls: Mutex::default(),
            tasks: Tasks::default(),
            strays: Mutex::default(),
        });
        let app = routes()
            .route("/files/{name}", get(files::result_file))
            .fallback(unknown_route)
            .with_state(state.clone());
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        let listener = axum::serve::ListenerExt::tap_io(listener, move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake {
            addr,
            state,
            connections,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every API request so far.
    pub fn calls(&self) -> Vec<Recorded> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The requests whose `METHOD /path` starts with `line` (e.g. `"GET /api/v1/tasks/"`).
    pub fn calls_to(&self, line: &str) -> Vec<Recorded> {
        self.calls()
            .into_iter()
            .filter(|c| c.line().starts_with(line))
            .collect()
    }

    /// Asserts every request went to a documented path and carried `check`'s credentials.
    pub fn assert_only_documented_and_authorized(&self, check: impl Fn(&Recorded) -> bool) {
        let strays = self.state.strays.lock().unwrap().clone();
        assert!(
            strays.is_empty(),
            "the plugin called paths the vendor does not have: {strays:?}"
        );
        let calls = self.calls();
        assert!(!calls.is_empty(), "the fake received no requests");
        for call in &calls {
            assert!(
                check(call),
                "{} carried the wrong credentials: {:?}",
                call.line(),
                call.headers
            );
        }
    }

    /// The tasks the fake accepted.
    pub fn tasks(&self) -> &Tasks {
        &self.state.tasks
    }
}

/// An API request, recorded as it arrives. Every vendor handler takes one.
pub struct Call(pub Recorded);

impl FromRequest<FakeState> for Call {
    type Rejection = StatusCode;

    async fn from_request(request: Request, state: &FakeState) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
            .await
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        let recorded = Recorded {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
        };
        state.calls.lock().unwrap().push(recorded.clone());
        Ok(Call(recorded))
    }
}

impl Call {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        self.0.json()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.0.header(name)
    }

    /// A query parameter's value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.0.query.as_deref()?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// Whether `Authorization` is exactly `expected`.
    pub fn authorized_as(&self, expected: &str) -> bool {
        self.header("authorization") == Some(expected)
    }
}

/// The credential check of vendors that take `Authorization: Bearer <key>`, for
/// [`Fake::assert_only_documented_and_authorized`].
pub fn bearer(key: &str) -> impl Fn(&Recorded) -> bool {
    let expected = format!("Bearer {key}");
    move |call| call.header("authorization") == Some(expected.as_str())
}

/// A JSON answer with a status.
pub fn json_reply(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// A JSON answer with a status and `Retry-After: 7`.
pub fn rate_limited_reply(status: u16, body: Value) -> Response {
    let mut response = json_reply(status, body);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
    response
}

async fn unknown_route(State(state): State<FakeState>, Call(call): Call) -> Response {
    state.strays.lock().unwrap().push(call.line());
    json_reply(
        404,
        serde_json::json!({"error": format!("the fake has no route for {}", call.line())}),
    )
}
