//! The sweeper: expires tasks that waited too long, recovers claims whose lease lapsed, fails
//! the tasks left pending on a provider no host serves any more, and deletes the tasks that
//! ended longer ago than `[engine] keep_ended_secs`.
//!
//! Invariant (DESIGN.md, "Durable"): a task whose worker died mid-submit is re-queued only when
//! its provider promises an idempotent submit and its client did not ask to cancel it (then it
//! is cancelled and refunded); otherwise it fails with a clear reason (and is never charged),
//! and at most `[engine] max_attempts` claims in all: a task that brings its worker down every
//! time fails instead of looping. A chat whose relaying process died mid-stream always fails:
//! its client is gone, so there is nobody to replay it for. A provider another process of the
//! fleet serves is judged by what it announced. An expiry ends only a task still queued, never
//! one a worker claimed meanwhile. Each recovery claims the task by its lease first
//! ([`lifecycle::claim_lapsed`]), so two hosts never both recover it. A lease is not judged
//! lapsed by the process that holds the task, nor by a sweeper within a lease of its own last
//! failure to reach the database: a database away for longer than a lease kept every holder
//! from renewing, and their tasks are still running, not interrupted. A task pending on a
//! vendor whose provider no process polls any more (its plugin removed everywhere, its last
//! worker gone) fails, refunded, once this process has seen no live poller for it for
//! `[engine] model_grace_secs`: never while a host is still loading its plugins or a worker
//! restarts within that time. An ended task is deleted only once its webhook was delivered
//! or given up on; the credit ledger keeps its rows.
//! Every change goes through [`lifecycle`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::{
    engine::{
        Engine,
        lifecycle::{self, Outcome, Requeued},
        outage_log::OutageLog,
        task::{Phase, now_ms},
    },
    store::tasks,
};

/// How often the sweeper runs.
const EVERY: Duration = Duration::from_millis(500);

/// The sweeper's loop.
pub async fn run(engine: Engine) {
    let shutdown = engine.shutdown_token().clone();
    let mut unserved = Unserved::default();
    let mut forgotten = Forgotten::default();
    // Until when lapsed leases are not judged: a lease after this process last failed to
    // reach the database, since no holder could renew its lease meanwhile either.
    let mut judge_leases_after = Instant::now();
    let mut sweeps = OutageLog::new("sweeping");
    let mut unserved_sweeps = OutageLog::new("failing the pending tasks of unserved providers");
    let mut deletions = OutageLog::new("deleting tasks past [engine] keep_ended_secs");
    loop {
        let judge_leases = Instant::now() >= judge_leases_after;
        if sweeps.note(sweep(&engine, judge_leases).await).is_err() {
            judge_leases_after = Instant::now() + engine.config().lease();
        }
        let _ = unserved_sweeps.note(unserved.sweep(&engine).await);
        let _ = deletions.note(forgotten.sweep(&engine).await);
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Expired tasks finished per pass, at most.
const EXPIRE_BATCH: i64 = 500;
/// Lapsed leases recovered per pass, at most.
const RECOVER_BATCH: i64 = 100;
/// How often the providers of pending tasks are looked at.
const UNSERVED_EVERY: Duration = Duration::from_secs(10);

/// The providers of pending tasks that no process serves, and since when this process has
/// seen each missing.
#[derive(Default)]
struct Unserved {
    since: HashMap<String, Instant>,
    looked: Option<Instant>,
}

impl Unserved {
    /// Fails the pending tasks of providers missing for longer than the grace time (one batch
    /// per provider and pass); looks at most every [`UNSERVED_EVERY`].
    async fn sweep(&mut self, engine: &Engine) -> anyhow::Result<()> {
        if self.looked.is_some_and(|at| at.elapsed() < UNSERVED_EVERY) {
            return Ok(());
        }
        self.looked = Some(Instant::now());
        self.fail_missing(engine).await
    }

    async fn fail_missing(&mut self, engine: &Engine) -> anyhow::Result<()> {
        let grace = Duration::from_secs_f64(engine.config().model_grace_secs.max(0.0));
        let waited_on = tasks::pending_providers(engine.store()).await?;
        self.since
            .retain(|provider, _| waited_on.contains(provider));
        let now = now_ms();
        let polls_here = engine.config().workers > 0;
        for provider in waited_on {
            // Served where a poller runs for it: here, or on a live worker of the fleet. A
            // dead worker's announcement outlives it by the grace time, so it counts for
            // nothing here: the grace is counted once, from when this process saw no poller.
            let loaded_here = engine.registry().provider(&provider).is_some();
            if (polls_here && loaded_here) || engine.registry().is_served(&provider, now) {
                self.since.remove(&provider);
                continue;
            }
            let since = *self
                .since
                .entry(provider.clone())
                .or_insert_with(Instant::now);
            if since.elapsed() < grace {
                continue;
            }
            let reason = format!(
                "Provider {provider} is no longer served by any host: its vendor job can be \
                 neither followed nor cancelled."
            );
            for id in tasks::pending_of(engine.store(), &provider, EXPIRE_BATCH).await? {
                lifecycle::finish(engine, &id, Outcome::Failed(reason.clone())).await?;
            }
        }
        Ok(())
    }
}

/// Ended tasks deleted per statement, at most.
const DELETE_BATCH: i64 = 200;
/// How often ended tasks are looked for, at most (more often for a short `keep_ended_secs`).
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// When this process last deleted the ended tasks past `[engine] keep_ended_secs`.
#[derive(Default)]
struct Forgotten {
    looked: Option<Instant>,
}

impl Forgotten {
    /// Deletes, in batches, every task that ended longer ago than the setting, looking every
    /// [`FORGET_EVERY`] or every quarter of the setting, whichever is sooner.
    async fn sweep(&mut self, engine: &Engine) -> anyhow::Result<()> {
        let keep = engine.config().keep_ended_secs;
        let every = FORGET_EVERY.min(Duration::from_secs(keep) / 4);
        if keep == 0 || self.looked.is_some_and(|at| at.elapsed() < every) {
            return Ok(());
        }
        self.looked = Some(Instant::now());
        let ended_before = now_ms() - (keep as i64) * 1000;
        let mut deleted = 0;
        loop {
            let batch = lifecycle::delete_ended(engine, ended_before, DELETE_BATCH).await?;
            deleted += batch;
            if batch < DELETE_BATCH as usize {
                break;
            }
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                keep_secs = keep,
                "deleted tasks past [engine] keep_ended_secs"
            );
        }
        Ok(())
    }
}

async fn sweep(engine: &Engine, judge_leases: bool) -> anyhow::Result<()> {
    let oldest_allowed = now_ms() - (engine.config().queue_timeout_secs as i64) * 1000;
    for id in tasks::queued_before(engine.store(), oldest_allowed, EXPIRE_BATCH).await? {
        lifecycle::finish(engine, &id, Outcome::Expired).await?;
    }
    if !judge_leases {
        return Ok(());
    }
    for lapsed in lifecycle::claim_lapsed(engine, RECOVER_BATCH).await? {
        let tasks::Lapsed {
            id,
            provider: provider_id,
            phase,
            attempts,
            cancel_requested,
        } = lapsed;
        if engine.holds(&id) {
            // Its holder is alive, here: it could not renew (the database was slow or away
            // for a lease). The claim just pushed its lease ahead, as a renewal would.
            continue;
        }
        if cancel_requested != 0 {
            // Its cancel was asked for before its holder went away: never run again.
            lifecycle::finish(engine, &id, Outcome::Cancelled).await?;
            continue;
        }
        if phase == Phase::Streaming {
            let reason = "Interrupted while streaming; a chat is not replayed, since the client \
                          it was answering is gone.";
            lifecycle::finish(engine, &id, Outcome::Failed(reason.into())).await?;
            continue;
        }
        let cap = i64::from(engine.config().max_attempts.max(1));
        // Judged by what the provider promises, loaded here or announced by the worker that
        // died: every process recovers every task, and a re-queued one waits for a worker
        // that serves its provider.
        match engine.registry().declared(&provider_id) {
            Some(provider) if provider.submit_is_idempotent() && attempts >= cap => {
                let reason = format!(
                    "Interrupted while submitting on each of its {attempts} attempts; not retried again (the limit is {cap})."
                );
                lifecycle::finish(engine, &id, Outcome::Failed(reason)).await?;
            }
            Some(provider) if provider.submit_is_idempotent() => {
                tracing::info!(task = %id, provider = %provider_id, "re-queueing a task interrupted mid-submit");
                let why = Requeued::Interrupted;
                lifecycle::requeue(engine, &id, attempts, &provider_id, why, None).await?;
            }
            Some(_) => {
                let reason = format!(
                    "Interrupted while submitting to {provider_id}; not retried because its submit is not idempotent."
                );
                lifecycle::finish(engine, &id, Outcome::Failed(reason)).await?;
            }
            None => {
                let reason = format!(
                    "Interrupted while submitting, and provider {provider_id} is no longer loaded."
                );
                lifecycle::finish(engine, &id, Outcome::Failed(reason)).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        config::Config,
        engine::{
            stub::{StubProvider, image_task},
            task::{Status, new_task_id},
        },
        server,
    };

    /// Leaves a task as a holder that died would: running, lease lapsed; `submitting` (a
    /// worker's claim) unless `streaming` (a chat's relay).
    async fn interrupted_task(engine: &Engine, provider: &str, streaming: bool) -> String {
        let new = image_task(provider);
        let (store, now) = (engine.store(), now_ms());
        let lapsed = now - 1;
        let id = new_task_id();
        if streaming {
            let start = tasks::Start::Streaming { lease_end: lapsed };
            tasks::insert(store, &id, &new, now, start).await.unwrap();
        } else {
            tasks::insert(store, &id, &new, now, tasks::Start::Queued)
                .await
                .unwrap();
            let providers = [provider.to_string()];
            let claimed = tasks::claim(store, now, lapsed, "wrk_test", &providers)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(claimed.id, id, "no other task is queued");
        }
        id
    }

    /// An engine on embedded storage in `dir` with providers `once` (submit not idempotent)
    /// and `again` (idempotent).
    async fn engine_in(dir: &std::path::Path) -> Engine {
        let host = server::build(Config::embedded(dir.to_path_buf()))
            .await
            .unwrap();
        for (id, idempotent) in [("once", false), ("again", true)] {
            let provider = StubProvider::new(id, idempotent);
            host.engine.registry().upsert(Arc::new(provider));
        }
        host.engine
    }

    /// A task this process still holds is not recovered when its lease lapsed (the database
    /// was away for a lease): its holder is alive and running it.
    #[tokio::test]
    async fn a_lapsed_lease_of_a_task_held_here_is_renewed_not_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_in(dir.path()).await;
        let held = interrupted_task(&engine, "again", false).await;
        let gone = interrupted_task(&engine, "again", false).await;
        let _token = engine.track(&held);

        sweep(&engine, true).await.unwrap();

        let still = engine.fetch(&held).await.unwrap().unwrap();
        assert_eq!(still.status, Status::Running);
        assert_eq!(still.attempts, 1, "claimed again while held");
        assert!(
            still.wake_at.unwrap() > now_ms(),
            "its lease was pushed ahead"
        );
        assert_eq!(
            engine.fetch(&gone).await.unwrap().unwrap().status,
            Status::Queued,
            "a task nobody here holds is recovered"
        );
    }

    #[tokio::test]
    async fn interrupted_submits_are_retried_only_when_idempotent_and_chats_never() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_in(dir.path()).await;
        let once = interrupted_task(&engine, "once", false).await;
        let again = interrupted_task(&engine, "again", false).await;
        let gone = interrupted_task(&engine, "unloaded", false).await;
        let chat = interrupted_task(&engine, "again", true).await;

        sweep(&engine, true).await.unwrap();

        let once = engine.fetch(&once).await.unwrap().unwrap();
        assert_eq!(once.status, Status::Failed);
        assert!(once.error.unwrap().contains("not idempotent"));
        assert_eq!(
            engine.fetch(&again).await.unwrap().unwrap().status,
            Status::Queued
        );
        assert_eq!(
            engine.fetch(&gone).await.unwrap().unwrap().status,
            Status::Failed
        );
        // A chat is never replayed, even on a provider whose submit is idempotent.
        let chat = engine.fetch(&chat).await.unwrap().unwrap();
        assert_eq!(chat.status, Status::Failed);
        assert!(chat.error.unwrap().contains("streaming"));
    }

    #[tokio::test]
    async fn a_task_interrupted_on_every_attempt_fails_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_in(dir.path()).await;
        let id = interrupted_task(&engine, "again", false).await;
        let cap = engine.config().max_attempts;
        for _ in 1..cap {
            sweep(&engine, true).await.unwrap();
            let requeued = engine.fetch(&id).await.unwrap().unwrap();
            assert_eq!(requeued.status, Status::Queued);
            let now = now_ms();
            let providers = ["again".to_string()];
            let claimed = tasks::claim(engine.store(), now, now - 1, "wrk_test", &providers)
                .await
                .unwrap();
            assert_eq!(claimed.unwrap().id, id, "claimed again, and dies again");
        }
        sweep(&engine, true).await.unwrap();
        let failed = engine.fetch(&id).await.unwrap().unwrap();
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.attempts, i64::from(cap));
        assert!(failed.error.unwrap().contains(&format!("{cap} attempts")));
    }

    #[tokio::test]
    async fn a_task_whose_cancel_was_asked_before_its_worker_died_is_cancelled_not_requeued() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_in(dir.path()).await;
        let id = interrupted_task(&engine, "again", false).await;
        lifecycle::request_cancel(&engine, &id, crate::engine::task::CancelledBy::Client)
            .await
            .unwrap();
        sweep(&engine, true).await.unwrap();
        let task = engine.fetch(&id).await.unwrap().unwrap();
        assert_eq!(task.status, Status::Cancelled, "{:?}", task.error);
    }

    #[tokio::test]
    async fn pending_tasks_of_a_provider_no_one_serves_fail_after_the_grace_time() {
        let pending = async |engine: &Engine, provider: &str| {
            let id = interrupted_task(engine, provider, false).await;
            let wait = Duration::from_secs(60);
            let held = engine.fetch(&id).await.unwrap().unwrap();
            assert!(
                lifecycle::mark_pending(engine, &held, "h", wait)
                    .await
                    .unwrap()
            );
            id
        };
        // Within the grace time (300 s by default) nothing fails.
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_in(dir.path()).await;
        let gone = pending(&engine, "unloaded").await;
        Unserved::default().fail_missing(&engine).await.unwrap();
        let task = engine.fetch(&gone).await.unwrap().unwrap();
        assert_eq!(task.status, Status::Running);

        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::embedded(dir.path().to_path_buf());
        config.engine.model_grace_secs = 0.0;
        let engine = server::build(config).await.unwrap().engine;
        let provider = StubProvider::new("again", true);
        engine.registry().upsert(Arc::new(provider));
        let served = pending(&engine, "again").await;
        let gone = pending(&engine, "unloaded").await;
        Unserved::default().fail_missing(&engine).await.unwrap();
        let failed = engine.fetch(&gone).await.unwrap().unwrap();
        assert_eq!(failed.status, Status::Failed);
        assert!(failed.error.unwrap().contains("no longer served"));
        let kept = engine.fetch(&served).await.unwrap().unwrap();
        assert_eq!(kept.status, Status::Running, "its provider is served");

        // A provider the fleet still announces, whose last worker died: its announcement
        // outlives the worker by the grace time, but nothing polls the task any more.
        let departed = StubProvider::new("departed", false);
        engine.registry().set_fleet(vec![Arc::new(departed)]);
        let now = now_ms();
        let serving =
            |until: i64| std::collections::BTreeMap::from([("departed".to_string(), until)]);
        engine.registry().set_serving(serving(now + 60_000));
        let followed = pending(&engine, "departed").await;
        Unserved::default().fail_missing(&engine).await.unwrap();
        let task = engine.fetch(&followed).await.unwrap().unwrap();
        assert_eq!(task.status, Status::Running, "a live worker polls it");
        engine.registry().set_serving(serving(now - 1));
        Unserved::default().fail_missing(&engine).await.unwrap();
        let failed = engine.fetch(&followed).await.unwrap().unwrap();
        assert_eq!(
            failed.status,
            Status::Failed,
            "announced, but polled by nobody"
        );
    }

    #[tokio::test]
    async fn an_expiry_or_a_queued_cancel_never_ends_a_task_a_worker_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_in(dir.path()).await;
        // Claimed between the sweeper's read of the queue and its expiry, or between a
        // client's read and its cancel: the running task is its worker's to end.
        let id = interrupted_task(&engine, "again", false).await;
        for outcome in [Outcome::Expired, Outcome::Withdrawn] {
            let ended = lifecycle::finish(&engine, &id, outcome).await.unwrap();
            assert!(ended.is_none(), "{ended:?}");
            let task = engine.fetch(&id).await.unwrap().unwrap();
            assert_eq!(task.status, Status::Running);
        }
        // Still queued, both end it.
        for outcome in [Outcome::Expired, Outcome::Withdrawn] {
            let queued = new_task_id();
            let new = image_task("again");
            tasks::insert(
                engine.store(),
                &queued,
                &new,
                now_ms(),
                tasks::Start::Queued,
            )
            .await
            .unwrap();
            let ended = lifecycle::finish(&engine, &queued, outcome).await.unwrap();
            assert!(ended.is_some_and(|task| task.status.is_terminal()));
        }
    }
}
