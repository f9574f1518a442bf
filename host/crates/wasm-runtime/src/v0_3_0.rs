//! Binding of contract `easel:provider@0.3.0` (folder `wit/v0.3.0`).
//!
//! Invariants: this module only translates between the generated types of this contract
//! version and `easel_provider`'s types ([`crate::binding`] holds what versions share); its
//! behaviour never changes once 0.3.0 is released (a new contract version gets its own module
//! beside it). JSON carried as text is parsed by the shared binding; malformed usage text is
//! kept under `{"raw": ...}` rather than failing a finished task, but usage details that are
//! not an object of objects of token counts fail the chat: they would be shown to its client
//! inside OpenAI's usage, where clients read them as counts.
//!
//! 0.3.0 is 0.2.0 with `usage-details` and `answer-info` chat events.

use crate::binding::fault_of_message as fault;

/// The contract version this binding speaks.
pub(crate) const VERSION: &str = "0.3.0";

/// The export that marks a component as targeting this version.
pub(crate) const MARKER_EXPORT: &str = "easel:provider/chat@0.3.0";

fn chat_event(e: t::ChatEvent) -> Result<easel_provider::ChatEvent, ProviderError> {
    use easel_provider::ChatEvent as E;
    Ok(match e {
        t::ChatEvent::Delta(s) => E::Delta(s),
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
            E::UsageDetails(std::sync::Arc::new(usage_details(&text)?))
        }
        t::ChatEvent::AnswerInfo(info) => E::AnswerInfo(easel_provider::AnswerInfo {
            system_fingerprint: info.system_fingerprint,
            service_tier: info.service_tier,
        }),
        t::ChatEvent::Finish(s) => E::Finish(s),
    })
}

/// The finer counts a plugin sent: a JSON object of objects of token counts, as OpenAI's
/// `prompt_tokens_details` and `completion_tokens_details` are.
pub(crate) fn usage_details(
    text: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
    let details = json_object(text, "the provider's usage-details")
        .map_err(|e| ProviderError::Internal(format!("{e:#}")))?;
    for (key, counts) in &details {
        let counted = counts
            .as_object()
            .is_some_and(|counts| counts.values().all(serde_json::Value::is_u64));
        if !counted {
            return Err(ProviderError::Internal(format!(
                "the provider's usage-details `{key}` is not an object of token counts"
            )));
        }
    }
    Ok(details)
}

crate::binding::binding!("../../../wit/v0.3.0");
