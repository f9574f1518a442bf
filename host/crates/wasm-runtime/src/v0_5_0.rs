//! Binding of contract `easel:provider@0.5.0` (folder `wit/v0.5.0`).
//!
//! Invariants: as [`crate::v0_4_0`]'s (this module only translates this version's generated
//! types), and a reasoning model's thinking reaches the chat as
//! [`easel_provider::ChatEvent::Reasoning`], apart from its text.
//!
//! 0.5.0 is 0.4.0 with the `reasoning` chat event.

/// The contract version this binding speaks.
pub(crate) const VERSION: &str = "0.5.0";

/// The export that marks a component as targeting this version.
pub(crate) const MARKER_EXPORT: &str = "easel:provider/chat@0.5.0";

fn chat_event(e: t::ChatEvent) -> Result<easel_provider::ChatEvent, ProviderError> {
    use easel_provider::ChatEvent as E;
    Ok(match e {
        t::ChatEvent::Delta(s) => E::Delta(s),
        t::ChatEvent::Refusal(s) => E::Refusal(s),
        t::ChatEvent::Reasoning(s) => E::Reasoning(s),
        t::ChatEvent::ToolCall(call) => E::ToolCall(easel_provider::ToolCallPiece {
            index: call.index,
            id: call.id,
            name: call.name,
            arguments: call.arguments,
        }),
        t::ChatEvent::Usage((prompt_tokens, completion_tokens)) => E::Usage {
            prompt_tokens,
            completion_tokens,
        },
        t::ChatEvent::UsageDetails(text) => {
            E::UsageDetails(std::sync::Arc::new(crate::v0_3_0::usage_details(&text)?))
        }
        t::ChatEvent::AnswerInfo(info) => E::AnswerInfo(easel_provider::AnswerInfo {
            system_fingerprint: info.system_fingerprint,
            service_tier: info.service_tier,
        }),
        t::ChatEvent::Finish(s) => E::Finish(s),
    })
}

/// A refused request, with the vendor's error code and the parameter at fault.
fn fault(f: t::Fault) -> easel_provider::Fault {
    easel_provider::Fault {
        message: f.message,
        code: f.code,
        param: f.param,
    }
}

crate::binding::binding!("../../../wit/v0.5.0");
