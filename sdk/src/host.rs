//! What the host lends a plugin: its log and the secrets the manifest declared.

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something odd that did not fail the task.
    Warn,
    /// Something failed.
    Error,
}

/// Writes one line to the host's log, tagged with the plugin and task. In native tests the
/// line goes to stderr and to `testing::logs`.
pub fn log(level: Level, message: &str) {
    imp::log(level, message)
}

/// Reads a secret the manifest declared; `None` when undeclared, unset, or not given to this
/// plugin by the operator (README: which secrets a plugin sees). In native tests
/// secrets come from `testing::set_secret` or `testing::Script::secret`.
pub fn secret(name: &str) -> Option<String> {
    imp::secret(name)
}

/// Like [`secret`], but a missing secret is an [`Error::Unauthorized`](crate::Error)
/// naming it, which is what a vendor call without credentials would end in anyway.
pub fn require_secret(name: &str) -> crate::Result<String> {
    secret(name)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| crate::Error::Unauthorized(format!("the operator has not set {name}")))
}

#[cfg(target_arch = "wasm32")]
mod imp {
    pub(super) use crate::wasm::{host_log as log, host_secret as secret};
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub(super) use crate::testing::{native_log as log, native_secret as secret};
}
