//! What every request leaves behind for the operator: a `request` span carrying its id (and,
//! once admitted, its task's id; see [`lifecycle`](crate::engine::lifecycle)), so that every
//! log line it causes names them, and the id recorded on the tasks it creates
//! ([`REQUEST_ID`]), so that the engine's lines about them name it too; the HTTP metrics by route template and status; the
//! `x-request-id` response header; and, when the request waited for a provider, a
//! `Server-Timing` header that splits easel's own time from the upstream's.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

use crate::{
    engine::task::{REQUEST_ID, new_id},
    metrics,
};

/// The route label of a request no route matched (bounded, unlike its path).
const UNMATCHED: &str = "unmatched";

/// The middleware; see the module docs.
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |path| path.as_str())
        .to_string();
    let method = request.method().as_str().to_string();
    let request_id = new_id("req");
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        task_id = tracing::field::Empty,
    );
    let (mut response, upstream) = REQUEST_ID
        .scope(
            request_id.clone(),
            metrics::timing_upstream(next.run(request)),
        )
        .instrument(span)
        .await;
    let took = started.elapsed();
    metrics::get().http_request(&route, &method, response.status().as_u16(), took);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::try_from(request_id) {
        headers.insert("x-request-id", value);
    }
    if let Some(upstream) = upstream {
        // Milliseconds, as the Server-Timing spec's `dur` is, to 10 µs: easel's own part of
        // a chat is a few tenths of a millisecond.
        let upstream = upstream.min(took);
        let timing = format!(
            "easel;dur={:.2}, upstream;dur={:.2}",
            (took - upstream).as_secs_f64() * 1000.0,
            upstream.as_secs_f64() * 1000.0
        );
        if let Ok(value) = HeaderValue::try_from(timing) {
            headers.insert("server-timing", value);
        }
    }
    response
}
