//! Fault plugin `fault-answers`: answers that break the contract, as the request asks.
//!
//! - `chat`: the last message names how its answer breaks the order of events:
//!   `after-finish` (text after the finish), `no-finish` (an end without one) or
//!   `unnamed-call` (a tool call whose function is never named); or `bad-details`, usage
//!   details that are no JSON object, or `bad-counts`, details that are no token counts.
//! - `image` (`image.generate`): the prompt names what it finishes with instead of an image:
//!   `nothing` (no output) or `text` (a text output).
//!
//! The host must fail each such task, not relay it or record it as a success.

use easel_sdk::{
    ChatEvent, ChatRequest, ChatStream, Error, EventList, Finished, GenerationRequest, Manifest, Model, Output, Provider,
    Result, Submission,
};

/// The provider.
#[derive(Default)]
pub struct FaultAnswers;

easel_sdk::export!(FaultAnswers);

impl Provider for FaultAnswers {
    fn manifest(&self) -> Manifest {
        let tools = easel_sdk::serde_json::json!({
            "type": "object",
            "properties": {"tools": {"type": "array"}},
            "additionalProperties": true
        });
        Manifest::new("fault-answers", env!("CARGO_PKG_VERSION"))
            .model(Model::new("chat", "Breaks the chat contract", "chat").capability("chat").params_schema(tools))
            .model(Model::new("image", "Finishes without an image", "image").capability("image.generate"))
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        let outputs = match request.prompt.as_str() {
            "nothing" => Vec::new(),
            "text" => vec![Output::Text("no image here".into())],
            other => return Err(Error::invalid(format!("ask for nothing or text, not {other:?}"))),
        };
        Ok(Submission::Finished(Finished::new(outputs)))
    }

    fn chat(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>> {
        let asked = request.messages.as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or_default();
        let text = |t: &str| ChatEvent::Delta(t.to_string());
        let finish = || ChatEvent::Finish("stop".to_string());
        let events = match asked {
            "after-finish" => vec![text("a"), finish(), text("b")],
            "no-finish" => vec![text("a")],
            "unnamed-call" => vec![
                ChatEvent::ToolCall { index: 0, id: None, name: None, arguments: "{}".into() },
                ChatEvent::Finish("tool_calls".to_string()),
            ],
            "bad-details" => vec![text("a"), ChatEvent::UsageDetails(easel_sdk::serde_json::json!([1])), finish()],
            "bad-counts" => {
                let details = easel_sdk::serde_json::json!({"completion_tokens_details": {"reasoning_tokens": "many"}});
                vec![text("a"), ChatEvent::UsageDetails(details), finish()]
            }
            other => {
                return Err(Error::invalid(format!(
                    "ask for after-finish, no-finish, unnamed-call, bad-details or bad-counts, not {other:?}"
                )));
            }
        };
        Ok(Box::new(EventList::new(events, 1)))
    }
}
