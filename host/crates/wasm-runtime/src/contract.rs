//! Contract versions: one binding per folder in `wit/`, picked per component.
//!
//! Invariants: a component is bound to exactly one contract version, detected from the
//! interfaces it exports (`easel:provider/chat@<version>`); a component exporting none of
//! the supported versions is refused at load with the list of versions this host speaks.
//! Adding a version means adding a binding module and a variant here; released versions
//! are never removed.

use easel_provider::{
    ChatEvent, ChatRequest, GenerationRequest, PollOutcome, ProviderError, Submission,
};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store};

use crate::manifest::PluginManifest;
use crate::state::CallState;
use crate::{v0_1_0, v0_2_0, v0_3_0, v0_4_0, v0_5_0};

/// Contract versions this host can run, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    v0_1_0::VERSION,
    v0_2_0::VERSION,
    v0_3_0::VERSION,
    v0_4_0::VERSION,
    v0_5_0::VERSION,
];

/// A call's outcome: outer error = trap, inner = the plugin's own typed error.
pub(crate) type Called<T> = wasmtime::Result<Result<T, ProviderError>>;

/// Whether chats of components of `version` can carry tool calls (0.2.0 on).
pub(crate) fn has_tool_calls(version: &str) -> bool {
    version != v0_1_0::VERSION
}

/// Adds every version's host imports to the shared linker.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    v0_1_0::add_to_linker(linker)?;
    v0_2_0::add_to_linker(linker)?;
    v0_3_0::add_to_linker(linker)?;
    v0_4_0::add_to_linker(linker)?;
    v0_5_0::add_to_linker(linker)
}

/// Names of a component's exports and imports (for detection and `plugin check`).
pub(crate) fn interface_names(engine: &Engine, c: &Component) -> (Vec<String>, Vec<String>) {
    let ty = c.component_type();
    let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    (exports, imports)
}

/// Picks the contract version a component targets.
pub(crate) fn detect(engine: &Engine, c: &Component) -> anyhow::Result<&'static str> {
    let (exports, _) = interface_names(engine, c);
    for (marker, version) in [
        (v0_1_0::MARKER_EXPORT, v0_1_0::VERSION),
        (v0_2_0::MARKER_EXPORT, v0_2_0::VERSION),
        (v0_3_0::MARKER_EXPORT, v0_3_0::VERSION),
        (v0_4_0::MARKER_EXPORT, v0_4_0::VERSION),
        (v0_5_0::MARKER_EXPORT, v0_5_0::VERSION),
    ] {
        if exports.iter().any(|e| e == marker) {
            return Ok(version);
        }
    }
    anyhow::bail!(
        "the component targets no contract version this host supports ({}); it exports: [{}]",
        SUPPORTED_VERSIONS.join(", "),
        exports.join(", ")
    )
}

/// A linked component of some version.
pub(crate) enum Pre {
    V0_1_0(v0_1_0::Pre),
    V0_2_0(v0_2_0::Pre),
    V0_3_0(v0_3_0::Pre),
    V0_4_0(v0_4_0::Pre),
    V0_5_0(v0_5_0::Pre),
}

/// An instance, for chats, of a component of some version.
pub(crate) enum Instance {
    V0_1_0(v0_1_0::Instance),
    V0_2_0(v0_2_0::Instance),
    V0_3_0(v0_3_0::Instance),
    V0_4_0(v0_4_0::Instance),
    V0_5_0(v0_5_0::Instance),
}

/// A chat stream of some version.
pub(crate) enum Session {
    V0_1_0(v0_1_0::Session),
    V0_2_0(v0_2_0::Session),
    V0_3_0(v0_3_0::Session),
    V0_4_0(v0_4_0::Session),
    V0_5_0(v0_5_0::Session),
}

impl Pre {
    pub(crate) fn new(version: &str, pre: InstancePre<CallState>) -> anyhow::Result<Self> {
        match version {
            v0_1_0::VERSION => Ok(Self::V0_1_0(v0_1_0::Pre::new(pre)?)),
            v0_2_0::VERSION => Ok(Self::V0_2_0(v0_2_0::Pre::new(pre)?)),
            v0_3_0::VERSION => Ok(Self::V0_3_0(v0_3_0::Pre::new(pre)?)),
            v0_4_0::VERSION => Ok(Self::V0_4_0(v0_4_0::Pre::new(pre)?)),
            v0_5_0::VERSION => Ok(Self::V0_5_0(v0_5_0::Pre::new(pre)?)),
            other => anyhow::bail!("no binding for contract version {other}"),
        }
    }

    pub(crate) async fn manifest(&self, s: &mut Store<CallState>) -> Called<PluginManifest> {
        match self {
            Self::V0_1_0(p) => p.manifest(s).await,
            Self::V0_2_0(p) => p.manifest(s).await,
            Self::V0_3_0(p) => p.manifest(s).await,
            Self::V0_4_0(p) => p.manifest(s).await,
            Self::V0_5_0(p) => p.manifest(s).await,
        }
    }

    pub(crate) async fn submit(
        &self,
        s: &mut Store<CallState>,
        r: &GenerationRequest,
    ) -> Called<Submission> {
        match self {
            Self::V0_1_0(p) => p.submit(s, r).await,
            Self::V0_2_0(p) => p.submit(s, r).await,
            Self::V0_3_0(p) => p.submit(s, r).await,
            Self::V0_4_0(p) => p.submit(s, r).await,
            Self::V0_5_0(p) => p.submit(s, r).await,
        }
    }

    pub(crate) async fn poll(&self, s: &mut Store<CallState>, h: &str) -> Called<PollOutcome> {
        match self {
            Self::V0_1_0(p) => p.poll(s, h).await,
            Self::V0_2_0(p) => p.poll(s, h).await,
            Self::V0_3_0(p) => p.poll(s, h).await,
            Self::V0_4_0(p) => p.poll(s, h).await,
            Self::V0_5_0(p) => p.poll(s, h).await,
        }
    }

    pub(crate) async fn cancel(&self, s: &mut Store<CallState>, h: &str) -> Called<()> {
        match self {
            Self::V0_1_0(p) => p.cancel(s, h).await,
            Self::V0_2_0(p) => p.cancel(s, h).await,
            Self::V0_3_0(p) => p.cancel(s, h).await,
            Self::V0_4_0(p) => p.cancel(s, h).await,
            Self::V0_5_0(p) => p.cancel(s, h).await,
        }
    }

    pub(crate) async fn instantiate(&self, s: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        match self {
            Self::V0_1_0(p) => Ok(Instance::V0_1_0(p.instantiate(s).await?)),
            Self::V0_2_0(p) => Ok(Instance::V0_2_0(p.instantiate(s).await?)),
            Self::V0_3_0(p) => Ok(Instance::V0_3_0(p.instantiate(s).await?)),
            Self::V0_4_0(p) => Ok(Instance::V0_4_0(p.instantiate(s).await?)),
            Self::V0_5_0(p) => Ok(Instance::V0_5_0(p.instantiate(s).await?)),
        }
    }
}

impl Instance {
    pub(crate) async fn chat_start(
        &self,
        s: &mut Store<CallState>,
        r: &ChatRequest,
    ) -> Called<Session> {
        match self {
            Self::V0_1_0(i) => Ok(i.chat_start(s, r).await?.map(Session::V0_1_0)),
            Self::V0_2_0(i) => Ok(i.chat_start(s, r).await?.map(Session::V0_2_0)),
            Self::V0_3_0(i) => Ok(i.chat_start(s, r).await?.map(Session::V0_3_0)),
            Self::V0_4_0(i) => Ok(i.chat_start(s, r).await?.map(Session::V0_4_0)),
            Self::V0_5_0(i) => Ok(i.chat_start(s, r).await?.map(Session::V0_5_0)),
        }
    }
}

impl Session {
    pub(crate) async fn next(
        &self,
        instance: &Instance,
        s: &mut Store<CallState>,
    ) -> Called<Vec<ChatEvent>> {
        match (self, instance) {
            (Self::V0_1_0(x), Instance::V0_1_0(i)) => x.next(i, s).await,
            (Self::V0_2_0(x), Instance::V0_2_0(i)) => x.next(i, s).await,
            (Self::V0_3_0(x), Instance::V0_3_0(i)) => x.next(i, s).await,
            (Self::V0_4_0(x), Instance::V0_4_0(i)) => x.next(i, s).await,
            (Self::V0_5_0(x), Instance::V0_5_0(i)) => x.next(i, s).await,
            _ => unreachable!("a session is read through the instance that opened it"),
        }
    }

    /// Drops the stream in the guest; whether it went cleanly (no trap).
    pub(crate) async fn close(self, s: &mut Store<CallState>) -> bool {
        match self {
            Self::V0_1_0(x) => x.close(s).await,
            Self::V0_2_0(x) => x.close(s).await,
            Self::V0_3_0(x) => x.close(s).await,
            Self::V0_4_0(x) => x.close(s).await,
            Self::V0_5_0(x) => x.close(s).await,
        }
    }
}
