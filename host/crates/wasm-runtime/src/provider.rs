//! [`WasmProvider`]: one loaded plugin version behind the `easel_provider::Provider` trait.
//!
//! Invariants:
//! - Immutable once built: a new plugin version is a new `WasmProvider`, so a call that
//!   holds an `Arc` of the old one finishes on the old code (drain by refcount) and the old
//!   one is retired when its last call ends.
//! - Each submit/poll/cancel is one fresh instance in one fresh store; a chat stream owns
//!   one store for its lifetime, driven by its own tokio task that forwards events over a
//!   bounded channel and stops when the receiver is dropped, the stream ends, a step fails,
//!   or the call is cancelled.
//! - No state is kept between calls (the handle is all `poll` and `cancel` get).
//!
//! `Runtime::load_file` and `Runtime::load_bytes` are defined here, on top of the runtime's
//! own preparation of a component, so that this module uses the runtime and the runtime never
//! names the provider built on it.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use easel_provider::{
    CallContext, ChatEvent, ChatRequest, ChatStream, GenerationRequest, ModelInfo, PollOutcome,
    Provider, ProviderError, Submission,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::contract::Pre;
use crate::gate::Notes;
use crate::manifest::PluginManifest;
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
        })
    }
}

impl WasmProvider {
    /// The validated manifest.
    pub fn manifest(&self) -> &PluginManifest {
        &self.manifest
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
        let (tx, rx) = mpsc::channel(16);
        let (started_tx, started_rx) = oneshot::channel();
        let driver = ChatDriver {
            runtime: self.runtime.clone(),
            pre: self.pre.clone(),
            env: self.env.clone(),
            task_id: ctx.task_id.clone(),
            cancel: ctx.cancel.clone(),
        };
        tokio::spawn(driver.run(request.clone(), started_tx, tx));
        started_rx
            .await
            .map_err(|_| ProviderError::Internal("plugin chat task ended early".into()))??;
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Box::pin(stream))
    }
}

struct ChatDriver {
    runtime: Arc<Runtime>,
    pre: Arc<Pre>,
    env: Arc<PluginEnv>,
    task_id: String,
    cancel: CancellationToken,
}

type Event = Result<ChatEvent, ProviderError>;

impl ChatDriver {
    /// One step under the call timeout and cancellation, trap-mapped.
    async fn step<R>(
        &self,
        notes: &Notes,
        fut: impl Future<Output = crate::v0_1_0::Called<R>>,
    ) -> Result<R, ProviderError> {
        let rt = &self.runtime;
        let out = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(ProviderError::Cancelled),
            r = tokio::time::timeout(rt.config().call_timeout, fut) => r,
        };
        match out {
            Err(_) => Err(rt.note_error(
                ProviderError::Internal(format!(
                    "plugin {} chat step exceeded its {:?} timeout",
                    self.env.id,
                    rt.config().call_timeout
                )),
                notes,
            )),
            Ok(Err(trap)) => Err(rt.trap_error(trap, &notes.take())),
            Ok(Ok(Err(e))) => Err(rt.note_error(e, notes)),
            Ok(Ok(Ok(r))) => Ok(r),
        }
    }

    async fn run(
        self,
        request: ChatRequest,
        started: oneshot::Sender<Result<(), ProviderError>>,
        tx: mpsc::Sender<Event>,
    ) {
        let _permit = match self.runtime.slot(&self.cancel).await {
            Ok(p) => p,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        let notes = Notes::default();
        let mut store = self
            .runtime
            .new_store(self.env.clone(), &self.task_id, notes.clone());
        let session = match self
            .step(&notes, self.pre.chat_start(&mut store, &request))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        if started.send(Ok(())).is_err() {
            return;
        }
        loop {
            store.data_mut().ticks = 0;
            match self.step(&notes, session.next(&mut store)).await {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    for e in events {
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        session.close(&mut store).await;
    }
}
