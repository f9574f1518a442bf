//! A watched folder of files of one kind (the plugins folder's `*.wasm`, the adapter folder's
//! `*.safetensors`): what is in it, and a call after each burst of changes. What a file
//! means, and how a rescan loads it, stays with each folder's owner.
//!
//! Invariants:
//! - [`files_with_extension`] lists regular files only, sorted, not recursing.
//! - [`watch`] debounces: a burst of events ends `debounce` after its last event, then
//!   `on_burst` runs once and is awaited before the next burst is considered, so the watcher
//!   never starts a rescan while its previous one runs. Only changes count (a file created,
//!   written, renamed or removed), never a read, so a rescan's own reads start nothing. It
//!   stops when `on_burst` answers `false` (its owner is gone) or the [`FolderWatcher`] is
//!   dropped.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher;

/// The files of `dir` whose extension is `extension` (without the dot).
pub fn files_with_extension(dir: &Path, extension: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == extension) && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Whether an event changed the folder. Opening and reading are not changes: a rescan opens
/// and reads every file, and counting that would start the next rescan, for ever. A file
/// closed after writing is (the end of a copy).
fn changes(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

/// A running watch of one folder; dropping it stops the watch.
pub struct FolderWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `dir` (not recursively) and runs `on_burst` after each burst of changes (see the
/// module docs). Needs a tokio runtime.
pub fn watch<F, Fut>(
    dir: &Path,
    debounce: Duration,
    mut on_burst: F,
) -> notify::Result<FolderWatcher>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|event| changes(&event.kind)) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if !on_burst().await {
                return;
            }
        }
    });
    Ok(FolderWatcher { _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};

    use super::changes;

    #[test]
    fn a_rescans_reads_are_not_changes() {
        assert!(!changes(&EventKind::Access(AccessKind::Open(
            AccessMode::Read
        ))));
        assert!(!changes(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes(&EventKind::Create(CreateKind::File)));
        assert!(changes(&EventKind::Modify(ModifyKind::Any)));
        assert!(changes(&EventKind::Remove(RemoveKind::File)));
        assert!(changes(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
    }
}
