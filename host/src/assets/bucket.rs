//! An S3-compatible bucket as the place stored files live (`[assets] bucket`).
//!
//! Invariants: an object is written whole or not at all (one PUT, or a multipart upload that
//! is completed only after its last part and aborted on any error), streamed from the file it
//! was received into, so memory holds at most a few parts whatever the file's size; every key
//! is `key_prefix` + the asset id, and nothing else under the prefix is touched.

use std::{ops::Range, sync::Arc, time::Duration};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, GetResult, ObjectStore, ObjectStoreExt,
    RetryConfig, WriteMultipart,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    path::Path,
};
use tokio::io::AsyncReadExt;

use crate::config::AssetSettings;

/// Bytes of one multipart part (S3 wants at least 5 MiB, except the last).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one upload in flight at once: with [`PART_BYTES`], what an upload holds in memory.
const PARTS_IN_FLIGHT: usize = 4;
/// Bytes read from the received file per step.
const READ_BYTES: usize = 1024 * 1024;

/// The bucket and the key prefix of this deployment.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    name: String,
    retry_timeout: Duration,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.name)
            .field("prefix", &self.prefix.as_ref())
            .finish()
    }
}

impl Bucket {
    /// A client of the bucket `settings` name, credentials from `AWS_*`; nothing is sent yet.
    pub fn connect(settings: &AssetSettings, name: &str) -> anyhow::Result<Self> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(name)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_retry(Self::retries(settings.retry_timeout_secs))
            // A download streams for as long as its client reads: no deadline on a whole
            // request, only on reaching the store.
            .with_client_options(
                ClientOptions::new()
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(5)),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        // The client takes any string and panics on its first request when it is no URL:
        // checked here, so a typo stops the start instead of every upload.
        if let Some(endpoint) = builder.get_config_value(&AmazonS3ConfigKey::Endpoint) {
            let parsed = url::Url::parse(&endpoint).ok();
            if !parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
                anyhow::bail!(
                    "the asset bucket's endpoint {endpoint:?} ([assets] endpoint or AWS_ENDPOINT) \
                     is not an http:// or https:// URL"
                );
            }
        }
        let credentials = [
            AmazonS3ConfigKey::AccessKeyId,
            AmazonS3ConfigKey::WebIdentityTokenFile,
            AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
        ];
        if credentials
            .iter()
            .all(|key| builder.get_config_value(key).is_none())
        {
            // Only a cloud instance answers that service; anywhere else every request fails.
            tracing::warn!(
                bucket = name,
                "no AWS_ACCESS_KEY_ID for the asset bucket: its client will ask the instance \
                 metadata service (169.254.169.254) for credentials"
            );
        }
        let store = builder
            .build()
            .with_context(|| format!("configuring the asset bucket {name}"))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::from(settings.key_prefix.as_str()),
            name: name.into(),
            retry_timeout: Duration::from_secs(settings.retry_timeout_secs),
        })
    }

    /// Retries that the deadline ends: a count of them (ten by default, with a random
    /// backoff) can run out in under two seconds while the store restarts. The count is the
    /// most that fit in the deadline, each backoff being at least the first, so the log's
    /// "retry N of M" reads as a real bound.
    fn retries(timeout_secs: u64) -> RetryConfig {
        let backoff = BackoffConfig {
            max_backoff: Duration::from_secs(2),
            ..BackoffConfig::default()
        };
        let retry_timeout = Duration::from_secs(timeout_secs);
        let fit = retry_timeout.as_millis() / backoff.init_backoff.as_millis().max(1);
        RetryConfig {
            retry_timeout,
            max_retries: usize::try_from(fit).unwrap_or(usize::MAX) + 1,
            backoff,
        }
    }

    fn key(&self, id: &str) -> Path {
        self.prefix.child(id)
    }

    /// Uploads the file at `from` as object `id`: one PUT when it fits one part, else a
    /// multipart upload of [`PART_BYTES`] parts, aborted if any part fails.
    pub async fn upload(&self, id: &str, from: &std::path::Path) -> anyhow::Result<()> {
        let failed =
            |error: anyhow::Error| error.context(format!("uploading {id} to bucket {}", self.name));
        let mut file = tokio::fs::File::open(from).await?;
        if file.metadata().await?.len() <= PART_BYTES as u64 {
            let mut whole = Vec::new();
            file.read_to_end(&mut whole).await?;
            let put = self
                .store
                .put(&self.key(id), Bytes::from(whole).into())
                .await;
            return put.map(|_| ()).map_err(|e| failed(e.into()));
        }
        let upload = self
            .store
            .put_multipart(&self.key(id))
            .await
            .map_err(|e| failed(e.into()))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        // Every part sent and answered before the upload is completed: a part that failed
        // is then still ours to abort (completing would only report it, leaving the rest).
        let sent = async {
            loop {
                let mut chunk = BytesMut::with_capacity(READ_BYTES);
                while chunk.len() < READ_BYTES {
                    if file.read_buf(&mut chunk).await? == 0 {
                        break;
                    }
                }
                if chunk.is_empty() {
                    break;
                }
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.put(chunk.freeze());
            }
            writer.wait_for_capacity(0).await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = sent {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(object = id, error = %abort, "aborting a failed upload failed");
            }
            return Err(failed(error));
        }
        // Sends the last part and completes the upload; a failure here leaves no object, at
        // most uploaded parts for the bucket's lifecycle rule.
        writer
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| failed(e.into()))
    }

    /// The whole object.
    pub async fn read(&self, id: &str) -> anyhow::Result<Bytes> {
        Ok(self.store.get(&self.key(id)).await?.bytes().await?)
    }

    /// The object's bytes in `range` (whole when `None`) as they arrive, or `None` when there
    /// is no such object.
    pub async fn open(
        &self,
        id: &str,
        range: Option<Range<u64>>,
    ) -> anyhow::Result<Option<BoxStream<'static, std::io::Result<Bytes>>>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let found = self.get(id, options).await?;
        Ok(found.map(|found| found.into_stream().map_err(std::io::Error::other).boxed()))
    }

    /// Whether object `id` exists (a `HEAD`).
    pub async fn exists(&self, id: &str) -> anyhow::Result<bool> {
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        Ok(self.get(id, options).await?.is_some())
    }

    /// `GET` (or `HEAD`) of object `id`; `None` when there is no such object.
    async fn get(&self, id: &str, options: GetOptions) -> anyhow::Result<Option<GetResult>> {
        // The client retries a request it could not send; one the store did not answer is
        // retried here, for as long as an upload would be.
        let deadline = std::time::Instant::now() + self.retry_timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.store.get_opts(&self.key(id), options.clone()).await {
                Ok(found) => return Ok(Some(found)),
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(error) if std::time::Instant::now() + pause >= deadline => {
                    return Err(error.into());
                }
                Err(error) => {
                    tracing::debug!(object = id, %error, "the bucket did not answer; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Deletes object `id` (no error when it is already gone).
    pub async fn delete(&self, id: &str) -> anyhow::Result<()> {
        match self.store.delete(&self.key(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// The ids of objects under the prefix last written before `cutoff_ms` (Unix ms).
    pub async fn stored_before(&self, cutoff_ms: i64) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut listing = self.store.list(Some(&self.prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if meta.last_modified.timestamp_millis() >= cutoff_ms {
                continue;
            }
            // Only objects directly under the prefix are this deployment's assets.
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if self.key(name) == meta.location {
                ids.push(name.to_string());
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_counted_up_to_what_the_deadline_allows() {
        let config = Bucket::retries(30);
        assert_eq!(config.retry_timeout, Duration::from_secs(30));
        // 100 ms is the shortest backoff: 300 of them fill 30 s.
        assert_eq!(config.max_retries, 301);
        assert_eq!(Bucket::retries(0).max_retries, 1);
    }

    #[test]
    fn an_endpoint_that_is_no_url_stops_the_start() {
        for endpoint in ["not a url", "s3.example.com", "ftp://s3.example.com"] {
            let settings = AssetSettings {
                bucket: Some("easel".into()),
                endpoint: Some(endpoint.into()),
                ..AssetSettings::default()
            };
            let refused = Bucket::connect(&settings, "easel").unwrap_err().to_string();
            assert!(
                refused.contains("is not an http:// or https:// URL"),
                "{refused}"
            );
        }
        let settings = AssetSettings {
            bucket: Some("easel".into()),
            endpoint: Some("http://127.0.0.1:3900".into()),
            ..AssetSettings::default()
        };
        Bucket::connect(&settings, "easel").unwrap();
    }
}
