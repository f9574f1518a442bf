//! The adapter folder (`EASEL_LORA_DIR`): every `*.safetensors` in it read against the
//! loaded model, kept current as files are added, replaced or removed.
//!
//! Invariants:
//! - An adapter's name is its file stem. A file is read again only when its content hash
//!   changed; a refused file stays listed with why (its unmatched keys) and cannot be used.
//! - Rescans are serialized; the watcher debounces bursts of events. Every rescan that
//!   changed what is listed (the watcher's or an operator's) calls the `on_change` given to
//!   [`AdapterLibrary::watch`].
//! - A request holds `Arc`s of the adapters it named, so a file removed or replaced while
//!   it runs does not change that run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Adapter, AdapterInfo, AdapterTarget, Family, Refused};

/// How long the watcher waits for a burst of events to end before rescanning.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// One file of the folder as listed: its path, then either what it is or why it is refused,
/// each with the file's name and sha256 (one object, every field once).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AdapterStatus {
    /// The file.
    pub file: PathBuf,
    /// What it is, when usable.
    #[serde(flatten)]
    pub info: Option<AdapterInfo>,
    /// Why it cannot be used, when refused.
    #[serde(flatten)]
    pub refused: Option<RefusedFile>,
}

/// A file the folder holds but no request may use.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RefusedFile {
    /// The name a request would use (the file stem).
    pub name: String,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// Why.
    pub refused: Refused,
}

struct Entry {
    file: PathBuf,
    sha256: String,
    adapter: Result<Arc<Adapter>, Refused>,
}

struct Inner {
    dir: PathBuf,
    target: Arc<AdapterTarget>,
    entries: RwLock<BTreeMap<String, Entry>>,
    scan: Mutex<()>,
    watcher: Mutex<Option<easel_provider::folder::FolderWatcher>>,
    on_change: Mutex<Option<Arc<dyn Fn(&AdapterLibrary) + Send + Sync>>>,
}

/// A watched folder of adapters for one loaded model. Cheap to clone.
#[derive(Clone)]
pub struct AdapterLibrary {
    inner: Arc<Inner>,
}

/// Why a request's adapter cannot be used; the text is fit for a 4xx answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Unusable {
    /// No such file.
    #[error("unknown adapter {name}; available: {available}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The usable names, comma-separated (or `none`).
        available: String,
    },
    /// Made for another base family.
    #[error("adapter {name} is made for {made_for}; the loaded model is {model}")]
    OtherFamily {
        /// The name asked for.
        name: String,
        /// Its family.
        made_for: Family,
        /// The model's.
        model: Family,
    },
    /// Refused at load.
    #[error("adapter {name} was refused when loaded: {why}")]
    Refused {
        /// The name asked for.
        name: String,
        /// Why.
        why: Refused,
    },
}

impl AdapterLibrary {
    /// Reads every adapter in `dir` (created if absent) against `target`; blocking.
    pub fn open(dir: impl Into<PathBuf>, target: Arc<AdapterTarget>) -> anyhow::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let library = Self {
            inner: Arc::new(Inner {
                dir,
                target,
                entries: RwLock::new(BTreeMap::new()),
                scan: Mutex::new(()),
                watcher: Mutex::new(None),
                on_change: Mutex::new(None),
            }),
        };
        library.rescan_quietly();
        Ok(library)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Reads the folder again; returns whether anything listed changed. Blocking.
    pub fn rescan(&self) -> bool {
        let changed = self.rescan_quietly();
        let on_change = self
            .inner
            .on_change
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let (true, Some(on_change)) = (changed, on_change) {
            on_change(self);
        }
        changed
    }

    fn rescan_quietly(&self) -> bool {
        let _serial = self
            .inner
            .scan
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let files = match easel_provider::folder::files_with_extension(
            &self.inner.dir,
            "safetensors",
        ) {
            Ok(files) => files,
            Err(error) => {
                tracing::error!(dir = %self.inner.dir.display(), %error, "cannot list the adapter folder");
                return false;
            }
        };
        let mut fresh = BTreeMap::new();
        let mut changed = false;
        for file in files {
            let Some(name) = file.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            // `a.safetensors` and `a.SAFETENSORS` name one adapter: the first in name order
            // is it (read again only when it changes), the other is left, said so.
            if let Some(kept) = fresh.get(&name).map(|kept: &Entry| kept.file.clone()) {
                tracing::warn!(adapter = %name, kept = %kept.display(), left = %file.display(), "two files name one adapter; rename one");
                continue;
            }
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            let sha256 = hex::encode(Sha256::digest(&bytes));
            let known = self
                .entries()
                .get(&name)
                .filter(|e| e.sha256 == sha256 && e.file == file)
                .map(|e| e.adapter.clone());
            let adapter = match known {
                Some(adapter) => adapter,
                None => {
                    changed = true;
                    let adapter = Adapter::parse(&name, &bytes, &self.inner.target).map(Arc::new);
                    match &adapter {
                        Ok(a) => {
                            tracing::info!(adapter = %name, formats = ?a.info.format, tensors = a.info.tensors, "adapter loaded")
                        }
                        Err(why) => tracing::warn!(adapter = %name, %why, "adapter refused"),
                    }
                    adapter
                }
            };
            fresh.insert(
                name,
                Entry {
                    file,
                    sha256,
                    adapter,
                },
            );
        }
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        changed |= entries.keys().ne(fresh.keys());
        *entries = fresh;
        changed
    }

    fn entries(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.inner
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every file, usable or refused, by name.
    pub fn list(&self) -> Vec<AdapterStatus> {
        self.entries()
            .iter()
            .map(|(name, e)| AdapterStatus {
                file: e.file.clone(),
                info: e.adapter.as_ref().ok().map(|a| a.info.clone()),
                refused: e.adapter.as_ref().err().map(|why| RefusedFile {
                    name: name.clone(),
                    sha256: e.sha256.clone(),
                    refused: why.clone(),
                }),
            })
            .collect()
    }

    /// The usable adapter called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Adapter>, Unusable> {
        let entries = self.entries();
        match entries.get(name).map(|e| &e.adapter) {
            Some(Ok(adapter)) => Ok(adapter.clone()),
            Some(Err(why)) => match why.family {
                Some(made_for) if made_for != self.inner.target.family => {
                    Err(Unusable::OtherFamily {
                        name: name.to_string(),
                        made_for,
                        model: self.inner.target.family,
                    })
                }
                _ => Err(Unusable::Refused {
                    name: name.to_string(),
                    why: why.clone(),
                }),
            },
            None => {
                let usable: Vec<&str> = entries
                    .iter()
                    .filter(|(_, e)| e.adapter.is_ok())
                    .map(|(n, _)| n.as_str())
                    .collect();
                Err(Unusable::Unknown {
                    name: name.to_string(),
                    available: if usable.is_empty() {
                        "none".into()
                    } else {
                        usable.join(", ")
                    },
                })
            }
        }
    }

    /// Watches the folder: each burst of changes rescans it, and `on_change` runs when what
    /// is listed changed. Needs a tokio runtime; idempotent.
    pub fn watch(
        &self,
        on_change: impl Fn(&AdapterLibrary) + Send + Sync + 'static,
    ) -> anyhow::Result<()> {
        let mut slot = self
            .inner
            .watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return Ok(());
        }
        *self
            .inner
            .on_change
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(on_change));
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        *slot = Some(easel_provider::folder::watch(
            &self.inner.dir,
            DEBOUNCE,
            move || {
                let inner = weak.upgrade();
                async move {
                    let Some(inner) = inner else { return false };
                    let library = AdapterLibrary { inner };
                    let _ = tokio::task::spawn_blocking(move || library.rescan()).await;
                    true
                }
            },
        )?);
        Ok(())
    }
}
