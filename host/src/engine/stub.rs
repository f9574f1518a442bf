//! What the engine's unit tests share: a provider that serves image models by key (none
//! unless told), is never asked to submit, and remembers the handles it was asked to cancel;
//! and a task to insert.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::engine::{
    NewTask,
    provider::{CallContext, GenerationRequest, ModelInfo, Provider, ProviderError, Submission},
};

/// A free image task of `provider` to insert, with nothing else set.
pub(crate) fn image_task(provider: &str) -> NewTask {
    let request = GenerationRequest {
        capability: "image.generate".into(),
        model: "m".into(),
        prompt: "p".into(),
        params: Default::default(),
        inputs: Vec::new(),
    };
    NewTask::for_tests(provider, request)
}

/// The provider `id`, whose submit is `idempotent` or not (what recovery decides by).
pub(crate) struct StubProvider {
    id: &'static str,
    idempotent: bool,
    keys: &'static [&'static str],
    /// The handles it was asked to cancel, in order.
    pub(crate) cancelled: Mutex<Vec<String>>,
}

impl StubProvider {
    pub(crate) fn new(id: &'static str, idempotent: bool) -> Self {
        Self {
            id,
            idempotent,
            keys: &[],
            cancelled: Mutex::default(),
        }
    }

    /// The same provider serving an image model under each of `keys`.
    pub(crate) fn serving(self, keys: &'static [&'static str]) -> Self {
        Self { keys, ..self }
    }
}

#[async_trait]
impl Provider for StubProvider {
    fn id(&self) -> &str {
        self.id
    }
    fn models(&self) -> Vec<ModelInfo> {
        self.keys
            .iter()
            .map(|key| ModelInfo {
                key: key.to_string(),
                name: key.to_string(),
                kind: "image".into(),
                capabilities: vec!["image.generate".into()],
                params_schema: serde_json::json!({}),
                price_hint: None,
                extra: Default::default(),
            })
            .collect()
    }
    fn submit_is_idempotent(&self) -> bool {
        self.idempotent
    }
    async fn submit(
        &self,
        _: &GenerationRequest,
        _: &CallContext,
    ) -> Result<Submission, ProviderError> {
        Err(ProviderError::Internal("not called in these tests".into()))
    }
    async fn cancel(&self, handle: &str, _: &CallContext) -> Result<(), ProviderError> {
        self.cancelled.lock().unwrap().push(handle.to_string());
        Ok(())
    }
}
