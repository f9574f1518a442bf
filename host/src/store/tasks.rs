//! The task repository: every SQL statement on `tasks`, `webhook_outbox` and
//! `idempotency_keys`, each a named transition or read.
//!
//! Invariants:
//! - No other file under `src/` holds SQL on these tables (a test below enforces it). The
//!   engine's [`lifecycle`](crate::engine::lifecycle) decides when a task changes; this module
//!   only says how that is stored.
//! - Every status-changing `UPDATE` names the statuses it moves from in its `WHERE`, so a
//!   transition the task has already left behind is a no-op, never a step back.
//! - An insert checks the client's limits ([`limits::enforce`], counting from `tasks` after
//!   locking the client's limit rows), reserves the task's price, and records its idempotency
//!   key, in one transaction of its own (a savepoint of a group commit on SQLite, see
//!   [`WriteQueue`]); a terminal transition refunds an unsuccessful task and writes its outbox
//!   row in the same transaction as its `UPDATE`. Either returns only once committed.
//! - A claim (queued task, due poll, lapsed lease, due webhook) is one `UPDATE … RETURNING`
//!   over the rows its subquery picks, so a row is claimed by one caller on any number of
//!   hosts; the queue and poll claims skip locked rows on PostgreSQL
//!   ([`Store::skip_locked`]); the webhook claim, which ranks due rows per receiver, re-checks
//!   in its outer `WHERE` that each row is still due.
//! - Claims take the highest `priority` first, then the oldest (`created_at`, then `id`), and
//!   [`queue_position`] counts in that same order. A claim within capacity ([`claim_within`])
//!   counts the running tasks of each limited provider and model in the claiming statement
//!   itself, after taking one advisory lock on PostgreSQL, so that no two hosts count the same
//!   free slot (SQLite's single writer runs the statement alone).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use sqlx::FromRow;

use crate::{
    engine::{
        NewTask, SubmitError, TaskFilter, credits,
        limits::{self, Counted, Remaining, Usage},
        task::{CancelledBy, Phase, Status, Task, new_id},
    },
    store::{
        Backend, Store,
        breakers::{self, BreakerRow, Probe},
        inline, page_of_whole_milliseconds,
    },
};

/// The columns of [`Task`], for `SELECT`/`RETURNING`.
pub(super) const COLUMNS: &str = "id, client_id, api, capability, provider, model, request, status, phase, \
     progress, pending_handle, wake_at, cancel_requested, attempts, outputs, error, usage, webhook_url, \
     extra, created_at, updated_at, started_at, finished_at, reserved_micros, request_id, priority, worker_id, \
     poll_trouble";

/// Where `name` stands in [`COLUMNS`], counted from 0; worked out while compiling, so a name
/// that is not one of them fails the build.
pub(super) const fn column(name: &str) -> usize {
    let (list, name) = (COLUMNS.as_bytes(), name.as_bytes());
    let (mut at, mut index) = (0, 0);
    while at < list.len() {
        let mut same = 0;
        while same < name.len() && at + same < list.len() && list[at + same] == name[same] {
            same += 1;
        }
        let end = at + same;
        if same == name.len() && (end == list.len() || list[end] == b',') {
            return index;
        }
        while at < list.len() && list[at] != b',' {
            at += 1;
        }
        // Past the comma and the space after it.
        at += 2;
        index += 1;
    }
    panic!("not a task column");
}

/// How a task begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Waiting for a worker.
    Queued,
    /// Already running in phase `streaming`, held by the API process relaying it until
    /// `lease_end` (see [`chat`](crate::engine::chat)).
    Streaming {
        /// ms.
        lease_end: i64,
    },
}

/// How a task ends, as stored.
#[derive(Debug, Clone)]
pub struct Ending {
    /// A terminal status.
    pub status: Status,
    /// The `outputs` column, JSON.
    pub outputs: String,
    /// The `usage` column, JSON.
    pub usage: Option<String>,
    /// Why it did not succeed.
    pub error: Option<String>,
    /// Whether only a queued task may end so (an expiry, a cancel of a queued task): one a
    /// worker claimed meanwhile is left to its holder.
    pub queued_only: bool,
    /// The claim its holder ends it in (the task's `attempts` when claimed): the ending then
    /// lands only while the task is still running in that claim, so a holder whose lease
    /// lapsed and whose task was claimed again since changes nothing. `None` for an ending
    /// not made by the task's holder.
    pub claim: Option<i64>,
}

/// A held task whose lease lapsed, claimed for recovery.
#[derive(Debug, Clone, FromRow)]
pub struct Lapsed {
    /// The task.
    pub id: String,
    /// Its provider id.
    pub provider: String,
    /// What its holder was doing: `submitting` or `streaming`.
    pub phase: Phase,
    /// How many times it was claimed, the lapsed claim included.
    pub attempts: i64,
    /// 1 when its cancel was requested before its holder went away.
    pub cancel_requested: i64,
}

/// An outbox row claimed for a delivery attempt.
#[derive(Debug, Clone, FromRow)]
pub struct DueWebhook {
    /// `whk_…`.
    pub id: String,
    /// The task it tells of.
    pub task_id: String,
    /// Where to post it.
    pub url: String,
    /// The JSON body rendered when the task finished.
    pub body: String,
    /// Attempts made so far.
    pub attempts: i64,
}

/// One webhook of a task, as the outbox holds it (times in ms).
#[derive(Debug, Clone, FromRow)]
pub struct WebhookDelivery {
    /// `whk_…`.
    pub id: String,
    /// Where it is posted.
    pub url: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// When the next attempt is due, while neither delivered nor given up.
    pub next_attempt_at: i64,
    /// When a receiver accepted it.
    pub delivered_at: Option<i64>,
    /// When the attempts ran out.
    pub gave_up_at: Option<i64>,
    /// Why the latest attempt failed.
    pub last_error: Option<String>,
    /// When the task finished and the row was written.
    pub created_at: i64,
}

/// Inserts a task, checking the client's limits and reserving its price from the client's
/// balance in the same transaction when it has either. On PostgreSQL a trigger (migration
/// 0002) notifies other hosts. On SQLite it is committed with the other writes waiting at the
/// same time ([`WriteQueue`]); either way it returns once it is committed.
pub async fn insert(
    store: &Store,
    id: &str,
    new: &NewTask,
    now: i64,
    start: Start,
) -> Result<Task, SubmitError> {
    let (inserted, remaining) = if store.backend == Backend::Postgres {
        let mut conn = store.writer().await.map_err(anyhow::Error::from)?;
        insert_on(&mut conn, store.backend, id, new, now, start).await?
    } else {
        let write = Write::Insert {
            id: id.to_string(),
            new: new.clone(),
            now,
            start,
        };
        match store.writes.write(store, write).await? {
            Written::Inserted(admitted) => admitted,
            Written::Finished(_) => unreachable!("an insert answers as one"),
        }
    };
    // Here, on the caller's task: a grouped insert ran on another's.
    if let Some(remaining) = remaining {
        limits::report(remaining);
    }
    inserted
}

/// An insert's outcome, and what the client's limits left when it has any.
type Admitted = (Result<Task, SubmitError>, Option<Remaining>);

/// The statements of [`insert`] on `conn`: alone, one autocommitted `INSERT` or one
/// transaction; inside a group's transaction, the `INSERT` or a savepoint. A refusal (a
/// limit, the balance) is the inner error, and leaves nothing written.
async fn insert_on(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    id: &str,
    new: &NewTask,
    now: i64,
    start: Start,
) -> anyhow::Result<Admitted> {
    use sqlx::Connection;
    if new.price_micros <= 0 && new.limits.is_empty() {
        // One statement: the common path costs a single round trip.
        return Ok((Ok(insert_row(&mut *conn, id, new, now, start).await?), None));
    }
    let mut tx = conn.begin().await?;
    let mut remaining = None;
    if !new.limits.is_empty() {
        let (left, verdict) = limits::enforce(&mut tx, backend, new, now).await?;
        remaining = Some(left);
        if let Err(limited) = verdict {
            return Ok((Err(limited.into()), remaining));
        }
    }
    if new.price_micros > 0
        && let Err(short) =
            credits::reserve(&mut tx, &new.client_id, id, new.price_micros, now).await?
    {
        if let Some(remaining) = &mut remaining {
            remaining.untaken(new);
        }
        return Ok((Err(short.into()), remaining));
    }
    let task = insert_row(&mut *tx, id, new, now, start).await?;
    tx.commit().await?;
    Ok((Ok(task), remaining))
}

/// Inserts a queued task under the client's idempotency `key` (with the `hash` of the body it
/// came with), its price reserved in the same transaction. Returns the new task and `false`;
/// or, when the key was used before with the same hash, the task that use made and `true`.
pub async fn insert_once(
    store: &Store,
    id: &str,
    new: &NewTask,
    (key, hash): (&str, &str),
    now: i64,
) -> Result<(Task, bool), SubmitError> {
    let mut writer = store.writer().await.map_err(anyhow::Error::from)?;
    let mut tx = writer.begin().await.map_err(anyhow::Error::from)?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (client_id, key, request_hash, task_id, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id, key) DO NOTHING",
    )
    .bind(&new.client_id)
    .bind(key)
    .bind(hash)
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(anyhow::Error::from)?
    .rows_affected();
    if inserted == 0 {
        let (stored_hash, task_id): (String, String) = sqlx::query_as(
            "SELECT request_hash, task_id FROM idempotency_keys WHERE client_id = $1 AND key = $2",
        )
        .bind(&new.client_id)
        .bind(key)
        .fetch_one(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;
        tx.rollback().await.map_err(anyhow::Error::from)?;
        if stored_hash != hash {
            return Err(SubmitError::IdempotencyConflict);
        }
        let existing = fetch(store, &task_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("idempotency key points at missing task {task_id}"))?;
        return Ok((existing, true));
    }
    let mut remaining = None;
    if !new.limits.is_empty() {
        let (left, verdict) = limits::enforce(&mut tx, store.backend, new, now).await?;
        limits::report(left);
        remaining = Some(left);
        verdict?;
    }
    if new.price_micros > 0
        && let Err(short) =
            credits::reserve(&mut tx, &new.client_id, id, new.price_micros, now).await?
    {
        if let Some(mut remaining) = remaining {
            remaining.untaken(new);
            limits::report(remaining);
        }
        return Err(short.into());
    }
    let task = insert_row(&mut *tx, id, new, now, Start::Queued).await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok((task, false))
}

/// The insert of one task row, returning it; `$1`…`$18` as [`insert_row`] binds them.
static INSERT_ROW: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO tasks (id, client_id, api, capability, provider, model, request, status, webhook_url, extra, \
         reserved_micros, created_at, updated_at, phase, wake_at, started_at, attempts, request_id, priority) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $12, $8, $9, $11, $10, $10, $13, $14, $15, $16, $17, $18) RETURNING {COLUMNS}"
    )
});

impl Start {
    /// The row's status, phase, `wake_at`, `started_at` and attempts when it begins so.
    fn columns(self, now: i64) -> (Status, Option<Phase>, Option<i64>, Option<i64>, i64) {
        match self {
            Start::Queued => (Status::Queued, None, None, None, 0),
            Start::Streaming { lease_end } => (
                Status::Running,
                Some(Phase::Streaming),
                Some(lease_end),
                Some(now),
                1,
            ),
        }
    }
}

async fn insert_row<'e, E>(
    executor: E,
    id: &str,
    new: &NewTask,
    now: i64,
    start: Start,
) -> anyhow::Result<Task>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (status, phase, wake_at, started_at, attempts) = start.columns(now);
    Ok(sqlx::query_as(&INSERT_ROW)
        .bind(id)
        .bind(&new.client_id)
        .bind(new.api)
        .bind(&new.request.capability)
        .bind(&new.provider)
        .bind(&new.request.model)
        .bind(serde_json::to_string(&new.request)?)
        .bind(&new.webhook_url)
        .bind(new.extra.to_string())
        .bind(now)
        .bind(new.price_micros)
        .bind(status)
        .bind(phase)
        .bind(wake_at)
        .bind(started_at)
        .bind(attempts)
        .bind(&new.request_id)
        .bind(new.priority)
        .fetch_one(executor)
        .await?)
}

/// [`insert_row`] on the [inline](super::inline) connection, the same values bound.
fn insert_row_inline(
    conn: &rusqlite::Connection,
    id: &str,
    new: &NewTask,
    now: i64,
    start: Start,
) -> rusqlite::Result<Task> {
    let (status, phase, wake_at, started_at, attempts) = start.columns(now);
    let request = serde_json::to_string(&new.request)
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
    let extra = new.extra.to_string();
    inline::task_returned(
        conn,
        &INSERT_ROW,
        &[
            &id,
            &new.client_id,
            &new.api,
            &new.request.capability,
            &new.provider,
            &new.request.model,
            &request,
            &new.webhook_url,
            &extra,
            &now,
            &new.price_micros,
            &status.as_str(),
            &phase.map(Phase::as_str),
            &wake_at,
            &started_at,
            &attempts,
            &new.request_id,
            &new.priority,
        ],
    )?
    .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Takes the first queued task in claim order of the `providers` this process serves, if
/// any: `running`, phase `submitting`, held by `worker` until `lease_end`. No capacity
/// applies (see [`claim_within`]).
pub async fn claim(
    store: &Store,
    now: i64,
    lease_end: i64,
    worker: &str,
    providers: &[String],
) -> anyhow::Result<Option<Task>> {
    let room = Room::default();
    Ok(
        match claim_within(store, now, lease_end, worker, providers, &room, &[]).await? {
            Claim::Taken(task, _) => Some(task),
            Claim::Nothing | Claim::Held(_) => None,
        },
    )
}

/// What a claim may take: the limits of `[capacity]` and what this process already runs.
#[derive(Debug, Clone, Default)]
pub struct Room {
    /// Providers this process runs as many tasks of as it may; their tasks stay queued.
    pub full_here: Vec<String>,
    /// `(provider, max_in_flight)`, counted over every host.
    pub providers: Vec<(String, i64)>,
    /// `(provider, model key, max_in_flight)`, counted over every host.
    pub models: Vec<(String, String, i64)>,
}

impl Room {
    /// Whether the claim counts running tasks in the database.
    fn counts(&self) -> bool {
        !self.providers.is_empty() || !self.models.is_empty()
    }

    /// The conditions on a queued row (SQL text, its parameters numbered from `first`) and the
    /// values they bind, in order.
    fn condition(&self, first: usize) -> (String, Vec<Bound>) {
        let mut sql = String::new();
        let mut values = Vec::new();
        let next = |value: Bound, values: &mut Vec<Bound>| {
            values.push(value);
            format!("${}", first + values.len() - 1)
        };
        if !self.full_here.is_empty() {
            let names: Vec<String> = self
                .full_here
                .iter()
                .map(|provider| next(Bound::Text(provider.clone()), &mut values))
                .collect();
            sql.push_str(&format!(" AND provider NOT IN ({})", names.join(", ")));
        }
        for (provider, most) in &self.providers {
            let provider = next(Bound::Text(provider.clone()), &mut values);
            let most = next(Bound::Int(*most), &mut values);
            sql.push_str(&format!(
                " AND NOT (provider = {provider} AND (SELECT COUNT(*) FROM tasks \
                 WHERE status = 'running' AND provider = {provider}) >= {most})"
            ));
        }
        for (provider, key, most) in &self.models {
            let provider = next(Bound::Text(provider.clone()), &mut values);
            let key = next(Bound::Text(key.clone()), &mut values);
            let most = next(Bound::Int(*most), &mut values);
            sql.push_str(&format!(
                " AND NOT (provider = {provider} AND model = {key} AND (SELECT COUNT(*) FROM tasks \
                 WHERE status = 'running' AND provider = {provider} AND model = {key}) >= {most})"
            ));
        }
        (sql, values)
    }
}

/// A value bound to a generated condition.
#[derive(Debug, Clone)]
enum Bound {
    Text(String),
    Int(i64),
}

/// The advisory lock every capacity-counting claim takes on PostgreSQL (any fixed number
/// that nothing else locks: "easel" in ASCII).
const CAPACITY_LOCK: i64 = 0x6561_7365_6c;

/// What [`claim_within`] found.
#[derive(Debug)]
pub enum Claim {
    /// No queued task it may take.
    Nothing,
    /// A task, now `running` in this claim, with its breaker's word when its provider was
    /// among the watched ones (`None` otherwise: its breaker was not asked).
    Taken(Task, Option<Probe>),
    /// A task of a watched provider whose breaker is open or being probed by another claim:
    /// the claim was undone, so the task stayed queued as if never claimed.
    Held(BreakerRow),
}

/// Takes the first queued task in claim order of the `providers` this process serves that
/// `room` allows, if any: `running`, phase `submitting`, held by `worker` until `lease_end`.
/// With limits to count, the count and the claim are one statement run under
/// [`CAPACITY_LOCK`] (PostgreSQL), so claims on every host see each other's tasks: a provider
/// at its limit has none of its tasks taken, on any host. A task of a `watched` provider (one
/// whose breaker was opened) is claimed only with its breaker's probe or a closed breaker
/// ([`breakers::take_probe`], in the claim's transaction): no reader ever sees a claim the
/// breaker refused.
pub async fn claim_within(
    store: &Store,
    now: i64,
    lease_end: i64,
    worker: &str,
    providers: &[String],
    room: &Room,
    watched: &[String],
) -> anyhow::Result<Claim> {
    if providers.is_empty() {
        return Ok(Claim::Nothing);
    }
    let (sql, values) = claim_statement(store, providers, room);
    let mut query = sqlx::query_as(&sql).bind(lease_end).bind(now).bind(worker);
    for provider in providers {
        query = query.bind(provider);
    }
    for value in values {
        query = match value {
            Bound::Text(text) => query.bind(text),
            Bound::Int(number) => query.bind(number),
        };
    }
    let counts_capacity = room.counts() && store.backend == Backend::Postgres;
    let mut writer = store.writer().await?;
    if !counts_capacity && watched.is_empty() {
        let task: Option<Task> = query.fetch_optional(&mut *writer).await?;
        return Ok(task.map_or(Claim::Nothing, |task| Claim::Taken(task, None)));
    }
    let mut tx = writer.begin().await?;
    if counts_capacity {
        // Held until commit, when the claimed row is already visible to the next holder's
        // count.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CAPACITY_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    let Some(task) = query.fetch_optional(&mut *tx).await? else {
        tx.commit().await?;
        return Ok(Claim::Nothing);
    };
    let probe = if watched.contains(&task.provider) {
        Some(breakers::take_probe(&mut tx, &task.provider, now, lease_end).await?)
    } else {
        None
    };
    if let Some(Probe::Held(row)) = probe {
        tx.rollback().await?;
        return Ok(Claim::Held(row));
    }
    tx.commit().await?;
    Ok(Claim::Taken(task, probe))
}

/// The claim's statement (`$1` the lease's end, `$2` now, `$3` the worker, then the
/// providers served) and the values of `room`'s conditions, bound after them; a provider
/// whose breaker is open has none of its tasks taken ([`breakers::CLOSED`]). The status is
/// a literal (`'queued'`, `'running'`) so that the planner can use the partial indexes that
/// hold only those rows (migration `partial_task_indexes`).
fn claim_statement(store: &Store, providers: &[String], room: &Room) -> (String, Vec<Bound>) {
    let served = served_by(4, providers);
    let (condition, values) = room.condition(4 + providers.len());
    let sql = format!(
        "UPDATE tasks SET status = 'running', phase = 'submitting', wake_at = $1, attempts = attempts + 1, \
         started_at = COALESCE(started_at, $2), updated_at = $2, worker_id = $3 \
         WHERE id = (SELECT id FROM tasks WHERE status = 'queued' AND (wake_at IS NULL OR wake_at <= $2){served}{condition}{} \
         ORDER BY priority DESC, created_at, id LIMIT 1{}) \
         AND status = 'queued' RETURNING {COLUMNS}",
        breakers::CLOSED,
        store.skip_locked()
    );
    (sql, values)
}

/// Counts the queued tasks a claim takes before the one given by `$1` (priority), `$2`
/// (created_at) and `$3` (id).
const QUEUED_AHEAD: &str = "SELECT CAST(COUNT(*) AS BIGINT) FROM tasks WHERE status = 'queued' \
     AND (priority > $1 OR (priority = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3))))";

/// Where a queued task stands: 1 + the queued tasks a claim takes before it (higher priority,
/// or the same and older); `None` once it is no longer queued. Counted over every provider
/// (the count is an index-only scan of `tasks_claim_order`; a provider condition would read
/// each row), so behind a full or unserved provider's tasks it may overstate the wait.
pub async fn queue_position(store: &Store, task: &Task) -> anyhow::Result<Option<i64>> {
    if task.status != Status::Queued {
        return Ok(None);
    }
    let (ahead,): (i64,) = sqlx::query_as(QUEUED_AHEAD)
        .bind(task.priority)
        .bind(task.created_at)
        .bind(&task.id)
        .fetch_one(&store.reader)
        .await?;
    Ok(Some(ahead + 1))
}

/// The routing condition of a claim: ` AND provider IN ($first, …)`, one placeholder per
/// provider served (the caller binds them in order, and never calls it with none).
fn served_by(first: usize, providers: &[String]) -> String {
    format!(
        " AND provider IN ({})",
        placeholders(first, providers.len())
    )
}

/// `$first, $first+1, …`: `count` placeholders for a list the caller binds in order.
fn placeholders(first: usize, count: usize) -> String {
    let names: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    names.join(", ")
}

/// Ids bound in one statement of [`extend_leases`] and [`cancels_requested`]: far below
/// either database's limit on bound values.
const LEASES_PER_STATEMENT: usize = 500;

/// Moves the leases of those of `ids` still held (`submitting` or `streaming`) to
/// `lease_end`, and returns the ones among them whose cancel was requested.
pub async fn extend_leases(
    store: &Store,
    ids: &[&str],
    lease_end: i64,
) -> anyhow::Result<Vec<String>> {
    let mut cancel_requested = Vec::new();
    for chunk in ids.chunks(LEASES_PER_STATEMENT) {
        let sql = format!(
            "UPDATE tasks SET wake_at = $1 WHERE id IN ({}) AND status = 'running' \
             AND phase IN ('submitting', 'streaming') RETURNING id, cancel_requested",
            placeholders(2, chunk.len())
        );
        let mut statement = sqlx::query_as::<_, (String, i64)>(&sql).bind(lease_end);
        for id in chunk {
            statement = statement.bind(*id);
        }
        let extended = statement.fetch_all(&mut *store.writer().await?).await?;
        cancel_requested.extend(
            extended
                .into_iter()
                .filter(|(_, cancel)| *cancel != 0)
                .map(|(id, _)| id),
        );
    }
    Ok(cancel_requested)
}

/// Those of `ids` whose cancel was requested.
pub async fn cancels_requested(store: &Store, ids: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut requested = Vec::new();
    for chunk in ids.chunks(LEASES_PER_STATEMENT) {
        let sql = format!(
            "SELECT id FROM tasks WHERE id IN ({}) AND cancel_requested <> 0",
            placeholders(1, chunk.len())
        );
        let mut statement = sqlx::query_as::<_, (String,)>(&sql);
        for id in chunk {
            statement = statement.bind(*id);
        }
        let rows = statement.fetch_all(&store.reader).await?;
        requested.extend(rows.into_iter().map(|(id,)| id));
    }
    Ok(requested)
}

/// Hands a task its worker is submitting in `claim` (its `attempts` when claimed) to the
/// poller: phase `pending` with the provider's `handle`, first polled at `wake_at`. False
/// when the task is no longer being submitted in that claim (it ended, or its lease lapsed
/// and it was claimed again).
pub async fn mark_pending(
    store: &Store,
    id: &str,
    claim: i64,
    handle: &str,
    wake_at: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE tasks SET phase = 'pending', pending_handle = $2, wake_at = $3, updated_at = $4 \
         WHERE id = $1 AND status = 'running' AND phase = 'submitting' AND attempts = $5",
    )
    .bind(id)
    .bind(handle)
    .bind(wake_at)
    .bind(now)
    .bind(claim)
    .execute(&mut *store.writer().await?)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Moves a claimed poll's lease from `held_until` to `lease_end`. False when the claim is no
/// longer this poller's: the poll ended (`wake_at` now names the next poll, or the task is
/// done) or the lease lapsed and another poller took the task.
pub async fn extend_poll_claim(
    store: &Store,
    id: &str,
    held_until: i64,
    lease_end: i64,
) -> anyhow::Result<bool> {
    let extended = sqlx::query(
        "UPDATE tasks SET wake_at = $3 WHERE id = $1 AND phase = 'pending' AND wake_at = $2",
    )
    .bind(id)
    .bind(held_until)
    .bind(lease_end)
    .execute(&mut *store.writer().await?)
    .await?;
    Ok(extended.rows_affected() == 1)
}

/// Puts a task still being submitted in `claim` (its `attempts` when claimed) back in the
/// queue, not to be claimed before `not_before` (ms) when given: a queued task's `wake_at`.
/// The claim stays counted unless `counted` is false (its provider's breaker's probe, made
/// for the breaker's sake): then the task is as it was before it, not started if that was its
/// first. False when it is no longer being submitted in that claim.
pub async fn requeue(
    store: &Store,
    id: &str,
    claim: i64,
    not_before: Option<i64>,
    counted: bool,
    now: i64,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE tasks SET status = 'queued', phase = NULL, progress = 0, wake_at = $3, \
         attempts = attempts - $5, \
         started_at = CASE WHEN attempts - $5 = 0 THEN NULL ELSE started_at END, updated_at = $2 \
         WHERE id = $1 AND status = 'running' AND phase = 'submitting' AND attempts = $4",
    )
    .bind(id)
    .bind(now)
    .bind(not_before)
    .bind(claim)
    .bind(i64::from(!counted))
    .execute(&mut *store.writer().await?)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Stores a running task's progress and next `wake_at`, each only when given, and why its
/// last poll got no answer (none: it got one).
pub async fn record_progress(
    store: &Store,
    id: &str,
    progress: Option<f64>,
    wake_at: Option<i64>,
    poll_trouble: Option<&str>,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE tasks SET progress = COALESCE($2, progress), wake_at = COALESCE($3, wake_at), updated_at = $4, \
         poll_trouble = $5 WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(progress)
    .bind(wake_at)
    .bind(now)
    .bind(poll_trouble)
    .execute(&mut *store.writer().await?)
    .await?;
    Ok(())
}

/// Flags a task for cancellation by whoever holds it, on any host; `by` is who asked
/// ([`CancelledBy::flag`]), the first asker kept.
pub async fn request_cancel(
    store: &Store,
    id: &str,
    by: CancelledBy,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE tasks SET cancel_requested = CASE WHEN cancel_requested = 0 THEN $3 \
         ELSE cancel_requested END, updated_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(by.flag())
    .execute(&mut *store.writer().await?)
    .await?;
    Ok(())
}

/// Claims up to `limit` pending tasks of the `providers` this process serves whose poll is
/// due at `now` by moving their `wake_at` to `lease_end`.
pub async fn claim_due_polls(
    store: &Store,
    now: i64,
    lease_end: i64,
    limit: i64,
    providers: &[String],
) -> anyhow::Result<Vec<Task>> {
    if providers.is_empty() {
        return Ok(Vec::new());
    }
    let sql = due_polls_statement(store, providers);
    let mut query = sqlx::query_as(&sql).bind(now).bind(lease_end).bind(limit);
    for provider in providers {
        query = query.bind(provider);
    }
    Ok(query.fetch_all(&mut *store.writer().await?).await?)
}

/// The statement of [`claim_due_polls`]: `$1` now, `$2` the lease's end, `$3` the limit, then
/// the providers served. The phase is a literal so that the planner can use `tasks_pending`.
fn due_polls_statement(store: &Store, providers: &[String]) -> String {
    format!(
        "UPDATE tasks SET wake_at = $2 WHERE id IN (SELECT id FROM tasks WHERE phase = 'pending' AND wake_at <= $1{} \
         ORDER BY wake_at LIMIT $3{}) AND phase = 'pending' RETURNING {COLUMNS}",
        served_by(4, providers),
        store.skip_locked()
    )
}

/// The providers that pending tasks (running, waiting on their vendor) wait on.
pub async fn pending_providers(store: &Store) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT provider FROM tasks WHERE status = 'running' AND phase = 'pending'",
    )
    .fetch_all(&store.reader)
    .await?;
    Ok(rows.into_iter().map(|(provider,)| provider).collect())
}

/// Up to `limit` ids of the pending tasks of `provider`.
pub async fn pending_of(store: &Store, provider: &str, limit: i64) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM tasks WHERE status = 'running' AND phase = 'pending' AND provider = $1 \
         LIMIT $2",
    )
    .bind(provider)
    .bind(limit)
    .fetch_all(&store.reader)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Up to `limit` ids of tasks still queued that were created before `created_before`.
pub async fn queued_before(
    store: &Store,
    created_before: i64,
    limit: i64,
) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(QUEUED_BEFORE)
        .bind(created_before)
        .bind(limit)
        .fetch_all(&store.reader)
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

const QUEUED_BEFORE: &str =
    "SELECT id FROM tasks WHERE status = 'queued' AND created_at < $1 LIMIT $2";

/// Claims up to `limit` held (`submitting` or `streaming`) tasks whose lease ended before
/// `now`, for recovery, by moving their lease to `lease_end`.
pub async fn claim_lapsed(
    store: &Store,
    now: i64,
    lease_end: i64,
    limit: i64,
) -> anyhow::Result<Vec<Lapsed>> {
    Ok(sqlx::query_as(CLAIM_LAPSED)
        .bind(now)
        .bind(lease_end)
        .bind(limit)
        .fetch_all(&mut *store.writer().await?)
        .await?)
}

/// Held tasks are running ones, and the running rows are few (at most what every host runs
/// at once): the sweeper reads them through `tasks_running` rather than keep an index on the
/// lease that every chat would enter and leave.
const CLAIM_LAPSED: &str = "UPDATE tasks SET wake_at = $2 WHERE id IN (SELECT id FROM tasks \
     WHERE status = 'running' AND phase IN ('submitting', 'streaming') AND wake_at < $1 LIMIT $3) \
     AND phase IN ('submitting', 'streaming') AND wake_at < $1 RETURNING id, provider, phase, attempts, cancel_requested";

/// Renders the webhook body of a finished task.
pub type WebhookBody = Arc<dyn Fn(&Task) -> String + Send + Sync>;

/// Moves a live (queued or running) task to `ending`, a running one only unless the ending
/// is [queued only](Ending::queued_only); `None` when it was already terminal (or running,
/// for those).
/// In the same transaction, a task that did not succeed gets its reservation back, and a
/// task with a webhook gets its outbox row, with the body `webhook_body` renders from the
/// finished task. A task that succeeded without a webhook has nothing more to write: alone,
/// it ends in one autocommitted statement (every chat, most jobs). On SQLite it is committed
/// with the other writes waiting at the same time ([`WriteQueue`]); either way it returns
/// once it is committed, so a caller that answers a client after it (a chat's answer, its
/// `[DONE]`) answers for a task that is recorded and charged.
pub async fn finish(
    store: &Store,
    id: &str,
    ending: Ending,
    now: i64,
    webhook_body: WebhookBody,
) -> anyhow::Result<Option<Task>> {
    if store.backend == Backend::Postgres {
        let mut conn = store.writer().await?;
        return finish_on(&mut conn, id, &ending, now, &*webhook_body).await;
    }
    let write = Write::Finish {
        id: id.to_string(),
        ending,
        now,
        webhook_body,
    };
    match store.writes.write(store, write).await? {
        Written::Finished(task) => Ok(task),
        Written::Inserted(_) => unreachable!("a finish answers as one"),
    }
}

/// Group commit for SQLite: the task inserts and terminal transitions that wait for the one
/// writer connection at the same time are committed in one transaction, with one lend of the
/// connection and one WAL commit for all of them, where each would otherwise pay its own.
///
/// Invariants:
/// - A caller queues its write, then either finds it committed by another caller's group, or
///   takes the turn and commits everything queued so far, its own write included. It returns
///   only after the commit that holds its write: what it then tells its client (an accepted
///   task, a chat's answer) is as durable as a write of its own would have made it.
/// - A group of only one-statement writes ([`Write::runs_inline`]) is committed on the
///   [inline](super::inline) connection, on the committing caller's thread, while that caller
///   holds the writer's turn (not the pool's connection: sqlx makes a round trip to that
///   connection's thread each time one it lent comes back); what it hands back (a success
///   with a webhook) and any other group run on the pool's connection, within the same turn.
/// - Each write in a group runs the statements it runs alone ([`insert_on`], [`finish_on`]):
///   a refused insert rolls back its own savepoint and changes nothing; a terminal `UPDATE`
///   names the live statuses, so the first outcome of a task wins and a reservation is kept
///   or returned exactly once, whoever commits it.
/// - When a write fails in a group (an error, not a refusal), nothing after it runs, the
///   group is rolled back whole and each of its writes runs again alone, so a failure is only
///   its own caller's. A group of more than one write is committed in a task of its own, so a
///   caller that goes away mid-group (a client hanging up) cannot abandon the others' writes.
#[derive(Default)]
pub struct WriteQueue {
    waiting: std::sync::Mutex<Vec<Queued>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// A write that may be committed in a group.
enum Write {
    Insert {
        id: String,
        new: NewTask,
        now: i64,
        start: Start,
    },
    Finish {
        id: String,
        ending: Ending,
        now: i64,
        webhook_body: WebhookBody,
    },
}

/// What a [`Write`] answers.
enum Written {
    Inserted(Admitted),
    Finished(Option<Task>),
}

impl Write {
    async fn run(&self, conn: &mut sqlx::AnyConnection) -> anyhow::Result<Written> {
        Ok(match self {
            Write::Insert {
                id,
                new,
                now,
                start,
            } => Written::Inserted(insert_on(conn, Backend::Sqlite, id, new, *now, *start).await?),
            Write::Finish {
                id,
                ending,
                now,
                webhook_body,
            } => Written::Finished(finish_on(conn, id, ending, *now, &**webhook_body).await?),
        })
    }

    /// Whether it can run on the [inline](super::inline) connection: an insert with no price
    /// and no limits (one statement), or a success (one statement, unless it has a webhook).
    fn runs_inline(&self) -> bool {
        match self {
            Write::Insert { new, .. } => new.price_micros <= 0 && new.limits.is_empty(),
            Write::Finish { ending, .. } => ending.status == Status::Succeeded,
        }
    }

    /// Its one statement on the inline connection; `None` for a success that has a webhook
    /// or finds its task ended, which [`Write::run`] then handles in full.
    fn run_inline(&self, conn: &rusqlite::Connection) -> rusqlite::Result<Option<Written>> {
        Ok(match self {
            Write::Insert {
                id,
                new,
                now,
                start,
            } => Some(Written::Inserted((
                Ok(insert_row_inline(conn, id, new, *now, *start)?),
                None,
            ))),
            Write::Finish {
                id, ending, now, ..
            } => inline::task_returned(
                conn,
                &FINISH_ALONE,
                &[
                    id,
                    &ending.status.as_str(),
                    &ending.outputs,
                    &ending.usage,
                    &ending.error,
                    now,
                    &i64::from(ending.queued_only),
                    &ending.claim.unwrap_or(0),
                ],
            )?
            .map(|task| Written::Finished(Some(task))),
        })
    }
}

struct Queued {
    write: Arc<Write>,
    done: tokio::sync::oneshot::Sender<anyhow::Result<Written>>,
}

impl WriteQueue {
    async fn write(&self, store: &Store, write: Write) -> anyhow::Result<Written> {
        let write = Arc::new(write);
        let (done, mut answer) = tokio::sync::oneshot::channel();
        self.lock_waiting().push(Queued {
            write: write.clone(),
            done,
        });
        // A free turn is taken before the answer is waited on: a caller that commits its own
        // write then finds the answer ready, instead of waking its own task with it (which
        // tokio reschedules as a yield, waking the other runtime thread for nothing).
        let answered = match self.turn.clone().try_lock_owned() {
            Ok(turn) => self.take_turn(store, &write, turn, answer).await,
            Err(_) => tokio::select! {
                biased;
                answered = &mut answer => answered,
                turn = self.turn.clone().lock_owned() => {
                    self.take_turn(store, &write, turn, answer).await
                }
            },
        };
        answered.map_err(|_| anyhow::anyhow!("the database write was abandoned (shutting down)"))?
    }

    /// With the turn, commits what is queued (its own `write` among it, or in an earlier
    /// group) and returns its answer.
    async fn take_turn(
        &self,
        store: &Store,
        write: &Arc<Write>,
        turn: tokio::sync::OwnedMutexGuard<()>,
        answer: tokio::sync::oneshot::Receiver<anyhow::Result<Written>>,
    ) -> Result<anyhow::Result<Written>, tokio::sync::oneshot::error::RecvError> {
        let group = std::mem::take(&mut *self.lock_waiting());
        if group.len() == 1 && Arc::ptr_eq(&group[0].write, write) {
            // Its own write alone: run here, as without a group.
            commit_group(store, group).await;
            drop(turn);
        } else if !group.is_empty() {
            let store = store.clone();
            tokio::spawn(async move {
                commit_group(&store, group).await;
                drop(turn);
            });
        }
        // Queued before the group was taken, so this group or an earlier one holds it.
        answer.await
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs `group` on the writer connection, in one transaction when it holds more than one
/// write, and answers each caller; see [`WriteQueue`] for what a failure does.
async fn commit_group(store: &Store, group: Vec<Queued>) {
    // Held while either connection writes: SQLite sees one writer at a time.
    let turn = store.write_turn().await;
    let group = match &store.inline {
        Some(inline) if group.iter().all(|queued| queued.write.runs_inline()) => {
            commit_inline(inline, group)
        }
        _ => group,
    };
    if group.is_empty() {
        return;
    }
    let mut conn = match store.writer_within(turn).await {
        Ok(conn) => conn,
        Err(error) => {
            for queued in group {
                let _ = queued.done.send(Err(anyhow::anyhow!("{error}")));
            }
            return;
        }
    };
    if group.len() > 1 {
        match run_together(&mut conn, &group).await {
            Ok(answers) => {
                for (queued, answer) in group.into_iter().zip(answers) {
                    let _ = queued.done.send(Ok(answer));
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, size = group.len(), "a group of task writes failed; running each alone");
            }
        }
    }
    for queued in group {
        let answer = queued.write.run(&mut conn).await;
        let _ = queued.done.send(answer);
    }
}

/// Commits `group` on the inline connection, in one transaction when it holds more than one
/// write, and answers each write it completed. Returns the writes left to run on the pool's
/// connection: those [`Write::run_inline`] hands back, or the whole group when the inline
/// commit failed (rolled back, so nothing of it was written).
fn commit_inline(inline: &inline::InlineWriter, group: Vec<Queued>) -> Vec<Queued> {
    let answers = inline.run(group.len() > 1, |conn| {
        group
            .iter()
            .map(|queued| queued.write.run_inline(conn))
            .collect::<rusqlite::Result<Vec<_>>>()
    });
    match answers {
        Ok(answers) => group
            .into_iter()
            .zip(answers)
            .filter_map(|(queued, answer)| match answer {
                Some(written) => {
                    let _ = queued.done.send(Ok(written));
                    None
                }
                None => Some(queued),
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, size = group.len(), "inline task writes failed; running them on the pool");
            group
        }
    }
}

async fn run_together(
    conn: &mut sqlx::AnyConnection,
    group: &[Queued],
) -> anyhow::Result<Vec<Written>> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let mut answers = Vec::with_capacity(group.len());
    for queued in group {
        answers.push(queued.write.run(&mut tx).await?);
    }
    tx.commit().await?;
    Ok(answers)
}

/// The statements of [`finish`] on `conn` (alone, or inside a group's transaction): one
/// statement for a task that succeeded without a webhook, else a transaction (a savepoint in
/// a group) holding the guarded `UPDATE`, the refund of a task that did not succeed and the
/// outbox row of a task with a webhook.
async fn finish_on(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    ending: &Ending,
    now: i64,
    webhook_body: &(dyn Fn(&Task) -> String + Send + Sync),
) -> anyhow::Result<Option<Task>> {
    use sqlx::Connection;
    if ending.status == Status::Succeeded {
        let alone = finish_row(&mut *conn, id, ending, now, &FINISH_ALONE).await?;
        if alone.is_some() {
            return Ok(alone);
        }
    }
    let mut tx = conn.begin().await?;
    let task = finish_row(&mut *tx, id, ending, now, &FINISH_ROW).await?;
    if let Some(task) = &task
        && task.reserved_micros > 0
        && ending.status != Status::Succeeded
    {
        credits::refund(&mut tx, task, now).await?;
    }
    if let Some(task) = &task
        && let Some(url) = &task.webhook_url
    {
        sqlx::query(
            "INSERT INTO webhook_outbox (id, task_id, url, body, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(new_id("whk"))
        .bind(&task.id)
        .bind(url)
        .bind(webhook_body(task))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(task)
}

/// The terminal update of [`finish`]: `$1` the id, `$2` the status, `$3` outputs, `$4` usage,
/// `$5` the error (a cancel the operator asked for says so instead), `$6` now, `$7` 1 for
/// [queued only](Ending::queued_only), `$8` the [claim](Ending::claim) or 0, for tasks that
/// also meet `condition` (SQL text).
fn finish_sql(condition: &str) -> String {
    let operator = CancelledBy::Operator.flag();
    let operator_error = CancelledBy::OPERATOR_ERROR;
    format!(
        "UPDATE tasks SET status = $2, outputs = $3, usage = $4, \
         error = CASE WHEN $2 = 'cancelled' AND cancel_requested = {operator} \
           THEN '{operator_error}' ELSE $5 END, \
         progress = CASE WHEN $2 = 'succeeded' THEN 1.0 ELSE progress END, \
         phase = NULL, pending_handle = NULL, wake_at = NULL, finished_at = $6, updated_at = $6 \
         WHERE id = $1 AND (status = 'queued' OR (status = 'running' AND $7 = 0)) \
         AND ($8 = 0 OR (status = 'running' AND attempts = $8)) {condition} \
         RETURNING {COLUMNS}"
    )
}

/// [`finish_sql`] for any live task.
static FINISH_ROW: LazyLock<String> = LazyLock::new(|| finish_sql(""));

/// [`finish_sql`] for a live task without a webhook: a success with nothing more to write.
static FINISH_ALONE: LazyLock<String> = LazyLock::new(|| finish_sql("AND webhook_url IS NULL"));

/// The terminal update of [`finish`] (`sql`: [`FINISH_ROW`] or [`FINISH_ALONE`]).
async fn finish_row<'e, E>(
    executor: E,
    id: &str,
    ending: &Ending,
    now: i64,
    sql: &str,
) -> anyhow::Result<Option<Task>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_as(sql)
        .bind(id)
        .bind(ending.status)
        .bind(&ending.outputs)
        .bind(&ending.usage)
        .bind(&ending.error)
        .bind(now)
        .bind(i64::from(ending.queued_only))
        .bind(ending.claim.unwrap_or(0))
        .fetch_optional(executor)
        .await?)
}

/// A task by id, whoever owns it.
pub async fn fetch(store: &Store, id: &str) -> anyhow::Result<Option<Task>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM tasks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&store.reader)
            .await?,
    )
}

/// The client's task, or `None` (also for another client's).
pub async fn get(store: &Store, client_id: &str, id: &str) -> anyhow::Result<Option<Task>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE id = $1 AND client_id = $2"
    ))
    .bind(id)
    .bind(client_id)
    .fetch_optional(&store.reader)
    .await?)
}

/// A page of tasks, newest first, and whether more remain (see
/// [`page_of_whole_milliseconds`]):
/// the `owner`'s only when one is given (every client API gives one; the operator's routes
/// may not).
pub async fn list(
    store: &Store,
    owner: Option<&str>,
    filter: &TaskFilter,
) -> anyhow::Result<(Vec<Task>, bool)> {
    let mut sql = format!("SELECT {COLUMNS} FROM tasks WHERE created_at < $1");
    let (provider, model) = match filter.model.as_deref().map(|m| m.split_once('/')) {
        Some(Some((provider, key))) => (Some(provider), Some(key)),
        Some(None) => (None, filter.model.as_deref()),
        None => (None, None),
    };
    let mut next = 2;
    for (column, present) in [
        ("client_id", owner.is_some()),
        ("status", filter.status.is_some()),
        ("capability", filter.capability.is_some()),
        ("api", filter.api.is_some()),
        ("provider", provider.is_some()),
        ("model", model.is_some()),
    ] {
        if present {
            sql.push_str(&format!(" AND {column} = ${next}"));
            next += 1;
        }
    }
    sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT ${next}"));
    let fetch = |asked: i64| {
        let mut query = sqlx::query_as(&sql).bind(filter.before.unwrap_or(i64::MAX));
        if let Some(owner) = owner {
            query = query.bind(owner);
        }
        if let Some(status) = filter.status {
            query = query.bind(status);
        }
        if let Some(capability) = &filter.capability {
            query = query.bind(capability.clone());
        }
        if let Some(api) = filter.api {
            query = query.bind(api);
        }
        for column in [provider, model].into_iter().flatten() {
            query = query.bind(column);
        }
        let query = query.bind(asked);
        async move { Ok(query.fetch_all(&store.reader).await?) }
    };
    page_of_whole_milliseconds(filter.limit, |task: &Task| task.created_at, fetch).await
}

/// A task's webhook deliveries, oldest first.
pub async fn webhook_deliveries(
    store: &Store,
    task_id: &str,
) -> anyhow::Result<Vec<WebhookDelivery>> {
    Ok(sqlx::query_as(
        "SELECT id, url, attempts, next_attempt_at, delivered_at, gave_up_at, last_error, created_at \
         FROM webhook_outbox WHERE task_id = $1 ORDER BY created_at, id",
    )
    .bind(task_id)
    .fetch_all(&store.reader)
    .await?)
}

/// Deletes up to `limit` tasks that ended before `ended_before` and were created before
/// `created_below` (an id from [`task_ids_before`](crate::engine::task::task_ids_before), so
/// the walk follows the primary key), with their idempotency keys and webhook records, in one
/// transaction; a task whose webhook is still being delivered stays, and so does one its
/// client's limits still count (`counted`: made in the last minute, for a client with a
/// request rate; succeeded since the day or month began, for one with a budget of that
/// period). The credit ledger keeps its rows. Returns how many tasks went.
pub(crate) async fn delete_ended(
    store: &Store,
    created_below: &str,
    ended_before: i64,
    counted: &Counted,
    limit: i64,
) -> anyhow::Result<usize> {
    let mut writer = store.writer().await?;
    let mut tx = writer.begin().await?;
    let ids: Vec<(String,)> = sqlx::query_as(&format!("{ENDED_BEFORE}{}", store.skip_locked()))
        .bind(created_below)
        .bind(ended_before)
        .bind(limit)
        .bind(counted.day)
        .bind(counted.month)
        .bind(counted.minute)
        .fetch_all(&mut *tx)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let listed = placeholders(1, ids.len());
    for statement in [
        format!("DELETE FROM idempotency_keys WHERE task_id IN ({listed})"),
        format!("DELETE FROM webhook_outbox WHERE task_id IN ({listed})"),
        format!("DELETE FROM tasks WHERE id IN ({listed})"),
    ] {
        let mut query = sqlx::query(&statement);
        for (id,) in &ids {
            query = query.bind(id);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(ids.len())
}

const ENDED_BEFORE: &str = "SELECT id FROM tasks WHERE id < $1 AND finished_at < $2 \
     AND status IN ('succeeded', 'failed', 'cancelled', 'expired') \
     AND NOT EXISTS (SELECT 1 FROM webhook_outbox WHERE webhook_outbox.task_id = tasks.id \
         AND delivered_at IS NULL AND gave_up_at IS NULL) \
     AND NOT EXISTS (SELECT 1 FROM client_limits WHERE client_limits.client_id = tasks.client_id \
         AND ((requests_per_minute IS NOT NULL AND tasks.created_at > $6) \
         OR (budget_micros IS NOT NULL AND tasks.status = 'succeeded' \
         AND tasks.created_at >= CASE WHEN budget_period = 'month' THEN $5 ELSE $4 END))) \
     ORDER BY id LIMIT $3";

/// Whether a queued or running task names asset `assets.id` (an input it has yet to send),
/// as one query a statement on `assets` may nest.
pub(crate) const NAMED_BY_A_LIVE_TASK: &str = "SELECT 1 FROM tasks \
     WHERE status IN ('queued', 'running') AND request LIKE '%' || assets.id || '%'";

/// The micro-credits client `$1`'s live tasks hold (reserved at their insert, kept or given
/// back when they end), as one query a statement may nest.
pub(crate) const RESERVED_MICROS: &str = "SELECT CAST(COALESCE(SUM(reserved_micros), 0) AS BIGINT) \
     FROM tasks WHERE client_id = $1 AND status IN ('queued', 'running')";

/// The micro-credits held by the client's queued and running tasks.
pub async fn reserved_micros(store: &Store, client_id: &str) -> anyhow::Result<i64> {
    let (reserved,): (i64,) = sqlx::query_as(RESERVED_MICROS)
        .bind(client_id)
        .fetch_one(&store.reader)
        .await?;
    Ok(reserved)
}

/// What one limit row counts of the client's tasks (of `model`, `(provider, key)`, when the
/// row is the model's): tasks created after `minute_ago`, the live ones, and the credits held
/// or kept by tasks created since `budget_since`. Runs in the insert's transaction, after the
/// client's limit rows were locked.
pub(crate) async fn limit_usage(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    client_id: &str,
    model: Option<(&str, &str)>,
    minute_ago: i64,
    budget_since: i64,
) -> anyhow::Result<Usage> {
    let only_model = if model.is_some() {
        " AND provider = $4 AND model = $5"
    } else {
        ""
    };
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(CASE WHEN created_at > $2 THEN 1 ELSE 0 END), 0) AS BIGINT), \
         MIN(CASE WHEN created_at > $2 THEN created_at END), \
         CAST(COALESCE(SUM(CASE WHEN status IN ('queued', 'running') THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN created_at >= $3 AND status IN ('queued', 'running', 'succeeded') \
         THEN reserved_micros ELSE 0 END), 0) AS BIGINT) \
         FROM tasks WHERE client_id = $1 AND (created_at > $2 OR created_at >= $3 \
         OR status IN ('queued', 'running')){only_model}"
    );
    let mut query = sqlx::query_as(&sql)
        .bind(client_id)
        .bind(minute_ago)
        .bind(budget_since);
    if let Some((provider, key)) = model {
        query = query.bind(provider).bind(key);
    }
    let (in_last_minute, oldest_in_last_minute, live, spent_micros): (i64, Option<i64>, i64, i64) =
        query.fetch_one(&mut **tx).await?;
    Ok(Usage {
        in_last_minute,
        oldest_in_last_minute,
        live,
        spent_micros,
    })
}

/// The queue per provider: `(provider, queued tasks, oldest created_at)`.
pub async fn queue_by_provider(store: &Store) -> anyhow::Result<Vec<(String, i64, i64)>> {
    Ok(sqlx::query_as(QUEUE_BY_PROVIDER)
        .fetch_all(&store.reader)
        .await?)
}

const QUEUE_BY_PROVIDER: &str = "SELECT provider, CAST(COUNT(*) AS BIGINT), MIN(created_at) \
     FROM tasks WHERE status = 'queued' GROUP BY provider ORDER BY provider";

/// The running tasks each worker holds (its claims still `submitting`): `(worker id, tasks)`.
pub async fn submitting_by_worker(store: &Store) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT worker_id, CAST(COUNT(*) AS BIGINT) FROM tasks \
         WHERE status = 'running' AND phase = 'submitting' AND worker_id IS NOT NULL GROUP BY worker_id",
    )
    .fetch_all(&store.reader)
    .await?)
}

/// The client's succeeded tasks per model: `(provider, model, tasks, micro-credits kept)`,
/// sorted by provider and model.
pub async fn succeeded_by_model(
    store: &Store,
    client_id: &str,
) -> anyhow::Result<Vec<(String, String, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT provider, model, COUNT(*), CAST(SUM(reserved_micros) AS BIGINT) \
         FROM tasks WHERE client_id = $1 AND status = 'succeeded' \
         GROUP BY provider, model ORDER BY provider, model",
    )
    .bind(client_id)
    .fetch_all(&store.reader)
    .await?)
}

/// Claims up to `limit` outbox rows due at `now` (not delivered, not given up) by moving
/// their next attempt to `claim_until`, so a crash mid-attempt means one more attempt later.
/// No URL gets more than `per_receiver` rows less its attempts already `running` here: one
/// receiver's backlog never takes every slot. The outer `WHERE` checks the row is still due,
/// so a row another host claimed first (PostgreSQL re-checks it after that host commits) is
/// skipped, not claimed twice.
///
/// The rows are ranked per URL among the first [`DUE_WINDOW`] due ones (the oldest first), so
/// a claim costs the same however large the backlog. Only when that window is full and yields
/// fewer than `limit` rows (receivers at their limit fill it: a dead receiver's backlog) is
/// every URL with undelivered rows looked at, one index seek each, for the rows behind them.
pub async fn claim_due_webhooks(
    store: &Store,
    now: i64,
    claim_until: i64,
    limit: i64,
    per_receiver: i64,
    running: &HashMap<&str, i64>,
) -> anyhow::Result<Vec<DueWebhook>> {
    let mut claimed = claim_webhooks_among(
        store,
        &CLAIM_FIRST_DUE,
        now,
        claim_until,
        limit,
        per_receiver,
        running,
    )
    .await?;
    let short = limit - claimed.len() as i64;
    if short == 0 {
        return Ok(claimed);
    }
    // The window held `DUE_WINDOW` rows when as many are still due as it held less the ones
    // just claimed.
    let window_left = DUE_WINDOW - claimed.len() as i64;
    let (still_due,): (i64,) = sqlx::query_as(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT 1 FROM webhook_outbox \
         WHERE {PENDING} AND next_attempt_at <= $1 LIMIT $2) due"
    ))
    .bind(now)
    .bind(window_left)
    .fetch_one(&mut *store.writer().await?)
    .await?;
    if still_due < window_left {
        return Ok(claimed);
    }
    let mut now_running = running.clone();
    for webhook in &claimed {
        *now_running.entry(webhook.url.as_str()).or_default() += 1;
    }
    let behind = claim_webhooks_among(
        store,
        claim_per_receiver(store.backend),
        now,
        claim_until,
        short,
        per_receiver,
        &now_running,
    )
    .await?;
    claimed.extend(behind);
    Ok(claimed)
}

/// Due outbox rows ranked per URL in a claim's first, cheap pass (see [`claim_due_webhooks`]).
const DUE_WINDOW: i64 = 64;

/// An outbox row still to deliver: neither delivered nor given up (the condition of the
/// outbox's partial indexes, migration `webhook_outbox_indexes`).
const PENDING: &str = "delivered_at IS NULL AND gave_up_at IS NULL";

/// The first pass: the oldest [`DUE_WINDOW`] due rows, ranked per URL.
static CLAIM_FIRST_DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id, url, next_attempt_at FROM webhook_outbox \
         WHERE {PENDING} AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT {DUE_WINDOW}"
    )
});

/// The second pass: every URL with undelivered rows, found by skipping from one to the next
/// along the index `webhook_pending_by_url`, and up to `$4` of its due rows each, read along
/// the same index (PostgreSQL joins them laterally: its plan for SQLite's `IN` form reads every
/// row of each receiver).
fn claim_per_receiver(backend: Backend) -> &'static str {
    static SQLITE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{} SELECT o.id, o.url, o.next_attempt_at FROM receivers r \
             JOIN webhook_outbox o ON o.id IN (SELECT id FROM webhook_outbox \
             WHERE url = r.url AND {PENDING} AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $4)",
            *RECEIVERS
        )
    });
    static POSTGRES: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{} SELECT o.id, o.url, o.next_attempt_at FROM receivers r \
             CROSS JOIN LATERAL (SELECT id, url, next_attempt_at FROM webhook_outbox \
             WHERE url = r.url AND {PENDING} AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $4) o",
            *RECEIVERS
        )
    });
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

/// Every URL with undelivered rows, one index seek each (`receivers`; a last NULL row ends it).
static RECEIVERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH RECURSIVE receivers(url) AS (\
           SELECT MIN(url) FROM webhook_outbox WHERE {PENDING} \
           UNION ALL \
           SELECT (SELECT MIN(url) FROM webhook_outbox WHERE {PENDING} AND url > receivers.url) \
           FROM receivers WHERE url IS NOT NULL)"
    )
});

/// Claims, among the rows `candidates` gives (SQL text: `id`, `url`, `next_attempt_at`), up
/// to `limit` in the oldest first, no URL above `per_receiver` less what runs of it.
async fn claim_webhooks_among(
    store: &Store,
    candidates: &str,
    now: i64,
    claim_until: i64,
    limit: i64,
    per_receiver: i64,
    running: &HashMap<&str, i64>,
) -> anyhow::Result<Vec<DueWebhook>> {
    // A URL is any text, so it is looked up as a key, never read as a JSON path.
    let running_here = match store.backend {
        Backend::Postgres => {
            "SELECT CAST(value AS INTEGER) FROM jsonb_each_text(CAST($5 AS JSONB)) WHERE key = due.url"
        }
        Backend::Sqlite => "SELECT value FROM json_each($5) WHERE key = due.url",
    };
    Ok(sqlx::query_as(&format!(
        "UPDATE webhook_outbox SET next_attempt_at = $2 \
         WHERE {PENDING} AND next_attempt_at <= $1 AND id IN (\
           SELECT id FROM (\
             SELECT id, url, next_attempt_at, \
               ROW_NUMBER() OVER (PARTITION BY url ORDER BY next_attempt_at, id) AS nth \
             FROM ({candidates}) candidates) due \
           WHERE nth <= $4 - COALESCE(({running_here}), 0) \
           ORDER BY next_attempt_at LIMIT $3) \
         RETURNING id, task_id, url, body, attempts"
    ))
    .bind(now)
    .bind(claim_until)
    .bind(limit)
    .bind(per_receiver)
    .bind(serde_json::to_string(running)?)
    .fetch_all(&mut *store.writer().await?)
    .await?)
}

/// Marks an outbox row delivered after `attempts` attempts.
pub async fn webhook_delivered(
    store: &Store,
    id: &str,
    attempts: i64,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE webhook_outbox SET delivered_at = $2, attempts = $3, last_error = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(attempts)
    .execute(&mut *store.writer().await?)
    .await?;
    Ok(())
}

/// Records a failed attempt: the next one at `next_attempt_at`, or none when `gave_up_at`
/// is set.
pub async fn webhook_failed(
    store: &Store,
    id: &str,
    attempts: i64,
    next_attempt_at: i64,
    reason: &str,
    gave_up_at: Option<i64>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE webhook_outbox SET attempts = $2, next_attempt_at = $3, last_error = $4, gave_up_at = $5 WHERE id = $1",
    )
    .bind(id)
    .bind(attempts)
    .bind(next_attempt_at)
    .bind(reason)
    .bind(gave_up_at)
    .execute(&mut *store.writer().await?)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use regex::Regex;

    use super::{Ending, Start, finish, insert};
    use crate::{
        engine::{
            NewTask,
            provider::GenerationRequest,
            task::{Status, Task, now_ms},
        },
        store::Store,
    };

    fn ending(status: Status) -> Ending {
        Ending {
            status,
            outputs: "[]".into(),
            usage: None,
            error: (status != Status::Succeeded).then(|| "ended".to_string()),
            queued_only: false,
            claim: None,
        }
    }

    async fn store_with_balance(dir: &tempfile::TempDir, micros: i64) -> Store {
        let store = Store::open_in(dir.path()).await;
        sqlx::query("INSERT INTO balances (client_id, micros, updated_at) VALUES ('c', $1, 0)")
            .bind(micros)
            .execute(&mut *store.writer().await.unwrap())
            .await
            .unwrap();
        store
    }

    fn chat_request() -> GenerationRequest {
        GenerationRequest {
            capability: "chat".into(),
            model: "m".into(),
            prompt: "hello".into(),
            params: Default::default(),
            inputs: Vec::new(),
        }
    }

    async fn balance(store: &Store) -> i64 {
        let (micros,): (i64,) = sqlx::query_as("SELECT micros FROM balances WHERE client_id = 'c'")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        micros
    }

    /// A task queued again with a time to wait for is left to later claims until that time,
    /// while a task behind it in the queue is taken; then it is taken again.
    #[tokio::test]
    async fn a_task_queued_again_for_later_is_not_claimed_before_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await;
        let new = NewTask::for_tests("p", chat_request());
        let now = now_ms();
        for id in ["job_first", "job_second"] {
            insert(&store, id, &new, now, Start::Queued).await.unwrap();
        }
        let providers = ["p".to_string()];
        let claim = |at: i64| super::claim(&store, at, at + 30_000, "wrk", &providers);
        let first = claim(now).await.unwrap().unwrap();
        assert_eq!((first.id.as_str(), first.attempts), ("job_first", 1));
        super::record_progress(&store, "job_first", Some(0.5), None, None, now)
            .await
            .unwrap();
        assert!(
            super::requeue(&store, "job_first", 1, Some(now + 5_000), true, now)
                .await
                .unwrap()
        );
        // Queued again, it shows no progress of the attempt that was put back.
        let queued = super::fetch(&store, "job_first").await.unwrap().unwrap();
        assert_eq!(queued.progress, 0.0);

        let next = claim(now + 1).await.unwrap().unwrap();
        assert_eq!(next.id, "job_second", "the waiting task is passed over");
        assert!(claim(now + 4_999).await.unwrap().is_none());
        let again = claim(now + 5_000).await.unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempts), ("job_first", 2));
    }

    /// A worker whose claim was recovered and taken again by another changes nothing with
    /// it: neither its vendor's handle, nor a requeue, nor an ending lands, while the new
    /// holder's do.
    #[tokio::test]
    async fn a_holder_that_lost_its_claim_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await;
        let new = NewTask::for_tests("p", chat_request());
        let now = now_ms();
        insert(&store, "job_held", &new, now, Start::Queued)
            .await
            .unwrap();
        let providers = ["p".to_string()];
        let claim = |worker| super::claim(&store, now, now + 30_000, worker, &providers);
        let lost = claim("wrk_a").await.unwrap().unwrap();
        // The sweeper recovers the lapsed claim and another worker takes the task.
        assert!(
            super::requeue(&store, "job_held", lost.attempts, None, true, now)
                .await
                .unwrap()
        );
        let holder = claim("wrk_b").await.unwrap().unwrap();
        assert_eq!((lost.attempts, holder.attempts), (1, 2));

        let body: super::WebhookBody = Arc::new(|_: &Task| String::new());
        let held_by = |attempts: i64, status: Status| Ending {
            claim: Some(attempts),
            ..ending(status)
        };
        let stale = [
            super::mark_pending(&store, "job_held", lost.attempts, "h_a", now, now).await,
            super::requeue(&store, "job_held", lost.attempts, None, true, now).await,
        ];
        assert!(stale.into_iter().all(|changed| !changed.unwrap()));
        for status in [Status::Succeeded, Status::Failed] {
            let ended = finish(
                &store,
                "job_held",
                held_by(lost.attempts, status),
                now,
                body.clone(),
            );
            assert!(ended.await.unwrap().is_none(), "{status:?}");
        }
        let task = super::fetch(&store, "job_held").await.unwrap().unwrap();
        assert_eq!(
            (task.status, task.phase, task.worker_id.as_deref()),
            (
                Status::Running,
                Some(super::Phase::Submitting),
                Some("wrk_b")
            )
        );

        let marked = super::mark_pending(&store, "job_held", holder.attempts, "h_b", now, now);
        assert!(marked.await.unwrap());
        let ended = finish(
            &store,
            "job_held",
            held_by(holder.attempts, Status::Succeeded),
            now,
            body,
        );
        let task = ended.await.unwrap().expect("the holder's ending lands");
        assert_eq!(task.status, Status::Succeeded);
    }

    /// [`super::column`] finds each column where `COLUMNS` lists it.
    #[test]
    fn columns_are_found_where_they_stand() {
        let names: Vec<&str> = super::COLUMNS.split(", ").collect();
        assert_eq!(names.len(), 28);
        for (index, name) in names.into_iter().enumerate() {
            assert_eq!(super::column(name), index, "{name}");
        }
    }

    /// What SQLite's planner does with `sql`, one line per step (`EXPLAIN QUERY PLAN`), every
    /// parameter bound to NULL.
    async fn plan(store: &Store, sql: &str) -> String {
        let parameters = Regex::new(r"\$(\d+)").unwrap();
        let count = parameters
            .captures_iter(sql)
            .map(|c| c[1].parse::<usize>().unwrap())
            .max()
            .unwrap_or(0);
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
        for _ in 0..count {
            query = query.bind(None::<i64>);
        }
        let steps = query.fetch_all(&store.reader).await.unwrap();
        steps.into_iter().map(|(.., step)| step + "\n").collect()
    }

    /// The queue's, the poller's and the sweeper's statements read the partial indexes (which
    /// hold only queued, running or pending rows): a claim walks the queue in claim order and
    /// the poller the due polls in `wake_at` order without sorting, and the counts read no row
    /// of the table. A status bound as a parameter instead of written as a
    /// literal would fail this, as the planner cannot use a partial index then.
    #[tokio::test]
    async fn queue_statements_read_the_partial_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await;
        let room = super::Room {
            full_here: vec!["full".into()],
            providers: vec![("p".into(), 3)],
            models: vec![("p".into(), "m".into(), 2)],
        };
        let (claim, _) = super::claim_statement(&store, &["p".into(), "q".into()], &room);
        let (plain_claim, _) =
            super::claim_statement(&store, &["p".into()], &super::Room::default());
        let due_polls = super::due_polls_statement(&store, &["p".into(), "q".into()]);
        for (sql, wanted) in [
            (claim.as_str(), "SCAN tasks USING INDEX tasks_claim_order"),
            (claim.as_str(), "COVERING INDEX tasks_running (provider=?)"),
            (
                claim.as_str(),
                "COVERING INDEX tasks_running (provider=? AND model=?",
            ),
            (
                &plain_claim,
                "SCAN tasks USING COVERING INDEX tasks_claim_order",
            ),
            (
                super::QUEUED_AHEAD,
                "SEARCH tasks USING COVERING INDEX tasks_claim_order",
            ),
            (
                super::QUEUE_BY_PROVIDER,
                "SCAN tasks USING COVERING INDEX tasks_claim_order",
            ),
            (
                super::QUEUED_BEFORE,
                "SEARCH tasks USING INDEX tasks_queued ",
            ),
            (
                &due_polls,
                "SEARCH tasks USING INDEX tasks_pending (wake_at<?)",
            ),
            (super::CLAIM_LAPSED, "SCAN tasks USING INDEX tasks_running"),
            // Along the primary key from its start: the ended tasks before the cutoff are
            // what is left there once the older ones went.
            (
                super::ENDED_BEFORE,
                "SEARCH tasks USING INDEX sqlite_autoindex_tasks_1 (id<?)",
            ),
            (
                super::ENDED_BEFORE,
                "USING INDEX webhook_by_task (task_id=?)",
            ),
        ] {
            let plan = plan(&store, sql).await;
            assert!(plan.contains(wanted), "{wanted} not used by {sql}:\n{plan}");
            assert!(!plan.contains("FOR ORDER BY"), "a sort in {sql}:\n{plan}");
        }
    }

    /// A claim of due webhooks takes at most the receivers' limit of each URL, the oldest
    /// first, and finds a receiver whose rows wait behind more due rows than its first pass
    /// ranks; both passes read the outbox through its partial indexes.
    #[tokio::test]
    async fn a_webhook_claim_finds_the_receivers_behind_a_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await;
        let due = async |id: String, url: &str, at: i64| {
            sqlx::query(
                "INSERT INTO webhook_outbox (id, task_id, url, body, next_attempt_at, created_at) \
                 VALUES ($1, 'job_t', $2, '{}', $3, 0)",
            )
            .bind(id)
            .bind(url.to_string())
            .bind(at)
            .execute(&mut *store.writer().await.unwrap())
            .await
            .unwrap();
        };
        for n in 0..super::DUE_WINDOW + 36 {
            due(format!("whk_dead_{n:03}"), "http://dead/hook", 1_000 + n).await;
        }
        for n in 0..2 {
            due(format!("whk_alive_{n}"), "http://alive/hook", 5_000 + n).await;
        }
        let claim = async |running: &[(&str, i64)]| {
            let running = running.iter().copied().collect();
            let claimed = super::claim_due_webhooks(&store, 10_000, 20_000, 24, 8, &running);
            let mut ids: Vec<String> = claimed.await.unwrap().into_iter().map(|w| w.id).collect();
            ids.sort();
            ids
        };
        let first = claim(&[("http://dead/hook", 6)]).await;
        let oldest_dead = ["whk_dead_000", "whk_dead_001"];
        assert_eq!(
            first,
            [&["whk_alive_0", "whk_alive_1"][..], &oldest_dead].concat()
        );
        // Eight of the dead receiver's rows at most, however many are due.
        let next = claim(&[]).await;
        assert_eq!(next.len(), 8);
        assert!(
            next.iter().all(|id| id.starts_with("whk_dead_")),
            "{next:?}"
        );
        assert_eq!(next[0], "whk_dead_002");

        let first_pass = super::CLAIM_FIRST_DUE.as_str();
        let second_pass = super::claim_per_receiver(super::Backend::Sqlite);
        for (sql, wanted) in [
            (
                first_pass,
                "USING INDEX webhook_pending (next_attempt_at<?)",
            ),
            (second_pass, "USING INDEX webhook_pending_by_url (url>?)"),
            (
                second_pass,
                "USING INDEX webhook_pending_by_url (url=? AND next_attempt_at<?)",
            ),
        ] {
            let plan = plan(&store, sql).await;
            assert!(plan.contains(wanted), "{wanted} not used by {sql}:\n{plan}");
        }
    }

    /// Priced inserts arriving at once on SQLite are committed in groups, and a refused one
    /// (the balance ran out) rolls back only itself: exactly as many are accepted as the
    /// balance pays for, each reserved once, and the refused ones leave nothing behind.
    #[tokio::test]
    async fn inserts_committed_together_refuse_only_themselves() {
        let dir = tempfile::tempdir().unwrap();
        const PRICE: i64 = 1_000;
        let store = store_with_balance(&dir, 25 * PRICE).await;
        let inserts = (0..40).map(|n| {
            let store = store.clone();
            async move {
                let mut new = NewTask::for_tests("p", chat_request());
                new.price_micros = PRICE;
                let id = format!("job_{n:02}");
                let start = Start::Streaming {
                    lease_end: now_ms() + 60_000,
                };
                (id.clone(), insert(&store, &id, &new, now_ms(), start).await)
            }
        });
        let inserted = futures::future::join_all(inserts).await;
        let mut accepted = 0;
        for (id, result) in &inserted {
            let stored = super::fetch(&store, id).await.unwrap();
            match result {
                Ok(task) => {
                    accepted += 1;
                    assert_eq!(stored.map(|t| t.reserved_micros), Some(PRICE), "{id}");
                    assert_eq!(task.status, Status::Running);
                }
                Err(crate::engine::SubmitError::InsufficientBalance(_)) => {
                    assert!(stored.is_none(), "{id} was refused yet stored");
                }
                Err(other) => panic!("{id}: {other}"),
            }
        }
        assert_eq!(accepted, 25, "the balance paid for 25");
        assert_eq!(balance(&store).await, 0);
        let (reserves,): (i64,) = sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM credit_ledger WHERE kind = 'reserve'",
        )
        .fetch_one(&store.reader)
        .await
        .unwrap();
        assert_eq!(reserves, 25);
    }

    /// Many priced chats finishing at once on SQLite are committed in groups: each ends once
    /// (the first outcome wins over a second, concurrent one), a succeeded one keeps its
    /// reservation and a failed one gets it back exactly once, and a webhook's outbox row is
    /// written with its task's transition.
    #[tokio::test]
    async fn finishes_committed_together_each_end_and_charge_once() {
        let dir = tempfile::tempdir().unwrap();
        const PRICE: i64 = 1_000;
        const START: i64 = 1_000_000;
        let store = store_with_balance(&dir, START).await;
        let mut ids = Vec::new();
        for n in 0..40 {
            let mut new = NewTask::for_tests("p", chat_request());
            new.price_micros = PRICE;
            if n == 0 {
                new.webhook_url = Some("http://example.invalid/hook".into());
            }
            let id = format!("job_{n:02}");
            let start = Start::Streaming {
                lease_end: now_ms() + 60_000,
            };
            insert(&store, &id, &new, now_ms(), start).await.unwrap();
            ids.push(id);
        }
        // Even tasks succeed, odd ones fail; every task is also cancelled at the same time.
        let finishes = ids.iter().enumerate().flat_map(|(n, id)| {
            let first = if n % 2 == 0 {
                Status::Succeeded
            } else {
                Status::Failed
            };
            [first, Status::Cancelled].map(|status| {
                let store = store.clone();
                let id = id.clone();
                async move {
                    let body: super::WebhookBody =
                        Arc::new(|task: &Task| format!("{{\"id\":\"{}\"}}", task.id));
                    let ended = finish(&store, &id, ending(status), now_ms(), body)
                        .await
                        .unwrap();
                    (id, status, ended.map(|task| task.status))
                }
            })
        });
        let ended = futures::future::join_all(finishes).await;
        let mut succeeded = 0;
        for id in &ids {
            let outcomes: Vec<Status> = ended
                .iter()
                .filter(|(task, _, _)| task == id)
                .filter_map(|(_, asked, stored)| stored.inspect(|s| assert_eq!(s, asked)))
                .collect();
            assert_eq!(outcomes.len(), 1, "{id} ended once: {ended:?}");
            let stored = super::fetch(&store, id).await.unwrap().unwrap();
            assert_eq!(stored.status, outcomes[0], "{id}");
            succeeded += i64::from(stored.status == Status::Succeeded);
        }
        assert!(succeeded > 0, "some succeeded: {ended:?}");
        assert_eq!(
            balance(&store).await,
            START - succeeded * PRICE,
            "charged once per success"
        );
        let (refunds,): (i64,) = sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM credit_ledger WHERE kind = 'refund'",
        )
        .fetch_one(&store.reader)
        .await
        .unwrap();
        assert_eq!(
            refunds,
            40 - succeeded,
            "refunded once per task that did not succeed"
        );
        let hooks: Vec<(String,)> = sqlx::query_as("SELECT task_id FROM webhook_outbox")
            .fetch_all(&store.reader)
            .await
            .unwrap();
        assert_eq!(hooks, [("job_00".to_string(),)]);
    }

    /// A task inserted and then ended by the inline connection is stored, and answered, as
    /// one the pool's connection inserts and ends with the same values.
    #[tokio::test]
    async fn inline_and_pooled_writes_store_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await;
        let mut new = NewTask::for_tests("p", chat_request());
        new.request_id = Some("req_1".into());
        new.priority = 3;
        let (now, lease_end) = (now_ms(), now_ms() + 60_000);
        let start = Start::Streaming { lease_end };
        let inline = insert(&store, "job_inline", &new, now, start)
            .await
            .unwrap();
        let mut conn = store.writer().await.unwrap();
        let pooled = super::insert_row(&mut *conn, "job_pooled", &new, now, start)
            .await
            .unwrap();
        drop(conn);
        let same = |task: &Task| format!("{task:?}").replace(&task.id, "ID");
        assert_eq!(same(&inline), same(&pooled));
        let stored = super::fetch(&store, "job_inline").await.unwrap().unwrap();
        assert_eq!(same(&stored), same(&inline));

        let mut done = ending(Status::Succeeded);
        done.outputs = r#"[{"text":"hi"}]"#.into();
        done.usage = Some(r#"{"total_tokens":3}"#.into());
        let body: super::WebhookBody = Arc::new(|_: &Task| String::new());
        let inline = finish(&store, "job_inline", done.clone(), now + 5, body)
            .await
            .unwrap()
            .unwrap();
        let mut conn = store.writer().await.unwrap();
        let pooled = super::finish_on(&mut conn, "job_pooled", &done, now + 5, &|_: &Task| {
            String::new()
        })
        .await
        .unwrap()
        .unwrap();
        drop(conn);
        assert_eq!(same(&inline), same(&pooled));
        assert_eq!(inline.status, Status::Succeeded);
        let stored = super::fetch(&store, "job_inline").await.unwrap().unwrap();
        assert_eq!(same(&stored), same(&inline));
    }

    /// The inline connection writes only while it holds the writer's turn: a
    /// transaction on the pool that reads, waits, then writes is never overtaken by inline
    /// commits (its write would fail: SQLite refuses a write on a snapshot another connection
    /// has moved past), and the inserts waiting meanwhile all land after it.
    #[tokio::test]
    async fn inline_writes_wait_for_a_transaction_on_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await;
        let mut conn = store.writer().await.unwrap();
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        let (before,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM tasks")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let inserts = tokio::spawn({
            let store = store.clone();
            async move {
                let new = NewTask::for_tests("p", chat_request());
                let start = Start::Streaming {
                    lease_end: now_ms() + 60_000,
                };
                let each =
                    (0..20).map(|n| {
                        let (store, new) = (store.clone(), new.clone());
                        async move {
                            insert(&store, &format!("job_{n:02}"), &new, now_ms(), start).await
                        }
                    });
                futures::future::join_all(each).await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        sqlx::query("INSERT INTO balances (client_id, micros, updated_at) VALUES ('c', $1, 0)")
            .bind(before)
            .execute(&mut *tx)
            .await
            .expect("no inline commit overtook the pool's transaction");
        tx.commit().await.unwrap();
        drop(conn);
        for inserted in inserts.await.unwrap() {
            inserted.unwrap();
        }
        let (after,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM tasks")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert_eq!((before, after), (0, 20));
    }

    /// The inline writes take only the writer's turn, never the pool's connection: sqlx makes
    /// a round trip to that connection's thread each time one it lent comes back, which cost
    /// every chat two thread wake-ups. With the pool's connection out (and no turn held), a
    /// chat's insert and its success still commit.
    #[tokio::test]
    async fn inline_writes_never_borrow_the_pools_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).await;
        let lent = store.writer_pool.acquire().await.unwrap();
        let new = NewTask::for_tests("p", chat_request());
        let start = Start::Streaming {
            lease_end: now_ms() + 60_000,
        };
        let body: super::WebhookBody = Arc::new(|_: &Task| String::new());
        let chat = async {
            insert(&store, "job_inline", &new, now_ms(), start)
                .await
                .unwrap();
            finish(
                &store,
                "job_inline",
                ending(Status::Succeeded),
                now_ms(),
                body,
            )
            .await
            .unwrap()
            .unwrap()
        };
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), chat)
            .await
            .expect("the inline writes waited for the pool's connection");
        assert_eq!(ended.status, Status::Succeeded);
        drop(lent);
    }

    /// SQL that reads or writes one of this module's tables.
    fn table_sql() -> Regex {
        Regex::new(r"(?i)\b(FROM|INTO|UPDATE|JOIN)\s+(tasks|webhook_outbox|idempotency_keys)\b")
            .expect("valid pattern")
    }

    fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable source dir") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }

    #[test]
    fn no_other_file_holds_sql_on_tasks_the_outbox_or_idempotency_keys() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let this = src.join("store").join("tasks.rs");
        let pattern = table_sql();
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let this_text = std::fs::read_to_string(&this).expect("the repository module");
        assert!(
            pattern.is_match(&this_text),
            "the pattern no longer finds the repository's own SQL"
        );
        let offenders: Vec<String> = files
            .iter()
            .filter(|path| **path != this)
            .flat_map(|path| {
                let text = std::fs::read_to_string(path).expect("readable source file");
                pattern
                    .find_iter(&text)
                    .map(|found| {
                        let line = text[..found.start()].matches('\n').count() + 1;
                        format!("{}:{line}: {}", path.display(), found.as_str())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            offenders.is_empty(),
            "SQL on tasks, webhook_outbox or idempotency_keys outside store/tasks.rs:\n{}",
            offenders.join("\n")
        );
    }
}
