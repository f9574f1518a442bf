//! Operator-facing knobs of the plugin runtime.
//!
//! Invariants:
//! - Every limit here applies per call: one call's store gets its own memory cap, CPU
//!   deadline and wall-clock timeout, so a runaway plugin only ever fails its own call
//!   (blast radius: one task).
//! - Outbound network access is the intersection of the plugin manifest's `allowed-hosts`
//!   and [`WasmConfig::operator_allowed_hosts`]; every address the host's no-SSRF rule
//!   refuses (`easel_provider::net`: private, loopback, link-local, unspecified and the rest)
//!   is refused unless [`WasmConfig::allow_private_targets`] is set (tests only).
//! - Secret values come only from [`WasmConfig::secrets`] (plus the environment when
//!   [`WasmConfig::secrets_from_env`] is set), and a plugin only ever sees names its manifest
//!   declares and the operator assigned to it (`crate::secrets` has the rules).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Configuration of a [`crate::Runtime`].
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Folder for precompiled components (under `EASEL_DATA_DIR`); `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Use wasmtime's pooling instance allocator (fast instantiation). On by default.
    pub pooling: bool,
    /// Instances that may exist at once (pool size). Calls beyond it wait for a slot.
    pub max_instances: u32,
    /// Chat instances kept for their clients' next chats ([`crate::kept`]); 0 starts every
    /// chat in a fresh instance. The pool makes room for them beyond `max_instances`.
    pub kept_instances: usize,
    /// Linear-memory cap of one call's store, in bytes.
    pub memory_limit_bytes: usize,
    /// CPU time a call may spend executing guest code before it is interrupted.
    pub cpu_deadline: Duration,
    /// Wall-clock cap of one call (guest code plus host I/O); a chat stream applies it per
    /// `next` step.
    pub call_timeout: Duration,
    /// Epoch ticker period: the granularity of the CPU deadline and of async yields.
    pub epoch_tick: Duration,
    /// Operator allowlist (`api.example.com`, `*.example.com`, `*`); `None` means the
    /// manifest's own list is used as is.
    pub operator_allowed_hosts: Option<Vec<String>>,
    /// Allow loopback/private/link-local targets (tests only; `EASEL_ALLOW_PRIVATE_TARGETS`).
    pub allow_private_targets: bool,
    /// Time to resolve and connect to an upstream.
    pub connect_timeout: Duration,
    /// The longest an outbound request waits for its response's head (connect included),
    /// and the longest its body may go silent between two pieces; a plugin may ask for less
    /// (`wasi:http` request options). A body that keeps coming has no total limit.
    pub request_timeout: Duration,
    /// Largest response body a plugin may read from one outbound request, in bytes.
    pub max_response_bytes: u64,
    /// Secret values by variable name, looked up before the environment; a plugin reads only
    /// the names assigned to it (`crate::secrets`).
    pub secrets: HashMap<String, String>,
    /// Also read assigned variables missing from `secrets` from the process environment.
    pub secrets_from_env: bool,
    /// The operator's `[plugins.<id>] secrets`: by plugin id, the variables that plugin may
    /// read under their own names. A plugin listed here gets no shipped vendor default.
    pub secret_grants: HashMap<String, Vec<String>>,
    /// Tests only, honoured with `allow_private_targets`: send requests for these hosts in
    /// plain HTTP to the given address instead (a fake vendor on loopback).
    pub connect_to: HashMap<String, std::net::SocketAddr>,
    /// Quiet period after a change in the plugins folder before it is rescanned.
    pub reload_debounce: Duration,
    /// Name every compiled plugin function in `/tmp/perf-<pid>.map`, so that `perf report`
    /// shows a plugin's own functions (by name when the component keeps its name section)
    /// rather than bare addresses. A profiling aid; off by default.
    pub perf_map: bool,
    /// Resolves the names plugins' requests go to; the host passes its own, so the process
    /// keeps one cache of answers.
    pub resolver: easel_provider::resolver::Resolver,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            pooling: true,
            max_instances: 1000,
            kept_instances: 64,
            memory_limit_bytes: 64 << 20,
            cpu_deadline: Duration::from_secs(10),
            call_timeout: Duration::from_secs(300),
            epoch_tick: Duration::from_millis(5),
            operator_allowed_hosts: None,
            allow_private_targets: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_response_bytes: 64 << 20,
            secrets: HashMap::new(),
            secrets_from_env: true,
            secret_grants: HashMap::new(),
            connect_to: HashMap::new(),
            reload_debounce: Duration::from_millis(50),
            perf_map: false,
            resolver: Default::default(),
        }
    }
}
