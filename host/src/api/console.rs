//! The operator's and clients' web console at `/console`: plain HTML, CSS and JavaScript
//! modules compiled into the binary, so nothing is fetched from anywhere else at run time and
//! nothing is built outside cargo.
//!
//! Invariants: the console is a client of the documented routes and holds no privilege of its
//! own: it sends the key its user signed in with, and every page shows what those routes
//! answer, refusals included. Its files are served with a content security policy that lets
//! them load scripts, styles and data only from this host (images and media may come from the
//! output links, which `EASEL_PUBLIC_URL` can place elsewhere).

use aide::{
    axum::{ApiRouter, routing::get_with},
    openapi::{Parameter, ReferenceOr},
};
use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::api::{
    AppState,
    dialect::PathOf,
    error::Error,
    jobs::Jobs,
    openapi::{Api, Describe},
};

/// `(name, content type, body)` of every file under `/console/`.
const FILES: [(&str, &str, &str); 9] = [
    ("index.html", HTML, include_str!("console/index.html")),
    ("console.css", CSS, include_str!("console/console.css")),
    ("app.js", JS, include_str!("console/app.js")),
    ("api.js", JS, include_str!("console/api.js")),
    ("form.js", JS, include_str!("console/form.js")),
    ("playground.js", JS, include_str!("console/playground.js")),
    ("tasks.js", JS, include_str!("console/tasks.js")),
    ("operator.js", JS, include_str!("console/operator.js")),
    ("view.js", JS, include_str!("console/view.js")),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

const POLICY: &str = "default-src 'self'; img-src * data: blob:; media-src * data: blob:; \
                      object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The `{file}` of `/console/{file}`: one of [`FILES`].
fn console_file() -> Parameter {
    let names: Vec<&str> = FILES.iter().map(|(name, _, _)| *name).collect();
    serde_json::from_value(json!({
        "name": "file", "in": "path", "required": true,
        "schema": {"type": "string", "enum": names},
    }))
    .expect("a path parameter")
}

/// The console's page and its files.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/console",
            get_with(page, |op| {
                op.api(Api::Documents)
                    .open()
                    .summary("The web console (sign in with a client key or the admin key)")
            }),
        )
        .api_route(
            "/console/{file}",
            get_with(file, |op| {
                op.api(Api::Documents)
                    .open()
                    .summary("The console's scripts and style")
                    .with(|mut op| {
                        op.inner_mut()
                            .parameters
                            .push(ReferenceOr::Item(console_file()));
                        op
                    })
            }),
        )
}

fn serve(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    let (_, content_type, body) = FILES[0];
    serve(content_type, body)
}

async fn file(PathOf { params: name, .. }: PathOf<String, Jobs>) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => serve(content_type, body),
        None => Error::not_found("File").into_response(),
    }
}
