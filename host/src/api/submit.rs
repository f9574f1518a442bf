//! The one path from a parsed request to an accepted task, shared by every dialect: the
//! parameters are checked against the model's schema (defaults filled in), the price is worked
//! out, and the engine accepts the task. Dialects only parse before and render after.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::{
    api::AppState,
    engine::{
        NewTask, SubmitError, params,
        provider::{GenerationRequest, InputMedia, ProviderError},
        registry::Resolved,
        task::Task,
    },
};

/// A request a dialect has parsed and resolved to a model.
pub struct Submission {
    /// Owner.
    pub client_id: String,
    /// Dialect name stored on the task.
    pub api: &'static str,
    /// The model that will serve it.
    pub resolved: Resolved,
    /// Engine capability.
    pub capability: String,
    /// The prompt.
    pub prompt: String,
    /// Parameters, named as the model's schema names them.
    pub params: Map<String, Value>,
    /// Input files.
    pub inputs: Vec<InputMedia>,
    /// Outputs asked for (`n`, `num_images`), for the price.
    pub count: u32,
    /// Where to announce the end (already SSRF-checked).
    pub webhook_url: Option<String>,
    /// What the dialect needs later to render the task.
    pub extra: Value,
    /// `Idempotency-Key` and its body hash.
    pub idempotency: Option<(String, String)>,
}

/// Why a submission was not accepted; each dialect words these in its own shape.
#[derive(Debug)]
pub enum Refused {
    /// A parameter broke the model's schema; the message names it.
    Invalid(String),
    /// The balance does not cover the price.
    InsufficientBalance,
    /// Same idempotency key, other body.
    IdempotencyConflict,
    /// The provider refused to start a call the client waits for (chat).
    Provider(ProviderError),
    /// Storage failed.
    Internal(anyhow::Error),
}

/// Validates, prices and accepts; returns the task and whether an idempotent replay reused it.
pub async fn submit(state: &AppState, submission: Submission) -> Result<(Task, bool), Refused> {
    let new = prepare(state, submission)?;
    Ok(state.engine.submit(new).await?)
}

/// Validates and prices: the task as the engine will accept it.
pub fn prepare(state: &AppState, submission: Submission) -> Result<NewTask, Refused> {
    let Submission {
        client_id,
        api,
        resolved,
        capability,
        prompt,
        mut params,
        inputs,
        count,
        webhook_url,
        extra,
        idempotency,
    } = submission;
    params::validate(&resolved.model.params_schema, &mut params).map_err(Refused::Invalid)?;
    let credits = state
        .engine
        .price(&resolved.id(), resolved.model.price_hint, count);
    Ok(NewTask {
        client_id,
        api,
        provider: resolved.provider.id().to_string(),
        request: GenerationRequest {
            capability,
            model: resolved.model.key.clone(),
            prompt,
            params,
            inputs,
        },
        webhook_url,
        extra,
        idempotency,
        credits,
    })
}

impl From<SubmitError> for Refused {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::IdempotencyConflict => Refused::IdempotencyConflict,
            SubmitError::InsufficientBalance(_) => Refused::InsufficientBalance,
            SubmitError::Store(error) => Refused::Internal(error),
        }
    }
}

impl Refused {
    /// The status and message every dialect shows, or the storage error behind a 500.
    pub fn parts(self) -> Result<(StatusCode, String), anyhow::Error> {
        match self {
            Refused::Invalid(message) => Ok((StatusCode::BAD_REQUEST, message)),
            Refused::InsufficientBalance => {
                Ok((StatusCode::TOO_MANY_REQUESTS, "Insufficient balance".into()))
            }
            Refused::IdempotencyConflict => Ok((
                StatusCode::CONFLICT,
                "Idempotency-Key was already used with a different request body.".into(),
            )),
            Refused::Provider(error) => Ok((provider_status(&error), error.to_string())),
            Refused::Internal(error) => Err(error),
        }
    }
}

/// The status a provider's refusal is shown with: the client's fault is a 400, the vendor's a
/// 502.
fn provider_status(error: &ProviderError) -> StatusCode {
    match error {
        ProviderError::InvalidRequest(_) | ProviderError::ContentRejected(_) => {
            StatusCode::BAD_REQUEST
        }
        ProviderError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ProviderError::Unauthorized(_) | ProviderError::UpstreamUnavailable(_) => {
            StatusCode::BAD_GATEWAY
        }
        ProviderError::Internal(_) | ProviderError::Cancelled => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Parameters from `(name, value)` pairs, leaving out the absent ones.
pub fn present_params(
    fields: impl IntoIterator<Item = (&'static str, Option<Value>)>,
) -> Map<String, Value> {
    fields
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_string(), value?)))
        .collect()
}

/// An input file the vendor can fetch by URL (or a `data:` URL the worker decodes).
pub fn url_input(kind: &str, role: Option<&str>, url: String) -> InputMedia {
    InputMedia {
        kind: kind.into(),
        role: role.map(str::to_string),
        url: Some(url),
        asset_id: None,
        content_type: None,
        data: None,
    }
}

/// The task's stored outputs, in order (chat text outputs are skipped).
pub async fn stored_outputs(
    state: &AppState,
    task: &Task,
) -> anyhow::Result<Vec<crate::assets::Asset>> {
    let mut found = Vec::new();
    for id in task.output_asset_ids() {
        if let Some(asset) = state.engine.assets().get(&task.client_id, &id).await? {
            found.push(asset);
        }
    }
    Ok(found)
}
