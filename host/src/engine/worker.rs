//! Workers: claim queued tasks and run the provider's `submit`.
//!
//! Invariants: a claim ([`lifecycle::claim`]) is one `UPDATE … RETURNING` (with `SKIP LOCKED`
//! on PostgreSQL), so two workers on any number of hosts never take the same task; it takes
//! the highest priority first and leaves tasks whose provider or model is at its
//! [`capacity`](crate::engine::capacity) queued. A worker holds its task's slot until it is
//! done with the task. From its claim until its answer is recorded (output links copied) the
//! task is tracked, so [`lifecycle::hold_leases`] extends its lease and passes on a cancel
//! requested on another host. A worker never polls: a pending handle is persisted and
//! left to the poller, so a slow vendor never holds a worker. A submit the vendor refused for
//! now goes back to the queue with a time before which no claim takes it ([`again`] says
//! which refusals, and how long), so a brief rate limit does not fail a job; a worker never
//! sleeps on one. Every change a worker makes to its task goes through [`lifecycle`] and
//! lands only while the task is still held in the claim the worker took: a worker whose lease
//! lapsed and whose task was recovered changes nothing, and cancels at the vendor a pending
//! job it made for the lost claim, which nobody would follow.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use tracing::Instrument;

use crate::config::EngineConfig;
use crate::engine::{
    Engine, breakers, inputs,
    lifecycle::{self, Claimed, Outcome, Requeued},
    outage_log::OutageLog,
    outputs,
    provider::{CallContext, LOCAL_PROVIDER, ProgressSink, ProviderError, Submission},
    task::{Status, Task, backoff, failure_reason, now_ms, rfc3339},
};

/// Progress is written at most this often per task.
const PROGRESS_EVERY_MS: i64 = 250;

/// One worker's loop; `claims` logs the claims' failures of every worker of the process.
pub async fn run(engine: Engine, claims: Arc<Mutex<OutageLog>>) {
    let shutdown = engine.draining_token().clone();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let claimed = lifecycle::claim(&engine).await;
        let claimed = claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(claimed);
        match claimed {
            Ok(Some(Claimed { task, slot, probe })) => {
                let span = tracing::info_span!(
                    "task",
                    task_id = %task.id,
                    request_id = task.request_id.as_deref(),
                );
                execute(&engine, task, probe).instrument(span).await;
                drop(slot);
            }
            Ok(None) => {
                tokio::select! {
                    _ = engine.queued_signal().notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Submits `task` (`probe`: as its provider's breaker's probe) and records the answer.
async fn execute(engine: &Engine, task: Task, probe: bool) {
    let token = engine.track(&task.id);
    let result = submit(engine, &task, token.clone(), probe).await;
    engine.untrack(&task.id);
    if let Err(error) = result {
        let failed = !engine.shutdown_token().is_cancelled()
            && lifecycle::finish_held(
                engine,
                &task,
                Outcome::Failed(failure_reason("Internal error", &error)),
            )
            .await
            .is_ok();
        if failed {
            tracing::warn!(task = %task.id, %error, "the engine failed the task");
        } else {
            // The database away, or the process stopping: nothing is decided here.
            tracing::warn!(task = %task.id, %error, "handling the task stopped; its lease lapses and the sweeper decides");
        }
    }
}

async fn submit(
    engine: &Engine,
    task: &Task,
    token: tokio_util::sync::CancellationToken,
    probe: bool,
) -> anyhow::Result<()> {
    let Some(provider) = engine.registry().provider(&task.provider) else {
        let reason = format!("Provider {} is not loaded.", task.provider);
        lifecycle::finish_held(engine, task, Outcome::Failed(reason)).await?;
        return Ok(());
    };
    let mut request = task.generation_request()?;
    let model = engine
        .registry()
        .find(&format!("{}/{}", task.provider, request.model));
    let bounds = model.as_ref().ok().and_then(inputs::ImageBounds::of);
    let rules = model
        .as_ref()
        .map(inputs::InputRules::of)
        .unwrap_or_default();
    if let Err(reason) = inputs::load(
        engine,
        &task.client_id,
        &mut request,
        provider.reads_input_bytes(),
        bounds,
        &rules,
    )
    .await
    {
        lifecycle::finish_held(engine, task, Outcome::Failed(reason)).await?;
        return Ok(());
    }
    let ctx = CallContext {
        task_id: task.id.clone(),
        client: task.client_id.clone(),
        cancel: token.clone(),
        progress: progress_sink(engine, &task.id, task.provider == LOCAL_PROVIDER),
    };
    let answer =
        crate::metrics::measure_call(&task.provider, "submit", provider.submit(&request, &ctx))
            .await;
    if engine.shutdown_token().is_cancelled() {
        // The lease lapses and the sweeper decides, exactly as after a crash.
        return Ok(());
    }
    // The lease is held until the answer is recorded: copying a finished task's output
    // links can take longer than a lease, and a lapsed lease would fail it as interrupted.
    let idempotent = provider.submit_is_idempotent();
    record(engine, task, &token, answer, idempotent, probe).await
}

/// Records what `submit` answered (`idempotent`: whether the provider's submit is; `probe`:
/// whether it was its breaker's probe).
async fn record(
    engine: &Engine,
    task: &Task,
    token: &tokio_util::sync::CancellationToken,
    answer: Result<Submission, ProviderError>,
    idempotent: bool,
    probe: bool,
) -> anyhow::Result<()> {
    let cancelled = token.is_cancelled();
    // The breaker's bookkeeping never changes how the task itself ends.
    let counted = match &answer {
        Ok(_)
        | Err(
            ProviderError::RateLimited { .. }
            | ProviderError::InvalidRequest(_)
            | ProviderError::ContentRejected(_)
            | ProviderError::Unauthorized(_),
        ) => breakers::succeeded(engine, &task.provider).await,
        Err(
            ProviderError::UpstreamUnavailable(reason) | ProviderError::UpstreamUnreached(reason),
        ) if !cancelled => breakers::failed(engine, &task.provider, reason).await,
        Err(_) => Ok(()),
    };
    if let Err(error) = counted {
        tracing::warn!(task = %task.id, %error, "recording the submit on its provider's breaker failed");
    }
    // A probe that found the vendor still away is not counted against the task (below).
    let probe_found_it_away = probe && answer.as_ref().is_err_and(unavailable);
    match answer {
        Ok(Submission::Pending { handle, poll_after }) => {
            if !lifecycle::mark_pending(engine, task, &handle, poll_after).await? {
                abandon(engine, task, &handle).await;
            } else if cancelled && let Some(task) = engine.fetch(&task.id).await? {
                engine.cancel_pending(&task).await?;
            }
        }
        _ if cancelled => {
            lifecycle::finish_held(engine, task, Outcome::Cancelled).await?;
        }
        Ok(Submission::Finished { outputs, usage }) => {
            outputs::succeed(engine, task, outputs, usage).await?;
        }
        Err(ProviderError::Cancelled) => {
            lifecycle::finish_held(engine, task, Outcome::Cancelled).await?;
        }
        Err(error) => match again(
            engine.config(),
            task.attempts - i64::from(probe_found_it_away),
            task.created_at,
            &error,
            idempotent,
            now_ms(),
        ) {
            Some((why, not_before)) => {
                let why = if probe_found_it_away {
                    Requeued::Probe
                } else {
                    why
                };
                let claim = task.attempts;
                let retry_at = Some(not_before);
                if lifecycle::requeue(engine, &task.id, claim, &task.provider, why, retry_at)
                    .await?
                {
                    tracing::info!(task = %task.id, %error, attempts = claim, "the vendor refused the submit for now; queued again");
                }
            }
            None => {
                let mut outcome = Outcome::failed_by(&task.id, &error);
                if let Outcome::Failed(reason) = &mut outcome {
                    match &error {
                        // What the vendor did is unknown: the client and the operator are
                        // told so.
                        ProviderError::UpstreamUnavailable(_) if !idempotent => {
                            reason.push_str(&format!(
                                "; not tried again because {}'s submit is not idempotent: the \
                                 vendor may have made the job",
                                task.provider
                            ));
                        }
                        // The vendor's wait alone reads as advice to a task that is over.
                        ProviderError::RateLimited { .. } => {
                            let claims = task.attempts;
                            reason.push_str(&format!(
                                "; its vendor refused {} for now, so it failed",
                                if claims == 1 {
                                    "its submit".to_string()
                                } else {
                                    format!("all {claims} of its submits")
                                }
                            ));
                        }
                        _ => {}
                    }
                }
                lifecycle::finish_held(engine, task, outcome).await?;
            }
        },
    }
    Ok(())
}

/// Whether a submit failed for want of the vendor (the failure a breaker counts).
fn unavailable(error: &ProviderError) -> bool {
    matches!(
        error,
        ProviderError::UpstreamUnavailable(_) | ProviderError::UpstreamUnreached(_)
    )
}

/// Cancels at its vendor the job `handle` names, made for `task` by a worker that no longer
/// holds it (its lease lapsed and the task was recovered, or it ended meanwhile): no poller
/// will ever follow that job, so it is only a bill. The task itself is not touched.
async fn abandon(engine: &Engine, task: &Task, handle: &str) {
    tracing::warn!(task = %task.id, handle, "the task was no longer held when its vendor job was made; cancelling that job");
    if let Err(error) = engine.cancel_at_vendor(task, handle).await {
        tracing::warn!(task = %task.id, %error, "cancelling an abandoned vendor job failed");
    }
}

/// The first wait before a refused submit is tried again, when the vendor named none; it
/// doubles with each claim.
const FIRST_RETRY_WAIT: Duration = Duration::from_secs(5);
/// The longest wait between two submits of a task whose vendor could not be reached, which
/// is tried again until its queue time runs out.
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(60);

/// Whether a task that had `claims` claims and was created at `created_at` (ms) is tried
/// again after its vendor refused the submit with `error`, and from when (ms): a rate-limited
/// submit always (the vendor made nothing), so does one that never reached the vendor, and
/// an unavailable vendor's only when the provider's submit is `idempotent` (a timeout or a
/// broken answer may hide a job the vendor made and bills). Never once the task had
/// `[engine] max_attempts` claims, except after a vendor that was not reached (an outage
/// holds its tasks, as an open breaker does, rather than fail them one by one), nor when the
/// wait would outlast its `queue_timeout_secs` (it fails now, with the vendor's reason,
/// rather than expire later). The wait is the vendor's `Retry-After` (unless zero), else
/// [`FIRST_RETRY_WAIT`] doubled for each claim before this one, at most
/// [`LONGEST_RETRY_WAIT`].
fn again(
    config: &EngineConfig,
    claims: i64,
    created_at: i64,
    error: &ProviderError,
    idempotent: bool,
    now: i64,
) -> Option<(Requeued, i64)> {
    let (why, asked) = match error {
        // `Retry-After: 0` names no wait: three claims spent in a second against a vendor
        // that is still refusing would fail the task, so it waits as if none were given.
        ProviderError::RateLimited { retry_after_secs } => (
            Requeued::RateLimited,
            retry_after_secs
                .filter(|secs| *secs > 0)
                .map(Duration::from_secs),
        ),
        ProviderError::UpstreamUnavailable(_) if idempotent => {
            (Requeued::UpstreamUnavailable, None)
        }
        // Nothing reached the vendor, so nothing can have been made there.
        ProviderError::UpstreamUnreached(_) => (Requeued::UpstreamUnavailable, None),
        _ => return None,
    };
    let unreached = matches!(error, ProviderError::UpstreamUnreached(_));
    if !unreached && claims >= i64::from(config.max_attempts.max(1)) {
        return None;
    }
    let failures = u32::try_from(claims).unwrap_or(u32::MAX);
    let wait = asked.unwrap_or_else(|| backoff(FIRST_RETRY_WAIT, failures).min(LONGEST_RETRY_WAIT));
    let not_before = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
    let expires = created_at + (config.queue_timeout_secs as i64).saturating_mul(1000);
    (not_before < expires).then_some((why, not_before))
}

/// Notes on a queued task whose vendor refused its last submit for now when it is tried
/// again, unless a note on why it is not taken at all came first (see [`Task::notice`]).
pub(crate) fn note_retry(task: &mut Task, now: i64) {
    if task.status == Status::Queued
        && task.notice.is_none()
        && let Some(not_before) = task.wake_at.filter(|at| *at > now)
    {
        task.notice = Some(format!(
            "its last submit did not go through (the vendor refused it for now, or could not \
             be reached); tried again at {}",
            rfc3339(not_before)
        ));
    }
}

/// A progress reporter that writes at most every [`PROGRESS_EVERY_MS`]. With `per_step` (the
/// local model reports after each denoising step), the time between two reports is a step's
/// time, recorded in the metrics; the first report, which also covers the text encoder, is not.
fn progress_sink(engine: &Engine, id: &str, per_step: bool) -> ProgressSink {
    let engine = engine.clone();
    let id = id.to_string();
    let last_write = Arc::new(AtomicI64::new(0));
    let last_step = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    ProgressSink::new(move |fraction| {
        if per_step {
            let now = std::time::Instant::now();
            let mut last = last_step
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(previous) = last.replace(now) {
                crate::metrics::get().diffusion_step(now - previous);
            }
        }
        let now = now_ms();
        let last = last_write.load(Ordering::Relaxed);
        if now - last < PROGRESS_EVERY_MS && fraction < 1.0 {
            return;
        }
        if last_write
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let (engine, id) = (engine.clone(), id.clone());
        tokio::spawn(async move {
            let _ = lifecycle::record_progress(&engine, &id, Some(fraction), None, None).await;
        });
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        config::Config,
        engine::{
            stub::{StubProvider, image_task},
            task::Phase,
        },
        server,
        store::tasks,
    };

    /// A worker whose lease lapsed, and whose task was recovered and claimed by another
    /// worker meanwhile, records nothing of what its vendor answered: the new holder's claim
    /// stands, and a vendor job made for the lost claim is cancelled at the vendor, since
    /// nobody will follow it.
    #[tokio::test]
    async fn a_worker_that_lost_its_claim_records_nothing_and_cancels_its_vendor_job() {
        let dir = tempfile::tempdir().unwrap();
        let host = server::build(Config::embedded(dir.path().to_path_buf()))
            .await
            .unwrap();
        let engine = host.engine;
        let provider = Arc::new(StubProvider::new("remembers", true));
        engine.registry().upsert(provider.clone());
        let (store, now) = (engine.store(), now_ms());
        let new = image_task("remembers");
        tasks::insert(store, "job_lost", &new, now, tasks::Start::Queued)
            .await
            .unwrap();
        let providers = ["remembers".to_string()];
        let claim = |worker| tasks::claim(store, now, now + 30_000, worker, &providers);
        let lost = claim("wrk_a").await.unwrap().unwrap();
        assert!(
            tasks::requeue(store, "job_lost", lost.attempts, None, true, now)
                .await
                .unwrap()
        );
        claim("wrk_b").await.unwrap().unwrap();

        let token = tokio_util::sync::CancellationToken::new();
        let made = Ok(Submission::Pending {
            handle: "h_lost".into(),
            poll_after: Duration::from_secs(5),
        });
        record(&engine, &lost, &token, made, true, false)
            .await
            .unwrap();
        let refused = Err(ProviderError::UpstreamUnavailable("502".into()));
        record(&engine, &lost, &token, refused, true, false)
            .await
            .unwrap();
        let failed = Err(ProviderError::InvalidRequest("size".into()));
        record(&engine, &lost, &token, failed, true, false)
            .await
            .unwrap();

        let task = engine.fetch("job_lost").await.unwrap().unwrap();
        assert_eq!(
            (
                task.status,
                task.phase,
                task.attempts,
                task.worker_id.as_deref()
            ),
            (Status::Running, Some(Phase::Submitting), 2, Some("wrk_b"))
        );
        assert_eq!(task.pending_handle, None);
        assert_eq!(*provider.cancelled.lock().unwrap(), ["h_lost"]);
    }

    fn limited(secs: Option<u64>) -> ProviderError {
        ProviderError::RateLimited {
            retry_after_secs: secs,
        }
    }

    #[test]
    fn a_rate_limited_submit_waits_what_the_vendor_asked_else_doubling() {
        let config = EngineConfig::default();
        assert_eq!(
            again(&config, 1, 1_000, &limited(Some(7)), false, 2_000),
            Some((Requeued::RateLimited, 9_000))
        );
        assert_eq!(
            again(&config, 1, 1_000, &limited(None), false, 2_000),
            Some((Requeued::RateLimited, 7_000))
        );
        assert_eq!(
            again(&config, 2, 1_000, &limited(None), false, 2_000),
            Some((Requeued::RateLimited, 12_000))
        );
        assert_eq!(
            again(&config, 2, 1_000, &limited(Some(0)), false, 2_000),
            Some((Requeued::RateLimited, 12_000)),
            "a wait of zero is no wait given"
        );
    }

    #[test]
    fn a_refused_submit_fails_once_its_claims_or_its_queue_time_run_out() {
        let config = EngineConfig::default();
        let cap = i64::from(config.max_attempts);
        assert_eq!(
            again(&config, cap, 1_000, &limited(Some(1)), false, 2_000),
            None
        );
        // A wait past the queue timeout fails now rather than expire later.
        let too_long = config.queue_timeout_secs + 1;
        assert_eq!(
            again(&config, 1, 1_000, &limited(Some(too_long)), false, 2_000),
            None
        );
    }

    #[test]
    fn only_an_idempotent_submit_is_tried_again_after_an_unavailable_vendor() {
        let config = EngineConfig::default();
        let down = ProviderError::UpstreamUnavailable("502".into());
        assert_eq!(again(&config, 1, 1_000, &down, false, 0), None);
        assert_eq!(
            again(&config, 1, 1_000, &down, true, 0),
            Some((Requeued::UpstreamUnavailable, 5_000))
        );
        // A vendor never reached was asked nothing: tried again either way, past the
        // claims the task has, every minute at most, until its queue time runs out.
        let unreached = ProviderError::UpstreamUnreached("connection refused".into());
        assert_eq!(
            again(&config, 1, 1_000, &unreached, false, 0),
            Some((Requeued::UpstreamUnavailable, 5_000))
        );
        let many = i64::from(config.max_attempts) + 10;
        assert_eq!(
            again(&config, many, 1_000, &unreached, false, 0),
            Some((Requeued::UpstreamUnavailable, 60_000))
        );
        let queue_ms = i64::try_from(config.queue_timeout_secs).unwrap() * 1000;
        assert_eq!(
            again(&config, many, 1_000, &unreached, false, queue_ms),
            None
        );
        for refused in [
            ProviderError::InvalidRequest("size".into()),
            ProviderError::Unauthorized("key".into()),
            ProviderError::ContentRejected("no".into()),
            ProviderError::Internal("trap".into()),
        ] {
            assert_eq!(
                again(&config, 1, 1_000, &refused, true, 0),
                None,
                "{refused}"
            );
        }
    }
}
