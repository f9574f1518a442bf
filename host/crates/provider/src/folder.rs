//! A watched folder of files of one kind (the plugins folder's `*.wasm`, the adapter folder's
//! `*.safetensors`): what is in it, and a call after each burst of changes. What a file
//! means, and how a rescan loads it, stays with each folder's owner.
//!
//! Invariants:
//! - [`files_with_extension`] lists regular files only, sorted, not recursing, and never a
//!   hidden one (an editor's or a sync tool's `.name.safetensors`, macOS's `._name`); the
//!   extension matches in any case (`.SAFETENSORS` too).
//! - [`watch`] debounces: a burst of events ends `debounce` after its last event, then
//!   `on_burst` runs once and is awaited before the next burst is considered, so the watcher
//!   never starts a rescan while its previous one runs. Only changes count (a file created,
//!   written, renamed or removed), never a read, so a rescan's own reads start nothing. It
//!   stops when `on_burst` answers `false` (its owner is gone) or the [`FolderWatcher`] is
//!   dropped.
//! - The folder is followed by its name: moved away, removed, or made again, the folder found
//!   under that name is watched (and rescanned) within [`FOLLOW_EVERY`]. Only the folder is
//!   watched, never its parent (the data folder, whose database changes with every request).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::Watcher;

/// The files of `dir` whose extension is `extension` (without the dot), in any case.
pub fn files_with_extension(dir: &Path, extension: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|name| name.as_encoded_bytes().starts_with(b"."));
        if !hidden
            && path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case(extension))
            && path.is_file()
        {
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
    _watcher: Arc<Mutex<notify::RecommendedWatcher>>,
}

/// How often the folder's identity is looked at: a folder moved away, or removed, and made
/// again under its name sends nothing to the watch of the old one.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Which folder a path names now (device and inode).
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Watches `dir` (not recursively) and runs `on_burst` after each burst of changes (see the
/// module docs). Every [`FOLLOW_EVERY`] it also looks whether the folder under `dir`'s name is
/// still the one watched (or whether the watched one reported itself removed or moved, which
/// catches a new folder that got the old one's inode number); if not, it watches the one
/// there now and runs `on_burst`. Needs a tokio runtime.
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
    // Set when an event names the watched folder itself: it went, and its watch with it.
    let went = Arc::new(AtomicBool::new(false));
    let (own, mark) = (dir.to_path_buf(), went.clone());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if event.paths.iter().any(|p| p == &own) {
            mark.store(true, Ordering::Relaxed);
        }
        if changes(&event.kind) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    let watcher = Arc::new(Mutex::new(watcher));
    let rewatch = Arc::downgrade(&watcher);
    let dir = dir.to_path_buf();
    let mut watching = identity(&dir);
    tokio::spawn(async move {
        let mut follow = tokio::time::interval(FOLLOW_EVERY);
        follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                got = rx.recv() => {
                    if got.is_none() {
                        return;
                    }
                    loop {
                        match tokio::time::timeout(debounce, rx.recv()).await {
                            Ok(Some(())) => continue,
                            Ok(None) => return,
                            Err(_) => break,
                        }
                    }
                }
                _ = follow.tick() => {
                    if identity(&dir) == watching && !went.load(Ordering::Relaxed) {
                        continue;
                    }
                }
            }
            let now = identity(&dir);
            let went_away = went.swap(false, Ordering::Relaxed);
            if now != watching || went_away {
                let Some(watcher) = rewatch.upgrade() else {
                    return;
                };
                let mut watcher = watcher.lock().unwrap_or_else(|e| e.into_inner());
                let _ = watcher.unwatch(&dir);
                let watched = now.is_some()
                    && watcher
                        .watch(&dir, notify::RecursiveMode::NonRecursive)
                        .is_ok();
                watching = if watched { now } else { None };
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
    fn extensions_match_in_any_case_and_folders_never() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "a.safetensors",
            "B.SAFETENSORS",
            "c.txt",
            ".hidden.safetensors",
            "._a.safetensors",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.safetensors")).unwrap();
        let found = super::files_with_extension(dir.path(), "safetensors").unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["B.SAFETENSORS", "a.safetensors"]);
    }

    /// A folder moved away and made again under its name is watched again: files copied into
    /// the new one are seen.
    #[tokio::test]
    async fn a_folder_made_again_under_its_name_is_followed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("loras");
        std::fs::create_dir(&dir).unwrap();
        let (tx, mut bursts) = tokio::sync::mpsc::unbounded_channel();
        let _watch = super::watch(&dir, std::time::Duration::from_millis(100), move || {
            let _ = tx.send(());
            async { true }
        })
        .unwrap();
        // Waits for the burst a change makes, and for the watch to settle after it.
        async fn burst(bursts: &mut tokio::sync::mpsc::UnboundedReceiver<()>, after: &str) {
            tokio::time::timeout(std::time::Duration::from_secs(5), bursts.recv())
                .await
                .unwrap_or_else(|_| panic!("no burst after {after}"))
                .expect("the watch runs");
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            while bursts.try_recv().is_ok() {}
        }

        std::fs::write(dir.join("a.safetensors"), b"a").unwrap();
        burst(&mut bursts, "a file written").await;
        std::fs::rename(&dir, root.path().join("loras.old")).unwrap();
        std::fs::create_dir(&dir).unwrap();
        burst(&mut bursts, "the folder moved away and made again").await;
        std::fs::write(dir.join("b.safetensors"), b"b").unwrap();
        burst(&mut bursts, "a file written in the new folder").await;
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        burst(&mut bursts, "the folder removed and made again").await;
        std::fs::write(dir.join("c.safetensors"), b"c").unwrap();
        burst(&mut bursts, "a file written in the newest folder").await;
    }

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
