//! Fake vendor upstreams for the end-to-end plugin tests, and the scaffold they share.
//!
//! Each vendor module (`dashscope`, `kling`, …) implements that vendor's documented wire
//! format as an axum [`Router`] over a [`Fake`]: the paths, the auth scheme it checks, the
//! body fields it reads, its task states and its error bodies. This module supplies what is
//! the same for every vendor:
//!
//! - [`Fake::start`] serves a vendor router on loopback, plus `/files/{name}` with small
//!   result files (PNG, MP4, MP3, WAV) that the fake's task answers link to, so the host can
//!   copy "the vendor's" output into its asset store;
//! - [`Call`], an extractor every vendor handler takes, records each API request (method,
//!   path, query, headers, body) so tests can assert what the plugin sent;
//! - [`Scenario`], read from a `scenario:<name>` token in the prompt, tells the fake which
//!   story to play for that request, so one host can run every scenario at once;
//! - [`Tasks`], the vendor-neutral task lifecycle the scenarios drive (running for how many
//!   polls, then succeeded or failed).

#![allow(dead_code)] // Each vendor uses the parts of the scaffold its API needs.

pub mod dashscope;
pub mod easel;
pub mod evolink;
pub mod jimeng;
pub mod kling;
pub mod minimax;
pub mod modelscope;
pub mod openai;
pub mod seedance_overseas;
pub mod vidu;
pub mod volcengine;
pub mod zhipu;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequest, Path, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::Value;

/// The story a fake plays for one request, chosen by the prompt's `scenario:<name>` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// The task succeeds on the first poll (a synchronous call answers at once).
    Success,
    /// The task reports running on the first poll and succeeds on the second.
    PendingThenSuccess,
    /// The task never leaves the running state (for cancel).
    StaysPending,
    /// Submit is refused: the key is wrong (401-class).
    AuthRejected,
    /// Submit is refused: rate limit or quota (429-class) with `Retry-After: 7`.
    RateLimited,
    /// Submit is refused by moderation.
    ContentRejected,
    /// Submit is refused: a bad parameter (400-class).
    BadParameter,
    /// Submit fails with a server error (5xx).
    UpstreamDown,
    /// Submit is accepted; the task then fails because the output was moderated.
    FailsModeration,
}

impl Scenario {
    /// Every scenario, in a stable order.
    pub const ALL: [Scenario; 9] = [
        Scenario::Success,
        Scenario::PendingThenSuccess,
        Scenario::StaysPending,
        Scenario::AuthRejected,
        Scenario::RateLimited,
        Scenario::ContentRejected,
        Scenario::BadParameter,
        Scenario::UpstreamDown,
        Scenario::FailsModeration,
    ];

    /// The errors a submit can be refused with.
    pub const SUBMIT_ERRORS: [Scenario; 5] = [
        Scenario::AuthRejected,
        Scenario::RateLimited,
        Scenario::ContentRejected,
        Scenario::BadParameter,
        Scenario::UpstreamDown,
    ];

    /// The token that selects this scenario in a prompt.
    pub fn token(self) -> &'static str {
        match self {
            Scenario::Success => "scenario:success",
            Scenario::PendingThenSuccess => "scenario:pending-then-success",
            Scenario::StaysPending => "scenario:stays-pending",
            Scenario::AuthRejected => "scenario:auth-rejected",
            Scenario::RateLimited => "scenario:rate-limited",
            Scenario::ContentRejected => "scenario:content-rejected",
            Scenario::BadParameter => "scenario:bad-parameter",
            Scenario::UpstreamDown => "scenario:upstream-down",
            Scenario::FailsModeration => "scenario:fails-moderation",
        }
    }

    /// The scenario a prompt asks for; a prompt without a token plays [`Scenario::Success`].
    pub fn from_text(text: &str) -> Scenario {
        Scenario::ALL
            .into_iter()
            .find(|s| text.split_whitespace().any(|word| word == s.token()))
            .unwrap_or(Scenario::Success)
    }

    /// Polls answered "running" before the task ends; `None`: it never ends.
    fn running_polls(self) -> Option<u32> {
        match self {
            Scenario::PendingThenSuccess => Some(1),
            Scenario::StaysPending => None,
            _ => Some(0),
        }
    }

    /// The error class a submit must be refused with, if this scenario refuses it.
    pub fn submit_error(self) -> Option<Scenario> {
        Scenario::SUBMIT_ERRORS.contains(&self).then_some(self)
    }
}

/// The `Retry-After` every rate-limited answer carries, seconds.
pub const RETRY_AFTER_SECS: u64 = 7;
/// What a rate-limited job's error says when the plugin passed `Retry-After` on.
pub const RETRY_AFTER_PASSED_ON: &str = "retry after Some(7)s";

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

/// Where a task stands when it is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Still queued or generating.
    Running,
    /// Done; the result files are ready.
    Succeeded,
    /// Ended by moderation of the output.
    FailedModeration,
}

/// A task the fake accepted.
#[derive(Debug, Clone)]
struct Task {
    scenario: Scenario,
    polls: u32,
    cancelled: bool,
}

/// The vendor-neutral task lifecycle: ids, scenarios, poll counts, cancellation.
#[derive(Debug, Default)]
pub struct Tasks {
    next: Mutex<u32>,
    tasks: Mutex<HashMap<String, Task>>,
}

impl Tasks {
    /// Accepts a task playing `scenario`; returns its id (`<prefix>-<n>`).
    pub fn create(&self, prefix: &str, scenario: Scenario) -> String {
        let mut next = self.next.lock().unwrap();
        *next += 1;
        let id = format!("{prefix}-{next}");
        self.tasks.lock().unwrap().insert(id.clone(), Task { scenario, polls: 0, cancelled: false });
        id
    }

    /// Counts a poll of `id` and says where it stands; `None` for an unknown id.
    pub fn poll(&self, id: &str) -> Option<Phase> {
        let mut tasks = self.tasks.lock().unwrap();
        let task = tasks.get_mut(id)?;
        task.polls += 1;
        let running = match task.scenario.running_polls() {
            None => true,
            Some(n) => task.polls <= n,
        };
        Some(if running {
            Phase::Running
        } else if task.scenario == Scenario::FailsModeration {
            Phase::FailedModeration
        } else {
            Phase::Succeeded
        })
    }

    /// Marks `id` cancelled; false for an unknown id.
    pub fn cancel(&self, id: &str) -> bool {
        match self.tasks.lock().unwrap().get_mut(id) {
            Some(task) => {
                task.cancelled = true;
                true
            }
            None => false,
        }
    }

    /// The scenario `id` plays.
    pub fn scenario(&self, id: &str) -> Option<Scenario> {
        self.tasks.lock().unwrap().get(id).map(|t| t.scenario)
    }

    /// How often `id` was polled.
    pub fn polls(&self, id: &str) -> u32 {
        self.tasks.lock().unwrap().get(id).map_or(0, |t| t.polls)
    }

    /// Whether `id` was cancelled.
    pub fn was_cancelled(&self, id: &str) -> bool {
        self.tasks.lock().unwrap().get(id).is_some_and(|t| t.cancelled)
    }

    /// The id of a task playing `scenario`.
    pub fn id_for(&self, scenario: Scenario) -> Option<String> {
        self.id_for_kind(scenario, "")
    }

    /// The id of the task playing `scenario` whose id starts with `prefix` (each test
    /// submits one task per scenario and kind).
    pub fn id_for_kind(&self, scenario: Scenario, prefix: &str) -> Option<String> {
        let tasks = self.tasks.lock().unwrap();
        tasks.iter().find(|(id, t)| t.scenario == scenario && id.starts_with(prefix)).map(|(id, _)| id.clone())
    }
}

/// State shared by a fake's handlers.
#[derive(Debug)]
pub struct Shared {
    /// `http://127.0.0.1:PORT`, for result links.
    pub base: String,
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
        format!("{}/files/{name}", self.base)
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
}

impl Fake {
    /// Serves `routes` (a vendor's API) and the result files on a free loopback port.
    pub async fn start(routes: fn() -> Router<FakeState>) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Shared {
            base: format!("http://{addr}"),
            calls: Mutex::default(),
            tasks: Tasks::default(),
            strays: Mutex::default(),
        });
        let app = routes()
            .route("/files/{name}", get(result_file))
            .fallback(unknown_route)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { addr, state }
    }

    /// Every API request so far.
    pub fn calls(&self) -> Vec<Recorded> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The requests whose `METHOD /path` starts with `line` (e.g. `"GET /api/v1/tasks/"`).
    pub fn calls_to(&self, line: &str) -> Vec<Recorded> {
        self.calls().into_iter().filter(|c| c.line().starts_with(line)).collect()
    }

    /// Asserts every request went to a documented path and carried `check`'s credentials.
    pub fn assert_only_documented_and_authorized(&self, check: impl Fn(&Recorded) -> bool) {
        let strays = self.state.strays.lock().unwrap().clone();
        assert!(strays.is_empty(), "the plugin called paths the vendor does not have: {strays:?}");
        let calls = self.calls();
        assert!(!calls.is_empty(), "the fake received no requests");
        for call in &calls {
            assert!(check(call), "{} carried the wrong credentials: {:?}", call.line(), call.headers);
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
        let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await.map_err(|_| StatusCode::BAD_REQUEST)?;
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
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// Whether `Authorization` is exactly `expected`.
    pub fn authorized_as(&self, expected: &str) -> bool {
        self.header("authorization") == Some(expected)
    }
}

/// A JSON answer with a status.
pub fn json_reply(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// A JSON answer with a status and `Retry-After: 7`.
pub fn rate_limited_reply(status: u16, body: Value) -> Response {
    let mut response = json_reply(status, body);
    response.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
    response
}

/// The bytes of the result file `name`, by its extension.
pub fn file_bytes(name: &str) -> &'static [u8] {
    match name.rsplit('.').next() {
        Some("png") => PNG_1X1,
        Some("mp4") => MP4_HEADER,
        Some("wav") => WAV_HEADER,
        _ => MP3_HEADER,
    }
}

fn content_type_of(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("png") => "image/png",
        Some("mp4") => "video/mp4",
        Some("wav") => "audio/wav",
        _ => "audio/mpeg",
    }
}

async fn result_file(Path(name): Path<String>) -> Response {
    ([(header::CONTENT_TYPE, content_type_of(&name))], file_bytes(&name)).into_response()
}

async fn unknown_route(State(state): State<FakeState>, Call(call): Call) -> Response {
    state.strays.lock().unwrap().push(call.line());
    json_reply(404, serde_json::json!({"error": format!("the fake has no route for {}", call.line())}))
}

/// A valid 1×1 PNG.
pub const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
/// The start of an MP4 file (an `ftyp` box), enough for content sniffing.
pub const MP4_HEADER: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";
/// The start of an MP3 file (an ID3 tag).
pub const MP3_HEADER: &[u8] = b"ID3\x04\0\0\0\0\0\0fake-mp3";
/// The start of a WAV file.
pub const WAV_HEADER: &[u8] = b"RIFF\x24\0\0\0WAVEfmt fake-wav";
