//! HTTP: one file per documented API, translation only.
//!
//! Invariants: every route authenticates through [`auth`] before touching state, except the
//! health checks, the API documents, the console's page (its calls authenticate) and the
//! signed `/files/` links, which their signature authorises; bad input is
//! answered with a 4xx in the calling API's own error shape and never changes stored state;
//! handlers turn requests into engine calls and tasks into that API's JSON, nothing more.

pub mod admin;
pub mod assets;
pub mod auth;
pub mod body;
pub mod chat;
pub mod console;
pub mod dialect;
pub mod error;
pub mod files;
pub mod inspect;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod llmage;
pub mod loras;
pub mod metrics;
pub mod multipart;
pub mod observe;
pub mod openai;
pub mod openapi;
pub mod paging;
pub mod pixel;
pub mod pixel_size;
pub mod proxies;
pub mod sd;
pub mod shape;
pub mod submit;
pub mod tasks;

use std::sync::Arc;

use aide::axum::ApiRouter;
use axum::{Router, extract::DefaultBodyLimit};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::{
    config::{Config, Limits},
    engine::Engine,
};

/// What every handler can reach: [`Shared`] behind one `Arc`, since axum clones the state
/// for every request (one reference count to move instead of one per handle inside).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state of a host serving `shared`.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles inside [`AppState`].
pub struct Shared {
    /// The task engine.
    pub engine: Engine,
    /// Key → client lookup.
    pub auth: Arc<auth::Auth>,
    /// The configuration the host started with.
    pub config: Arc<Config>,
    /// Signs public links to outputs.
    pub links: Arc<files::Links>,
    /// The plugins folder's loader, when `EASEL_PLUGINS_DIR` is set.
    pub plugins: Option<easel_wasm::PluginHost>,
    /// The local model's adapter folder, when a local model is loaded.
    pub adapters: Option<easel_diffusion::adapters::library::AdapterLibrary>,
}

/// Every route of every API, each registered with its documentation (see [`openapi`]).
fn routes(limits: &Limits) -> ApiRouter<AppState> {
    ApiRouter::new()
        .merge(jobs::routes())
        .merge(assets::routes().layer(DefaultBodyLimit::max(limits.max_upload_bytes)))
        .merge(openapi::routes())
        .merge(admin::routes())
        .merge(keys::routes())
        .merge(files::routes())
        .merge(pixel::routes())
        .merge(tasks::routes())
        .merge(sd::routes())
        .merge(llmage::routes().layer(DefaultBodyLimit::max(limits.max_upload_bytes)))
        .merge(openai::routes().layer(DefaultBodyLimit::max(limits.max_upload_bytes)))
        .merge(console::routes())
        .merge(inspect::routes())
        .merge(limits::routes())
        .merge(metrics::routes())
}

/// What an `easel worker` serves on `EASEL_METRICS_ADDR`: its own `/metrics` and
/// `/admin/plugins` (admin key), so that Prometheus counts the work done where it is done.
/// It serves no API document: the API host's describes these routes.
pub fn worker_router(state: AppState) -> Router {
    Router::from(
        ApiRouter::new()
            .merge(metrics::routes())
            .merge(admin::plugin_routes()),
    )
    // No API is served here, so no path answers in an API's shape: `{"error"}` for all.
    .layer(axum::middleware::from_fn(error::shape_bare_errors_plainly))
    .layer(axum::middleware::from_fn(observe::observe))
    .with_state(state)
}

/// Every route of every API, and the document that describes them. A path no route serves
/// answers in the `{"error"}` shape, a method a route does not take in its API's own shape
/// ([`error::shape_bare_errors`]).
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    let trusted = Arc::new(state.config.trusted_proxies.clone());
    openapi::finish(|| routes(limits))
        .layer(axum::middleware::from_fn(error::shape_bare_errors))
        .layer(axum::middleware::from_fn(limits::headers))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // Inside the request span of `observe`, which carries the request and task ids.
        // A 5xx is logged as a warning: a vendor's failure (a 502) is the plugin's to tell
        // and is logged where it is understood; easel's own faults are logged as errors there.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|_: &axum::extract::Request| tracing::Span::current())
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            trusted,
            proxies::strip_untrusted,
        ))
}
