//! The fleet's heartbeat table: every SQL statement on `workers`.
//!
//! Invariants: a process writes only its own row ([`beat`], [`retire`]); any process may
//! delete rows too old to count for anything ([`forget_before`]). A row is alive until its
//! `alive_until`, which its writer sets from its own lease, so every reader agrees on which
//! workers are alive whatever lease it runs with; reads take a cut-off on it (the grace for
//! a dead worker's models is the reader's).

use sqlx::FromRow;

use crate::store::Store;

/// One process of the fleet, as its last heartbeat stored it (times in ms).
#[derive(Debug, Clone, FromRow)]
pub struct WorkerRow {
    /// `wrk_…`, new for every process start.
    pub id: String,
    /// The machine's host name.
    pub host: String,
    /// Its process id on that machine (`None` for rows written before it was recorded).
    pub pid: Option<i64>,
    /// JSON array of the provider ids it serves.
    pub providers: String,
    /// JSON array of what each provider announced (see `engine::fleet::Announcement`).
    pub announcement: String,
    /// Tasks it submits at once.
    pub capacity: i64,
    /// easel's version.
    pub version: String,
    /// 1 when it holds the native diffusion model.
    pub model_loaded: i64,
    /// When the process started.
    pub started_at: i64,
    /// Its latest heartbeat.
    pub last_seen: i64,
    /// Until when it counts as alive: its latest heartbeat and its own lease.
    pub alive_until: i64,
}

/// Writes (or refreshes) the caller's own row.
pub async fn beat(store: &Store, row: &WorkerRow) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO workers (id, host, providers, announcement, capacity, version, model_loaded, started_at, last_seen, alive_until, pid) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO UPDATE SET \
         host = excluded.host, pid = excluded.pid, providers = excluded.providers, announcement = excluded.announcement, \
         capacity = excluded.capacity, version = excluded.version, model_loaded = excluded.model_loaded, \
         last_seen = excluded.last_seen, alive_until = excluded.alive_until",
    )
    .bind(&row.id)
    .bind(&row.host)
    .bind(&row.providers)
    .bind(&row.announcement)
    .bind(row.capacity)
    .bind(&row.version)
    .bind(row.model_loaded)
    .bind(row.started_at)
    .bind(row.last_seen)
    .bind(row.alive_until)
    .bind(row.pid)
    .execute(&mut *store.writer().await?)
    .await?;
    Ok(())
}

/// Every row alive at or after `since`, oldest process first.
pub async fn alive_since(store: &Store, since: i64) -> anyhow::Result<Vec<WorkerRow>> {
    Ok(sqlx::query_as(
        "SELECT id, host, pid, providers, announcement, capacity, version, model_loaded, started_at, last_seen, alive_until \
         FROM workers WHERE alive_until >= $1 ORDER BY started_at, id",
    )
    .bind(since)
    .fetch_all(&store.reader)
    .await?)
}

/// Marks the caller's row as alive only until `at` (a process stopping on purpose puts it
/// just before now, so it stops counting at once while its models keep their grace).
pub async fn retire(store: &Store, id: &str, at: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE workers SET alive_until = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(&mut *store.writer().await?)
        .await?;
    Ok(())
}

/// Deletes rows alive only until before `before`.
pub async fn forget_before(store: &Store, before: i64) -> anyhow::Result<u64> {
    Ok(sqlx::query("DELETE FROM workers WHERE alive_until < $1")
        .bind(before)
        .execute(&mut *store.writer().await?)
        .await?
        .rows_affected())
}
