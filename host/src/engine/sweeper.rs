//! The sweeper: expires tasks that waited too long and recovers claims whose lease lapsed.
//!
//! Invariant (DESIGN.md, "Durable"): a task whose worker died mid-submit is re-queued only when
//! its provider promises an idempotent submit; otherwise it fails with a clear reason (and is
//! never charged). A chat whose relaying process died mid-stream always fails: its client is
//! gone, so there is nobody to replay it for. Each recovery claims the task by its lease first, so two hosts never both
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
    let interrupted: Vec<(String, String, String)> = sqlx::query_as(
        "UPDATE tasks SET wake_at = $2 WHERE id IN (SELECT id FROM tasks \
         WHERE phase IN ('submitting', 'streaming') AND wake_at < $1 LIMIT 100) \
         AND phase IN ('submitting', 'streaming') AND wake_at < $1 RETURNING id, provider, phase",
    )
    .bind(now)
    .bind(lease_end)
    .fetch_all(&engine.store().writer)
    .await?;
    for (id, provider_id, phase) in interrupted {
        if phase == "streaming" {
            let reason = "Interrupted while streaming; a chat is not replayed, since the client \
                          it was answering is gone.";
            lifecycle::finish(engine, &id, Outcome::Failed(reason.into())).await?;
            continue;
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::{
        config::Config,
        engine::{
            NewTask,
            provider::{
                CallContext, GenerationRequest, ModelInfo, Provider, ProviderError, Submission,
            },
            task::Status,
        },
        server,
    };

    /// A provider whose submit would charge twice if repeated.
    struct ChargesOnSubmit {
        id: &'static str,
        idempotent: bool,
    }

    #[async_trait]
    impl Provider for ChargesOnSubmit {
        fn id(&self) -> &str {
            self.id
        }
        fn models(&self) -> Vec<ModelInfo> {
            Vec::new()
        }
        fn submit_is_idempotent(&self) -> bool {
            self.idempotent
        }
        async fn submit(
            &self,
            _: &GenerationRequest,
            _: &CallContext,
        ) -> Result<Submission, ProviderError> {
            Err(ProviderError::Internal("not called in this test".into()))
        }
    }

    /// Leaves a task as a worker that died mid-submit would: running, submitting, lease lapsed.
    async fn interrupted_task(engine: &Engine, provider: &str) -> String {
        let request = GenerationRequest {
            capability: "image.generate".into(),
            model: "m".into(),
            prompt: "p".into(),
            params: Default::default(),
            inputs: Vec::new(),
        };
        let new = NewTask {
            client_id: "c".into(),
            api: "jobs",
            provider: provider.into(),
            request,
            webhook_url: None,
            extra: serde_json::json!({}),
            idempotency: None,
            credits: 0.0,
        };
        let (task, _) = engine.submit(new).await.unwrap();
        sqlx::query(
            "UPDATE tasks SET status = 'running', phase = 'submitting', wake_at = $2 WHERE id = $1",
        )
        .bind(&task.id)
        .bind(now_ms() - 1)
        .execute(&engine.store().writer)
        .await
        .unwrap();
        task.id
    }

    #[tokio::test]
    async fn interrupted_submits_are_retried_only_when_idempotent_and_chats_never() {
        let dir = tempfile::tempdir().unwrap();
        let host = server::build(Config::embedded(dir.path().to_path_buf()))
            .await
            .unwrap();
        let engine = host.engine;
        engine.registry().upsert(Arc::new(ChargesOnSubmit {
            id: "once",
            idempotent: false,
        }));
        engine.registry().upsert(Arc::new(ChargesOnSubmit {
            id: "again",
            idempotent: true,
        }));
        let once = interrupted_task(&engine, "once").await;
        let again = interrupted_task(&engine, "again").await;
        let gone = interrupted_task(&engine, "unloaded").await;
        let chat = interrupted_task(&engine, "again").await;
        sqlx::query("UPDATE tasks SET phase = 'streaming' WHERE id = $1")
            .bind(&chat)
            .execute(&engine.store().writer)
            .await
            .unwrap();

        sweep(&engine).await.unwrap();

        let once = engine.fetch(&once).await.unwrap().unwrap();
        assert_eq!(once.status(), Status::Failed);
        assert!(once.error.unwrap().contains("not idempotent"));
        assert_eq!(
            engine.fetch(&again).await.unwrap().unwrap().status(),
            Status::Queued
        );
        assert_eq!(
            engine.fetch(&gone).await.unwrap().unwrap().status(),
            Status::Failed
        );
        // A chat is never replayed, even on a provider whose submit is idempotent.
        let chat = engine.fetch(&chat).await.unwrap().unwrap();
        assert_eq!(chat.status(), Status::Failed);
        assert!(chat.error.unwrap().contains("streaming"));
    }
}
