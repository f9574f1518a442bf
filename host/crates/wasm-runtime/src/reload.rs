//! Hot reload: [`PluginHost`] keeps the providers of a plugins folder (`*.wasm`) published
//! through the host's [`ProviderSink`] (an `easel_provider` trait the engine's registry
//! implements).
//!
//! Invariants:
//! - Compilation happens on the blocking pool, never on a request path; a provider is
//!   published only after it compiled, linked, answered `manifest` and validated.
//! - Swaps are atomic from the sink's point of view (`upsert` replaces one `Arc`); calls
//!   in flight keep the old `Arc` and finish on the old version (drain), which is retired
//!   when its last call returns.
//! - A broken new file is refused: the previous version of that file keeps serving and
//!   the error is recorded in its [`PluginStatus::last_error`] (blast radius: none). A file
//!   whose content hash did not change is not reloaded; a known-bad hash is not retried.
//! - A removed file un-publishes its provider. Two files may not serve the same provider
//!   id (nor ids that differ only in punctuation, which share secret variables): the later
//!   one is refused.
//! - Rescans are serialized; the folder watcher debounces bursts of events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use easel_provider::{Provider, ProviderSink};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::provider::WasmProvider;
use crate::runtime::Runtime;
use crate::secrets::variable_id;

/// One plugin file as `GET /admin/plugins` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PluginStatus {
    /// The `.wasm` file.
    pub file: PathBuf,
    /// Provider id of the version serving, if any.
    pub provider_id: Option<String>,
    /// Plugin version serving, if any.
    pub version: Option<String>,
    /// Contract version the serving component targets.
    pub contract: Option<String>,
    /// sha256 (hex) of the serving component.
    pub content_hash: Option<String>,
    /// Model keys served.
    pub models: Vec<String>,
    /// When the serving version was loaded, in milliseconds since the Unix epoch.
    pub loaded_at: Option<u64>,
    /// Why the latest attempt to load this file failed, if it did.
    pub last_error: Option<String>,
    /// Hosts the serving version may reach (its requests and output links): its manifest's,
    /// narrowed by the operator's `[plugins] allowed_hosts` when set.
    pub allowed_hosts: Vec<String>,
    /// Hosts the serving version's manifest names.
    pub manifest_hosts: Vec<String>,
    /// Each secret the serving version asked for: granted (and from which variable) or
    /// withheld (and why). Never a value.
    pub secrets: Vec<crate::SecretGrant>,
    /// The latest things the host refused the serving version (requests, secrets, output
    /// links), oldest first.
    pub recent_refusals: Vec<String>,
    /// Chats the serving version started, by the instance they ran on.
    pub chats: ChatInstances,
}

/// Chats of one plugin version by the instance they ran on.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ChatInstances {
    /// In a fresh instance.
    pub fresh: u64,
    /// In the instance the same client's last chat left ([`crate::kept`]).
    pub kept: u64,
}

struct Entry {
    provider: Option<Arc<WasmProvider>>,
    status: PluginStatus,
    /// Hash of the last content tried: the same content is not tried again (nor its refusal
    /// logged again at every rescan) until it changes or, for a file refused because another
    /// serves its id, until that other file is gone or serves another id.
    tried_hash: Option<String>,
    /// The file serving the id this one was refused for.
    blocked_by: Option<PathBuf>,
}

impl Entry {
    /// A file not loaded yet.
    fn new(path: &Path) -> Self {
        Entry {
            blocked_by: None,
            provider: None,
            status: PluginStatus {
                file: path.to_path_buf(),
                provider_id: None,
                version: None,
                contract: None,
                content_hash: None,
                models: Vec::new(),
                loaded_at: None,
                last_error: None,
                allowed_hosts: Vec::new(),
                manifest_hosts: Vec::new(),
                secrets: Vec::new(),
                recent_refusals: Vec::new(),
                chats: ChatInstances::default(),
            },
            tried_hash: None,
        }
    }
}

struct Inner {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    sink: Arc<dyn ProviderSink>,
    entries: Mutex<BTreeMap<PathBuf, Entry>>,
    scan: tokio::sync::Mutex<()>,
    watcher: Mutex<Option<easel_provider::folder::FolderWatcher>>,
}

/// Keeps a plugins folder loaded and published. Cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    easel_provider::folder::files_with_extension(dir, "wasm")
}

impl PluginHost {
    /// Loads every `*.wasm` in `dir` (creating it if absent), publishes them through
    /// `sink`, and starts watching the folder. Needs a tokio runtime.
    pub async fn start(
        runtime: Arc<Runtime>,
        dir: impl Into<PathBuf>,
        sink: Arc<dyn ProviderSink>,
    ) -> anyhow::Result<Self> {
        let host = Self::new(runtime, dir, sink)?;
        host.rescan().await;
        host.watch()?;
        Ok(host)
    }

    /// Like [`PluginHost::start`] without the initial scan or the watcher.
    pub fn new(
        runtime: Arc<Runtime>,
        dir: impl Into<PathBuf>,
        sink: Arc<dyn ProviderSink>,
    ) -> anyhow::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                runtime,
                dir,
                sink,
                entries: Mutex::new(BTreeMap::new()),
                scan: tokio::sync::Mutex::new(()),
                watcher: Mutex::new(None),
            }),
        })
    }

    /// The folder it serves.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Starts the folder watcher (debounced rescans). Idempotent.
    pub fn watch(&self) -> anyhow::Result<()> {
        let mut slot = self.inner.watcher.lock().unwrap();
        if slot.is_some() {
            return Ok(());
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let debounce = self.inner.runtime.config().reload_debounce;
        *slot = Some(easel_provider::folder::watch(
            &self.inner.dir,
            debounce,
            move || {
                let inner = weak.upgrade();
                async move {
                    let Some(inner) = inner else { return false };
                    PluginHost { inner }.rescan().await;
                    true
                }
            },
        )?);
        Ok(())
    }

    /// Status of every plugin file, for `GET /admin/plugins`.
    pub fn status(&self) -> Vec<PluginStatus> {
        self.inner
            .entries
            .lock()
            .unwrap()
            .values()
            .map(|e| PluginStatus {
                recent_refusals: e
                    .provider
                    .as_ref()
                    .map(|p| p.recent_refusals())
                    .unwrap_or_default(),
                chats: e.provider.as_ref().map(|p| p.chats()).unwrap_or_default(),
                ..e.status.clone()
            })
            .collect()
    }

    /// The providers serving now.
    pub fn providers(&self) -> Vec<Arc<WasmProvider>> {
        self.inner
            .entries
            .lock()
            .unwrap()
            .values()
            .filter_map(|e| e.provider.clone())
            .collect()
    }

    /// Rescans the folder now (`POST /admin/plugins/reload`) and returns the new status.
    pub async fn rescan(&self) -> Vec<PluginStatus> {
        let _serial = self.inner.scan.lock().await;
        let dir = self.inner.dir.clone();
        let files = match tokio::task::spawn_blocking(move || wasm_files(&dir)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                tracing::error!(dir = %self.inner.dir.display(), "cannot list plugins folder: {e}");
                return self.status();
            }
            Err(e) => {
                tracing::error!("plugin scan task failed: {e}");
                return self.status();
            }
        };
        // Removed files.
        let gone: Vec<PathBuf> = {
            let entries = self.inner.entries.lock().unwrap();
            entries
                .keys()
                .filter(|k| !files.contains(k))
                .cloned()
                .collect()
        };
        for path in gone {
            self.unblock(&path);
            let entry = self.inner.entries.lock().unwrap().remove(&path);
            if let Some(Entry {
                provider: Some(p), ..
            }) = entry
            {
                tracing::info!(file = %path.display(), id = p.id(), "plugin removed");
                self.inner.sink.remove(p.id());
            }
        }
        for path in files {
            self.load_one(&path).await;
        }
        self.status()
    }

    /// Lets the files refused because `path` served their id be tried again.
    fn unblock(&self, path: &Path) {
        let mut entries = self.inner.entries.lock().unwrap();
        for entry in entries.values_mut() {
            if entry.blocked_by.as_deref() == Some(path) {
                entry.blocked_by = None;
                entry.tried_hash = None;
            }
        }
    }

    /// Shows why the file at `path` could not be read; the next rescan tries it again.
    fn unreadable(&self, path: &Path, error: &str) {
        tracing::warn!(file = %path.display(), %error, "plugin file cannot be read");
        let mut entries = self.inner.entries.lock().unwrap();
        let entry = entries
            .entry(path.to_path_buf())
            .or_insert_with(|| Entry::new(path));
        entry.status.last_error = Some(format!("cannot read the file: {error}"));
        entry.tried_hash = None;
    }

    async fn load_one(&self, path: &Path) {
        let p = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || std::fs::read(&p)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => return self.unreadable(path, &error.to_string()),
            Err(_) => return self.unreadable(path, "the read was interrupted"),
        };
        let hash = hex::encode(Sha256::digest(&bytes));
        {
            let entries = self.inner.entries.lock().unwrap();
            if let Some(e) = entries.get(path)
                && e.tried_hash.as_deref() == Some(hash.as_str())
            {
                return;
            }
        }
        let mut blocked_by = None;
        let result = self.inner.runtime.load_bytes(bytes).await.and_then(|p| {
            let entries = self.inner.entries.lock().unwrap();
            // Ids that differ only in punctuation share their secret variables, so they count
            // as the same id here.
            let same = |q: &WasmProvider| variable_id(q.id()) == variable_id(p.id());
            if let Some((other, serving)) = entries
                .iter()
                .filter_map(|(f, e)| Some((f, e.provider.as_deref()?)))
                .find(|(f, q)| f.as_path() != path && same(*q))
            {
                blocked_by = Some(other.clone());
                let alike = if serving.id() == p.id() {
                    String::new()
                } else {
                    format!(
                        " as {} (ids that differ only in punctuation share their secret \
                         variables)",
                        serving.id()
                    )
                };
                anyhow::bail!(
                    "provider id {} is already served by {}{alike}",
                    p.id(),
                    other.display()
                );
            }
            Ok(p)
        });
        let mut entries = self.inner.entries.lock().unwrap();
        let entry = entries
            .entry(path.to_path_buf())
            .or_insert_with(|| Entry::new(path));
        entry.tried_hash = Some(hash);
        entry.blocked_by = blocked_by;
        let mut id_changed = false;
        match result {
            Ok(p) => {
                let p = Arc::new(p);
                let old_id = entry.provider.as_ref().map(|o| o.id().to_string());
                self.inner.sink.upsert(p.clone());
                if let Some(old) = old_id.filter(|o| o != p.id()) {
                    self.inner.sink.remove(&old);
                    id_changed = true;
                }
                // One the sink leaves out is logged by the sink, as such.
                if self.inner.sink.admits(p.id()) {
                    tracing::info!(file = %path.display(), id = p.id(), version = %p.version(), "plugin loaded");
                }
                for warning in p.manifest().warnings() {
                    tracing::warn!(id = p.id(), "plugin manifest: {warning}");
                }
                let allowed_hosts = p.allowed_hosts();
                if allowed_hosts.is_empty() && !p.manifest().allowed_hosts.is_empty() {
                    tracing::warn!(
                        id = p.id(),
                        hosts = ?p.manifest().allowed_hosts,
                        "[plugins] allowed_hosts admits none of the hosts this plugin names: \
                         every request it makes will be refused"
                    );
                }
                entry.status = PluginStatus {
                    file: path.to_path_buf(),
                    provider_id: Some(p.id().to_string()),
                    version: Some(p.version()),
                    contract: Some(p.contract_version().to_string()),
                    content_hash: Some(p.content_hash().to_string()),
                    models: p.manifest().models.iter().map(|m| m.key.clone()).collect(),
                    loaded_at: Some(now_ms()),
                    last_error: None,
                    allowed_hosts,
                    manifest_hosts: p.manifest().allowed_hosts.clone(),
                    secrets: p.secret_grants().to_vec(),
                    recent_refusals: Vec::new(),
                    chats: ChatInstances::default(),
                };
                entry.provider = Some(p);
            }
            Err(e) => {
                // One line, whatever the error's own formatting (a file that is no component
                // prints its magic bytes as a list): line-based log collectors keep it whole.
                let msg = format!("{e:#}")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                let kept = if entry.provider.is_some() {
                    ", the previous version keeps serving"
                } else {
                    ""
                };
                tracing::warn!(file = %path.display(), "plugin refused{kept}: {msg}");
                entry.status.last_error = Some(msg);
            }
        }
        drop(entries);
        if id_changed {
            self.unblock(path);
        }
    }
}
