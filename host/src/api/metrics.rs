//! `GET /metrics`: the Prometheus exposition of [`crate::metrics`], for the operator. It
//! answers the admin key only (`EASEL_ADMIN_KEY`, as every `/admin` route; Prometheus sends it
//! with `authorization: {credentials: …}`), and is absent (404) without one: it shows models,
//! providers and traffic. The queue and breaker gauges are read from the database at each
//! scrape.

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
        error::Error,
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

async fn scrape(State(state): State<AppState>, _: Operator) -> Result<Response, Error> {
    let mut providers: Vec<String> = state
        .engine
        .registry()
        .models()
        .iter()
        .map(|model| model.provider.id().to_string())
        .collect();
    providers.sort();
    providers.dedup();
    let queued = tasks::queue_by_provider(state.engine.store()).await?;
    let breakers = breakers::all(state.engine.store()).await?;
    let metrics = metrics::get();
    let now = now_ms();
    metrics.set_in_flight(state.engine.held_count());
    metrics.set_queue(&providers, &queued, now);
    metrics.set_breakers(&providers, &breakers, now);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response())
}
