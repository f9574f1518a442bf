//! easel provider plugin `volcengine`: Volcengine Ark and Doubao speech.
//!
//! - video ([`video`]): Seedance 2.0 (`doubao-seedance-2-0-260128`, `-fast-260128`) and
//!   Seedance 1.5 pro (`doubao-seedance-1-5-pro-251215`) as Ark tasks — text, first/last
//!   frames, and (2.0) image, video and audio references;
//! - images ([`image`]): Seedream 4.0, synchronous, with optional input images;
//! - chat ([`chat`]): Doubao models, streamed;
//! - speech ([`tts`]): `doubao-tts` over the Doubao speech HTTP API.

pub mod chat;
pub mod client;
pub mod errors;
pub mod image;
pub mod models;
pub mod tts;
pub mod video;

#[cfg(test)]
mod tests;

use easel_sdk::{ChatRequest, ChatStream, Error, GenerationRequest, Manifest, PollOutcome, Provider, Result, Submission};

/// The provider; it keeps no state between calls.
#[derive(Default)]
pub struct Volcengine;

easel_sdk::export!(Volcengine);

impl Provider for Volcengine {
    fn manifest(&self) -> Manifest {
        let mut manifest = Manifest::new("volcengine", env!("CARGO_PKG_VERSION"))
            .allow_host(client::ARK_HOST)
            .allow_host(tts::HOST)
            // Ark's result files, on TOS (shared object storage, so the exact buckets, no
            // wildcard): the Seedance task query's `content.video_url` sample
            // (https://www.volcengine.com/docs/82379/1521309) and published answers of the
            // Seedream image API (https://www.volcengine.com/docs/82379/1541523) use these two.
            // Doubao speech comes back as bytes.
            .allow_host("ark-content-generation-cn-beijing.tos-cn-beijing.volces.com")
            .allow_host("ark-content-generation-v2-cn-beijing.tos-cn-beijing.volces.com")
            .secret(client::ARK_API_KEY)
            .secret(tts::APP_ID)
            .secret(tts::ACCESS_TOKEN)
            .secret(tts::CLUSTER)
            // Ark tasks take no idempotency key: submitting twice bills twice.
            .idempotent_submit(false);
        for model in models::all() {
            manifest = manifest.model(model);
        }
        manifest
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        match (request.capability.as_str(), request.model.as_str()) {
            ("video.generate", m) if video::SEEDANCE_2.contains(&m) || m == video::SEEDANCE_1_5_PRO => video::submit(&request),
            ("image.generate" | "image.edit", image::SEEDREAM) => image::submit(&request),
            ("audio.speech", tts::MODEL) => tts::submit(&request),
            (capability, model) => Err(Error::invalid(format!("volcengine/{model} does not do {capability}"))),
        }
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        video::poll(handle)
    }

    fn cancel(&self, handle: &str) -> Result<()> {
        video::cancel(handle)
    }

    fn chat(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>> {
        if !chat::MODELS.contains(&request.model.as_str()) {
            return Err(Error::invalid(format!("volcengine/{} does not do chat", request.model)));
        }
        chat::start(&request)
    }
}
