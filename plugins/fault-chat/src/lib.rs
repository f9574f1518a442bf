//! Fault plugin `fault-chat`: a chat model whose answer breaks the contract's order in the way
//! the last message names: `after-finish` (text after the finish), `no-finish` (an end
//! without one) or `unnamed-call` (a tool call whose function is never named). The host must
//! fail such a chat, not relay it or record it as whole.

use easel_sdk::{ChatEvent, ChatRequest, ChatStream, Error, EventList, GenerationRequest, Manifest, Model, Provider, Result, Submission};

/// The provider.
#[derive(Default)]
pub struct FaultChat;

easel_sdk::export!(FaultChat);

impl Provider for FaultChat {
    fn manifest(&self) -> Manifest {
        let tools = easel_sdk::serde_json::json!({
            "type": "object",
            "properties": {"tools": {"type": "array"}},
            "additionalProperties": true
        });
        Manifest::new("fault-chat", env!("CARGO_PKG_VERSION"))
            .model(Model::new("chat", "Breaks the chat contract", "chat").capability("chat").params_schema(tools))
    }

    fn submit(&self, _: GenerationRequest) -> Result<Submission> {
        Err(Error::invalid("fault-chat only chats"))
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
            other => return Err(Error::invalid(format!("ask for after-finish, no-finish or unnamed-call, not {other:?}"))),
        };
        Ok(Box::new(EventList::new(events, 1)))
    }
}
