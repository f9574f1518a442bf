//! easel provider plugin for Zhipu AI's BigModel open platform
//! (`https://open.bigmodel.cn/api/paas/v4`).
//!
//! - `cogview-3-flash` (`image.generate`): `POST /images/generations`, synchronous; the
//!   image URL it answers is handed to the host as a URL output.
//! - GLM chat models (`chat`): `POST /chat/completions` with `stream: true`, read as
//!   server-sent events (see [`chat`]).
//!
//! Nothing is asynchronous here, so the plugin has no pending handles, no poll and no
//! cancel (the SDK defaults answer those).

mod api;
mod chat;
mod errors;
mod models;

#[cfg(test)]
mod tests;

use easel_sdk::serde_json::json;
use easel_sdk::{
    ChatRequest, ChatStream, Error, Finished, GenerationRequest, Manifest, Output, Provider,
    Result, Submission,
};

/// The platform's base URL.
pub const API_BASE: &str = "https://open.bigmodel.cn/api/paas/v4";
/// The secret holding the API key (a bearer token).
pub const API_KEY_SECRET: &str = "ZHIPU_API_KEY";

/// The provider; it keeps no state.
#[derive(Default)]
pub struct Zhipu;

easel_sdk::export!(Zhipu);

impl Provider for Zhipu {
    fn manifest(&self) -> Manifest {
        models::manifest()
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        if request.capability != "image.generate" || request.model != models::COGVIEW_3_FLASH {
            return Err(Error::invalid(format!(
                "zhipu/{} does not do {}",
                request.model, request.capability
            )));
        }
        if request.prompt.trim().is_empty() {
            return Err(Error::invalid("Missing required parameter: prompt"));
        }
        let body = json!({
            "model": models::COGVIEW_3_FLASH,
            "prompt": prompt_with_negative(&request)?,
            "size": models::image_size(&request)?,
        });
        let answer = api::call(api::post(&format!("{API_BASE}/images/generations"))?.json(&body))?;
        let outputs: Vec<Output> = answer["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["url"].as_str())
            .map(|url| Output::Url {
                url: url.to_string(),
                content_type: Some("image/png".into()),
            })
            .collect();
        if outputs.is_empty() {
            return Err(Error::upstream(format!(
                "Zhipu answered without an image URL: {answer}"
            )));
        }
        Ok(Submission::Finished(
            Finished::new(outputs).usage(json!({"images": 1})),
        ))
    }

    fn chat(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>> {
        if !models::CHAT_MODELS
            .iter()
            .any(|(key, _)| *key == request.model)
        {
            return Err(Error::invalid(format!(
                "zhipu/{} does not do chat",
                request.model
            )));
        }
        chat::start(&request)
    }
}

/// CogView has no negative-prompt field; seed 002's `negative_prompt` is folded into the
/// prompt as an instruction, which is how CogView's own guide suggests steering away.
fn prompt_with_negative(request: &GenerationRequest) -> Result<String> {
    let negative = request.param_str("negative_prompt", "")?.trim();
    Ok(if negative.is_empty() {
        request.prompt.clone()
    } else {
        format!("{}\nAvoid: {negative}", request.prompt)
    })
}
