//! SQLite task writes run on the thread that asks, not handed to a connection thread.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands it every statement, and
//! the answer back: two thread wake-ups per statement, which cost a chat at one connection
//! more than its two statements' own work (BENCHMARKS.md, fourteenth session). The common
//! task writes (see [`super::tasks::WriteQueue`]) run here instead, on a connection of their
//! own, synchronously: a group's statements take tens of microseconds.
//!
//! Invariants:
//! - Nothing is written here unless the caller holds the writer's turn
//!   ([`Store::write_turn`](super::Store::write_turn)), which every write on the writer pool
//!   holds too, so SQLite still sees one writer at a time: neither connection ever waits
//!   on SQLite's lock, and no transaction of the pool's finds its snapshot moved on by this
//!   one.
//! - This module holds no SQL on tasks (that stays in [`super::tasks`]); it opens the
//!   connection with the writer pool's own pragmas (the store passes them), runs
//!   transactions and decodes task rows.

use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, ToSql, types::FromSqlError};

use super::tasks::column;
use crate::engine::task::{Phase, Status, Task};

/// The connection for task writes on the calling thread.
pub(super) struct InlineWriter {
    conn: Mutex<Connection>,
}

impl InlineWriter {
    /// Opens the database file at `path` (created and migrated already) with the writer
    /// pool's `pragmas`.
    pub(super) fn open(path: &std::path::Path, pragmas: &str) -> anyhow::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(pragmas)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `work` on the connection: alone (each statement commits itself) or, when
    /// `together`, in one transaction that commits only if `work` succeeds.
    pub(super) fn run<R>(
        &self,
        together: bool,
        work: impl FnOnce(&Connection) -> rusqlite::Result<R>,
    ) -> rusqlite::Result<R> {
        let conn = self.lock();
        if !together {
            return work(&conn);
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let done = work(&conn).and_then(|done| conn.execute_batch("COMMIT").map(|()| done));
        if done.is_err() {
            // A transaction left open would hold SQLite's write lock from the pool's writer.
            let _ = conn.execute_batch("ROLLBACK");
        }
        done
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs the cached statement `sql`, written with `$1`…`$N` as both drivers accept it, with
/// `params[i]` bound to `$(i+1)` (SQLite numbers such names by first appearance, not by
/// their digits), and decodes the row it returns, if any, as a task.
pub(super) fn task_returned(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
) -> rusqlite::Result<Option<Task>> {
    let mut statement = conn.prepare_cached(sql)?;
    for index in 1..=statement.parameter_count() {
        let name = statement.parameter_name(index).unwrap_or_default();
        let value = name
            .strip_prefix('$')
            .and_then(|number| number.parse::<usize>().ok())
            .and_then(|number| params.get(number.checked_sub(1)?))
            .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_string()))?;
        statement.raw_bind_parameter(index, value)?;
    }
    let mut rows = statement.raw_query();
    rows.next()?.map(task_from_row).transpose()
}

/// A task from a row holding every column of [`super::tasks`]' `COLUMNS`, in that order.
/// Each is read at the position [`column`] finds for its name while compiling: rusqlite
/// looks a name up by comparing it with every column's name in turn, which cost more than
/// decoding the row.
fn task_from_row(row: &rusqlite::Row) -> rusqlite::Result<Task> {
    macro_rules! get {
        ($name:literal) => {
            row.get({
                const AT: usize = column($name);
                AT
            })?
        };
    }
    let status: String = get!("status");
    let phase: Option<String> = get!("phase");
    Ok(Task {
        id: get!("id"),
        client_id: get!("client_id"),
        api: get!("api"),
        capability: get!("capability"),
        provider: get!("provider"),
        model: get!("model"),
        request: get!("request"),
        status: Status::parse(&status).ok_or_else(|| unknown("status", &status))?,
        phase: phase
            .map(|name| Phase::parse(&name).ok_or_else(|| unknown("phase", &name)))
            .transpose()?,
        progress: get!("progress"),
        pending_handle: get!("pending_handle"),
        wake_at: get!("wake_at"),
        cancel_requested: get!("cancel_requested"),
        attempts: get!("attempts"),
        outputs: get!("outputs"),
        error: get!("error"),
        usage: get!("usage"),
        webhook_url: get!("webhook_url"),
        extra: get!("extra"),
        created_at: get!("created_at"),
        updated_at: get!("updated_at"),
        started_at: get!("started_at"),
        finished_at: get!("finished_at"),
        reserved_micros: get!("reserved_micros"),
        request_id: get!("request_id"),
        priority: get!("priority"),
        worker_id: get!("worker_id"),
        poll_trouble: get!("poll_trouble"),
        notice: None,
    })
}

fn unknown(what: &str, name: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        Box::new(FromSqlError::Other(
            format!("unknown task {what} {name:?}").into(),
        )),
    )
}
