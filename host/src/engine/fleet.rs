//! The fleet: every process that runs tasks announces itself in the workers table, and every
//! process reads the table back into its registry.
//!
//! Invariants:
//! - A process that runs workers writes its row ([`beat`]) before it claims anything and
//!   again every third of its lease: its id, host name, the providers it has loaded (which
//!   are exactly the providers its claims take, see [`lifecycle::claim`]), what each
//!   announces (models with their parameter schemas), its capacity and whether it holds the
//!   native model, and until when it counts as alive: one lease of its own after the beat. A
//!   process stopping on purpose ends that at once ([`retire`]).
//! - A row past its own lease is a dead worker, for every process whatever lease that one
//!   runs with: it is not listed and serves nothing. Its announcements stay in every
//!   registry for the reader's `[engine] model_grace_secs` more,
//!   so tasks for a model whose last worker just died are still accepted and wait for it;
//!   after that the row is deleted. Its held tasks are recovered by any process's sweeper by
//!   the usual rules, judged from what their provider announced; a re-queued one waits for
//!   a worker that serves its provider.
//! - Every process, API-only ones included, refreshes its registry's view of the fleet on the
//!   same beat ([`Registry::set_fleet`](crate::engine::registry::Registry::set_fleet)): an
//!   API host that loads no model lists, validates and accepts the models the fleet serves,
//!   and a queued task whose provider no live worker serves says so ([`note_waiting`]).
//!
//! [`lifecycle::claim`]: crate::engine::lifecycle::claim

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    engine::{
        Engine,
        outage_log::OutageLog,
        provider::{
            CallContext, GenerationRequest, LOCAL_PROVIDER, ModelInfo, Provider, ProviderError,
            Submission,
        },
        task::{Status, Task, now_ms},
    },
    store::{
        tasks,
        workers::{self, WorkerRow},
    },
};

/// What one provider of a worker announces to the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// Provider id.
    pub provider: String,
    /// Its version.
    pub version: String,
    /// [`Provider::submit_is_idempotent`].
    pub submit_is_idempotent: bool,
    /// [`Provider::reads_input_bytes`].
    pub reads_input_bytes: bool,
    /// [`Provider::makes_tool_calls`] (absent in the rows of hosts from before tool calls).
    #[serde(default)]
    pub makes_tool_calls: bool,
    /// Its models, each with its parameter schema.
    pub models: Vec<ModelInfo>,
}

impl Announcement {
    /// What a loaded provider announces.
    fn of(provider: &dyn Provider) -> Self {
        Self {
            provider: provider.id().to_string(),
            version: provider.version(),
            submit_is_idempotent: provider.submit_is_idempotent(),
            reads_input_bytes: provider.reads_input_bytes(),
            makes_tool_calls: provider.makes_tool_calls(),
            models: provider.models(),
        }
    }
}

/// A provider another process serves, as it announced it: enough to list, validate and
/// price its models here. The registry never hands it out to be called.
struct Announced(Announcement);

#[async_trait]
impl Provider for Announced {
    fn id(&self) -> &str {
        &self.0.provider
    }

    fn version(&self) -> String {
        self.0.version.clone()
    }

    fn models(&self) -> Vec<ModelInfo> {
        self.0.models.clone()
    }

    fn submit_is_idempotent(&self) -> bool {
        self.0.submit_is_idempotent
    }

    fn reads_input_bytes(&self) -> bool {
        self.0.reads_input_bytes
    }

    fn makes_tool_calls(&self) -> bool {
        self.0.makes_tool_calls
    }

    async fn submit(
        &self,
        _: &GenerationRequest,
        _: &CallContext,
    ) -> Result<Submission, ProviderError> {
        Err(ProviderError::Internal(format!(
            "provider {} is served by another process of the fleet",
            self.0.provider
        )))
    }
}

/// One live process of the fleet, as its row says.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The stored row.
    pub row: WorkerRow,
    /// The providers it serves.
    pub providers: Vec<String>,
    /// What they announced.
    pub announced: Vec<Announcement>,
    /// The tasks it holds in `submitting` (filled in by [`live`] only).
    pub submitting: i64,
}

impl Worker {
    fn of(row: WorkerRow) -> Self {
        let providers = serde_json::from_str(&row.providers).unwrap_or_default();
        let announced = serde_json::from_str(&row.announcement).unwrap_or_else(|error| {
            tracing::warn!(worker = %row.id, %error, "unreadable announcement; ignored");
            Vec::new()
        });
        Self {
            row,
            providers,
            announced,
            submitting: 0,
        }
    }
}

/// The text every dialect shows for a queued task no live worker can take.
pub fn waiting_for(provider: &str) -> String {
    format!("waiting for a worker that serves {provider}")
}

/// Notes on a queued task when no live worker serves its provider (see [`Task::notice`]).
pub fn note_waiting(engine: &Engine, task: &mut Task) {
    if task.status == Status::Queued && !engine.registry().is_served(&task.provider, now_ms()) {
        task.notice = Some(waiting_for(&task.provider));
    }
}

/// The machine's host name, as the kernel knows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// How long this process counts as alive after its last heartbeat, ms.
fn lease_ms(engine: &Engine) -> i64 {
    engine.config().lease().as_millis() as i64
}

/// How long a dead worker's models stay known after its lease, ms.
fn grace_ms(engine: &Engine) -> i64 {
    (engine.config().model_grace_secs.max(0.0) * 1000.0) as i64
}

/// This process's place in the fleet: whether it heartbeats a row, since when, and what
/// the fleet announced when it last looked.
pub struct Membership {
    runs_workers: bool,
    started_at: i64,
    announced: Option<BTreeMap<String, Announcement>>,
}

impl Membership {
    /// A process that starts now, heartbeating when it `runs_workers`.
    pub fn new(runs_workers: bool) -> Self {
        Self {
            runs_workers,
            started_at: now_ms(),
            announced: None,
        }
    }

    /// Writes this process's row, when it runs workers, and reads the fleet into the
    /// registry.
    pub async fn beat(&mut self, engine: &Engine) -> anyhow::Result<()> {
        let now = now_ms();
        if self.runs_workers {
            workers::beat(engine.store(), &self.row(engine, now)?).await?;
        }
        let known_since = now - grace_ms(engine);
        let rows = workers::alive_since(engine.store(), known_since).await?;
        self.apply(engine, rows.into_iter().map(Worker::of).collect());
        workers::forget_before(engine.store(), known_since).await?;
        Ok(())
    }

    /// This process's row as of `now`.
    fn row(&self, engine: &Engine, now: i64) -> anyhow::Result<WorkerRow> {
        let registry = engine.registry();
        let providers = registry.provider_ids();
        let announced: Vec<Announcement> = providers
            .iter()
            .filter_map(|id| registry.provider(id))
            .map(|provider| Announcement::of(provider.as_ref()))
            .collect();
        Ok(WorkerRow {
            id: engine.worker_id().to_string(),
            host: host_name(),
            pid: Some(i64::from(std::process::id())),
            providers: serde_json::to_string(&providers)?,
            announcement: serde_json::to_string(&announced)?,
            capacity: engine.config().workers.max(1) as i64,
            version: env!("CARGO_PKG_VERSION").to_string(),
            model_loaded: i64::from(registry.provider(LOCAL_PROVIDER).is_some()),
            started_at: self.started_at,
            last_seen: now,
            alive_until: now + lease_ms(engine),
        })
    }

    /// Puts what `fleet` announces into the registry: each provider as its most recently
    /// seen worker announced it, with the models every worker of it announced, and until
    /// when a worker serves it. Schemas are compiled again only when an announcement changed.
    fn apply(&mut self, engine: &Engine, mut fleet: Vec<Worker>) {
        fleet.sort_by_key(|worker| worker.row.last_seen);
        let mut serving_until: BTreeMap<String, i64> = BTreeMap::new();
        for worker in &fleet {
            for id in &worker.providers {
                let until = serving_until.entry(id.clone()).or_default();
                *until = (*until).max(worker.row.alive_until);
            }
        }
        let mut merged: BTreeMap<String, Announcement> = BTreeMap::new();
        for announcement in fleet.into_iter().flat_map(|worker| worker.announced) {
            let mut models = merged
                .remove(&announcement.provider)
                .map(|older| older.models)
                .unwrap_or_default();
            models.retain(|known| announcement.models.iter().all(|m| m.key != known.key));
            models.extend(announcement.models.iter().cloned());
            merged.insert(
                announcement.provider.clone(),
                Announcement {
                    models,
                    ..announcement
                },
            );
        }
        let registry = engine.registry();
        registry.set_serving(serving_until);
        if self.announced.as_ref() != Some(&merged) {
            let announced: Vec<Arc<dyn Provider>> = merged
                .values()
                .cloned()
                .map(|announcement| Arc::new(Announced(announcement)) as Arc<dyn Provider>)
                .collect();
            registry.set_fleet(announced);
            self.announced = Some(merged);
        }
    }

    /// Heartbeats and refreshes every third of a lease until shutdown; a failed beat is tried
    /// again on the next one (meanwhile the row ages, as a dead worker's would).
    pub async fn run(mut self, engine: Engine) {
        let every = (engine.config().lease() / 3).max(Duration::from_millis(100));
        let shutdown = engine.shutdown_token().clone();
        let mut beats = OutageLog::new("the fleet heartbeat");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
            let _ = beats.note(self.beat(&engine).await);
        }
    }
}

/// Stops counting this process as a worker at once; its models keep their grace.
pub async fn retire(engine: &Engine) -> anyhow::Result<()> {
    workers::retire(engine.store(), engine.worker_id(), now_ms() - 1).await
}

/// The live workers, oldest process first, each with the tasks it holds.
pub async fn live(engine: &Engine) -> anyhow::Result<Vec<Worker>> {
    let rows = workers::alive_since(engine.store(), now_ms()).await?;
    let held: BTreeMap<String, i64> = tasks::submitting_by_worker(engine.store())
        .await?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|row| {
            let submitting = held.get(&row.id).copied().unwrap_or(0);
            Worker {
                submitting,
                ..Worker::of(row)
            }
        })
        .collect())
}
