//! Breakers: a provider whose submits keep failing unavailable is left alone for a while, and
//! its queued tasks wait for it instead of failing one after another.
//!
//! Invariants:
//! - The count and the open state live in the database ([`store::breakers`]), so a fleet has
//!   one breaker per provider and the claim, on any host, skips an open one's tasks.
//!   `[engine] breaker_failures` submits that failed unavailable in a row open it for
//!   `breaker_cooldown_secs`; after that one claim, the probe, submits one task (the claim and
//!   the probe are one transaction, [`claim_within`]; the others' claims are undone, so
//!   their tasks never leave the queue), holding the breaker open for a lease meanwhile: its
//!   failure opens it again at once (the probe's task is queued again with that claim
//!   uncounted, where a retry is safe), any answer of the vendor's (a success, or a refusal
//!   or rate limit, which show the vendor up) closes it. A probe that
//!   ends otherwise (cancelled, its plugin failed, its process died) frees the breaker at its
//!   lease's end, for the next probe. Without the probe every waiting task was submitted at
//!   the cooldown's end, each spending an attempt on a vendor still down.
//! - Counted: a submit that failed unavailable (the vendor down, timing out, answering
//!   nonsense). Not counted, but ending the row of failures as a success does: refusals of the
//!   request itself and rate limits (the task is queued again after the vendor's wait). Not
//!   seen at all: polls (backed off per provider by the poller) and chats (their client is
//!   waiting and is answered the vendor's error at once).
//! - Each process keeps the rows as it last read them (every second, and as it writes them):
//!   a queued task's notice comes from them, and a submit that went through writes only when
//!   its provider has failures to clear, so the common path costs no statement.
//! - Seen: a queued task of an open breaker's provider says so, and until when; the console's
//!   workers page and `GET /admin/workers` list every breaker with failures; `/metrics` shows
//!   each one (read at scrape time).
//!
//! [`claim_within`]: crate::store::tasks::claim_within

use std::{collections::HashMap, sync::Mutex, time::Duration};

use crate::{
    engine::{
        Engine,
        outage_log::OutageLog,
        task::{Status, Task, now_ms, rfc3339},
    },
    store::breakers::{self, BreakerRow, Probe},
};

/// The rows as this process last read or wrote them, by provider.
#[derive(Default)]
pub struct Seen(Mutex<HashMap<String, BreakerRow>>);

impl Seen {
    fn replace(&self, rows: Vec<BreakerRow>) {
        let rows = rows.into_iter().map(|row| (row.provider.clone(), row));
        *self.0.lock().expect("breakers lock") = rows.collect();
    }

    fn get(&self, provider: &str) -> Option<BreakerRow> {
        self.0.lock().expect("breakers lock").get(provider).cloned()
    }

    fn set(&self, row: BreakerRow) {
        let mut rows = self.0.lock().expect("breakers lock");
        rows.insert(row.provider.clone(), row);
    }

    fn opened(&self) -> Vec<String> {
        let rows = self.0.lock().expect("breakers lock");
        let opened = rows.values().filter(|row| row.open_until > 0);
        opened.map(|row| row.provider.clone()).collect()
    }

    fn remove(&self, provider: &str) -> bool {
        let mut rows = self.0.lock().expect("breakers lock");
        rows.remove(provider).is_some()
    }
}

/// Records a submit of `provider` that failed unavailable with `reason`.
pub async fn failed(engine: &Engine, provider: &str, reason: &str) -> anyhow::Result<()> {
    let config = engine.config();
    if config.breaker_failures == 0 {
        return Ok(());
    }
    let now = now_ms();
    let cooldown = (config.breaker_cooldown_secs * 1000.0) as i64;
    let threshold = i64::from(config.breaker_failures);
    let row = breakers::failed(engine.store(), provider, reason, now, threshold, cooldown).await?;
    if row.failures >= threshold {
        tracing::warn!(
            provider,
            failures = row.failures,
            until = %rfc3339(row.open_until),
            reason,
            "breaker open: the provider's queued tasks wait"
        );
    }
    engine.breakers().set(row);
    Ok(())
}

/// The providers whose breaker this process saw opened: a claim of their tasks asks the
/// breaker first ([`claim_within`]).
pub fn watched(engine: &Engine) -> Vec<String> {
    engine.breakers().opened()
}

/// Keeps what a claim of `provider`'s task heard from its breaker; true when the claim took
/// the probe (its submit's outcome opens or closes the breaker).
pub fn heard(engine: &Engine, provider: &str, probe: Probe) -> bool {
    match probe {
        Probe::Closed => {
            engine.breakers().remove(provider);
            false
        }
        Probe::Taken(row) => {
            tracing::info!(provider, "breaker half open: one submit tries the vendor");
            engine.breakers().set(row);
            true
        }
        Probe::Held(row) => {
            engine.breakers().set(row);
            false
        }
    }
}

/// Records a submit of `provider` that the vendor answered (it went through, or was refused
/// or rate limited): its breaker closes, if it has one.
pub async fn succeeded(engine: &Engine, provider: &str) -> anyhow::Result<()> {
    if engine.breakers().remove(provider) {
        breakers::succeeded(engine.store(), provider).await?;
        tracing::info!(provider, "breaker closed: the vendor answered a submit");
        // The tasks that waited for it are due now.
        engine.queued_signal().notify_waiters();
    }
    Ok(())
}

/// Notes on a queued task whose provider's breaker is open, as this process last saw it.
pub fn note_open(engine: &Engine, task: &mut Task, now: i64) {
    if task.status != Status::Queued || task.notice.is_some() {
        return;
    }
    if let Some(row) = engine.breakers().get(&task.provider)
        && row.is_open(now)
    {
        task.notice = Some(format!(
            "its vendor failed {} submits in a row (last: {}); tried again after {}",
            row.failures,
            row.last_error,
            rfc3339(row.open_until)
        ));
    }
}

/// Reads the breakers every second, so this process's views and writes follow the fleet's.
pub async fn follow(engine: Engine) {
    let shutdown = engine.shutdown_token().clone();
    let mut reads = OutageLog::new("reading the breakers");
    loop {
        if let Ok(rows) = reads.note(breakers::all(engine.store()).await) {
            engine.breakers().replace(rows);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
