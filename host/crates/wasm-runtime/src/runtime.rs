//! The one wasmtime `Engine` of the process, its epoch ticker, the shared `Linker`, the
//! on-disk cache of precompiled components, and the per-call store discipline.
//!
//! Invariants:
//! - One `Engine` (pooling allocator, epoch interruption, async support) serves every
//!   plugin; a background thread bumps its epoch every `epoch_tick`, and guest code yields
//!   to tokio at each tick, so calls never pin a tokio worker.
//! - Every call gets a fresh `Store` with a memory cap and a CPU deadline, inside a
//!   wall-clock timeout. The deadline counts the epoch ticks that fall while guest code
//!   runs: each entry into guest code starts the tick window over, so the time a guest
//!   waits on the host (its upstream's answer above all) is never charged to it. A trap
//!   becomes `ProviderError::Internal("plugin trapped: …")` for that call only, and the
//!   store is dropped (blast radius: one call). The wall-clock timeout is the vendor's
//!   silence, `ProviderError::UpstreamUnavailable`.
//! - At most `max_instances` calls hold an instance at once; more wait for a slot.
//! - Cached artifacts are keyed by the component's sha256 and the engine's compatibility
//!   hash, written atomically (temp file + rename), and a cache entry that fails to load is
//!   deleted and recompiled. The cache folder is trusted: only the host writes it.
//! - Compilation runs on the blocking pool, never on the request path.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use easel_provider::{Fault, ProviderError};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    CallHook, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use crate::config::WasmConfig;
use crate::contract::Called;
use crate::contract::{self, Pre};
use crate::gate::{NetPolicy, Notes};
use crate::kept::KeptInstances;
use crate::manifest::PluginManifest;
use crate::state::{CallState, PluginEnv};

/// The plugin runtime: engine, linker, cache and limits. Cheap to share (`Arc`).
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    config: WasmConfig,
    tls: Arc<rustls::ClientConfig>,
    compat: u64,
    slots: Arc<Semaphore>,
    kept: KeptInstances,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A component compiled, linked and validated, ready to serve as a plugin.
pub(crate) struct Loaded {
    pub(crate) pre: Arc<Pre>,
    pub(crate) manifest: PluginManifest,
    pub(crate) env: Arc<PluginEnv>,
    /// sha256 (hex) of the component.
    pub(crate) content_hash: String,
    /// The contract version it targets.
    pub(crate) contract: &'static str,
    pub(crate) exports: Vec<String>,
    pub(crate) imports: Vec<String>,
}

/// Counts a call as in flight while alive.
struct InFlight<'a>(&'a Runtime);

impl<'a> InFlight<'a> {
    fn new(rt: &'a Runtime) -> Self {
        let now = rt.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        rt.peak.fetch_max(now, Ordering::Relaxed);
        Self(rt)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a task says when its plugin reports `Unauthorized`: the vendor refused the operator's
/// credentials or account (a key it rejects, a balance run out), or the plugin found none to
/// send (the host's notes then say which secret was withheld and why).
const CREDENTIALS_REFUSED: &str = "the provider's credentials are missing or were refused, \
     or its account is out of credit (the plugin's own message is in the gateway's log)";

fn with_notes(e: ProviderError, notes: &[String]) -> ProviderError {
    if notes.is_empty() {
        return e;
    }
    let add = |m: String| format!("{m} (host: {})", notes.join("; "));
    let add_to = |fault: Fault| Fault {
        message: add(fault.message),
        ..fault
    };
    match e {
        ProviderError::InvalidRequest(f) => ProviderError::InvalidRequest(add_to(f)),
        ProviderError::Unauthorized(m) => ProviderError::Unauthorized(add(m)),
        ProviderError::ContentRejected(f) => ProviderError::ContentRejected(add_to(f)),
        ProviderError::UpstreamUnavailable(m) => ProviderError::UpstreamUnavailable(add(m)),
        ProviderError::UpstreamUnreached(m) => ProviderError::UpstreamUnreached(add(m)),
        ProviderError::Internal(m) => ProviderError::Internal(add(m)),
        other => other,
    }
}

impl Runtime {
    /// Builds the engine (and starts its epoch ticker) and the linker.
    pub fn new(config: WasmConfig) -> anyhow::Result<Arc<Self>> {
        let mut c = Config::new();
        c.epoch_interruption(true);
        c.wasm_component_model(true);
        if config.perf_map {
            c.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // Plugins are I/O-bound; small reservations keep thousands of pooled slots cheap.
        let reservation = (config.memory_limit_bytes as u64).next_multiple_of(64 << 10);
        c.memory_reservation(reservation);
        c.memory_guard_size(2 << 20);
        c.memory_reservation_for_growth(0);
        if config.pooling {
            // Kept chat instances sit outside the call slots: room for them too.
            let n = config
                .max_instances
                .max(1)
                .saturating_add(u32::try_from(config.kept_instances).unwrap_or(u32::MAX));
            let mut p = PoolingAllocationConfig::default();
            p.total_component_instances(n)
                .total_core_instances(n.saturating_mul(16))
                .total_memories(n.saturating_mul(2))
                .total_tables(n.saturating_mul(8))
                .total_stacks(n)
                .max_memory_size(reservation as usize)
                .max_core_instances_per_component(32)
                .max_memories_per_component(4)
                .max_tables_per_component(16)
                .max_component_instance_size(1 << 20)
                // A slot keeps up to `linear_memory_keep_resident` of its last module's pages.
                // Each redeploy brings a new module, and with wasmtime's default (100 unused
                // warm slots kept for other modules) every redeploy under load dirtied fresh
                // slots and left the old ones resident: RSS rose ~17 MiB per redeploy in the
                // soak. At 0 an idle slot of a replaced module is reused first, so the slots
                // ever touched stay at the peak number of concurrent instances.
                .max_unused_warm_slots(0)
                // Reset only the dirty pages of a slot (PAGEMAP_SCAN on Linux 6.7+) with
                // memset, keeping them resident, instead of madvise + page faults.
                .pagemap_scan(wasmtime::Enabled::Auto)
                .linear_memory_keep_resident(8 << 20)
                .table_keep_resident(1 << 20)
                .async_stack_keep_resident(256 << 10);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
        }
        let engine = Engine::new(&c).map_err(anyhow::Error::from)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = h.finish();

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        contract::add_to_linker(&mut linker)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let (engine, stop, tick) = (engine.clone(), ticker_stop.clone(), config.epoch_tick);
            std::thread::Builder::new()
                .name("easel-wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })?;
        }
        Ok(Arc::new(Self {
            engine,
            linker,
            slots: Arc::new(Semaphore::new(config.max_instances.max(1) as usize)),
            kept: KeptInstances::new(config.kept_instances, config.memory_limit_bytes),
            config,
            tls: Arc::new(tls),
            compat,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            ticker_stop,
        }))
    }

    /// The engine (for tools that need it).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The configuration it runs under.
    pub fn config(&self) -> &WasmConfig {
        &self.config
    }

    /// The chat instances kept for their clients' next chats.
    pub(crate) fn kept(&self) -> &KeptInstances {
        &self.kept
    }

    /// Calls holding an instance right now.
    pub fn in_flight_calls(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Most calls that held an instance at the same time since start.
    pub fn peak_concurrent_calls(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Compiles (on the blocking pool, through the cache) and prepares component bytes:
    /// detects the contract version, links, calls `manifest` and validates it, and grants
    /// the secrets it names that the operator assigned to it. The public `load_file` and `load_bytes` (in `provider`) make a
    /// plugin of the result.
    pub(crate) async fn load(self: &Arc<Self>, bytes: Vec<u8>) -> anyhow::Result<Loaded> {
        let rt = self.clone();
        let (hash, version, pre, exports, imports) =
            tokio::task::spawn_blocking(move || rt.prepare(&bytes)).await??;
        let pre = Arc::new(pre);
        let probe = Arc::new(PluginEnv {
            id: format!("(loading {})", &hash[..12]),
            secrets: Default::default(),
            grants: Vec::new(),
            policy: self.policy("(loading)", Vec::new()),
            refusals: Default::default(),
        });
        let manifest = self
            .call(&probe, "manifest", &CancellationToken::new(), |mut s| {
                let pre = pre.clone();
                async move { pre.manifest(&mut s).await }
            })
            .await
            .map_err(|e| anyhow::anyhow!("manifest() failed: {e}"))?;
        manifest.validate()?;
        let (secrets, grants) = crate::secrets::grant(&manifest, &self.config);
        let env = Arc::new(PluginEnv {
            id: manifest.id.clone(),
            secrets,
            grants,
            policy: self.policy(&manifest.id, manifest.allowed_hosts.clone()),
            refusals: Default::default(),
        });
        Ok(Loaded {
            pre,
            manifest,
            env,
            content_hash: hash,
            contract: version,
            exports,
            imports,
        })
    }

    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        bytes: &[u8],
    ) -> anyhow::Result<(String, &'static str, Pre, Vec<String>, Vec<String>)> {
        let hash = hex::encode(Sha256::digest(bytes));
        let component = self.compile(bytes, &hash)?;
        let (exports, imports) = contract::interface_names(&self.engine, &component);
        let version = contract::detect(&self.engine, &component)?;
        let ipre = self.linker.instantiate_pre(&component).map_err(|e| {
            anyhow::anyhow!(
                "the component's imports cannot be satisfied (a plugin may import only wasi:* \
                 and easel:provider/*): {e}"
            )
        })?;
        Ok((hash, version, Pre::new(version, ipre)?, exports, imports))
    }

    /// Compiles through the on-disk cache (blocking).
    fn compile(&self, bytes: &[u8], hash: &str) -> anyhow::Result<Component> {
        component_header(bytes)?;
        let Some(dir) = &self.config.cache_dir else {
            return Ok(Component::new(&self.engine, bytes)?);
        };
        let path = dir.join(format!("{hash}-{:016x}.cwasm", self.compat));
        if path.exists() {
            // SAFETY: the cache folder is written only by this host, atomically, from
            // `Component::serialize` of an engine with the same compatibility hash (it is
            // part of the file name), which is what `deserialize_file` requires.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "dropping unusable cached component: {e}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        let write = || -> anyhow::Result<()> {
            std::fs::create_dir_all(dir)?;
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let tmp = dir.join(format!(
                ".{hash}.{}.{}.tmp",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&tmp, component.serialize()?)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %dir.display(), "could not cache a compiled component: {e}");
        }
        Ok(component)
    }

    pub(crate) fn policy(&self, id: &str, manifest_hosts: Vec<String>) -> Arc<NetPolicy> {
        Arc::new(NetPolicy {
            plugin_id: id.to_string(),
            manifest_hosts,
            operator_hosts: self.config.operator_allowed_hosts.clone(),
            allow_private: self.config.allow_private_targets,
            connect_timeout: self.config.connect_timeout,
            request_timeout: self.config.request_timeout,
            max_response_bytes: self.config.max_response_bytes,
            tls: self.tls.clone(),
            connect_to: Arc::new(if self.config.allow_private_targets {
                self.config.connect_to.clone()
            } else {
                HashMap::new()
            }),
            pool: Default::default(),
            resolver: self.config.resolver.clone(),
        })
    }

    /// A fresh store for one call: memory cap and CPU deadline armed.
    pub(crate) fn new_store(
        &self,
        env: Arc<PluginEnv>,
        task_id: &str,
        notes: Notes,
    ) -> Store<CallState> {
        let state = CallState::new(env, task_id, self.config.memory_limit_bytes, notes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let max_ticks = (self.config.cpu_deadline.as_nanos()
            / self.config.epoch_tick.as_nanos().max(1))
        .max(1) as u64;
        store.epoch_deadline_callback(move |mut ctx| {
            let s = ctx.data_mut();
            s.ticks += 1;
            if s.ticks >= max_ticks {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        // Arms the deadline at every entry into guest code: each call (a kept instance's
        // next chat included), each return from a host call, and each call the host makes
        // into the guest's allocator for a result. Armed once per call instead, a tick that
        // passed while the guest waited on the host was charged at its next check: a call
        // reading a slow answer in many pieces ran out of "CPU" while mostly waiting.
        store.call_hook(|mut ctx, hook| {
            if matches!(hook, CallHook::CallingWasm | CallHook::ReturningFromHost) {
                ctx.set_epoch_deadline(1);
            }
            Ok(())
        });
        store
    }

    /// Turns a trap into the call's error, with what the host noted and the plugin's last
    /// error log line (a panic's message, through the SDK's panic hook).
    pub(crate) fn trap_error(&self, e: wasmtime::Error, notes: &Notes) -> ProviderError {
        let msg = match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                format!(
                    "exceeded its CPU deadline of {:?}",
                    self.config.cpu_deadline
                )
            }
            Some(trap) => trap.to_string(),
            // Host-raised traps (the memory limiter, a failed import) carry their reason
            // as the root cause; the outer layers are wasm backtraces.
            None => e.root_cause().to_string(),
        };
        // A panic traps right after the SDK's hook logged it: its message says why. Another
        // trap's cause (the CPU deadline, the memory limit) is the host's to name.
        let logged = notes
            .take_plugin_error()
            .filter(|line| {
                line.starts_with("panicked at")
                    && matches!(e.downcast_ref::<Trap>(), Some(Trap::UnreachableCodeReached))
            })
            .map(|line| format!("; it logged: {line}"))
            .unwrap_or_default();
        with_notes(
            ProviderError::Internal(format!("plugin trapped: {msg}{logged}")),
            &notes.take(),
        )
    }

    /// Waits for an instance slot (or cancellation).
    pub(crate) async fn slot(
        &self,
        cancel: &CancellationToken,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ProviderError> {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(ProviderError::Cancelled),
            p = self.slots.clone().acquire_owned() => {
                p.map_err(|_| ProviderError::Internal("plugin runtime is shutting down".into()))
            }
        }
    }

    /// Runs one call in a fresh store: slot, timeouts, cancellation, trap mapping.
    pub(crate) async fn call<R, F, Fut>(
        &self,
        env: &Arc<PluginEnv>,
        task_id: &str,
        cancel: &CancellationToken,
        f: F,
    ) -> Result<R, ProviderError>
    where
        F: FnOnce(Store<CallState>) -> Fut,
        Fut: Future<Output = Called<R>>,
    {
        let _permit = self.slot(cancel).await?;
        let _counted = InFlight::new(self);
        let notes = Notes::default();
        let store = self.new_store(env.clone(), task_id, notes.clone());
        let out = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(ProviderError::Cancelled),
            r = tokio::time::timeout(self.config.call_timeout, f(store)) => r,
        };
        match out {
            // The wall clock, not the CPU deadline: the plugin was waiting, on its vendor.
            Err(_) => Err(with_notes(
                ProviderError::UpstreamUnavailable(format!(
                    "plugin {} call exceeded its {:?} timeout",
                    env.id, self.config.call_timeout
                )),
                &notes.take(),
            )),
            Ok(Err(trap)) => Err(self.trap_error(trap, &notes)),
            Ok(Ok(Err(e))) => {
                let e = match e {
                    // The gate saw every request fail before one was handed to a connection.
                    ProviderError::UpstreamUnavailable(m) if notes.nothing_sent() => {
                        ProviderError::UpstreamUnreached(m)
                    }
                    other => other,
                };
                Err(self.plugin_error(&env.id, e, &notes.take()))
            }
            Ok(Ok(Ok(r))) => Ok(r),
        }
    }

    pub(crate) fn note_error(&self, e: ProviderError, notes: &Notes) -> ProviderError {
        with_notes(e, &notes.take())
    }

    /// An error plugin `plugin` returned, as the host passes it on. An `Unauthorized`
    /// message is the vendor's answer about the operator's credentials (OpenAI's names the
    /// key's last characters), so it goes to the operator's log, and whoever reads the task
    /// learns only that the credentials were refused or missing, and the host's own notes
    /// (a withheld secret: which one and why).
    pub(crate) fn plugin_error(
        &self,
        plugin: &str,
        e: ProviderError,
        notes: &[String],
    ) -> ProviderError {
        let e = match e {
            ProviderError::Unauthorized(answer) => {
                tracing::warn!(target: "easel::plugins", plugin, %answer, "the provider's credentials are missing or were refused");
                ProviderError::Unauthorized(CREDENTIALS_REFUSED.into())
            }
            other => other,
        };
        with_notes(e, notes)
    }
}

/// Refuses a file that is no component, saying what to build: wasmtime's own words are its
/// parser's (the magic number as a list of bytes, "a wasm module with a component parser").
fn component_header(bytes: &[u8]) -> anyhow::Result<()> {
    const BUILD: &str = "a plugin is the .wasm component `cargo build --release --target \
                         wasm32-wasip2` writes";
    match (bytes.get(..4), bytes.get(4..8)) {
        (Some(b"\0asm"), Some([1, 0, 0, 0])) => {
            anyhow::bail!("this is a core WebAssembly module, not a component: {BUILD}")
        }
        (Some(b"\0asm"), _) => Ok(()),
        _ => anyhow::bail!("this is not a WebAssembly file (no \\0asm header): {BUILD}"),
    }
}
