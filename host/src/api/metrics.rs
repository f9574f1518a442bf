//! `GET /metrics`: the Prometheus exposition of [`crate::metrics`], for the operator. It
//! answers the admin key only (`EASEL_ADMIN_KEY`, as every `/admin` route; Prometheus sends it
//! with `authorization: {credentials: …}`), and is absent (404) without one: it shows models,
//! providers and traffic. The queue and breaker gauges are read from the database at each
//! scrape; when it cannot be read, the scrape still answers, without them and with
//! `easel_database_up` 0, so the process's own metrics stay readable through an outage.

use aide::axum::{ApiRouter, routing::get_with};
use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};

use crate::{
    api::{
        AppState,
        admin::Operator,
        openapi::{Api, Describe},
    },
    engine::task::now_ms,
    metrics,
    store::{breakers, tasks},
};

/// The route.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/metrics",
        get_with(scrape, |op| {
            op.api(Api::Admin)
                .summary("Prometheus metrics (text format); admin key")
        }),
    )
}

/// How long a scrape waits for the database before answering without its gauges: well
/// within Prometheus's default scrape timeout (10 s), so a database that hangs still leaves
/// the process's own metrics readable.
const DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

async fn scrape(State(state): State<AppState>, _: Operator) -> Response {
    let mut providers: Vec<String> = state
        .engine
        .registry()
        .models()
        .iter()
        .map(|model| model.provider.id().to_string())
        .collect();
    providers.sort();
    providers.dedup();
    let store = state.engine.store();
    let read = async { tokio::try_join!(tasks::queue_by_provider(store), breakers::all(store)) };
    let metrics = metrics::get();
    metrics.set_in_flight(state.engine.held_count());
    match tokio::time::timeout(DATABASE_WAIT, read).await {
        Ok(Ok((queued, breakers))) => {
            let now = now_ms();
            metrics.set_queue(&providers, &queued, now);
            metrics.set_breakers(&providers, &breakers, now);
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "/metrics could not read the queue and breakers");
            metrics.set_database_unread();
        }
        Err(_) => {
            tracing::warn!(
                "/metrics gave up reading the queue and breakers after {DATABASE_WAIT:?}"
            );
            metrics.set_database_unread();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}
