//! What every dialect shares around the engine's front door
//! ([`Engine::admit`](crate::engine::Engine::admit)): the status and sentence a refusal is
//! shown with, and small helpers for building an admission and reading a task's outputs.
//! The checks themselves live in the engine; nothing here validates, prices or stores.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::{
    api::AppState,
    engine::{front_door::Refusal, provider::ProviderError, task::Task},
};

/// The status and message every dialect shows for a refusal, or the storage error behind a
/// 500.
pub fn refusal_parts(refusal: Refusal) -> Result<(StatusCode, String), anyhow::Error> {
    let status = match &refusal {
        Refusal::Internal(_) => {
            let Refusal::Internal(error) = refusal else {
                unreachable!("matched just above")
            };
            return Err(error);
        }
        Refusal::Invalid(_) | Refusal::BadInput(_) => StatusCode::BAD_REQUEST,
        Refusal::InsufficientBalance | Refusal::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
        Refusal::IdempotencyConflict => StatusCode::CONFLICT,
        Refusal::Provider(error) => provider_status(error),
        Refusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    };
    if let Refusal::Provider(error) = &refusal {
        return Ok((status, provider_message(error)));
    }
    Ok((status, refusal.to_string()))
}

/// What a client is told of a provider's error in the answer to its request. Its own failure
/// (a plugin trap, a host fault) is logged, never shown: that text is the host's internals,
/// nothing the client can act on. (A task's recorded error keeps a plugin's fault, for the
/// operator reading it: [`Outcome::failed_by`](crate::engine::lifecycle::Outcome::failed_by).)
pub fn provider_message(error: &ProviderError) -> String {
    match error {
        ProviderError::Internal(_) => {
            tracing::error!(%error, "provider failed while answering a client");
            "The provider failed to handle this request.".into()
        }
        ProviderError::Cancelled => "The request was cancelled before it finished.".into(),
        // The code and parameter are the dialect's to show (OpenAI's as fields), not text.
        ProviderError::InvalidRequest(fault) => format!("invalid request: {}", fault.message),
        ProviderError::ContentRejected(fault) => format!("content rejected: {}", fault.message),
        other => other.to_string(),
    }
}

/// The status a provider's refusal is shown with: the client's fault is a 400, the vendor's a
/// 502, a cancel (through the jobs API, or by an operator) a 409.
fn provider_status(error: &ProviderError) -> StatusCode {
    match error {
        ProviderError::InvalidRequest(_) | ProviderError::ContentRejected(_) => {
            StatusCode::BAD_REQUEST
        }
        ProviderError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ProviderError::Unauthorized(_)
        | ProviderError::UpstreamUnavailable(_)
        | ProviderError::UpstreamUnreached(_) => StatusCode::BAD_GATEWAY,
        ProviderError::Cancelled => StatusCode::CONFLICT,
        ProviderError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_providers_own_failure_is_not_shown_and_the_clients_fault_is() {
        let trap = ProviderError::Internal("wasm trap: unreachable at 0x1f2e, /home/ci/src".into());
        assert_eq!(
            provider_message(&trap),
            "The provider failed to handle this request."
        );
        let invalid = ProviderError::InvalidRequest("size must be 1024x1024".into());
        assert!(provider_message(&invalid).contains("size must be 1024x1024"));
    }
}
