//! The data of one call's `Store`: an empty WASI context, the HTTP gate, the memory
//! limiter and what the plugin may read.
//!
//! Invariants: a store lives for one call and is dropped after it, trap or not, so nothing
//! a plugin does survives into another call (blast radius: that call). The one exception is
//! a chat's store that ran to its end, which may serve its client's next chat on the same
//! plugin version ([`crate::kept`]): still one client's, never after a trap. The WASI context
//! grants no files, no environment, no arguments and no sockets; the only way out is
//! `wasi:http` through the gate.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::gate::{Gate, NetPolicy, Notes, Refusals};
use crate::secrets::SecretGrant;

/// What one loaded plugin may touch: shared by all its calls.
pub(crate) struct PluginEnv {
    pub(crate) id: String,
    /// Only the secrets the manifest declared and the operator assigned to this plugin.
    pub(crate) secrets: HashMap<String, String>,
    /// What became of each declared secret.
    pub(crate) grants: Vec<SecretGrant>,
    pub(crate) policy: Arc<NetPolicy>,
    pub(crate) refusals: Refusals,
}

/// The memory limiter: `StoreLimits` plus a clear message when the cap is hit.
pub(crate) struct Limiter {
    inner: StoreLimits,
    max: usize,
    /// Linear memory the store's instances hold, in bytes.
    used: usize,
}

impl Limiter {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            inner: StoreLimitsBuilder::new()
                .memory_size(max)
                .instances(64)
                .tables(64)
                .memories(8)
                .trap_on_grow_failure(true)
                .build(),
            max,
            used: 0,
        }
    }

    /// Linear memory the store's instances hold, in bytes.
    pub(crate) fn memory(&self) -> usize {
        self.used
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The cap holds for all of the store's memories together: a component of several core
        // modules has one memory each.
        let total = self.used + desired.saturating_sub(current);
        if total > self.max {
            wasmtime::bail!(
                "memory limit exceeded: the plugin's memories would hold {total} bytes, the limit is {} bytes",
                self.max
            );
        }
        let grows = self.inner.memory_growing(current, desired, maximum)?;
        if grows {
            self.used += desired.saturating_sub(current);
        }
        Ok(grows)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The `T` of every `Store<T>` the runtime makes.
pub(crate) struct CallState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) gate: Gate,
    pub(crate) limiter: Limiter,
    pub(crate) env: Arc<PluginEnv>,
    pub(crate) task_id: String,
    /// Epoch ticks spent executing guest code in the current step (the CPU deadline).
    pub(crate) ticks: u64,
}

impl CallState {
    pub(crate) fn new(
        env: Arc<PluginEnv>,
        task_id: &str,
        memory_limit: usize,
        notes: Notes,
    ) -> Self {
        Self {
            wasi: WasiCtx::builder()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            gate: Gate {
                policy: env.policy.clone(),
                notes,
                refusals: env.refusals.clone(),
            },
            limiter: Limiter::new(memory_limit),
            env,
            task_id: task_id.to_string(),
            ticks: 0,
        }
    }

    /// Readies a kept store's data for another chat: its task, its notes, its CPU time.
    pub(crate) fn for_chat(&mut self, task_id: &str, notes: Notes) {
        task_id.clone_into(&mut self.task_id);
        self.gate.notes = notes;
        self.ticks = 0;
    }

    /// `host.secret`: granted names only. Reading a withheld one (not assigned to this
    /// plugin, or undeclared) leaves a note saying why, so the plugin's resulting error names
    /// the reason; an assigned one left unset is an optional setting, not a refusal.
    pub(crate) fn secret(&self, name: &str) -> Option<String> {
        let value = self.env.secrets.get(name).cloned();
        if value.is_none() {
            let grant = self.env.grants.iter().find(|g| g.name == name);
            if grant.is_some_and(|g| g.from.is_some()) {
                return None;
            }
            let why = grant
                .and_then(|g| g.reason.clone())
                .unwrap_or_else(|| "the manifest does not declare it".into());
            let refusal = format!("plugin {}: secret {name} withheld: {why}", self.env.id);
            self.env.refusals.record(&refusal);
            self.gate.notes.push(refusal);
        }
        value
    }

    /// `host.log`: to `tracing`, tagged with the plugin and task.
    pub(crate) fn log(&self, level: tracing::Level, message: &str) {
        let (plugin, task) = (self.env.id.as_str(), self.task_id.as_str());
        match level {
            tracing::Level::ERROR => {
                tracing::error!(target: "easel::plugin", plugin, task, "{message}");
                self.gate.notes.plugin_error(message);
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "easel::plugin", plugin, task, "{message}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "easel::plugin", plugin, task, "{message}")
            }
            _ => tracing::debug!(target: "easel::plugin", plugin, task, "{message}"),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::Limiter;

    #[test]
    fn the_memory_cap_holds_for_all_memories_together() {
        let mut limiter = Limiter::new(100 << 16);
        assert!(limiter.memory_growing(0, 60 << 16, None).unwrap());
        // A second core module's memory counts with the first.
        assert!(limiter.memory_growing(0, 60 << 16, None).is_err());
        assert!(limiter.memory_growing(60 << 16, 100 << 16, None).unwrap());
        assert_eq!(limiter.memory(), 100 << 16);
        assert!(limiter.memory_growing(0, 1 << 16, None).is_err());
    }
}
