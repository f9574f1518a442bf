//! Binding of contract `easel:provider@0.1.0` (folder `wit/v0.1.0`).
//!
//! Invariants: this module only translates between the generated types of this contract
//! version and `easel_provider`'s types ([`crate::binding`] holds what versions share); its
//! behaviour never changes once 0.1.0 is released (a new contract version gets its own module
//! beside it). JSON carried as text is parsed by the shared binding; malformed usage text is
//! kept under `{"raw": ...}` rather than failing a finished task.

use crate::binding::fault_of_message as fault;

/// The contract version this binding speaks.
pub(crate) const VERSION: &str = "0.1.0";

/// The export that marks a component as targeting this version.
pub(crate) const MARKER_EXPORT: &str = "easel:provider/chat@0.1.0";

fn chat_event(e: t::ChatEvent) -> Result<easel_provider::ChatEvent, ProviderError> {
    use easel_provider::ChatEvent as E;
    Ok(match e {
        t::ChatEvent::Delta(s) => E::Delta(s),
        t::ChatEvent::Usage((prompt_tokens, completion_tokens)) => E::Usage {
            prompt_tokens,
            completion_tokens,
        },
        t::ChatEvent::Finish(s) => E::Finish(s),
    })
}

crate::binding::binding!("../../../wit/v0.1.0");
