//! API keys: accepted from `Authorization: Bearer`, `X-API-Key` or `X-Zhinian-Api-Key`.
//!
//! Invariants: keys are stored and compared only as hashes ([`keys`]); with no keys
//! configured the host serves loopback only (enforced at bind), and while its database also
//! holds no key, every caller that presents no key, or one it never issued, is the client
//! `local`. Once a key is stored (before the start, issued through this host's admin routes,
//! or by another host on the same database, seen within [`RECHECK_AFTER`]) every caller needs
//! one, for good: a host that has had clients never serves anyone as `local` again, not even
//! after their keys were revoked or expired. A key it issued and revoked (or that expired) is
//! refused in either case. A key is trusted from memory for at most [`RECHECK_AFTER`] (and
//! never past its expiry) before its row is read again, so a key revoked on any host is
//! refused on every host within that time, and at once on the host that revoked it.

use std::{
    collections::HashMap,
    sync::{
        Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, StatusCode};

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
    /// The key could not be looked up (the database is unreachable): a 503, so that its
    /// holder retries instead of taking the key for revoked.
    Unavailable,
}

impl AuthError {
    /// What every API answers it with: 401, or 503 while keys cannot be read.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Missing | AuthError::Invalid => StatusCode::UNAUTHORIZED,
        }
    }
}

/// The message of [`AuthError::Unavailable`] in every API.
pub const KEYS_UNAVAILABLE: &str = "API keys cannot be checked right now; try again shortly.";

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
    /// While open, when the table was last read for a key another host stored.
    open_checked: Mutex<Instant>,
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
        let open = configured.is_empty() && !keys::any_stored(&store).await?;
        if open {
            // Known to the operator's routes, so a grant or a limit can reach it.
            keys::record_keyless_client(&store, LOCAL_CLIENT).await?;
            tracing::info!(
                "no API keys: callers are served as the client `{LOCAL_CLIENT}` until a key is issued"
            );
        } else if configured.is_empty() {
            tracing::info!("API keys are stored: every caller needs one");
        }
        Ok(Self {
            by_hash: RwLock::default(),
            open: AtomicBool::new(open),
            open_checked: Mutex::new(Instant::now()),
            store,
        })
    }

    /// Whether callers without a key are still `local`: no key stored, as this host last read
    /// the table at most [`RECHECK_AFTER`] ago (a host sharing the database may have issued
    /// one meanwhile). Unavailable while the table cannot be read: nobody is served as
    /// `local` by mistake, nor told that a key is missing when none may be needed.
    async fn is_open(&self) -> Result<bool, AuthError> {
        if !self.open.load(Ordering::Relaxed) {
            return Ok(false);
        }
        {
            let mut checked = self.open_checked.lock().expect("auth lock");
            if checked.elapsed() < RECHECK_AFTER {
                return Ok(true);
            }
            *checked = Instant::now();
        }
        match keys::any_stored(&self.store).await {
            Ok(false) => Ok(true),
            Ok(true) => {
                if self.open.swap(false, Ordering::Relaxed) {
                    tracing::info!("an API key was stored: every caller needs one from now on");
                }
                Ok(false)
            }
            // The next caller reads it again.
            Err(error) => {
                tracing::error!(%error, "reading whether API keys are stored");
                let mut checked = self.open_checked.lock().expect("auth lock");
                *checked = checked.checked_sub(RECHECK_AFTER).unwrap_or(*checked);
                Err(AuthError::Unavailable)
            }
        }
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
            return if self.is_open().await? {
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
            .map_err(|error| {
                tracing::error!(%error, "reading an API key");
                AuthError::Unavailable
            })?;
        let (client, expires_at) = match found {
            keys::Presented::Active { client, expires_at } => (client, expires_at),
            // A key this host revoked or let expire is refused even where no key is needed:
            // its holder is told, never served as someone else.
            dead_or_unknown => {
                if stale {
                    self.forget(&hash);
                }
                return if dead_or_unknown == keys::Presented::Unknown && self.is_open().await? {
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

/// The key a request presents: a bearer token, else `X-API-Key`, else `X-Zhinian-Api-Key`,
/// else a bare key in `Authorization` (no scheme, as some clients send it). Credentials of
/// another scheme (a proxy's or a browser's `Basic`) are not a key, and do not hide one.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let authorization = header("authorization");
    let bearer = authorization
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    bearer
        .or_else(|| header("x-api-key"))
        .or_else(|| header("x-zhinian-api-key"))
        .or_else(|| {
            authorization
                .filter(|value| !value.contains(' ') && !value.eq_ignore_ascii_case("bearer"))
        })
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(pairs: &[(&'static str, &'static str)]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        presented_key(&headers)
    }

    #[test]
    fn a_key_comes_from_a_bearer_token_the_key_headers_or_a_bare_authorization() {
        assert_eq!(
            key_of(&[("authorization", "Bearer k1")]).as_deref(),
            Some("k1")
        );
        assert_eq!(
            key_of(&[("authorization", "bearer  k1 ")]).as_deref(),
            Some("k1")
        );
        assert_eq!(key_of(&[("authorization", "k1")]).as_deref(), Some("k1"));
        assert_eq!(key_of(&[("x-api-key", "k2")]).as_deref(), Some("k2"));
        assert_eq!(
            key_of(&[("x-zhinian-api-key", "k3")]).as_deref(),
            Some("k3")
        );
        assert_eq!(
            key_of(&[("authorization", "Bearer k1"), ("x-api-key", "k2")]).as_deref(),
            Some("k1")
        );
        assert_eq!(key_of(&[]), None);
        assert_eq!(key_of(&[("authorization", "Bearer ")]), None);
    }

    /// A proxy's or a browser's credentials of another scheme neither count as a key nor hide
    /// the key the client sent in its own header.
    #[test]
    fn credentials_of_another_scheme_are_not_a_key() {
        let basic = ("authorization", "Basic dXNlcjpwdw==");
        assert_eq!(key_of(&[basic, ("x-api-key", "k2")]).as_deref(), Some("k2"));
        assert_eq!(key_of(&[basic]), None);
    }
}
