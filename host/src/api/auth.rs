//! API keys: accepted from `Authorization: Bearer`, `X-API-Key` or `X-Zhinian-Api-Key`.
//!
//! Invariants: keys are stored and compared only as SHA-256 hashes (keys are long random
//! strings, so a fast hash is enough); with no keys configured the host serves loopback only
//! (enforced at bind) and every caller is the client `local`.

use std::{collections::HashMap, sync::RwLock};

use axum::http::HeaderMap;
use sha2::Digest;

use crate::{engine::task::now_ms, store::Store};

/// The client every request is attributed to when no keys are configured.
pub const LOCAL_CLIENT: &str = "local";

/// Why a request was not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No key in any accepted header.
    Missing,
    /// A key that matches no client.
    Invalid,
}

/// Key hash → client id, loaded from the `clients` table.
pub struct Auth {
    by_hash: RwLock<HashMap<String, String>>,
    open: bool,
    store: Store,
}

/// Hex SHA-256 of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

impl Auth {
    /// Stores the configured keys' hashes and loads every client.
    pub async fn load(store: Store, configured: &[(String, String)]) -> anyhow::Result<Self> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT key_hash, id FROM clients")
            .fetch_all(&store.reader)
            .await?;
        let auth = Self {
            by_hash: RwLock::new(rows.into_iter().collect()),
            open: configured.is_empty(),
            store,
        };
        for (client, key) in configured {
            auth.add(client, key).await?;
        }
        Ok(auth)
    }

    /// Whether a client with this id exists.
    pub async fn exists(&self, client: &str) -> anyhow::Result<bool> {
        let found: Option<(String,)> = sqlx::query_as("SELECT id FROM clients WHERE id = $1")
            .bind(client)
            .fetch_optional(&self.store.reader)
            .await?;
        Ok(found.is_some())
    }

    /// Adds a client key (or moves an existing key to `client`).
    pub async fn add(&self, client: &str, key: &str) -> anyhow::Result<()> {
        let hash = hash_key(key);
        sqlx::query(
            "INSERT INTO clients (id, key_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key_hash) DO UPDATE SET id = excluded.id",
        )
        .bind(client)
        .bind(&hash)
        .bind(now_ms())
        .execute(&self.store.writer)
        .await?;
        self.by_hash
            .write()
            .expect("auth lock")
            .insert(hash, client.to_string());
        Ok(())
    }

    /// The client behind the request's key.
    pub async fn client(&self, headers: &HeaderMap) -> Result<String, AuthError> {
        let Some(key) = presented_key(headers) else {
            return if self.open {
                Ok(LOCAL_CLIENT.into())
            } else {
                Err(AuthError::Missing)
            };
        };
        let hash = hash_key(&key);
        if let Some(client) = self.by_hash.read().expect("auth lock").get(&hash) {
            return Ok(client.clone());
        }
        // A key added on another host (or by an admin route) since we loaded.
        let found: Option<(String,)> = sqlx::query_as("SELECT id FROM clients WHERE key_hash = $1")
            .bind(&hash)
            .fetch_optional(&self.store.reader)
            .await
            .unwrap_or(None);
        match found {
            Some((client,)) => {
                self.by_hash
                    .write()
                    .expect("auth lock")
                    .insert(hash, client.clone());
                Ok(client)
            }
            None if self.open => Ok(LOCAL_CLIENT.into()),
            None => Err(AuthError::Invalid),
        }
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
