//! The front door: the one call that turns a request a dialect parsed into an accepted task.
//!
//! [`Engine::admit`] runs, in this order: the model serves the capability asked (a dialect
//! that picked its model itself, as seed 003's single-model service does, is held to it as
//! the jobs API's resolution is), the parameters against the model's whole schema
//! (defaults filled in, see [`ParamsSchema`](crate::engine::provider::schema::ParamsSchema)),
//! adapters (`loras`) only where the schema declares them, the provider's own
//! `check_params` (the `local` model's adapters exist and fit), the webhook target against
//! the no-SSRF rule, every input file ([`inputs::check`]) and how many of each kind the model
//! takes (its manifest's `max_inputs`) and in which form (`url_inputs`: kinds its vendor takes
//! only as links; [`inputs::InputRules`]), masks only for `image.inpaint` (exactly one, beside
//! the image it changes), the price from the checked
//! parameters' output count, the client's limits that apply to the model, then the uploads
//! are stored and the task is inserted with its idempotency key and reservation
//! ([`Engine::submit`]); the limits are decided in that insert's transaction
//! ([`limits`](crate::engine::limits)), so that every host counts the same tasks.
//!
//! Invariants: a refused request changes no stored state. Nothing is written before every
//! check passed, and uploads stored for a request the database then refuses (balance,
//! idempotency conflict) or that an idempotent replay makes unnecessary are removed again.
//! The dialects translate before (naming, units, shapes) and render after; they never
//! validate, price or store themselves.

use serde_json::{Map, Value};

use crate::engine::{
    Engine, NewTask, SubmitError,
    inputs::{self, BadInput, CheckError, Checked, Input},
    limits::Limited,
    provider::{GenerationRequest, ProviderError, schema::InvalidParam},
    registry::Resolved,
    task::Task,
};
use crate::store::limits::ClientLimit;

/// A request a dialect has parsed and resolved to a model.
pub struct Admission {
    /// Owner.
    pub client_id: String,
    /// Dialect name stored on the task; it renders the task later.
    pub api: &'static str,
    /// The model that will serve it.
    pub resolved: Resolved,
    /// Engine capability.
    pub capability: String,
    /// The prompt.
    pub prompt: String,
    /// Parameters, named as the model's schema names them.
    pub params: Map<String, Value>,
    /// Input files, unchecked.
    pub inputs: Vec<Input>,
    /// Where to announce the end, unchecked: `(field as the API names it, URL)`.
    pub webhook: Option<(&'static str, String)>,
    /// What the dialect needs later to render the task.
    pub extra: Value,
    /// `Idempotency-Key` and its body hash.
    pub idempotency: Option<(String, String)>,
    /// Claim order the request asked for; the client's default (its limits rows) otherwise.
    pub priority: Option<i64>,
}

/// Why a request was not accepted; each dialect words these in its own shape.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A parameter broke the model's schema; the message names it.
    #[error(transparent)]
    Invalid(#[from] InvalidParam),
    /// An input file or the webhook target is unusable; the message names the field.
    #[error(transparent)]
    BadInput(#[from] BadInput),
    /// The balance does not cover the price.
    #[error("Insufficient balance")]
    InsufficientBalance,
    /// A per-client limit (requests per minute, tasks at once, budget) refused it.
    #[error(transparent)]
    Limited(Limited),
    /// Same idempotency key, other body.
    #[error("Idempotency-Key was already used with a different request body.")]
    IdempotencyConflict,
    /// The provider refused to start a call the client waits for (chat), or failed it.
    #[error(transparent)]
    Provider(ProviderError),
    /// The process stopped, its grace run out, while the client waited (a chat cut off).
    #[error("easel is shutting down and cut this answer off before its end; ask again.")]
    ShuttingDown,
    /// Storage failed.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<SubmitError> for Refusal {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::IdempotencyConflict => Refusal::IdempotencyConflict,
            SubmitError::InsufficientBalance(_) => Refusal::InsufficientBalance,
            SubmitError::Limited(limited) => Refusal::Limited(limited),
            SubmitError::Store(error) => Refusal::Internal(error),
        }
    }
}

impl Refusal {
    /// The wait the vendor asked for when it refused for now (its `Retry-After`), for the
    /// dialects that answer the client at once to pass on.
    pub fn vendor_retry_after(&self) -> Option<u64> {
        match self {
            Refusal::Provider(ProviderError::RateLimited { retry_after_secs }) => *retry_after_secs,
            _ => None,
        }
    }
}

impl From<CheckError> for Refusal {
    fn from(error: CheckError) -> Self {
        match error {
            CheckError::Bad(bad) => Refusal::BadInput(bad),
            CheckError::Internal(error) => Refusal::Internal(error),
        }
    }
}

/// Adapters change what a model makes, so a model gets `loras` only when its schema says it
/// reads them; any other model would ignore them and answer as if they had been applied.
fn check_loras_declared(resolved: &Resolved, params: &Map<String, Value>) -> Result<(), Refusal> {
    let declared = resolved.schema.raw().pointer("/properties/loras").is_some();
    if params.get("loras").is_some_and(|v| !v.is_null()) && !declared {
        return Err(Refusal::Invalid(InvalidParam {
            param: Some("loras".into()),
            message: format!(
                "Invalid parameter loras: model {} does not take adapters",
                resolved.id()
            ),
            ..Default::default()
        }));
    }
    Ok(())
}

impl Engine {
    /// Checks, prices and accepts a request; returns the task and whether an idempotent
    /// replay reused an earlier one (see the module docs for the order and invariants).
    pub async fn admit(&self, admission: Admission) -> Result<(Task, bool), Refusal> {
        let client_id = admission.client_id.clone();
        let (mut new, checked) = self.check(admission).await?;
        let (media, uploads) = checked
            .store_uploads(self.assets(), &client_id)
            .await
            .map_err(Refusal::Internal)?;
        new.request.inputs = media;
        let submitted = self.submit(new).await;
        if !matches!(submitted, Ok((_, false))) {
            self.assets().remove_all(&uploads).await;
        }
        Ok(submitted?)
    }

    /// Every check of the front door, without storing anything: the task as it would be
    /// accepted (inputs still to store) and its inputs.
    pub(crate) async fn check(&self, admission: Admission) -> Result<(NewTask, Checked), Refusal> {
        let Admission {
            client_id,
            api,
            resolved,
            capability,
            prompt,
            mut params,
            inputs,
            webhook,
            extra,
            idempotency,
            priority,
        } = admission;
        resolved.serves(&capability).map_err(|unsupported| {
            Refusal::Invalid(InvalidParam {
                message: unsupported.to_string(),
                ..Default::default()
            })
        })?;
        resolved.schema.apply(&mut params)?;
        check_loras_declared(&resolved, &params)?;
        resolved
            .provider
            .check_params(&resolved.model.key, &params)?;
        let webhook_url = match webhook {
            Some((field, url)) => Some(
                self.guard()
                    .check_url(&url)
                    .map_err(|message| BadInput {
                        field: field.into(),
                        message,
                    })?
                    .to_string(),
            ),
            None => None,
        };
        let bounds = inputs::ImageBounds::of(&resolved);
        let checked = inputs::check(self, &client_id, inputs, bounds).await?;
        let linkable = self.public_link().is_some();
        checked.within(&inputs::InputRules::of(&resolved), &resolved.id(), linkable)?;
        checked.masks_fit(&capability)?;
        let price_micros = self.price(
            &resolved.id(),
            resolved.model.price_hint,
            resolved.schema.output_count(&params),
        );
        let mut limits = crate::store::limits::applicable(self.store(), &client_id, &resolved.id())
            .await
            .map_err(Refusal::Internal)?;
        // The model's row is listed after the client-wide one and wins.
        let priority = priority
            .or_else(|| limits.iter().rev().find_map(|row| row.priority))
            .unwrap_or(0);
        limits.retain(ClientLimit::limits_anything);
        let new = NewTask {
            client_id,
            api,
            provider: resolved.provider.id().to_string(),
            request: GenerationRequest {
                capability,
                model: resolved.model.key.clone(),
                prompt,
                params,
                inputs: Vec::new(),
            },
            webhook_url,
            extra,
            idempotency,
            price_micros,
            limits,
            request_id: crate::engine::task::current_request_id(),
            priority,
        };
        Ok((new, checked))
    }
}
