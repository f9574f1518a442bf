//! The only place tasks change status.
//!
//! Invariant: a terminal transition is one transaction that updates the task only if it is
//! still queued or running (so the first outcome wins and later ones are no-ops) and, when the
//! task has a webhook, inserts its outbox row. Delivery happens later, from the outbox.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::{
    Engine, credits,
    task::{Status, TASK_COLUMNS, Task, new_id, now_ms},
};

/// How a task ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Outputs are stored.
    Succeeded {
        /// Asset ids, or `{"text": …}` objects.
        outputs: Vec<serde_json::Value>,
        /// Usage as the provider reported it.
        usage: Option<serde_json::Value>,
    },
    /// Why it failed.
    Failed(String),
    /// The client cancelled it.
    Cancelled,
    /// It waited too long in the queue.
    Expired,
}

impl Outcome {
    fn status(&self) -> Status {
        match self {
            Outcome::Succeeded { .. } => Status::Succeeded,
            Outcome::Failed(_) => Status::Failed,
            Outcome::Cancelled => Status::Cancelled,
            Outcome::Expired => Status::Expired,
        }
    }
}

/// Moves a live task to its terminal status; `None` when it was already terminal.
pub async fn finish(engine: &Engine, id: &str, outcome: Outcome) -> anyhow::Result<Option<Task>> {
    let now = now_ms();
    let status = outcome.status();
    let (outputs, usage, error) = match &outcome {
        Outcome::Succeeded { outputs, usage } => (
            serde_json::Value::from(outputs.clone()).to_string(),
            usage.as_ref().map(|u| u.to_string()),
            None,
        ),
        Outcome::Failed(reason) => ("[]".to_string(), None, Some(reason.clone())),
        Outcome::Cancelled => (
            "[]".to_string(),
            None,
            Some("Cancelled by the client.".to_string()),
        ),
        Outcome::Expired => (
            "[]".to_string(),
            None,
            Some("Expired while waiting in the queue.".to_string()),
        ),
    };
    let mut tx = engine.store().writer.begin().await?;
    let task: Option<Task> = sqlx::query_as(&format!(
        "UPDATE tasks SET status = $2, outputs = $3, usage = $4, error = $5, \
         progress = CASE WHEN $2 = 'succeeded' THEN 1.0 ELSE progress END, \
         phase = NULL, pending_handle = NULL, wake_at = NULL, finished_at = $6, updated_at = $6 \
         WHERE id = $1 AND status IN ('queued', 'running') RETURNING {TASK_COLUMNS}"
    ))
    .bind(id)
    .bind(status.as_str())
    .bind(outputs)
    .bind(usage)
    .bind(error)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(task) = &task
        && task.reserved_credits > 0.0
        && status != Status::Succeeded
    {
        credits::refund(&mut tx, task, now).await?;
    }
    if let Some(task) = &task
        && let Some(url) = &task.webhook_url
    {
        let body = engine.render_webhook(task).to_string();
        sqlx::query(
            "INSERT INTO webhook_outbox (id, task_id, url, body, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(new_id("whk"))
        .bind(&task.id)
        .bind(url)
        .bind(body)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    if task.is_some() {
        tracing::info!(task = id, status = status.as_str(), "task finished");
    }
    Ok(task)
}

/// Records a provider's pending handle; from here on the poller owns the task.
pub async fn mark_pending(
    engine: &Engine,
    id: &str,
    handle: &str,
    poll_after: Duration,
) -> anyhow::Result<bool> {
    let now = now_ms();
    let updated = sqlx::query(
        "UPDATE tasks SET phase = 'pending', pending_handle = $2, wake_at = $3, updated_at = $4 \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(handle)
    .bind(now + engine.config().poll_delay(poll_after).as_millis() as i64)
    .bind(now)
    .execute(&engine.store().writer)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Puts an interrupted task back in the queue (its provider's submit is idempotent).
pub async fn requeue(engine: &Engine, id: &str) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE tasks SET status = 'queued', phase = NULL, wake_at = NULL, updated_at = $2 \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(now_ms())
    .execute(&engine.store().writer)
    .await?;
    engine.queued_signal().notify_one();
    Ok(())
}

/// Stores progress and, for pending tasks, when to poll next.
pub async fn record_progress(
    engine: &Engine,
    id: &str,
    progress: Option<f32>,
    wake_at: Option<i64>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE tasks SET progress = COALESCE($2, progress), wake_at = COALESCE($3, wake_at), updated_at = $4 \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(progress.map(f64::from))
    .bind(wake_at)
    .bind(now_ms())
    .execute(&engine.store().writer)
    .await?;
    Ok(())
}

/// Extends a held task's lease every third of it, for as long as the task is held
/// (`submitting` or `streaming`); cancels `token` when a cancel was requested, possibly on
/// another host. Runs until aborted or until the task is no longer held.
pub(crate) async fn hold_lease(engine: Engine, id: String, token: CancellationToken) {
    let lease = engine.config().lease();
    loop {
        tokio::time::sleep(lease / 3).await;
        let extended: Option<(i64,)> = sqlx::query_as(
            "UPDATE tasks SET wake_at = $2 WHERE id = $1 AND status = 'running' \
             AND phase IN ('submitting', 'streaming') RETURNING cancel_requested",
        )
        .bind(&id)
        .bind(now_ms() + lease.as_millis() as i64)
        .fetch_optional(&engine.store().writer)
        .await
        .unwrap_or(None);
        match extended {
            Some((1,)) => token.cancel(),
            Some(_) => {}
            None => return,
        }
    }
}
