//! The `api_keys` table: each client's keys, with a label, an expiry and how they ended.
//!
//! Invariants: a secret is never stored, only its SHA-256 hash; a key row is never deleted (a
//! revoked key stays listed with its reason); a change that touches several rows is one
//! transaction. Keys listed in `EASEL_API_KEYS` belong to the environment (source `env`):
//! reconciling at start adds them, moves them to the client they now name and revokes those
//! no longer listed, but never brings back a key an operator revoked or rotated.

use std::collections::HashSet;

use sha2::Digest;
use sqlx::FromRow;

use crate::{
    engine::task::{new_id, now_ms},
    store::Store,
};

/// Source of a key listed in `EASEL_API_KEYS`.
const FROM_ENV: &str = "env";
/// Source of a key made through the admin routes.
const FROM_ADMIN: &str = "admin";
/// Source of a key stored before sources were recorded (see the migration) whose client is
/// not listed in `EASEL_API_KEYS`: made by an operator, or left from a pair removed since.
const MIGRATED: &str = "migrated";

/// Why a key that left `EASEL_API_KEYS` was revoked; only this revocation is undone when the
/// key is listed again, and an operator's reasons are worded so they can never equal it.
const REMOVED_FROM_ENV: &str = "removed from EASEL_API_KEYS";

const COLUMNS: &str =
    "id, client_id, label, source, created_at, expires_at, revoked_at, revoked_reason, replaced_by";

/// Hex SHA-256 of a key (keys are long random strings, so a fast hash is enough).
pub fn hash_key(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// One key, without its secret.
#[derive(Debug, Clone, FromRow)]
pub struct Key {
    /// Public id, `key_…`.
    pub id: String,
    /// The client it authenticates as.
    pub client_id: String,
    /// The operator's name for it.
    pub label: Option<String>,
    /// `env`, `admin` or `migrated`.
    pub source: String,
    /// Milliseconds since the Unix epoch, as every time here.
    pub created_at: i64,
    /// Refused from then on.
    pub expires_at: Option<i64>,
    /// Refused since then.
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// The key a rotation made in its place.
    pub replaced_by: Option<String>,
}

impl Key {
    /// Whether the key authenticates at `now`.
    pub fn active_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The secret itself (only its hash is stored).
    pub secret: String,
    /// The operator's name for it.
    pub label: Option<String>,
    /// When it stops working.
    pub expires_at: Option<i64>,
}

/// A refused change to the keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No such client.
    #[error("Client {0} not found.")]
    UnknownClient(String),
    /// No such key for that client.
    #[error("Key {0} not found.")]
    UnknownKey(String),
    /// The secret is already stored (for this or another client).
    #[error("This key is already in use.")]
    InUse,
    /// The key is revoked or expired.
    #[error("Key {0} is revoked or expired.")]
    Inactive(String),
    /// A rotation already replaced the key.
    #[error("Key {0} was already rotated to {1}.")]
    Rotated(String, String),
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotation {
    /// The new key.
    pub new: Key,
    /// The key it replaces, as it is now (revoked, or expiring at the end of the grace time).
    pub old: Key,
    /// The old key's hash, for dropping it from caches.
    pub old_hash: String,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Makes the stored keys agree with `EASEL_API_KEYS` (`configured`), in one transaction:
/// every listed key exists, belongs to the client it is listed for and is valid unless an
/// operator revoked it; every other key from the environment is revoked.
pub async fn reconcile(store: &Store, configured: &[(String, String)]) -> anyhow::Result<()> {
    let now = now_ms();
    let mut writer = store.writer().await?;
    let mut tx = writer.begin().await?;
    let mut listed = HashSet::new();
    for (client, secret) in configured {
        let hash = hash_key(secret);
        ensure_client(&mut tx, client, now).await?;
        let upserted = sqlx::query(
            "INSERT INTO api_keys (hash, id, client_id, source, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (hash) DO UPDATE SET client_id = excluded.client_id, \
             source = excluded.source, \
             revoked_at = CASE WHEN api_keys.revoked_reason = $6 THEN NULL \
                          ELSE api_keys.revoked_at END, \
             revoked_reason = CASE WHEN api_keys.revoked_reason = $6 THEN NULL \
                              ELSE api_keys.revoked_reason END \
             WHERE api_keys.client_id = excluded.client_id OR api_keys.source IN ($4, $7)",
        )
        .bind(&hash)
        .bind(new_id("key"))
        .bind(client)
        .bind(FROM_ENV)
        .bind(now)
        .bind(REMOVED_FROM_ENV)
        .bind(MIGRATED)
        .execute(&mut *tx)
        .await?;
        // A key issued to another client through the admin routes is that client's: moving it
        // would send its requests and credits to the listed client without a word.
        if upserted.rows_affected() == 0 {
            let owner: String =
                sqlx::query_scalar("SELECT client_id FROM api_keys WHERE hash = $1")
                    .bind(&hash)
                    .fetch_one(&mut *tx)
                    .await?;
            anyhow::bail!(
                "EASEL_API_KEYS lists a key for {client} that was issued to {owner} through the \
                 admin routes; a key belongs to one client, so list another one for {client}"
            );
        }
        listed.insert(hash);
        // One key per client was all an older version could store, and it could not start
        // with a client's key changed in the environment: a stored key of a listed client
        // came from the environment, so it is the environment's to revoke.
        sqlx::query("UPDATE api_keys SET source = $1 WHERE source = $2 AND client_id = $3")
            .bind(FROM_ENV)
            .bind(MIGRATED)
            .bind(client)
            .execute(&mut *tx)
            .await?;
    }
    let from_env: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT hash, id, client_id FROM api_keys WHERE source = $1 AND revoked_at IS NULL",
    )
    .bind(FROM_ENV)
    .fetch_all(&mut *tx)
    .await?;
    for (hash, id, client) in from_env {
        if listed.contains(&hash) {
            continue;
        }
        sqlx::query("UPDATE api_keys SET revoked_at = $1, revoked_reason = $2 WHERE hash = $3")
            .bind(now)
            .bind(REMOVED_FROM_ENV)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tracing::info!(key = %id, %client, "key revoked: {REMOVED_FROM_ENV}");
    }
    let unclaimed: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, client_id FROM api_keys WHERE source = $1 AND revoked_at IS NULL",
    )
    .bind(MIGRATED)
    .fetch_all(&mut *tx)
    .await?;
    for (id, client) in unclaimed {
        tracing::warn!(
            key = %id,
            %client,
            "key stored before this version and not in EASEL_API_KEYS: still valid; revoke it \
             with POST /admin/clients/{client}/keys/{id}/revoke if it should not be"
        );
    }
    tx.commit().await?;
    Ok(())
}

/// What a presented key is to this host.
#[derive(Debug, PartialEq)]
pub enum Presented {
    /// An active key: its client, and when it expires.
    Active {
        /// The client it belongs to.
        client: String,
        /// When it stops working, ms.
        expires_at: Option<i64>,
    },
    /// A key issued here that was revoked, rotated away or expired.
    Dead,
    /// No key this host ever issued.
    Unknown,
}

/// What the key whose hash is `hash` is at `now`.
pub async fn lookup(store: &Store, hash: &str, now: i64) -> anyhow::Result<Presented> {
    let row: Option<(String, Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT client_id, expires_at, revoked_at FROM api_keys WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&store.reader)
            .await?;
    Ok(match row {
        None => Presented::Unknown,
        Some((_, _, Some(_revoked))) => Presented::Dead,
        Some((_, Some(expires_at), None)) if expires_at <= now => Presented::Dead,
        Some((client, expires_at, None)) => Presented::Active { client, expires_at },
    })
}

/// Whether `id` may name a client: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, so that it
/// fits an admin path (`/admin/clients/{id}`) as it is.
pub fn valid_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// What [`valid_client_id`] asks, in words.
pub const CLIENT_ID_RULE: &str = "1 to 64 letters, digits, '-', '_' or '.'";

/// Whether any key was ever stored, revoked and expired ones included.
pub async fn any_stored(store: &Store) -> anyhow::Result<bool> {
    let found: Option<(String,)> = sqlx::query_as("SELECT hash FROM api_keys LIMIT 1")
        .fetch_optional(&store.reader)
        .await?;
    Ok(found.is_some())
}

/// Whether a client with this id exists.
pub async fn client_exists(store: &Store, client: &str) -> anyhow::Result<bool> {
    let found: Option<(String,)> = sqlx::query_as("SELECT id FROM clients WHERE id = $1")
        .bind(client)
        .fetch_optional(&store.reader)
        .await?;
    Ok(found.is_some())
}

/// Every client's id, in order.
pub async fn clients(store: &Store) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM clients ORDER BY id")
        .fetch_all(&store.reader)
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// A client's keys, oldest first; `None` when there is no such client.
pub async fn list(store: &Store, client: &str) -> anyhow::Result<Option<Vec<Key>>> {
    if !client_exists(store, client).await? {
        return Ok(None);
    }
    let keys = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE client_id = $1 ORDER BY created_at, id"
    ))
    .bind(client)
    .fetch_all(&store.reader)
    .await?;
    Ok(Some(keys))
}

/// A new client with one key (from the admin routes).
pub async fn create_client(
    store: &Store,
    client: &str,
    key: NewKey,
) -> anyhow::Result<Result<Key, KeyError>> {
    let mut writer = store.writer().await?;
    let mut tx = writer.begin().await?;
    ensure_client(&mut tx, client, now_ms()).await?;
    insert_and_commit(tx, client, &key).await
}

/// Another key for an existing client (from the admin routes).
pub async fn create(
    store: &Store,
    client: &str,
    key: NewKey,
) -> anyhow::Result<Result<Key, KeyError>> {
    let mut writer = store.writer().await?;
    let mut tx = writer.begin().await?;
    let known: Option<(String,)> = sqlx::query_as("SELECT id FROM clients WHERE id = $1")
        .bind(client)
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_none() {
        return Ok(Err(KeyError::UnknownClient(client.into())));
    }
    insert_and_commit(tx, client, &key).await
}

/// Ends `tx` with [`insert`]: committed when the key was stored, rolled back when refused.
async fn insert_and_commit(
    mut tx: Tx<'_>,
    client: &str,
    key: &NewKey,
) -> anyhow::Result<Result<Key, KeyError>> {
    let created = insert(&mut tx, client, key).await?;
    if created.is_ok() {
        tx.commit().await?;
    }
    Ok(created)
}

/// Replaces a client's active key with a new one of the same label, and of the same lifetime
/// counted from now unless `key` names an expiry. The old key is revoked now, or with
/// `grace_until` keeps working until then (never longer than it already would).
pub async fn rotate(
    store: &Store,
    client: &str,
    key_id: &str,
    key: NewKey,
    grace_until: Option<i64>,
) -> anyhow::Result<Result<Rotation, KeyError>> {
    let now = now_ms();
    let mut writer = store.writer().await?;
    let mut tx = writer.begin().await?;
    let Some(Stored {
        hash: old_hash,
        key: old,
    }) = find(&mut tx, client, key_id).await?
    else {
        return Ok(Err(KeyError::UnknownKey(key_id.into())));
    };
    if let Some(successor) = old.replaced_by {
        return Ok(Err(KeyError::Rotated(old.id, successor)));
    }
    if !old.active_at(now) {
        return Ok(Err(KeyError::Inactive(old.id)));
    }
    // The same label, and the same lifetime from now unless the rotation names one: a key
    // made to expire must not come back from a rotation as one that never does.
    let lifetime = old.expires_at.map(|at| at - old.created_at);
    let label = NewKey {
        label: old.label.clone(),
        expires_at: key.expires_at.or(lifetime.map(|lasts| now + lasts)),
        ..key
    };
    let new = match insert(&mut tx, client, &label).await? {
        Ok(new) => new,
        Err(refused) => return Ok(Err(refused)),
    };
    // The conditions repeat the checks above: a concurrent rotation or revocation of the same
    // key holds its row until it commits, and then this update matches nothing.
    let replaced = match grace_until {
        None => sqlx::query(
            "UPDATE api_keys SET replaced_by = $1, revoked_at = $2, revoked_reason = $3 \
             WHERE hash = $4 AND replaced_by IS NULL AND revoked_at IS NULL",
        )
        .bind(&new.id)
        .bind(now)
        .bind(format!("rotated to {}", new.id)),
        Some(until) => sqlx::query(
            "UPDATE api_keys SET replaced_by = $1, expires_at = $2 \
             WHERE hash = $3 AND replaced_by IS NULL AND revoked_at IS NULL",
        )
        .bind(&new.id)
        .bind(old.expires_at.map_or(until, |at| at.min(until))),
    }
    .bind(&old_hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if replaced == 0 {
        return Ok(Err(KeyError::Inactive(old.id)));
    }
    let old = find(&mut tx, client, key_id)
        .await?
        .expect("the row was just updated")
        .key;
    tx.commit().await?;
    Ok(Ok(Rotation { new, old, old_hash }))
}

/// Revokes a client's key for good (the environment cannot bring it back); `None` when there
/// is no such key. Revoking a revoked key keeps its first revocation time.
pub async fn revoke(
    store: &Store,
    client: &str,
    key_id: &str,
    reason: Option<&str>,
) -> anyhow::Result<Option<(String, Key)>> {
    let reason = match reason {
        Some(reason) => format!("revoked by an operator: {reason}"),
        None => "revoked by an operator".into(),
    };
    let mut writer = store.writer().await?;
    let mut tx = writer.begin().await?;
    sqlx::query(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1), revoked_reason = $2 \
         WHERE id = $3 AND client_id = $4 AND (revoked_at IS NULL OR revoked_reason = $5)",
    )
    .bind(now_ms())
    .bind(reason)
    .bind(key_id)
    .bind(client)
    .bind(REMOVED_FROM_ENV)
    .execute(&mut *tx)
    .await?;
    let found = find(&mut tx, client, key_id).await?;
    tx.commit().await?;
    Ok(found.map(|stored| (stored.hash, stored.key)))
}

/// A key row with its hash.
#[derive(FromRow)]
struct Stored {
    hash: String,
    #[sqlx(flatten)]
    key: Key,
}

/// A client's key and its hash.
async fn find(tx: &mut Tx<'_>, client: &str, key_id: &str) -> anyhow::Result<Option<Stored>> {
    Ok(sqlx::query_as(&format!(
        "SELECT hash, {COLUMNS} FROM api_keys WHERE id = $1 AND client_id = $2"
    ))
    .bind(key_id)
    .bind(client)
    .fetch_optional(&mut **tx)
    .await?)
}

async fn ensure_client(tx: &mut Tx<'_>, client: &str, now: i64) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO clients (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(client)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records `client` without a key (the client keyless callers are served as), so that the
/// operator's routes know it: its credits, limits and usage are set and read as any client's.
pub async fn record_keyless_client(store: &Store, client: &str) -> anyhow::Result<()> {
    let mut writer = store.writer().await?;
    let mut tx = writer.begin().await?;
    ensure_client(&mut tx, client, now_ms()).await?;
    tx.commit().await?;
    Ok(())
}

/// Stores a key made through the admin routes; a secret already stored is refused.
async fn insert(
    tx: &mut Tx<'_>,
    client: &str,
    key: &NewKey,
) -> anyhow::Result<Result<Key, KeyError>> {
    let stored = Key {
        id: new_id("key"),
        client_id: client.into(),
        label: key.label.clone(),
        source: FROM_ADMIN.into(),
        created_at: now_ms(),
        expires_at: key.expires_at,
        revoked_at: None,
        revoked_reason: None,
        replaced_by: None,
    };
    let inserted = sqlx::query(
        "INSERT INTO api_keys (hash, id, client_id, label, source, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO NOTHING",
    )
    .bind(hash_key(&key.secret))
    .bind(&stored.id)
    .bind(client)
    .bind(&stored.label)
    .bind(FROM_ADMIN)
    .bind(stored.created_at)
    .bind(stored.expires_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(if inserted == 0 {
        Err(KeyError::InUse)
    } else {
        Ok(stored)
    })
}

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, str::FromStr};

    use sqlx::{ConnectOptions, migrate::Migrator, sqlite::SqliteConnectOptions};

    use super::*;

    /// Keys stored by a version that kept one key per client survive the upgrade: those of
    /// clients in `EASEL_API_KEYS` become the environment's (so a changed one is rotated), the
    /// others stay valid.
    #[tokio::test]
    async fn keys_stored_before_this_version_keep_working() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("easel.db").display());
        let all = sqlx::migrate!("./migrations/sqlite");
        let before = Migrator {
            migrations: Cow::Owned(
                all.migrations
                    .iter()
                    .filter(|migration| migration.description != "api keys")
                    .cloned()
                    .collect(),
            ),
            ..all
        };
        assert_eq!(before.migrations.len() + 1, all.migrations.len());
        let mut old = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        before.run(&mut old).await.unwrap();
        for client in ["kept", "changed", "unlisted"] {
            sqlx::query("INSERT INTO clients (id, key_hash, created_at) VALUES ($1, $2, 1)")
                .bind(client)
                .bind(hash_key(&format!("{client}-key")))
                .execute(&mut old)
                .await
                .unwrap();
        }
        drop(old);

        let store = Store::open(&url, "NORMAL").await.unwrap();
        let configured = [("kept", "kept-key"), ("changed", "changed-key-2")]
            .map(|(client, key)| (client.to_string(), key.to_string()));
        reconcile(&store, &configured).await.unwrap();
        let now = now_ms();
        for (client, key, works, source) in [
            ("kept", "kept-key", true, FROM_ENV),
            ("changed", "changed-key", false, FROM_ENV),
            ("changed", "changed-key-2", true, FROM_ENV),
            ("unlisted", "unlisted-key", true, MIGRATED),
        ] {
            let found = lookup(&store, &hash_key(key), now).await.unwrap();
            assert_eq!(matches!(found, Presented::Active { .. }), works, "{key}");
            let keys = list(&store, client).await.unwrap().unwrap();
            assert!(
                keys.iter()
                    .all(|k| k.source == source && k.id.starts_with("key_"))
            );
        }
    }
}
