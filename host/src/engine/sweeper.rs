//! The sweeper: expires tasks that waited too long and recovers claims whose lease lapsed.
//!
//! Invariant (DESIGN.md, "Durable"): a task whose worker died mid-submit is re-queued only when
//! its provider promises an idempotent submit; otherwise it fails with a clear reason (and is
//! never charged). Each recovery claims the task by its lease first, so two hosts never both
//! recover it.

use std::time::Duration;

use crate::engine::{
    Engine,
    lifecycle::{self, Outcome},
    task::now_ms,
};

/// How often the sweeper runs.
const EVERY: Duration = Duration::from_millis(500);

/// The sweeper's loop.
pub async fn run(engine: Engine) {
    let shutdown = engine.shutdown_token().clone();
    loop {
        if let Err(error) = sweep(&engine).await {
            tracing::warn!(%error, "sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn sweep(engine: &Engine) -> anyhow::Result<()> {
    let now = now_ms();
    let oldest_allowed = now - (engine.config().queue_timeout_secs as i64) * 1000;
    let expired: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM tasks WHERE status = 'queued' AND created_at < $1 LIMIT 500",
    )
    .bind(oldest_allowed)
    .fetch_all(&engine.store().reader)
    .await?;
    for (id,) in expired {
        lifecycle::finish(engine, &id, Outcome::Expired).await?;
    }

    let lease_end = now + engine.config().lease().as_millis() as i64;
    let interrupted: Vec<(String, String)> = sqlx::query_as(
        "UPDATE tasks SET wake_at = $2 WHERE id IN (SELECT id FROM tasks WHERE phase = 'submitting' AND wake_at < $1 LIMIT 100) \
         AND phase = 'submitting' AND wake_at < $1 RETURNING id, provider",
    )
    .bind(now)
    .bind(lease_end)
    .fetch_all(&engine.store().writer)
    .await?;
    for (id, provider_id) in interrupted {
        match engine.registry().provider(&provider_id) {
            Some(provider) if provider.submit_is_idempotent() => {
                tracing::info!(task = %id, provider = %provider_id, "re-queueing a task interrupted mid-submit");
                lifecycle::requeue(engine, &id).await?;
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
