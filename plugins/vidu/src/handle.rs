//! The pending handle: everything `poll` and `cancel` need, in one string the host
//! persists, so a fresh plugin instance can pick a task up after a restart.

use easel_sdk::{Error, Result};
use vendor_kit::region::Region;

/// The vendor part of the prefix; `vendor_kit::handle` adds `-cn` for mainland tasks.
const VENDOR: &str = "vidu";
const HANDLE_VERSION: &str = "v1";
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
    /// The platform that holds the task.
    pub region: Region,
}

impl TaskHandle {
    /// `vidu:v1:<p|n>:<task id>`, or `vidu-cn:v1:…` for a task on the mainland platform.
    pub fn encode(&self) -> String {
        let mode = if self.off_peak { "p" } else { "n" };
        vendor_kit::handle::encode_regional(self.region, VENDOR, HANDLE_VERSION, &[mode, &self.task_id])
    }

    /// The inverse of [`TaskHandle::encode`].
    pub fn decode(handle: &str) -> Result<Self> {
        let (region, fields) = vendor_kit::handle::decode_regional(VENDOR, HANDLE_VERSION, handle, 2)?;
        let off_peak = match fields[0] {
            "p" => true,
            "n" => false,
            other => return Err(Error::invalid(format!("unknown task mode `{other}` in handle"))),
        };
        Ok(TaskHandle { task_id: vendor_kit::handle::task_id(fields[1])?.to_string(), off_peak, region })
    }

    /// When polling is next useful.
    pub fn poll_after_ms(&self) -> u64 {
        if self.off_peak { OFF_PEAK_POLL_AFTER_MS } else { POLL_AFTER_MS }
    }
}
