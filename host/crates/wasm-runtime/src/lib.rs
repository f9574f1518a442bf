//! easel's WebAssembly plugin runtime: providers are components targeting the contract in
//! `wit/<version>/provider.wit`, run in wasmtime.
//!
//! Invariants (each module states its own in detail):
//! - Sandbox: a plugin has no files, environment or sockets; it reaches the network only
//!   through `wasi:http` and the [`gate`], to hosts its manifest declares and the operator
//!   allows, never to private addresses (unless configured), with timeouts and a size cap.
//!   It sees only the secrets its manifest names and the operator assigned to it, never
//!   easel's own settings ([`secrets`]).
//! - Blast radius: every call runs in a fresh store with a memory cap, a CPU (epoch)
//!   deadline and a wall-clock timeout; a trap fails that call and nothing else. A chat that
//!   ran to its end leaves its store to its client's next chat on the same version
//!   ([`kept`]), never to another client's.
//! - Drain and retire: a loaded version is immutable; hot reload swaps `Arc`s, calls in
//!   flight finish on the version they started on, and a refused new file leaves the old
//!   version serving with the error recorded.
//! - Versions: one binding per contract folder; a component is bound to the version it
//!   exports.

#![deny(missing_docs)]

mod binding;
mod config;
mod contract;
pub mod gate;
mod kept;
mod manifest;
mod pool;
mod provider;
mod reload;
mod runtime;
pub mod secrets;
mod state;
mod v0_1_0;
mod v0_2_0;
mod v0_3_0;
mod v0_4_0;
mod v0_5_0;

use std::path::Path;

pub use config::WasmConfig;
pub use contract::SUPPORTED_VERSIONS;
pub use easel_provider::ProviderSink;
pub use manifest::PluginManifest;
pub use provider::WasmProvider;
pub use reload::{ChatInstances, PluginHost, PluginStatus};
pub use runtime::Runtime;
pub use secrets::SecretGrant;

/// What `easel plugin check FILE.wasm` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    /// Contract version the component targets.
    pub contract: String,
    /// sha256 (hex) of the file.
    pub content_hash: String,
    /// The validated manifest.
    pub manifest: PluginManifest,
    /// The component's imports.
    pub imports: Vec<String>,
    /// The component's exports.
    pub exports: Vec<String>,
    /// What the manifest declares that can never work ([`PluginManifest::warnings`]).
    pub warnings: Vec<String>,
}

/// Validates a component against the contract (compiles, links, calls `manifest`,
/// validates it) and returns what it declares. Needs a tokio runtime.
pub async fn check_component(path: &Path) -> anyhow::Result<CheckReport> {
    let config = WasmConfig {
        pooling: false,
        max_instances: 4,
        secrets_from_env: false,
        ..WasmConfig::default()
    };
    let runtime = Runtime::new(config)?;
    let p = runtime
        .load_file(path)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    Ok(CheckReport {
        contract: p.contract_version().to_string(),
        content_hash: p.content_hash().to_string(),
        manifest: p.manifest().clone(),
        imports: p.imports().to_vec(),
        exports: p.exports().to_vec(),
        warnings: p.manifest().warnings(),
    })
}

/// [`check_component`] for callers without a tokio runtime (runs one on a new thread).
pub fn check_component_blocking(path: &Path) -> anyhow::Result<CheckReport> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(check_component(&path))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("plugin check panicked"))?
}
