//! What the engine's unit tests share: a provider that serves no model, is never asked to
//! submit, and remembers the handles it was asked to cancel; and a task to insert.

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
    /// The handles it was asked to cancel, in order.
    pub(crate) cancelled: Mutex<Vec<String>>,
}

impl StubProvider {
    pub(crate) fn new(id: &'static str, idempotent: bool) -> Self {
        Self {
            id,
            idempotent,
            cancelled: Mutex::default(),
        }
    }
}

#[async_trait]
impl Provider for StubProvider {
    fn id(&self) -> &str {
        self.id
    }
    fn models(&self) -> Vec<ModelInfo> {
        Vec::new()
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
