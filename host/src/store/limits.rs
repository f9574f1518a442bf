//! Per-client limits as stored: every statement on `client_limits`.
//!
//! Invariants: a client has at most one row per scope (`model` is `''` for all of its tasks,
//! else the `provider/key` it applies to); a `NULL` column is no limit of that kind. A row
//! also holds the default priority of the client's tasks (of its model), which limits
//! nothing. What the rows mean at admission is decided by
//! [`engine::limits`](crate::engine::limits), inside the insert's transaction, after [`lock`]
//! took the client's rows.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;
use sqlx::FromRow;

use crate::store::{Backend, Store};

/// The scope of a limit on every model.
pub const ALL_MODELS: &str = "";

/// One stored limit row.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct ClientLimit {
    /// The client.
    pub client_id: String,
    /// `''` (every model) or `provider/key`.
    pub model: String,
    /// Tasks accepted in any 60 seconds.
    pub requests_per_minute: Option<i64>,
    /// Tasks queued or running at once.
    pub concurrent_tasks: Option<i64>,
    /// Credits charged per period, micro-credits.
    pub budget_micros: Option<i64>,
    /// `day` or `month` (UTC), when a budget is set.
    pub budget_period: Option<String>,
    /// The priority of the client's tasks (of the model) that do not name one; not a limit.
    pub priority: Option<i64>,
}

impl ClientLimit {
    /// Whether the row limits anything (a row may only set a default priority).
    pub fn limits_anything(&self) -> bool {
        self.requests_per_minute.is_some()
            || self.concurrent_tasks.is_some()
            || self.budget_micros.is_some()
    }
}

const COLUMNS: &str = "client_id, model, requests_per_minute, concurrent_tasks, budget_micros, budget_period, priority";

/// How long, on SQLite, a client's rows read at admission are trusted from memory.
pub const TRUSTED_FOR: Duration = Duration::from_secs(2);

/// The rows that apply to a task of `model_id` (`provider/key`): the client-wide row and the
/// model's own, client-wide first. On SQLite (one host owns the file) they come from
/// [`RowCache`]; on PostgreSQL, where any host may change them, from the table each time.
pub async fn applicable(
    store: &Store,
    client_id: &str,
    model_id: &str,
) -> anyhow::Result<Vec<ClientLimit>> {
    if store.backend == Backend::Sqlite {
        let rows = store.limit_rows.rows(store, client_id).await?;
        return Ok(rows
            .iter()
            .filter(|row| row.model == ALL_MODELS || row.model == model_id)
            .cloned()
            .collect());
    }
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM client_limits WHERE client_id = $1 AND model IN ('', $2) ORDER BY model"
    ))
    .bind(client_id)
    .bind(model_id)
    .fetch_all(&store.reader)
    .await?)
}

/// Each client's rows as this process last read them (SQLite only), so that an admission
/// does not read the table every time.
///
/// Invariants: an entry is used for at most [`TRUSTED_FOR`] after it was read; [`set`] and
/// [`remove`] drop the client's entry once their write is committed, and a read that began
/// before such a change is not kept, so a change made through this host applies from the
/// next admission on. The limits themselves are still decided in the insert's transaction,
/// counted from `tasks`.
#[derive(Default)]
pub struct RowCache {
    inner: Mutex<CachedRows>,
}

#[derive(Default)]
struct CachedRows {
    clients: HashMap<String, (Instant, Arc<Vec<ClientLimit>>)>,
    /// Bumped by every change, so a read that raced one is not kept.
    changes: u64,
}

impl RowCache {
    async fn rows(&self, store: &Store, client_id: &str) -> anyhow::Result<Arc<Vec<ClientLimit>>> {
        let changes = {
            let cached = self.lock();
            if let Some((read_at, rows)) = cached.clients.get(client_id)
                && read_at.elapsed() < TRUSTED_FOR
            {
                return Ok(rows.clone());
            }
            cached.changes
        };
        let read_at = Instant::now();
        let rows = Arc::new(list(store, client_id).await?);
        let mut cached = self.lock();
        if cached.changes == changes {
            cached
                .clients
                .insert(client_id.to_string(), (read_at, rows.clone()));
        }
        Ok(rows)
    }

    fn forget(&self, client_id: &str) {
        let mut cached = self.lock();
        cached.changes += 1;
        cached.clients.remove(client_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CachedRows> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Every row of the client, client-wide first.
pub async fn list(store: &Store, client_id: &str) -> anyhow::Result<Vec<ClientLimit>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM client_limits WHERE client_id = $1 ORDER BY model"
    ))
    .bind(client_id)
    .fetch_all(&store.reader)
    .await?)
}

/// Creates or replaces the row of `limit`'s client and scope.
pub async fn set(store: &Store, limit: &ClientLimit, now: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO client_limits (client_id, model, requests_per_minute, concurrent_tasks, \
         budget_micros, budget_period, updated_at, priority) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (client_id, model) DO UPDATE SET requests_per_minute = excluded.requests_per_minute, \
         concurrent_tasks = excluded.concurrent_tasks, budget_micros = excluded.budget_micros, \
         budget_period = excluded.budget_period, updated_at = excluded.updated_at, \
         priority = excluded.priority",
    )
    .bind(&limit.client_id)
    .bind(&limit.model)
    .bind(limit.requests_per_minute)
    .bind(limit.concurrent_tasks)
    .bind(limit.budget_micros)
    .bind(&limit.budget_period)
    .bind(now)
    .bind(limit.priority)
    .execute(&mut *store.writer().await?)
    .await?;
    store.limit_rows.forget(&limit.client_id);
    Ok(())
}

/// Removes the client's row for `model` (`''`: the client-wide one); whether there was one.
pub async fn remove(store: &Store, client_id: &str, model: &str) -> anyhow::Result<bool> {
    let removed = sqlx::query("DELETE FROM client_limits WHERE client_id = $1 AND model = $2")
        .bind(client_id)
        .bind(model)
        .execute(&mut *store.writer().await?)
        .await?
        .rows_affected();
    store.limit_rows.forget(client_id);
    Ok(removed > 0)
}

/// Takes the client's limit rows for the rest of `tx`, so that admissions of one client count
/// and insert one after another on every host: the next one's count sees this one's task.
/// SQLite's single writer already serializes them.
pub(crate) async fn lock(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    client_id: &str,
) -> anyhow::Result<()> {
    if backend == Backend::Postgres {
        sqlx::query(
            "SELECT model FROM client_limits WHERE client_id = $1 ORDER BY model FOR UPDATE",
        )
        .bind(client_id)
        .fetch_all(&mut **tx)
        .await?;
    }
    Ok(())
}
