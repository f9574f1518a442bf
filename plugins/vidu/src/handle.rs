//! The pending handle: everything `poll` and `cancel` need, in one string the host
//! persists, so a fresh plugin instance can pick a task up after a restart.

use easel_sdk::{Error, Result};

const PREFIX: &str = "vidu:v1:";
/// Normal tasks finish in a minute or two.
const POLL_AFTER_MS: u64 = 10_000;
/// Off-peak tasks run when Vidu has spare capacity, within 48 hours; asking often is waste.
const OFF_PEAK_POLL_AFTER_MS: u64 = 300_000;

/// A submitted Vidu task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskHandle {
    /// Vidu's task id.
    pub task_id: String,
    /// Whether the task runs in off-peak mode (slower, cheaper).
    pub off_peak: bool,
}

impl TaskHandle {
    /// `vidu:v1:<p|n>:<task id>`.
    pub fn encode(&self) -> String {
        format!("{PREFIX}{}:{}", if self.off_peak { "p" } else { "n" }, self.task_id)
    }

    /// The inverse of [`TaskHandle::encode`].
    pub fn decode(handle: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("not a Vidu task handle: {handle}"));
        let rest = handle.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (mode, task_id) = rest.split_once(':').ok_or_else(bad)?;
        if task_id.is_empty() || !task_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(bad());
        }
        let off_peak = match mode {
            "p" => true,
            "n" => false,
            _ => return Err(bad()),
        };
        Ok(TaskHandle { task_id: task_id.to_string(), off_peak })
    }

    /// When polling is next useful.
    pub fn poll_after_ms(&self) -> u64 {
        if self.off_peak { OFF_PEAK_POLL_AFTER_MS } else { POLL_AFTER_MS }
    }
}
