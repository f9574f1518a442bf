//! Turns a provider's outputs into assets the client owns.
//!
//! Invariant: vendor links are copied into the asset store before the task succeeds (they
//! expire), through the no-SSRF client and under a size cap; a link that cannot be copied
//! fails the task rather than handing the client a dead URL.

use crate::{
    assets::{NewFile, extension_of},
    engine::{
        Engine,
        lifecycle::{self, Outcome},
        provider::{Output, Usage},
        task::Task,
    },
};

/// Largest vendor file the host copies, bytes.
const MAX_OUTPUT_BYTES: usize = 512 * 1024 * 1024;

/// Stores the outputs, then marks the task succeeded with them.
pub async fn succeed(
    engine: &Engine,
    task: &Task,
    outputs: Vec<Output>,
    usage: Option<Usage>,
) -> anyhow::Result<()> {
    let stored = store(engine, task, outputs).await?;
    let usage = usage.map(serde_json::Value::Object);
    lifecycle::finish(
        engine,
        &task.id,
        Outcome::Succeeded {
            outputs: stored,
            usage,
        },
    )
    .await?;
    Ok(())
}

/// Stores every output of `task`; returns the values for its `outputs` column.
pub async fn store(
    engine: &Engine,
    task: &Task,
    outputs: Vec<Output>,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut stored = Vec::with_capacity(outputs.len());
    for (index, output) in outputs.into_iter().enumerate() {
        let (content_type, bytes) = match output {
            Output::Text(text) => {
                stored.push(serde_json::json!({ "text": text }));
                continue;
            }
            Output::Bytes { content_type, data } => (content_type, data.to_vec()),
            Output::Url { url, content_type } => download(engine, &url, content_type).await?,
        };
        let name = format!("{}-{index}.{}", task.id, extension_of(&content_type));
        let asset = engine
            .assets()
            .put(
                NewFile {
                    client_id: &task.client_id,
                    name: &name,
                    content_type: &content_type,
                    task_id: Some(&task.id),
                },
                &bytes,
            )
            .await?;
        stored.push(serde_json::Value::String(asset.id));
    }
    Ok(stored)
}

async fn download(
    engine: &Engine,
    url: &str,
    content_type: Option<String>,
) -> anyhow::Result<(String, Vec<u8>)> {
    let (served_as, bytes) = engine.guard().fetch(url, MAX_OUTPUT_BYTES).await?;
    Ok((content_type.unwrap_or(served_as), bytes))
}
