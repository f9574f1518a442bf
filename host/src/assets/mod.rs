//! The asset store: uploaded files, registered external URLs and task outputs.
//!
//! Invariants: every asset belongs to one client and is invisible to others; a file is
//! written completely (to a temporary name, then renamed; or a whole object in the bucket)
//! before its row exists, so a row never points at a partial file; registered URLs passed the
//! no-SSRF check when accepted. A file received in pieces ([`Spooled`], an upload streamed
//! from the request) waits under a temporary name in the data folder until it is adopted as
//! an asset, and is removed if it never is. Stored bytes live in one of two places behind
//! this one interface, chosen by `[assets]`: the data folder (`<dir>/<asset id>`, the default)
//! or an S3-compatible [`Bucket`]. A stored file whose row never came (the process died
//! between the two), or a received file never adopted, is deleted by
//! [`Assets::sweep_orphans`] once older than `[assets] orphan_grace_secs`. With `[assets]
//! keep_secs`, a stored file that old goes with its row ([`Assets::expire`]), the row first
//! (a crash between the two leaves an orphan, swept as above), unless a queued or running
//! task names it.

mod bucket;

use std::{
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use sqlx::FromRow;
use tokio_util::sync::CancellationToken;

pub use bucket::Bucket;

use crate::{
    config::AssetSettings,
    engine::task::{new_id, now_ms},
    store::{Store, tasks::NAMED_BY_A_LIVE_TASK},
};

/// One asset row.
#[derive(Debug, Clone, FromRow)]
pub struct Asset {
    /// `asset_…`.
    pub id: String,
    /// Owner.
    pub client_id: String,
    /// `image`, `video`, `audio`, `text` or `file`.
    pub kind: String,
    /// File name shown to clients.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Bytes, for stored files.
    pub size: Option<i64>,
    /// Hex SHA-256, for stored files.
    pub sha256: Option<String>,
    /// The external URL, for registered assets.
    pub url: Option<String>,
    /// The task that made it, for outputs.
    pub task_id: Option<String>,
    /// ms.
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, client_id, kind, name, content_type, size, sha256, url, task_id, created_at";

/// The kind an API shows for a MIME type: one of the asset API's own kinds (`image`,
/// `video`, `audio`, `file`), so a listed kind is one a client may also register.
pub fn kind_of(content_type: &str) -> &'static str {
    match content_type.split('/').next().unwrap_or_default() {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        _ => "file",
    }
}

/// A file extension for a MIME type.
pub fn extension_of(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "audio/wav" | "audio/x-wav" => "wav",
        "audio/mpeg" => "mp3",
        "video/mp4" => "mp4",
        "video/x-msvideo" | "video/avi" => "avi",
        "text/plain" => "txt",
        "application/json" => "json",
        _ => "bin",
    }
}

/// Stored bytes plus rows in the store.
#[derive(Clone)]
pub struct Assets {
    store: Store,
    /// Where files are received; also where they are kept with [`Backend::Folder`].
    dir: PathBuf,
    backend: Backend,
    orphan_grace: Duration,
    /// How long stored files are kept; `None`: for ever.
    keep: Option<Duration>,
}

/// Where stored files' bytes live.
#[derive(Debug, Clone)]
enum Backend {
    /// `<dir>/<asset id>`.
    Folder,
    /// Objects `<key_prefix>/<asset id>`.
    Bucket(Bucket),
}

/// An asset's bytes as they are read.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// What to record for a new stored file.
pub struct NewFile<'a> {
    /// Owner.
    pub client_id: &'a str,
    /// Shown name.
    pub name: &'a str,
    /// MIME type.
    pub content_type: &'a str,
    /// The producing task, for outputs.
    pub task_id: Option<&'a str>,
}

impl Assets {
    /// Assets under `dir` (created if missing).
    pub fn new(store: Store, dir: PathBuf) -> anyhow::Result<Self> {
        Self::configured(store, dir, &AssetSettings::default())
    }

    /// Assets received into `dir` and kept where `settings` say: in `dir`, or in the bucket.
    pub fn configured(
        store: Store,
        dir: PathBuf,
        settings: &AssetSettings,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let backend = match &settings.bucket {
            Some(name) => Backend::Bucket(Bucket::connect(settings, name)?),
            None => Backend::Folder,
        };
        Ok(Self {
            store,
            dir,
            backend,
            orphan_grace: Duration::from_secs(settings.orphan_grace_secs),
            keep: (settings.keep_secs > 0).then(|| Duration::from_secs(settings.keep_secs)),
        })
    }

    /// The file holding a stored asset's bytes, when they are kept in the data folder.
    pub fn local_path(&self, id: &str) -> Option<PathBuf> {
        match self.backend {
            Backend::Folder => Some(self.dir.join(id)),
            Backend::Bucket(_) => None,
        }
    }

    /// Writes `bytes` and records the asset.
    pub async fn put(&self, file: NewFile<'_>, bytes: &[u8]) -> anyhow::Result<Asset> {
        let mut spooled = self.spool().await?;
        spooled.write(bytes).await?;
        self.adopt(file, spooled).await
    }

    /// A new temporary file to receive an asset's bytes in pieces.
    pub async fn spool(&self) -> anyhow::Result<Spooled> {
        let path = self.dir.join(format!("{}.partial", new_id("spool")));
        let file = tokio::fs::File::create(&path).await?;
        Ok(Spooled {
            path,
            file: Some(file),
            size: 0,
            sha256: Default::default(),
        })
    }

    /// Records a completely received file as an asset: flushed, renamed into place (or
    /// uploaded whole to the bucket), then its row inserted.
    pub async fn adopt(&self, file: NewFile<'_>, mut spooled: Spooled) -> anyhow::Result<Asset> {
        use sha2::Digest;
        let id = new_id("asset");
        match &self.backend {
            Backend::Folder => {
                if let Some(handle) = spooled.file.take() {
                    handle.sync_data().await?;
                }
                tokio::fs::rename(&spooled.path, self.dir.join(&id)).await?;
                // Renamed: nothing left under the temporary name for the drop to remove.
                spooled.path = PathBuf::new();
            }
            Backend::Bucket(bucket) => {
                if let Some(mut handle) = spooled.file.take() {
                    tokio::io::AsyncWriteExt::flush(&mut handle).await?;
                }
                // The received file is removed when `spooled` drops.
                bucket.upload(&id, &spooled.path).await?;
            }
        }
        let asset = Asset {
            id,
            client_id: file.client_id.into(),
            kind: kind_of(file.content_type).into(),
            name: file.name.into(),
            content_type: file.content_type.into(),
            size: Some(spooled.size as i64),
            sha256: Some(hex::encode(std::mem::take(&mut spooled.sha256).finalize())),
            url: None,
            task_id: file.task_id.map(String::from),
            created_at: now_ms(),
        };
        if let Err(error) = self.insert(&asset).await {
            let _ = self.delete_stored(&asset.id).await;
            return Err(error);
        }
        Ok(asset)
    }

    /// Records an external URL (already SSRF-checked by the caller).
    pub async fn register_url(
        &self,
        client_id: &str,
        url: &str,
        name: &str,
        kind: &str,
    ) -> anyhow::Result<Asset> {
        let content_type = content_type_from_name(name).unwrap_or_else(|| match kind {
            "image" => "image/*".into(),
            "video" => "video/*".into(),
            "audio" => "audio/*".into(),
            _ => "application/octet-stream".into(),
        });
        let asset = Asset {
            id: new_id("asset"),
            client_id: client_id.into(),
            kind: kind.into(),
            name: name.into(),
            content_type,
            size: None,
            sha256: None,
            url: Some(url.into()),
            task_id: None,
            created_at: now_ms(),
        };
        self.insert(&asset).await?;
        Ok(asset)
    }

    async fn insert(&self, a: &Asset) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO assets (id, client_id, kind, name, content_type, size, sha256, url, task_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&a.id)
        .bind(&a.client_id)
        .bind(&a.kind)
        .bind(&a.name)
        .bind(&a.content_type)
        .bind(a.size)
        .bind(&a.sha256)
        .bind(&a.url)
        .bind(&a.task_id)
        .bind(a.created_at)
        .execute(&mut *self.store.writer().await?)
        .await?;
        Ok(())
    }

    /// The client's asset, or `None` (also for another client's).
    pub async fn get(&self, client_id: &str, id: &str) -> anyhow::Result<Option<Asset>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM assets WHERE id = $1 AND client_id = $2"
        ))
        .bind(id)
        .bind(client_id)
        .fetch_optional(&self.store.reader)
        .await?)
    }

    /// An asset by id alone: only for links whose signature was checked ([`crate::api::files`]).
    pub async fn get_linked(&self, id: &str) -> anyhow::Result<Option<Asset>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM assets WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.store.reader)
                .await?,
        )
    }

    /// A page of the client's assets, newest first, and whether more follow (see
    /// [`page_of_whole_milliseconds`](crate::store::page_of_whole_milliseconds)).
    pub async fn list(
        &self,
        client_id: &str,
        limit: i64,
        before: Option<i64>,
    ) -> anyhow::Result<(Vec<Asset>, bool)> {
        let sql = format!(
            "SELECT {COLUMNS} FROM assets WHERE client_id = $1 AND created_at < $2 ORDER BY created_at DESC, id DESC LIMIT $3"
        );
        let fetch = |asked: i64| {
            let query = sqlx::query_as(&sql)
                .bind(client_id)
                .bind(before.unwrap_or(i64::MAX))
                .bind(asked);
            async move { Ok(query.fetch_all(&self.store.reader).await?) }
        };
        crate::store::page_of_whole_milliseconds(limit, |a: &Asset| a.created_at, fetch).await
    }

    /// Deletes assets that never reached a client (uploads of a request that was not
    /// accepted after all); best effort, a leftover is logged.
    pub async fn remove_all(&self, assets: &[Asset]) {
        for asset in assets {
            let removed = async {
                sqlx::query("DELETE FROM assets WHERE id = $1")
                    .bind(&asset.id)
                    .execute(&mut *self.store.writer().await?)
                    .await
            }
            .await;
            if let Err(error) = removed {
                tracing::warn!(asset = %asset.id, %error, "removing an unused upload failed");
                continue;
            }
            if asset.url.is_none()
                && let Err(error) = self.delete_stored(&asset.id).await
            {
                tracing::warn!(asset = %asset.id, %error, "removing an unused upload's file failed");
            }
        }
    }

    /// The stored bytes of a file asset.
    pub async fn read(&self, asset: &Asset) -> anyhow::Result<Bytes> {
        match &self.backend {
            Backend::Folder => Ok(tokio::fs::read(self.dir.join(&asset.id)).await?.into()),
            Backend::Bucket(bucket) => bucket.read(&asset.id).await,
        }
    }

    /// The first bytes of a file asset, at most `limit` (to read a header).
    pub async fn read_head(&self, asset: &Asset, limit: u64) -> anyhow::Result<Vec<u8>> {
        let limit = limit.min(asset.size.unwrap_or_default().max(0) as u64);
        let mut head = Vec::with_capacity(limit as usize);
        if limit == 0 {
            return Ok(head);
        }
        let Some(mut chunks) = self.open(asset, Some(0..limit)).await? else {
            anyhow::bail!("the stored file of {} is missing", asset.id);
        };
        while let Some(chunk) = chunks.next().await {
            head.extend_from_slice(&chunk?);
        }
        Ok(head)
    }

    /// A file asset's bytes in `range` (all when `None`, which must lie within its size) as
    /// they are read, or `None` when its stored file is missing.
    pub async fn open(
        &self,
        asset: &Asset,
        range: Option<Range<u64>>,
    ) -> anyhow::Result<Option<ByteStream>> {
        match &self.backend {
            Backend::Folder => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let mut file = match tokio::fs::File::open(self.dir.join(&asset.id)).await {
                    Ok(file) => file,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(error) => return Err(error.into()),
                };
                let range = range.unwrap_or(0..u64::MAX);
                file.seek(std::io::SeekFrom::Start(range.start)).await?;
                let part = file.take(range.end - range.start);
                Ok(Some(tokio_util::io::ReaderStream::new(part).boxed()))
            }
            Backend::Bucket(bucket) => bucket.open(&asset.id, range).await,
        }
    }

    /// Whether a file asset's stored file is there.
    pub async fn exists(&self, asset: &Asset) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Folder => Ok(tokio::fs::try_exists(self.dir.join(&asset.id)).await?),
            Backend::Bucket(bucket) => bucket.exists(&asset.id).await,
        }
    }

    async fn delete_stored(&self, id: &str) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Folder => Ok(tokio::fs::remove_file(self.dir.join(id)).await?),
            Backend::Bucket(bucket) => bucket.delete(id).await,
        }
    }

    /// Deletes stored files that have no row and received files never adopted, once older
    /// than the orphan grace; returns how many went.
    pub async fn sweep_orphans(&self) -> anyhow::Result<usize> {
        let cutoff = now_ms() - self.orphan_grace.as_millis() as i64;
        let stored = match &self.backend {
            Backend::Folder => files_before(&self.dir, cutoff, is_stored_name).await?,
            // A bucket may hold others' objects too: only the names easel gives are looked at.
            Backend::Bucket(bucket) => bucket
                .stored_before(cutoff)
                .await?
                .into_iter()
                .filter(|name| is_stored_name(name))
                .collect(),
        };
        let mut removed = 0;
        for id in stored {
            let row = sqlx::query("SELECT id FROM assets WHERE id = $1")
                .bind(&id)
                .fetch_optional(&self.store.reader)
                .await?;
            if row.is_none() {
                tracing::warn!(object = %id, "deleting a stored file that has no asset row");
                self.delete_stored(&id).await?;
                removed += 1;
            }
        }
        for name in files_before(&self.dir, cutoff, is_received_name).await? {
            tracing::warn!(file = %name, "deleting a received file that was never adopted");
            tokio::fs::remove_file(self.dir.join(&name)).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Deletes the stored files older than `[assets] keep_secs`, rows first, except those a
    /// queued or running task names (an input it has yet to send); returns how many went.
    pub async fn expire(&self) -> anyhow::Result<usize> {
        const BATCH: usize = 500;
        let Some(keep) = self.keep else {
            return Ok(0);
        };
        let cutoff = now_ms() - keep.as_millis() as i64;
        let expired = format!(
            "SELECT id FROM assets WHERE url IS NULL AND created_at < $1 \
             AND NOT EXISTS ({NAMED_BY_A_LIVE_TASK}) ORDER BY created_at LIMIT {BATCH}"
        );
        let mut removed = 0;
        loop {
            let ids: Vec<(String,)> = sqlx::query_as(&expired)
                .bind(cutoff)
                .fetch_all(&self.store.reader)
                .await?;
            for (id,) in &ids {
                sqlx::query("DELETE FROM assets WHERE id = $1")
                    .bind(id)
                    .execute(&mut *self.store.writer().await?)
                    .await?;
                match self.delete_stored(id).await {
                    Ok(()) => {}
                    // Another process of the fleet got there first.
                    Err(error) if is_not_found(&error) => {}
                    Err(error) => return Err(error),
                }
                removed += 1;
            }
            if ids.len() < BATCH {
                break;
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                ?keep,
                "deleted stored files past [assets] keep_secs"
            );
        }
        Ok(removed)
    }

    /// Runs [`Self::sweep_orphans`] and [`Self::expire`] every half orphan grace (at least
    /// each second, at most every ten minutes) until `shutdown`.
    pub async fn sweep_orphans_until(self, shutdown: CancellationToken) {
        let every = (self.orphan_grace / 2).clamp(Duration::from_secs(1), Duration::from_secs(600));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(error) = self.sweep_orphans().await {
                tracing::warn!(%error, "sweeping orphan asset files failed");
            }
            if let Err(error) = self.expire().await {
                tracing::warn!(%error, "deleting stored files past [assets] keep_secs failed");
            }
        }
    }
}

/// Whether `error` says the file was not there.
fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|error| error.kind() == std::io::ErrorKind::NotFound)
}

/// A stored file (in the folder, or an object under the bucket's prefix): `asset_…`, no
/// extension.
fn is_stored_name(name: &str) -> bool {
    name.starts_with("asset_") && !name.contains('.')
}

/// A file being received ([`Assets::spool`]).
fn is_received_name(name: &str) -> bool {
    name.ends_with(".partial")
}

/// Names of the files in `dir` that `wanted` picks, last modified before `cutoff_ms`.
async fn files_before(
    dir: &Path,
    cutoff_ms: i64,
    wanted: fn(&str) -> bool,
) -> anyhow::Result<Vec<String>> {
    let dir = dir.to_path_buf();
    let cutoff = std::time::UNIX_EPOCH + Duration::from_millis(cutoff_ms.max(0) as u64);
    // A folder of many files takes a while to list, and listing blocks.
    tokio::task::spawn_blocking(move || {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if wanted(&name) && entry.metadata()?.modified()? < cutoff {
                names.push(name);
            }
        }
        Ok(names)
    })
    .await?
}

/// Guesses a MIME type from a file name's extension.
pub fn content_type_from_name(name: &str) -> Option<String> {
    let ext = Path::new(name).extension()?.to_str()?.to_ascii_lowercase();
    let mime = match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "avi" => "video/x-msvideo",
        "mov" => "video/quicktime",
        "txt" => "text/plain",
        "json" => "application/json",
        _ => return None,
    };
    Some(mime.into())
}

/// A file being received (see [`Assets::spool`]); removed when dropped unless
/// [`Assets::adopt`] made it an asset.
#[derive(Debug)]
pub struct Spooled {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    size: u64,
    sha256: sha2::Sha256,
}

impl Spooled {
    /// Appends `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("spooled file already closed"))?;
        file.write_all(bytes).await?;
        self.sha256.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Where the bytes are while they wait (for reading a header before adoption).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything received, read back whole (for a file that is changed before it is
    /// stored); the spooled file is then removed.
    pub async fn into_bytes(mut self) -> anyhow::Result<Bytes> {
        use tokio::io::AsyncWriteExt;
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
        }
        Ok(tokio::fs::read(&self.path).await?.into())
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
