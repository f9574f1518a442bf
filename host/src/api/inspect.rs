//! Read routes for dashboards such as the console: a task's whole story (its request, usage,
//! error, outputs with public links, a chat's text and tool calls, and webhook deliveries),
//! every model with its parameter schema and price, and accounts. Each is served twice from
//! one renderer: for the caller's own things under `/api/v1` (a client key, 001's `{"error"}`
//! shape) and for everything under `/admin` (the admin key, guarded like every operator
//! route). `/admin/workers` lists the live processes of the fleet, from the workers table,
//! and the providers' breakers that count failures (see [`crate::engine::breakers`]).
//!
//! Invariant: a client reaches only its own tasks here, exactly as through `/api/v1/jobs`;
//! the operator's routes are the only ones that list or cancel across clients.

use aide::axum::{
    ApiRouter,
    routing::{get_with, post_with},
};
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::{
        AppState,
        admin::Operator,
        dialect::{PathOf, QueryOf},
        error::Error,
        files::public_base,
        jobs::{self, Client, Jobs, ListQuery},
        openapi::{Api, Describe},
    },
    engine::{
        fleet,
        task::{CancelledBy, Status, Task, now_ms, rfc3339},
    },
    store::breakers,
};

/// The read routes, for clients and for the operator.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/api/v1/jobs/{id}/detail",
            get_with(own_task, |op| {
                op.api(Api::Jobs).summary(
                    "A job with its request, usage, error, output links and webhook deliveries",
                )
            }),
        )
        .api_route(
            "/api/v1/catalog",
            get_with(own_catalog, |op| {
                op.api(Api::Jobs).summary(
                    "Every model with its provider, parameter JSON Schema, price and defaults",
                )
            }),
        )
        .api_route(
            "/api/v1/account",
            get_with(own_account, |op| {
                op.api(Api::Jobs)
                    .summary("The calling client: balance, reservations and spending per model")
            }),
        )
        .api_route(
            "/admin/tasks",
            get_with(any_tasks, |op| {
                op.api(Api::Admin)
                    .summary("Every client's tasks, newest first, filtered like /api/v1/jobs")
            }),
        )
        .api_route(
            "/admin/tasks/{id}",
            get_with(any_task, |op| {
                op.api(Api::Admin).summary(
                    "Any task with its request, usage, error, output links and webhook deliveries",
                )
            }),
        )
        .api_route(
            "/admin/tasks/{id}/cancel",
            post_with(cancel_any, |op| {
                op.api(Api::Admin).summary("Cancel any client's task")
            }),
        )
        .api_route(
            "/admin/models",
            get_with(any_catalog, |op| {
                op.api(Api::Admin).summary(
                    "Every model with its provider, parameter JSON Schema, price and defaults",
                )
            }),
        )
        .api_route(
            "/admin/workers",
            get_with(workers, |op| {
                op.api(Api::Admin).summary(
                    "The live workers of the fleet: host, providers, models, capacity, tasks held",
                )
            }),
        )
        .api_route(
            "/admin/clients",
            get_with(clients, |op| {
                op.api(Api::Admin)
                    .summary("Every client with its balance, reservations and spending")
            }),
        )
}

/// A job as 001 shows it, with its owner and the API that created it: one row of a listing.
fn summary(task: &Task) -> Value {
    let mut view = serde_json::to_value(jobs::view(task)).expect("a job view serializes");
    view["clientId"] = task.client_id.clone().into();
    view["api"] = task.api.clone().into();
    view
}

/// [`summary`] and everything else known about the task. Output links point where the
/// caller reached this host (see [`public_base`]).
async fn detail(state: &AppState, headers: &HeaderMap, task: &Task) -> Result<Value, Error> {
    let base = public_base(state, headers);
    let mut outputs = Vec::new();
    for id in task.output_asset_ids() {
        if let Some(asset) = state.engine.assets().get_linked(&id).await? {
            outputs.push(json!({
                "assetId": asset.id,
                "kind": asset.kind,
                "name": asset.name,
                "contentType": asset.content_type,
                "size": asset.size,
                "url": state.links.url(&base, &asset.id),
            }));
        }
    }
    let recorded = task.outputs_json();
    let recorded = recorded.as_array().into_iter().flatten();
    let texts: Vec<Value> = recorded
        .clone()
        .filter_map(|output| output.get("text").cloned())
        .collect();
    let refusal = recorded
        .clone()
        .find_map(|output| output.get("refusal").cloned());
    let reasoning = recorded
        .clone()
        .find_map(|output| output.get("reasoning").cloned());
    let tool_calls: Vec<Value> = recorded
        .filter_map(|output| output.get("tool_calls")?.as_array().cloned())
        .flatten()
        .collect();
    let deliveries: Vec<Value> = state
        .engine
        .webhook_deliveries(&task.id)
        .await?
        .into_iter()
        .map(|delivery| {
            let pending = delivery.delivered_at.is_none() && delivery.gave_up_at.is_none();
            json!({
                "id": delivery.id,
                "url": delivery.url,
                "attempts": delivery.attempts,
                "deliveredAt": delivery.delivered_at.map(rfc3339),
                "gaveUpAt": delivery.gave_up_at.map(rfc3339),
                "nextAttemptAt": pending.then(|| rfc3339(delivery.next_attempt_at)),
                "lastError": delivery.last_error,
                "createdAt": rfc3339(delivery.created_at),
            })
        })
        .collect();
    let mut view = summary(task);
    view["request"] = serde_json::from_str(&task.request).unwrap_or(Value::Null);
    view["outputs"] = outputs.into();
    view["texts"] = texts.into();
    if !tool_calls.is_empty() {
        view["toolCalls"] = tool_calls.into();
    }
    if let Some(refusal) = refusal {
        view["refusal"] = refusal;
    }
    if let Some(reasoning) = reasoning {
        view["reasoning"] = reasoning;
    }
    // What became of the reservation once the task ended: kept on success, given back
    // otherwise (the ledger's `refund` row), so an ended task's view says which.
    let reserved = task.reserved_credits();
    view["reservedCredits"] = reserved.into();
    let (charged, refunded) = match task.status {
        Status::Succeeded => (Some(reserved), Some(0.0)),
        status if status.is_terminal() => (Some(0.0), Some(reserved)),
        _ => (None, None),
    };
    view["chargedCredits"] = charged.into();
    view["refundedCredits"] = refunded.into();
    view["webhookUrl"] = task.webhook_url.clone().into();
    view["webhookDeliveries"] = deliveries.into();
    if let Some(position) = state.engine.queue_position(task).await? {
        view["queuePosition"] = position.into();
    }
    view["workerId"] = task.worker_id.clone().into();
    // Claims counted against `[engine] max_attempts` (a breaker's probe that found the vendor
    // away is not).
    view["attempts"] = task.attempts.into();
    Ok(view)
}

/// Every model the registry serves (a model is listed only while its provider serves it),
/// with the price a task pays per output and the capabilities it is the default for.
fn catalog(state: &AppState) -> Value {
    let registry = state.engine.registry();
    let credits = state.engine.credit_settings();
    let models: Vec<Value> = registry
        .models()
        .iter()
        .map(|resolved| {
            let id = resolved.id();
            let default_for: Vec<&String> = resolved
                .model
                .capabilities
                .iter()
                .filter(|c| registry.default_for(c).as_deref() == Some(id.as_str()))
                .collect();
            json!({
                "id": id,
                "provider": resolved.provider.id(),
                "key": resolved.model.key,
                "name": resolved.model.name,
                "kind": resolved.model.kind,
                "capabilities": resolved.model.capabilities,
                "defaultFor": default_for,
                "price": credits.prices.get(&id).copied().or(resolved.model.price_hint),
                "paramsSchema": resolved.model.params_schema,
                "extra": resolved.model.extra,
            })
        })
        .collect();
    json!({ "models": models, "creditsEnforced": credits.enforce })
}

async fn own_task(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
    headers: HeaderMap,
    PathOf { params: id, .. }: PathOf<String, Jobs>,
) -> Result<Response, Error> {
    let task = state
        .engine
        .get(&client_id, &id)
        .await?
        .ok_or_else(|| Error::not_found("Job"))?;
    Ok(Json(json!({ "job": detail(&state, &headers, &task).await? })).into_response())
}

async fn own_catalog(State(state): State<AppState>, _: Client) -> Response {
    Json(catalog(&state)).into_response()
}

async fn own_account(
    State(state): State<AppState>,
    Client { client_id, .. }: Client,
) -> Result<Response, Error> {
    Ok(Json(state.engine.account(&client_id).await?).into_response())
}

/// Query of `GET /admin/tasks`: 001's filters, and one client.
#[derive(Debug, Deserialize, JsonSchema)]
struct AnyTasksQuery {
    /// Only this client's tasks.
    client: Option<String>,
    #[serde(flatten)]
    jobs: ListQuery,
}

async fn any_tasks(
    State(state): State<AppState>,
    _: Operator,
    QueryOf { query, .. }: QueryOf<AnyTasksQuery, Jobs>,
) -> Result<Response, Error> {
    let client = query.client.filter(|c| !c.is_empty());
    let filter = query.jobs.filter()?;
    let (tasks, more) = state.engine.list_any(client.as_deref(), &filter).await?;
    Ok(Json(jobs::page_of(&tasks, more, summary)).into_response())
}

async fn find_any(state: &AppState, id: &str) -> Result<Task, Error> {
    state
        .engine
        .fetch(id)
        .await?
        .ok_or_else(|| Error::not_found("Task"))
}

async fn any_task(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    PathOf { params: id, .. }: PathOf<String, Jobs>,
) -> Result<Response, Error> {
    let task = find_any(&state, &id).await?;
    Ok(Json(json!({ "job": detail(&state, &headers, &task).await? })).into_response())
}

async fn cancel_any(
    State(state): State<AppState>,
    _: Operator,
    PathOf { params: id, .. }: PathOf<String, Jobs>,
) -> Result<Response, Error> {
    let task = find_any(&state, &id).await?;
    if task.status.is_terminal() {
        return Err(Error(
            StatusCode::CONFLICT,
            format!("Task is already {}.", task.status),
        ));
    }
    let task = state
        .engine
        .cancel(&task.client_id, &id, CancelledBy::Operator)
        .await?
        .ok_or_else(|| Error::not_found("Task"))?;
    Ok(Json(json!({ "job": summary(&task) })).into_response())
}

async fn any_catalog(State(state): State<AppState>, _: Operator) -> Result<Response, Error> {
    Ok(Json(catalog(&state)).into_response())
}

async fn clients(State(state): State<AppState>, _: Operator) -> Result<Response, Error> {
    let mut accounts = Vec::new();
    for client in state.auth.clients().await? {
        accounts.push(state.engine.account(&client).await?);
    }
    Ok(Json(json!({ "clients": accounts })).into_response())
}

async fn workers(State(state): State<AppState>, _: Operator) -> Result<Response, Error> {
    let workers: Vec<Value> = fleet::live(&state.engine)
        .await?
        .into_iter()
        .map(|worker| {
            let models: Vec<String> = worker
                .announced
                .iter()
                .flat_map(|a| {
                    a.models
                        .iter()
                        .map(move |m| format!("{}/{}", a.provider, m.key))
                })
                .collect();
            let row = worker.row;
            json!({
                "id": row.id,
                "host": row.host,
                "pid": row.pid,
                "providers": worker.providers,
                "models": models,
                "capacity": row.capacity,
                "submitting": worker.submitting,
                "version": row.version,
                "modelLoaded": row.model_loaded == 1,
                "startedAt": rfc3339(row.started_at),
                "lastSeen": rfc3339(row.last_seen),
                "announcement": worker.announced,
            })
        })
        .collect();
    let now = now_ms();
    let breakers: Vec<Value> = breakers::all(state.engine.store())
        .await?
        .into_iter()
        .map(|row| {
            json!({
                "provider": row.provider,
                "open": row.is_open(now),
                "failures": row.failures,
                "openUntil": (row.open_until > 0).then(|| rfc3339(row.open_until)),
                "lastError": row.last_error,
                "lastFailure": rfc3339(row.updated_at),
            })
        })
        .collect();
    Ok(Json(json!({ "workers": workers, "breakers": breakers })).into_response())
}
