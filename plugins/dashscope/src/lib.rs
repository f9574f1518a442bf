//! easel provider plugin `dashscope`: Alibaba Cloud Model Studio (Bailian), reached
//! through DashScope's HTTP API.
//!
//! - images ([`image`]): `qwen-image` (Pixel's fields; with an input image it edits via
//!   `qwen-image-edit`), `wan2.2-t2i-plus`, `wan2.2-t2i-flash`, `wan2.5-t2i-preview`;
//! - video ([`video`]): `wan2.6-t2v`, `wan2.6-r2v`, Pixel's `wan2.6-video`, and
//!   `happyhorse-1.0-t2v`/`-i2v`/`-r2v`;
//! - chat ([`chat`]): `qwen-plus`, `qwen3-max`, streamed;
//! - speech ([`tts`]): `qwen3-tts-flash`.
//!
//! Images and video are DashScope tasks: `submit` answers a pending handle, `poll` reads
//! the task, `cancel` cancels it while DashScope still has it queued.

pub mod chat;
pub mod client;
pub mod errors;
pub mod image;
pub mod models;
pub mod params;
pub mod tts;
pub mod video;

#[cfg(test)]
mod tests;

use client::{Family, Region, Task};
use easel_sdk::serde_json::Value;
use easel_sdk::{ChatRequest, ChatStream, Error, GenerationRequest, Manifest, PollOutcome, Provider, Result, Submission};

/// The provider; it keeps no state between calls.
#[derive(Default)]
pub struct DashScope;

easel_sdk::export!(DashScope);

impl Provider for DashScope {
    fn manifest(&self) -> Manifest {
        let mut manifest = Manifest::new("dashscope", env!("CARGO_PKG_VERSION"))
            .allow_host(Region::Beijing.host())
            .allow_host(Region::Singapore.host())
            .secret(client::API_KEY)
            .secret(client::REGION)
            // DashScope has no idempotency key: a repeated submit starts (and bills) a new task.
            .idempotent_submit(false);
        for host in client::RESULT_HOSTS {
            manifest = manifest.allow_host(*host);
        }
        for model in models::all() {
            manifest = manifest.model(model);
        }
        manifest
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        let region = Region::configured()?;
        match (request.capability.as_str(), request.model.as_str()) {
            ("image.generate" | "image.edit", "qwen-image" | "wan2.2-t2i-plus" | "wan2.2-t2i-flash" | "wan2.5-t2i-preview") => {
                image::submit(&request, region)
            }
            ("video.generate", _) => video::submit(&request, region),
            ("audio.speech", tts::MODEL) => tts::submit(&request, region),
            (capability, model) => Err(Error::invalid(format!("dashscope/{model} does not do {capability}"))),
        }
    }

    fn poll(&self, handle: &str) -> Result<PollOutcome> {
        let task = Task::from_handle(handle)?;
        let answer = client::fetch_task(&task)?;
        let output = answer.get("output").cloned().unwrap_or(Value::Null);
        let status = output.get("task_status").and_then(Value::as_str).unwrap_or("");
        Ok(match status {
            "PENDING" | "RUNNING" => PollOutcome::Running { progress: None, poll_after_ms: task.family.poll_after_ms() },
            "SUCCEEDED" => match task.family {
                Family::Image => image::finished(&answer, &task.id),
                Family::Video => video::finished(&answer, &task.id),
            },
            "FAILED" => PollOutcome::Failed(errors::from_failed_task(&output)),
            "CANCELED" => PollOutcome::Failed(Error::internal("the task was cancelled at DashScope")),
            // UNKNOWN: the task id is not (or no longer) known; results live 24 hours.
            "UNKNOWN" => PollOutcome::Failed(Error::upstream("DashScope no longer knows this task (expired or never created)")),
            other => return Err(Error::upstream(format!("DashScope sent an unknown task_status `{other}`"))),
        })
    }

    fn cancel(&self, handle: &str) -> Result<()> {
        client::cancel_task(&Task::from_handle(handle)?)
    }

    fn chat(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>> {
        if !chat::MODELS.contains(&request.model.as_str()) {
            return Err(Error::invalid(format!("dashscope/{} does not do chat", request.model)));
        }
        chat::start(&request, Region::configured()?)
    }
}
