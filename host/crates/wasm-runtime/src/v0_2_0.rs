//! Binding of contract `easel:provider@0.2.0` (folder `wit/v0.2.0`).
//!
//! Invariants: this module only translates between the generated types of this contract
//! version and `easel_provider`'s types ([`crate::binding`] holds what versions share); its
//! behaviour never changes once 0.2.0 is released (a new contract version gets its own module
//! beside it). JSON carried as text is parsed by the shared binding; malformed usage text is
//! kept under `{"raw": ...}` rather than failing a finished task.
//!
//! 0.2.0 is 0.1.0 with `tool-call` chat events.

use crate::binding::fault_of_message as fault;

/// The contract version this binding speaks.
pub(crate) const VERSION: &str = "0.2.0";

/// The export that marks a component as targeting this version.
pub(crate) const MARKER_EXPORT: &str = "easel:provider/chat@0.2.0";

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
        t::ChatEvent::Finish(s) => E::Finish(s),
    })
}

crate::binding::binding!("../../../wit/v0.2.0");
