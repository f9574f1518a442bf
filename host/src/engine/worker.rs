//! Workers: claim queued tasks and run the provider's `submit`.
//!
//! Invariants: a claim ([`lifecycle::claim`]) is one `UPDATE … RETURNING` (with `SKIP LOCKED`
//! on PostgreSQL), so two workers on any number of hosts never take the same task; it takes
//! the highest priority first and leaves tasks whose provider or model is at its
//! [`capacity`](crate::engine::capacity) queued. A worker holds its task's slot until it is
//! done with the task. From its claim until its answer is recorded (output links copied) the
//! task is tracked, so [`lifecycle::hold_leases`] extends its lease and passes on a cancel
//! requested on another host. A worker never polls: a pending handle is persisted and
//! left to the poller, so a slow vendor never holds a worker. Every change a worker makes to
//! its task goes through [`lifecycle`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use tracing::Instrument;

use crate::engine::{
    Engine, inputs,
    lifecycle::{self, Outcome},
    outputs,
    provider::{CallContext, ProgressSink, ProviderError, Submission},
    task::{Task, failure_reason, now_ms},
};

/// Progress is written at most this often per task.
const PROGRESS_EVERY_MS: i64 = 250;

/// One worker's loop.
pub async fn run(engine: Engine, worker: usize) {
    let shutdown = engine.draining_token().clone();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match lifecycle::claim(&engine).await {
            Ok(Some((task, slot))) => {
                let span = tracing::info_span!(
                    "task",
                    task_id = %task.id,
                    request_id = task.request_id.as_deref(),
                );
                execute(&engine, task).instrument(span).await;
                drop(slot);
            }
            Ok(None) => {
                tokio::select! {
                    _ = engine.queued_signal().notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            Err(error) => {
                tracing::warn!(worker, %error, "claiming a task failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn execute(engine: &Engine, task: Task) {
    let token = engine.track(&task.id);
    let result = submit(engine, &task, token.clone()).await;
    engine.untrack(&task.id);
    if let Err(error) = result {
        tracing::warn!(task = %task.id, %error, "task failed in the engine");
        if !engine.shutdown_token().is_cancelled() {
            let _ = lifecycle::finish(
                engine,
                &task.id,
                Outcome::Failed(failure_reason("Internal error", &error)),
            )
            .await;
        }
    }
}

async fn submit(
    engine: &Engine,
    task: &Task,
    token: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let Some(provider) = engine.registry().provider(&task.provider) else {
        let reason = format!("Provider {} is not loaded.", task.provider);
        lifecycle::finish(engine, &task.id, Outcome::Failed(reason)).await?;
        return Ok(());
    };
    let mut request = task.generation_request()?;
    let model = engine
        .registry()
        .find(&format!("{}/{}", task.provider, request.model));
    let bounds = model.ok().and_then(|model| inputs::ImageBounds::of(&model));
    if let Err(reason) = inputs::load(
        engine,
        &task.client_id,
        &mut request,
        provider.reads_input_bytes(),
        bounds,
    )
    .await
    {
        lifecycle::finish(engine, &task.id, Outcome::Failed(reason)).await?;
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
    record(engine, task, &token, answer).await
}

/// Records what `submit` answered.
async fn record(
    engine: &Engine,
    task: &Task,
    token: &tokio_util::sync::CancellationToken,
    answer: Result<Submission, ProviderError>,
) -> anyhow::Result<()> {
    let cancelled = token.is_cancelled();
    match answer {
        Ok(Submission::Pending { handle, poll_after }) => {
            lifecycle::mark_pending(engine, &task.id, &handle, poll_after).await?;
            if cancelled && let Some(task) = engine.fetch(&task.id).await? {
                engine.cancel_pending(&task).await?;
            }
        }
        _ if cancelled => {
            lifecycle::finish(engine, &task.id, Outcome::Cancelled).await?;
        }
        Ok(Submission::Finished { outputs, usage }) => {
            outputs::succeed(engine, task, outputs, usage).await?;
        }
        Err(ProviderError::Cancelled) => {
            lifecycle::finish(engine, &task.id, Outcome::Cancelled).await?;
        }
        Err(error) => {
            lifecycle::finish(engine, &task.id, Outcome::failed_by(&task.id, &error)).await?;
        }
    }
    Ok(())
}

/// The native diffusion provider, which reports progress once per denoising step.
pub(crate) const LOCAL_PROVIDER: &str = "local";

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
            let _ = lifecycle::record_progress(&engine, &id, Some(fraction), None).await;
        });
    })
}
