//! API keys: accepted from `Authorization: Bearer`, `X-API-Key` or `X-Zhinian-Api-Key`.
//!
//! Invariants: keys are stored and compared only as hashes ([`keys`]); with no keys
//! configured the host serves loopback only (enforced at bind), and while it also has no
//! active key stored, every caller that presents no key, or one it never issued, is the
//! client `local`. Once a key exists (stored at start, or issued through the admin routes
//! while it runs) every caller needs one: a host with clients never serves anyone as
//! `local`. A key it issued and revoked (or that expired) is refused in either case. A key
//! is trusted from memory for at most [`RECHECK_AFTER`] (and never past its expiry) before
//! its row is read again, so a key revoked on any host is refused on every host within that
//! time, and at once on the host that revoked it.

use std::{
    collections::HashMap,
    sync::{
        RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::http::HeaderMap;

use crate::{
    engine::task::now_ms,
    store::{
        Store,
        keys::{self, Key, KeyError, NewKey, Rotation, hash_key},
    },
};

/// The client every request is attributed to when no keys are configured.
pub const LOCAL_CLIENT: &str = "local";

/// How long a key's row is trusted from memory before it is read again.
pub const RECHECK_AFTER: Duration = Duration::from_secs(2);

/// Why a request was not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No key in any accepted header.
    Missing,
    /// A key that matches no client, or was revoked, or expired.
    Invalid,
}

/// A key known to be active when it was last read.
struct Trusted {
    client: String,
    until: Instant,
}

/// Key hash → client id, read from the `api_keys` table and kept briefly.
pub struct Auth {
    by_hash: RwLock<HashMap<String, Trusted>>,
    /// No key is configured or stored: callers without one are `local`.
    open: AtomicBool,
    store: Store,
}

impl Auth {
    /// Reconciles the stored keys with the configured ones (`EASEL_API_KEYS`). A process
    /// started without keys (an `easel worker`, a loopback host) leaves them as they are, so
    /// that it cannot revoke the keys of the hosts it shares a database with.
    pub async fn load(store: Store, configured: &[(String, String)]) -> anyhow::Result<Self> {
        if !configured.is_empty() {
            keys::reconcile(&store, configured).await?;
        }
        let open = configured.is_empty() && !keys::any_active(&store, now_ms()).await?;
        if open {
            tracing::info!(
                "no API keys: callers are served as the client `{LOCAL_CLIENT}` until a key is issued"
            );
        } else if configured.is_empty() {
            tracing::info!("API keys are stored: every caller needs one");
        }
        Ok(Self {
            by_hash: RwLock::default(),
            open: AtomicBool::new(open),
            store,
        })
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Passes on what issuing a key gave; once one was issued, every caller needs a key.
    fn issued(&self, added: Result<Key, KeyError>) -> anyhow::Result<Result<Key, KeyError>> {
        if added.is_ok() && self.open.swap(false, Ordering::Relaxed) {
            tracing::info!("an API key was issued: every caller needs one from now on");
        }
        Ok(added)
    }

    /// Whether a client with this id exists.
    pub async fn exists(&self, client: &str) -> anyhow::Result<bool> {
        keys::client_exists(&self.store, client).await
    }

    /// Adds a client with one key.
    pub async fn add(&self, client: &str, key: NewKey) -> anyhow::Result<Result<Key, KeyError>> {
        self.issued(keys::create_client(&self.store, client, key).await?)
    }

    /// Every client's id, in order.
    pub async fn clients(&self) -> anyhow::Result<Vec<String>> {
        keys::clients(&self.store).await
    }

    /// A client's keys; `None` when there is no such client.
    pub async fn keys(&self, client: &str) -> anyhow::Result<Option<Vec<Key>>> {
        keys::list(&self.store, client).await
    }

    /// Adds a key to an existing client.
    pub async fn add_key(
        &self,
        client: &str,
        key: NewKey,
    ) -> anyhow::Result<Result<Key, KeyError>> {
        self.issued(keys::create(&self.store, client, key).await?)
    }

    /// Replaces a key (see [`keys::rotate`]); this host stops trusting the old one at once.
    pub async fn rotate(
        &self,
        client: &str,
        key_id: &str,
        key: NewKey,
        grace_until: Option<i64>,
    ) -> anyhow::Result<Result<Rotation, KeyError>> {
        let rotation = keys::rotate(&self.store, client, key_id, key, grace_until).await?;
        if let Ok(rotation) = &rotation {
            self.forget(&rotation.old_hash);
        }
        Ok(rotation)
    }

    /// Revokes a key for good; this host refuses it at once. `None` when there is no such key.
    pub async fn revoke(
        &self,
        client: &str,
        key_id: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<Option<Key>> {
        let revoked = keys::revoke(&self.store, client, key_id, reason).await?;
        Ok(revoked.map(|(hash, key)| {
            self.forget(&hash);
            key
        }))
    }

    fn forget(&self, hash: &str) {
        self.by_hash.write().expect("auth lock").remove(hash);
    }

    /// The client behind the request's key.
    pub async fn client(&self, headers: &HeaderMap) -> Result<String, AuthError> {
        let Some(key) = presented_key(headers) else {
            return if self.is_open() {
                Ok(LOCAL_CLIENT.into())
            } else {
                Err(AuthError::Missing)
            };
        };
        let hash = hash_key(&key);
        let stale = match self.by_hash.read().expect("auth lock").get(&hash) {
            Some(trusted) if trusted.until > Instant::now() => return Ok(trusted.client.clone()),
            trusted => trusted.is_some(),
        };
        let now = now_ms();
        let found = keys::lookup(&self.store, &hash, now)
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "reading an API key");
                keys::Presented::Unknown
            });
        let (client, expires_at) = match found {
            keys::Presented::Active { client, expires_at } => (client, expires_at),
            // A key this host revoked or let expire is refused even where no key is needed:
            // its holder is told, never served as someone else.
            dead_or_unknown => {
                if stale {
                    self.forget(&hash);
                }
                return if self.is_open() && dead_or_unknown == keys::Presented::Unknown {
                    Ok(LOCAL_CLIENT.into())
                } else {
                    Err(AuthError::Invalid)
                };
            }
        };
        let until_expiry = expires_at.map_or(RECHECK_AFTER, |at| {
            Duration::from_millis(u64::try_from(at - now).unwrap_or_default())
        });
        self.by_hash.write().expect("auth lock").insert(
            hash,
            Trusted {
                client: client.clone(),
                until: Instant::now() + RECHECK_AFTER.min(until_expiry),
            },
        );
        Ok(client)
    }
}

/// The key from the first accepted header that carries one.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(value) = header("authorization") {
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value)
            .trim();
        if !token.is_empty() {
            return Some(token.to_string());
        }
    }
    header("x-api-key")
        .or_else(|| header("x-zhinian-api-key"))
        .map(String::from)
}
