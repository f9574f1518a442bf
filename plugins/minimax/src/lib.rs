//! easel provider plugin for MiniMax's open platform (`https://api.minimax.io/v1`, or the
//! mainland China platform `https://api.minimaxi.com/v1` when `MINIMAX_REGION` is `cn`).
//!
//! - `MiniMax-Hailuo-02` (`video.generate`): an asynchronous task ([`video`]);
//! - `speech-02-hd`, `speech-02-turbo` (`audio.speech`): synchronous T2A v2 ([`speech`]);
//! - `MiniMax-M2`, `MiniMax-Text-01` (`chat`): chat completions with tool calls ([`chat`]).
//!
//! MiniMax documents no way to cancel a video task, so `cancel` keeps the SDK's refusal.

mod api;
mod chat;
mod errors;
mod models;
mod speech;
mod video;

#[cfg(test)]
mod tests;

use easel_sdk::{ChatRequest, ChatStream, Error, GenerationRequest, Manifest, PollOutcome, Provider, Result, Submission};
use vendor_kit::region::Region;

/// The global platform's base URL.
pub const API_BASE: &str = "https://api.minimax.io/v1";
/// The mainland China platform's base URL (note the extra `i`: minimaxi).
pub const API_BASE_CN: &str = "https://api.minimaxi.com/v1";
/// The API key (a bearer token). Keys work only on the platform that issued them.
pub const API_KEY_SECRET: &str = "MINIMAX_API_KEY";
/// Optional secret choosing the platform: `global` (default) or `cn`.
pub const REGION_SECRET: &str = "MINIMAX_REGION";

/// The base URL of a region.
pub fn api_base(region: Region) -> &'static str {
    region.pick(API_BASE, API_BASE_CN)
}

/// The provider; it keeps no state.
#[derive(Default)]
pub struct MiniMax;

easel_sdk::export!(MiniMax);

impl Provider for MiniMax {
    fn manifest(&self) -> Manifest {
        models::manifest()
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        let model = request.model.as_str();
        match request.capability.as_str() {
            "video.generate" if model == models::VIDEO_MODEL => video::submit(&request),
            "audio.speech" if models::SPEECH_MODELS.iter().any(|(k, _)| *k == model) => speech::synthesize(&request),
            capability => Err(Error::invalid(format!("minimax/{model} does not do {capability}"))),
        }
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        video::poll(handle)
    }

    fn chat(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>> {
        if !models::CHAT_MODELS.iter().any(|(k, _)| *k == request.model) {
            return Err(Error::invalid(format!("minimax/{} does not do chat", request.model)));
        }
        chat::start(&request)
    }
}
