//! easel provider plugin `openai`: OpenAI's chat completions (streamed), image
//! generation (`gpt-image-1`, `dall-e-3`), edits and inpainting (`gpt-image-1`) and speech
//! (`gpt-4o-mini-tts`, `tts-1`).
//!
//! Every call is synchronous at OpenAI, so `submit` always answers finished outputs and
//! there is nothing to poll or cancel.

pub mod chat;
pub mod client;
pub mod errors;
pub mod image;
pub mod models;
pub mod speech;

#[cfg(test)]
mod tests;

use easel_sdk::{ChatRequest, ChatStream, Error, GenerationRequest, Manifest, Provider, Result, Submission};

/// The provider; it keeps no state between calls.
#[derive(Default)]
pub struct OpenAi;

easel_sdk::export!(OpenAi);

impl Provider for OpenAi {
    fn manifest(&self) -> Manifest {
        let mut manifest = Manifest::new("openai", env!("CARGO_PKG_VERSION"))
            .allow_host(client::HOST)
            // dall-e-3 answers with a link valid for an hour
            // (https://platform.openai.com/docs/api-reference/images/create). OpenAI does not
            // name its host; the links in published answers all use this Azure storage account.
            // Only that account: the rest of blob.core.windows.net is anyone's storage.
            .allow_host("oaidalleapiprodscus.blob.core.windows.net")
            .secret(client::API_KEY)
            // These endpoints take no idempotency key; a repeat bills again.
            .idempotent_submit(false);
        for model in models::all() {
            manifest = manifest.model(model);
        }
        manifest
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        match (request.capability.as_str(), request.model.as_str()) {
            ("image.generate", m) if image::MODELS.contains(&m) => image::submit(&request),
            ("image.edit" | "image.inpaint", m) if m == image::MODELS[0] => image::edit(&request),
            ("audio.speech", m) if speech::MODELS.contains(&m) => speech::submit(&request),
            (capability, model) => Err(Error::invalid(format!("openai/{model} does not do {capability}"))),
        }
    }

    fn chat(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>> {
        if !chat::MODELS.contains(&request.model.as_str()) {
            return Err(Error::invalid(format!("openai/{} does not do chat", request.model)));
        }
        chat::start(&request)
    }
}
