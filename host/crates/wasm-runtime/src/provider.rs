//! [`WasmProvider`]: one loaded plugin version behind the `easel_provider::Provider` trait.
//!
//! Invariants:
//! - Immutable once built: a new plugin version is a new `WasmProvider`, so a call that
//!   holds an `Arc` of the old one finishes on the old code (drain by refcount) and the old
//!   one is retired when its last call ends.
//! - Each submit/poll/cancel is one fresh instance in one fresh store. A chat stream owns
//!   one store (and its call slot) for its lifetime: a fresh one, or the one its client's
//!   last chat on this version left ([`crate::kept`]). It steps the plugin only when it is
//!   polled for its next event, in the task that reads it: no task or channel of its own, so
//!   a slow reader slows the plugin, and dropping the stream ends the call. It ends when the
//!   plugin has no more events, a step fails, or the call is cancelled; only the first of
//!   these leaves its store to be kept.
//! - No state is kept between calls but a kept chat instance's own memory (the handle is
//!   all `poll` and `cancel` get).
//!
//! `Runtime::load_file` and `Runtime::load_bytes` are defined here, on top of the runtime's
//! own preparation of a component, so that this module uses the runtime and the runtime never
//! names the provider built on it.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use easel_provider::{
    CallContext, ChatEvent, ChatRequest, ChatStream, GenerationRequest, ModelInfo, PollOutcome,
    Provider, ProviderError, Submission,
};
use tokio_util::sync::CancellationToken;

use crate::contract::{Pre, Session};
use crate::gate::Notes;
use crate::kept::KeptInstance;
use crate::manifest::PluginManifest;
use crate::reload::ChatInstances;
use crate::runtime::Runtime;
use crate::state::PluginEnv;

/// A loaded plugin.
pub struct WasmProvider {
    runtime: Arc<Runtime>,
    pre: Arc<Pre>,
    manifest: PluginManifest,
    env: Arc<PluginEnv>,
    content_hash: String,
    contract: &'static str,
    exports: Vec<String>,
    imports: Vec<String>,
    fresh_chats: AtomicU64,
    kept_chats: AtomicU64,
}

impl std::fmt::Debug for WasmProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmProvider")
            .field("id", &self.manifest.id)
            .field("version", &self.manifest.version)
            .field("contract", &self.contract)
            .field("content_hash", &self.content_hash)
            .finish()
    }
}

impl Runtime {
    /// Reads, compiles (off the request path) and loads a component file.
    pub async fn load_file(self: &Arc<Self>, path: &Path) -> anyhow::Result<WasmProvider> {
        let bytes = tokio::fs::read(path).await?;
        self.load_bytes(bytes).await
    }

    /// Compiles (on the blocking pool, through the cache) and loads component bytes: detects
    /// the contract version, links, calls `manifest` and validates it.
    pub async fn load_bytes(self: &Arc<Self>, bytes: Vec<u8>) -> anyhow::Result<WasmProvider> {
        let loaded = self.load(bytes).await?;
        Ok(WasmProvider {
            runtime: self.clone(),
            pre: loaded.pre,
            manifest: loaded.manifest,
            env: loaded.env,
            content_hash: loaded.content_hash,
            contract: loaded.contract,
            exports: loaded.exports,
            imports: loaded.imports,
            fresh_chats: AtomicU64::new(0),
            kept_chats: AtomicU64::new(0),
        })
    }
}

impl WasmProvider {
    /// The validated manifest.
    pub fn manifest(&self) -> &PluginManifest {
        &self.manifest
    }

    /// The hosts this version may reach: its manifest's, narrowed by the operator's
    /// `allowed_hosts` when set.
    pub fn allowed_hosts(&self) -> Vec<String> {
        self.env.policy.allowed_hosts()
    }

    /// sha256 (hex) of the component file.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// The contract version the component targets (`0.1.0`).
    pub fn contract_version(&self) -> &'static str {
        self.contract
    }

    /// The component's export names.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// The component's import names.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// What became of each secret the manifest declared.
    pub fn secret_grants(&self) -> &[crate::SecretGrant] {
        &self.env.grants
    }

    /// The latest things the host refused this plugin, oldest first.
    pub fn recent_refusals(&self) -> Vec<String> {
        self.env.refusals.list()
    }

    /// The chats this version started, by the instance they ran on.
    pub fn chats(&self) -> ChatInstances {
        ChatInstances {
            fresh: self.fresh_chats.load(Ordering::Relaxed),
            kept: self.kept_chats.load(Ordering::Relaxed),
        }
    }
}

#[async_trait]
impl Provider for WasmProvider {
    fn id(&self) -> &str {
        &self.manifest.id
    }

    fn version(&self) -> String {
        self.manifest.version.clone()
    }

    fn models(&self) -> Vec<ModelInfo> {
        self.manifest.models.clone()
    }

    fn submit_is_idempotent(&self) -> bool {
        self.manifest.idempotent_submit
    }

    fn makes_tool_calls(&self) -> bool {
        crate::contract::has_tool_calls(self.contract_version())
    }

    fn output_link_refused(&self, host: &str) -> Option<String> {
        let refusal = self.env.policy.refuse_link(host)?;
        self.env.refusals.record(&refusal);
        Some(refusal)
    }

    async fn submit(
        &self,
        request: &GenerationRequest,
        ctx: &CallContext,
    ) -> Result<Submission, ProviderError> {
        let pre = &self.pre;
        self.runtime
            .call(&self.env, &ctx.task_id, &ctx.cancel, |mut s| async move {
                pre.submit(&mut s, request).await
            })
            .await
    }

    async fn poll(&self, handle: &str, ctx: &CallContext) -> Result<PollOutcome, ProviderError> {
        let pre = &self.pre;
        let out = self
            .runtime
            .call(&self.env, &ctx.task_id, &ctx.cancel, |mut s| async move {
                pre.poll(&mut s, handle).await
            })
            .await?;
        if let PollOutcome::Running {
            progress: Some(p), ..
        } = &out
        {
            ctx.progress.report(*p);
        }
        Ok(out)
    }

    async fn cancel(&self, handle: &str, ctx: &CallContext) -> Result<(), ProviderError> {
        let pre = &self.pre;
        self.runtime
            .call(&self.env, &ctx.task_id, &ctx.cancel, |mut s| async move {
                pre.cancel(&mut s, handle).await
            })
            .await
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        ctx: &CallContext,
    ) -> Result<ChatStream, ProviderError> {
        let stepper = Stepper {
            runtime: self.runtime.clone(),
            env: self.env.clone(),
            cancel: ctx.cancel.clone(),
            notes: Notes::default(),
        };
        let slot = self.runtime.slot(&ctx.cancel).await?;
        let kept =
            self.runtime
                .kept()
                .take(&self.pre, &ctx.client, &ctx.task_id, stepper.notes.clone());
        let mut running = match kept {
            Some(kept) => {
                self.kept_chats.fetch_add(1, Ordering::Relaxed);
                kept
            }
            None => {
                self.fresh_chats.fetch_add(1, Ordering::Relaxed);
                let mut store =
                    self.runtime
                        .new_store(self.env.clone(), &ctx.task_id, stepper.notes.clone());
                let made = self.pre.instantiate(&mut store);
                let instance = stepper.step(async { made.await.map(Ok) }).await?;
                KeptInstance::new(store, instance, self.pre.clone(), &ctx.client)
            }
        };
        let session = stepper
            .step(running.instance.chat_start(&mut running.store, request))
            .await?;
        let chat = Chat {
            stepper,
            running: Some(running),
            session: Some(session),
            ready: VecDeque::new(),
            _slot: slot,
        };
        Ok(Box::pin(futures::stream::unfold(
            chat,
            |mut chat| async move { chat.next_event().await.map(|event| (event, chat)) },
        )))
    }
}

/// Runs one plugin call step under the call timeout and cancellation, trap-mapped.
struct Stepper {
    runtime: Arc<Runtime>,
    env: Arc<PluginEnv>,
    cancel: CancellationToken,
    notes: Notes,
}

type Event = Result<ChatEvent, ProviderError>;

impl Stepper {
    async fn step<R>(
        &self,
        fut: impl Future<Output = crate::contract::Called<R>>,
    ) -> Result<R, ProviderError> {
        let rt = &self.runtime;
        let out = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(ProviderError::Cancelled),
            r = tokio::time::timeout(rt.config().call_timeout, fut) => r,
        };
        match out {
            // The wall clock, not the CPU deadline: the plugin was waiting, on its vendor.
            Err(_) => Err(rt.note_error(
                ProviderError::UpstreamUnavailable(format!(
                    "plugin {} chat step exceeded its {:?} timeout",
                    self.env.id,
                    rt.config().call_timeout
                )),
                &self.notes,
            )),
            Ok(Err(trap)) => Err(rt.trap_error(trap, &self.notes)),
            Ok(Ok(Err(e))) => Err(rt.plugin_error(&self.env.id, e, &self.notes.take())),
            Ok(Ok(Ok(r))) => Ok(r),
        }
    }
}

/// A chat between its start and its last event: the store and instance the plugin runs in
/// (handed on to be kept once it ran to its end), its open session (none once ended), the
/// events of the last step not yet read, and the call slot.
struct Chat {
    stepper: Stepper,
    running: Option<KeptInstance>,
    session: Option<Session>,
    ready: VecDeque<ChatEvent>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Chat {
    /// The next event, stepping the plugin when none is ready; `None` once it has ended.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            let session = self.session.as_ref()?;
            let running = self.running.as_mut()?;
            running.store.data_mut().ticks = 0;
            let step = session.next(&running.instance, &mut running.store);
            match self.stepper.step(step).await {
                Ok(events) if events.is_empty() => {
                    let session = self.session.take()?;
                    let mut running = self.running.take()?;
                    if session.close(&mut running.store).await {
                        self.stepper.runtime.kept().put(running);
                    }
                    return None;
                }
                Ok(events) => self.ready.extend(events),
                Err(error) => {
                    self.session = None;
                    return Some(Err(error));
                }
            }
        }
    }
}
