//! The poller: asks providers about pending handles whose `wake_at` has come.
//!
//! Invariants: polls run in their own tasks under a semaphore (`poll_concurrency`), never in a
//! worker, so thousands of pending tasks cost rows, not threads. A poll is claimed by pushing
//! `wake_at` one lease ahead first ([`lifecycle::claim_due_polls`]) and kept a lease ahead
//! while it runs ([`lifecycle::hold_poll_claim`]), so a crash mid-poll only delays the next
//! one, and two hosts never poll the same handle at once, however long the poll and the
//! storing of its outputs take. Transient trouble is retried, never counted against the
//! task: a rate limit after the vendor's `Retry-After` (5 s when it names none), a provider
//! not loaded (mid-reload) after 5 s, an unavailable vendor after 5 s doubling with each poll
//! of that provider that found it so since one last answered ([`Outage`]: a vendor that is
//! down is not asked about every pending task every 5 s for as long as it is down), each at
//! most `max_poll_interval_secs`, and a poll that itself errs when its claim's lease ends; an
//! unavailable vendor's reason is kept on the task until the next answer, so that its view on
//! any host says why it is not done ([`note_trouble`]). The
//! vendor's own failure, any other provider error, finished outputs that cannot be stored,
//! or a task pending longer than `pending_timeout_secs` (cancelled at the vendor first) fail
//! the task.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tracing::Instrument;

use tokio::sync::Semaphore;

use crate::engine::{
    Engine,
    lifecycle::{self, Outcome},
    outage_log::OutageLog,
    outputs,
    provider::{CallContext, PollOutcome, ProviderError},
    task::{Phase, Status, Task, backoff, failure_reason, now_ms, rfc3339},
};

/// How often the poller looks for due handles when idle.
const TICK: Duration = Duration::from_millis(100);

/// The first wait after a poll found its vendor unavailable.
const UNAVAILABLE_WAIT: Duration = Duration::from_secs(5);

/// How many polls in a row found each provider's vendor unavailable, in this process.
#[derive(Default)]
struct Outage(Mutex<HashMap<String, u32>>);

impl Outage {
    /// Counts a poll that found `provider`'s vendor unavailable; the wait before that task's
    /// next poll: [`UNAVAILABLE_WAIT`], doubled for each such poll before it.
    fn unavailable(&self, provider: &str) -> Duration {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let failures = counts.entry(provider.to_string()).or_default();
        *failures = failures.saturating_add(1);
        backoff(UNAVAILABLE_WAIT, *failures)
    }

    /// The vendor answered a poll: the next outage starts over.
    fn answered(&self, provider: &str) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        counts.remove(provider);
    }
}

/// The poller's loop.
pub async fn run(engine: Engine) {
    let outage = Arc::new(Outage::default());
    let permits = Arc::new(Semaphore::new(engine.config().poll_concurrency.max(1)));
    let shutdown = engine.shutdown_token().clone();
    let mut claims = OutageLog::new("claiming due polls");
    loop {
        let free = permits.available_permits();
        if free > 0 {
            match claims.note(lifecycle::claim_due_polls(&engine, free.min(500) as i64).await) {
                Ok(tasks) => {
                    for task in tasks {
                        let permit = permits
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("semaphore never closes");
                        let engine = engine.clone();
                        let outage = outage.clone();
                        let span = tracing::info_span!(
                            "task",
                            task_id = %task.id,
                            request_id = task.request_id.as_deref(),
                        );
                        tokio::spawn(
                            async move {
                                if let Err(error) = poll_held(&engine, &outage, &task).await {
                                    tracing::warn!(task = %task.id, %error, "poll failed; will retry");
                                }
                                drop(permit);
                            }
                            .instrument(span),
                        );
                    }
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Polls `task` while holding its claim; should the claim slip (the database unreachable for
/// a lease), the poll still ends, unheld.
async fn poll_held(engine: &Engine, outage: &Outage, task: &Task) -> anyhow::Result<()> {
    let poll = poll_once(engine, outage, task);
    tokio::pin!(poll);
    tokio::select! {
        result = &mut poll => result,
        () = lifecycle::hold_poll_claim(engine, task) => poll.await,
    }
}

async fn poll_once(engine: &Engine, outage: &Outage, task: &Task) -> anyhow::Result<()> {
    if task.cancel_requested != 0 {
        return engine.cancel_pending(task).await;
    }
    let Some(handle) = task.pending_handle.as_deref() else {
        return Ok(());
    };
    let config = engine.config();
    let pending_since = task.started_at.unwrap_or(task.created_at);
    if now_ms() - pending_since > (config.pending_timeout_secs * 1000.0) as i64 {
        let reason = format!(
            "The vendor did not finish the task within {} s ([engine] pending_timeout_secs)",
            config.pending_timeout_secs
        );
        return engine.end_pending(task, Outcome::Failed(reason)).await;
    }
    let Some(provider) = engine.registry().provider(&task.provider) else {
        // The plugin may be mid-reload; look again later rather than failing the task.
        let later = now_ms() + 5_000;
        return lifecycle::record_progress(engine, &task.id, None, Some(later), None).await;
    };
    let ctx = CallContext::detached(task.id.clone());
    let answer =
        crate::metrics::measure_call(&task.provider, "poll", provider.poll(handle, &ctx)).await;
    if !matches!(
        answer,
        Err(ProviderError::UpstreamUnavailable(_) | ProviderError::UpstreamUnreached(_))
    ) {
        outage.answered(&task.provider);
    }
    match answer {
        Ok(PollOutcome::Running {
            progress,
            poll_after,
        }) => {
            let wake = now_ms() + config.poll_delay(poll_after).as_millis() as i64;
            lifecycle::record_progress(engine, &task.id, progress, Some(wake), None).await?;
        }
        Ok(PollOutcome::Finished { outputs, usage }) => {
            // As on the worker path: outputs that cannot be stored fail the task (and return
            // its credits) instead of leaving it pending, to be polled and refused forever.
            if let Err(error) = outputs::succeed(engine, task, outputs, usage).await {
                tracing::warn!(task = %task.id, %error, "storing a finished task's outputs failed");
                let reason = failure_reason("Storing the outputs failed", &error);
                lifecycle::finish(engine, &task.id, Outcome::Failed(reason)).await?;
            }
        }
        Ok(PollOutcome::Failed(error)) => {
            lifecycle::finish(engine, &task.id, Outcome::failed_by(&task.id, &error)).await?;
        }
        // Neither a vendor's `Retry-After` nor an outage stretches the wait past the longest
        // poll interval; `pending_timeout_secs` ends a task that never gets an answer.
        Err(ProviderError::RateLimited { retry_after_secs }) => {
            let wait = config.poll_delay(Duration::from_secs(retry_after_secs.unwrap_or(5).max(1)));
            let wake = now_ms() + wait.as_millis() as i64;
            lifecycle::record_progress(engine, &task.id, None, Some(wake), None).await?;
        }
        Err(
            ProviderError::UpstreamUnavailable(reason) | ProviderError::UpstreamUnreached(reason),
        ) => {
            let wait = config.poll_delay(outage.unavailable(&task.provider));
            tracing::info!(task = %task.id, %reason, ?wait, "vendor unavailable while polling; retrying");
            let wake = now_ms() + wait.as_millis() as i64;
            // Kept on the task, so that every host's view of it says why it is not done.
            lifecycle::record_progress(engine, &task.id, None, Some(wake), Some(&reason)).await?;
        }
        Err(error) => {
            lifecycle::finish(engine, &task.id, Outcome::failed_by(&task.id, &error)).await?;
        }
    }
    Ok(())
}

/// Notes on a task pending at its vendor why its last poll got no answer, and when it is
/// polled again (see [`Task::notice`]).
pub(crate) fn note_trouble(task: &mut Task) {
    if task.status == Status::Running
        && task.phase == Some(Phase::Pending)
        && let Some(trouble) = &task.poll_trouble
    {
        let again = task
            .wake_at
            .map(|at| format!("; polled again at {}", rfc3339(at)))
            .unwrap_or_default();
        task.notice = Some(format!(
            "its vendor gave no answer to the last poll ({trouble}){again}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_of_an_unavailable_vendor_back_off_until_it_answers() {
        let outage = Outage::default();
        let waits: Vec<u64> = (0..4)
            .map(|_| outage.unavailable("down").as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40]);
        assert_eq!(outage.unavailable("other").as_secs(), 5, "per provider");
        outage.answered("down");
        assert_eq!(outage.unavailable("down").as_secs(), 5, "starts over");
        for _ in 0..40 {
            outage.unavailable("long");
        }
        assert!(
            outage.unavailable("long") >= Duration::from_secs(3600),
            "no overflow"
        );
    }
}
