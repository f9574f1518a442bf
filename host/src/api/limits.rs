//! Per-client limits over HTTP: the operator's routes that set them
//! (`/admin/clients/{id}/limits`, behind the admin key like every `/admin` route), the
//! client's own read of them (`/api/v1/limits`, rendered as the operator's is) and the
//! `x-ratelimit-*` and `Retry-After` headers of every response whose request an admission
//! with limits answered ([`headers`]). The limits themselves are decided by the engine
//! ([`engine::limits`](crate::engine::limits)); a refusal's body is the calling API's own 429.

use aide::axum::{ApiRouter, routing::get_with};
use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{
        AppState,
        admin::{AdminBody, Operator},
        dialect::PathOf,
        error::Error,
        jobs::{Client, Jobs},
        openapi::{Api, Describe},
    },
    engine::{
        credits::{MAX_BALANCE_MICROS, to_credits, to_micros},
        limits::{Remaining, reporting},
        task::{PRIORITIES, now_ms, priority_range},
    },
    store::{
        keys,
        limits::{self, ALL_MODELS, ClientLimit},
    },
};

/// Routes of the limits: the operator's, and each client's read of its own.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/api/v1/limits",
            get_with(own, |op| {
                op.api(Api::Jobs).summary(
                    "The calling client's limits: requests per minute, tasks at once, budget, \
                     default priority",
                )
            }),
        )
        .api_route(
            "/admin/clients/{id}/limits",
            get_with(list, |op| {
                op.api(Api::Admin)
                    .summary("A client's limits: requests per minute, tasks at once, budget")
            })
            .put_with(set, |op| {
                op.api(Api::Admin)
                    .summary(
                        "Set (replace) a client's limits and default task priority, client-wide \
                         or for one model; all null removes them",
                    )
                    .json_body::<SetLimits>()
            }),
        )
}

/// `PUT /admin/clients/{id}/limits`: one scope's limits; a missing or null field is no
/// limit of that kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetLimits {
    /// `provider/key`; absent for a limit on all of the client's tasks.
    model: Option<String>,
    /// Tasks accepted in any 60 seconds.
    requests_per_minute: Option<i64>,
    /// Tasks queued or running at once.
    concurrent_tasks: Option<i64>,
    /// Credits charged per `budget_period`.
    budget: Option<f64>,
    /// `day` or `month` (UTC); required with `budget`.
    budget_period: Option<String>,
    /// The priority of the client's tasks (of `model`) whose request names none; claims take
    /// higher first. Not a limit.
    priority: Option<i64>,
}

/// A stored row as the admin routes show it: credits, not micro-credits; `model` null for
/// the client-wide row.
fn view(limit: &ClientLimit) -> Value {
    json!({
        "model": (limit.model != ALL_MODELS).then_some(&limit.model),
        "requests_per_minute": limit.requests_per_minute,
        "concurrent_tasks": limit.concurrent_tasks,
        "budget": limit.budget_micros.map(to_credits),
        "budget_period": limit.budget_period,
        "priority": limit.priority,
    })
}

async fn listing(state: &AppState, client_id: &str) -> Result<Response, Error> {
    let rows = limits::list(state.engine.store(), client_id).await?;
    Ok(
        Json(json!({"client_id": client_id, "limits": rows.iter().map(view).collect::<Vec<_>>()}))
            .into_response(),
    )
}

/// `Ok` when `client_id` names a client; a 404 in the operator routes' shape otherwise.
pub(crate) async fn known_client(state: &AppState, client_id: &str) -> Result<(), Error> {
    if keys::client_exists(state.engine.store(), client_id).await? {
        Ok(())
    } else {
        Err(Error::not_found(&format!("Client {client_id}")))
    }
}

async fn own(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
) -> Result<Response, Error> {
    listing(&state, &client_id).await
}

async fn list(
    State(state): State<AppState>,
    _: Operator,
    PathOf {
        params: client_id, ..
    }: PathOf<String, Jobs>,
) -> Result<Response, Error> {
    known_client(&state, &client_id).await?;
    listing(&state, &client_id).await
}

async fn set(
    State(state): State<AppState>,
    _: Operator,
    PathOf {
        params: client_id, ..
    }: PathOf<String, Jobs>,
    body: AdminBody,
) -> Result<Response, Error> {
    let body: SetLimits = body.json()?;
    known_client(&state, &client_id).await?;
    let model = match body.model {
        Some(model)
            if model
                .split_once('/')
                .is_none_or(|(p, k)| p.is_empty() || k.is_empty()) =>
        {
            return Err(Error::bad_request(
                "model must be a model id, provider/key (omit it for every model).",
            ));
        }
        Some(model) => model,
        None => ALL_MODELS.to_string(),
    };
    for (name, value) in [
        ("requests_per_minute", body.requests_per_minute),
        ("concurrent_tasks", body.concurrent_tasks),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(Error::bad_request(format!("{name} cannot be negative.")));
        }
    }
    if body.priority.is_some_and(|p| !PRIORITIES.contains(&p)) {
        return Err(Error::bad_request(priority_range("priority")));
    }
    let budget_micros = match body.budget {
        Some(budget) if !budget.is_finite() || budget < 0.0 => {
            return Err(Error::bad_request(
                "budget must be a non-negative number of credits.",
            ));
        }
        Some(budget) if budget > to_credits(MAX_BALANCE_MICROS) => {
            return Err(Error::bad_request(format!(
                "budget must be at most {} credits, the largest balance a client may hold.",
                to_credits(MAX_BALANCE_MICROS)
            )));
        }
        Some(budget) => Some(to_micros(budget)),
        None => None,
    };
    match (&budget_micros, body.budget_period.as_deref()) {
        (Some(_), Some("day" | "month")) | (None, None) => {}
        (Some(_), _) => {
            return Err(Error::bad_request(
                "budget_period must be \"day\" or \"month\" with a budget.",
            ));
        }
        (None, Some(_)) => {
            return Err(Error::bad_request("budget_period needs a budget."));
        }
    }
    if budget_micros.is_some() && !state.engine.credit_settings().enforce {
        return Err(Error::bad_request(
            "Budgets count charged credits: set [credits] enforce = true in easel.toml first.",
        ));
    }
    let limit = ClientLimit {
        client_id: client_id.clone(),
        model,
        requests_per_minute: body.requests_per_minute,
        concurrent_tasks: body.concurrent_tasks,
        budget_micros,
        budget_period: body.budget_period,
        priority: body.priority,
    };
    let store = state.engine.store();
    if !limit.limits_anything() && limit.priority.is_none() {
        // A model that is gone may still have its row removed.
        limits::remove(store, &client_id, &limit.model).await?;
    } else {
        // A row for a model no host serves (a typo, an alias) would never apply.
        let served = state
            .engine
            .registry()
            .find(&limit.model)
            .is_ok_and(|resolved| resolved.id() == limit.model);
        if limit.model != ALL_MODELS && !served {
            return Err(Error::bad_request(format!(
                "Unknown model {}: a limit names a model id the hosts serve (GET /admin/models).",
                limit.model
            )));
        }
        limits::set(store, &limit, now_ms()).await?;
    }
    listing(&state, &client_id).await
}

/// Adds what the limits left to the response of a request an admission with limits answered:
/// `x-ratelimit-limit-*` and `x-ratelimit-remaining-*` for `requests` (per minute), `tasks`
/// (at once) and `credits` (the budget), and `Retry-After` (seconds) on a refusal.
pub async fn headers(request: Request, next: Next) -> Response {
    let (mut response, report) = reporting(next.run(request)).await;
    let Some(report) = report else {
        return response;
    };
    let Remaining {
        requests,
        tasks,
        credits,
        retry_after_secs,
    } = report;
    let refused = response.status() == StatusCode::TOO_MANY_REQUESTS;
    let mut set = |name: &str, value: String| {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().insert(name, value);
        }
    };
    for (kind, pair) in [("requests", requests), ("tasks", tasks)] {
        if let Some((limit, left)) = pair {
            set(&format!("x-ratelimit-limit-{kind}"), limit.to_string());
            set(&format!("x-ratelimit-remaining-{kind}"), left.to_string());
        }
    }
    if let Some((budget, left)) = credits {
        set("x-ratelimit-limit-credits", to_credits(budget).to_string());
        set(
            "x-ratelimit-remaining-credits",
            to_credits(left).to_string(),
        );
    }
    if let Some(secs) = retry_after_secs
        && refused
    {
        set(header::RETRY_AFTER.as_str(), secs.to_string());
    }
    response
}
