//! The durable task engine: every request of every API becomes a task here.
//!
//! Invariants:
//! - A task is in the database before its API answers 2xx, so `kill -9` loses nothing accepted.
//! - Only [`lifecycle`] changes a stored task (its status above all), through the task
//!   repository ([`crate::store::tasks`]); a terminal transition writes the webhook outbox
//!   row in the same transaction, and a terminal status never changes again.
//! - A provider's pending handle is persisted before anything else happens to it; the poller
//!   resumes from the database after a restart, on any host.
//! - Work is claimed with a lease (`wake_at`); a claim that outlives its lease is recovered by
//!   the [`sweeper`]: re-queued when the provider's submit is idempotent, failed otherwise.
//! - Nothing here knows HTTP: the API modules translate, the engine only runs tasks.

pub mod breakers;
pub mod capacity;
pub mod chat;
pub mod conversation;
pub mod credits;
pub mod fleet;
pub mod front_door;
pub mod inputs;
pub mod lifecycle;
pub mod limits;
pub mod outage_log;
pub mod outputs;
pub mod poller;
pub mod registry;
#[cfg(test)]
pub(crate) mod stub;
pub mod sweeper;
pub mod task;
pub mod webhooks;
pub mod worker;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

pub use easel_provider as provider;
use sha2::Digest;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    assets::Assets,
    config::{CapacitySettings, CreditSettings, EngineConfig, Limits},
    net::Guard,
    store::{Backend, Store, tasks},
};
use provider::{CallContext, GenerationRequest};
use registry::Registry;
use task::{CancelledBy, Phase, Status, Task};

/// Renders a task as the webhook body of the API that created it (the API layer supplies it).
pub type WebhookRenderer = Arc<dyn Fn(&Task) -> serde_json::Value + Send + Sync>;

/// The signed public link of an asset (under `EASEL_PUBLIC_URL`), for a vendor to fetch.
pub type PublicLink = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A task about to be accepted.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Owner.
    pub client_id: String,
    /// The API dialect creating it.
    pub api: &'static str,
    /// Provider id (already resolved by the API through the registry).
    pub provider: String,
    /// The normalized request.
    pub request: GenerationRequest,
    /// Where to announce the terminal state (already SSRF-checked).
    pub webhook_url: Option<String>,
    /// Dialect-specific rendering data.
    pub extra: serde_json::Value,
    /// `Idempotency-Key` and the hash of the body it came with.
    pub idempotency: Option<(String, String)>,
    /// Micro-credits to reserve from the client's balance (0: free, nothing reserved).
    pub price_micros: i64,
    /// The client's limits that apply to this task (none: nothing checked).
    pub limits: Vec<crate::store::limits::ClientLimit>,
    /// The request creating it, for the logs.
    pub request_id: Option<String>,
    /// Claim order: higher first, then older.
    pub priority: i64,
}

#[cfg(test)]
impl NewTask {
    /// A free task of `provider` for client `c`, with nothing else set (unit tests).
    pub(crate) fn for_tests(provider: &str, request: GenerationRequest) -> Self {
        Self {
            client_id: "c".into(),
            api: "jobs",
            provider: provider.into(),
            request,
            webhook_url: None,
            extra: serde_json::json!({}),
            idempotency: None,
            price_micros: 0,
            limits: Vec::new(),
            request_id: None,
            priority: 0,
        }
    }
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Same idempotency key, different body.
    #[error("Idempotency-Key was already used with a different request body.")]
    IdempotencyConflict,
    /// The client's balance does not cover the price.
    #[error(transparent)]
    InsufficientBalance(#[from] credits::InsufficientBalance),
    /// One of the client's limits refused it.
    #[error(transparent)]
    Limited(#[from] limits::Limited),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Filters for listing tasks.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this capability.
    pub capability: Option<String>,
    /// Only tasks created by this API.
    pub api: Option<&'static str>,
    /// Only tasks of this model: `provider/key`, or a bare key of any provider.
    pub model: Option<String>,
    /// Only tasks created strictly before this time (ms).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// The shared engine state; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    assets: Assets,
    registry: Arc<Registry>,
    config: EngineConfig,
    guard: Guard,
    webhook_secret: Option<String>,
    webhook_bodies: WebhookRenderer,
    public_link: Option<PublicLink>,
    credits: CreditSettings,
    limits: Limits,
    capacity: capacity::Capacity,
    /// The providers' breakers as this process last saw them.
    breakers: breakers::Seen,
    /// Wakes idle workers when a task is queued.
    queued: Notify,
    /// Asks [`lifecycle::hold_leases`] to renew at once (and so to pass on the cancels it
    /// finds) rather than at its next turn.
    leases_due: Notify,
    /// Cancellation tokens of the tasks this process holds (submits and chats), by id: the
    /// ones whose leases [`lifecycle::hold_leases`] keeps.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Stops every background loop, and cancels the calls still held.
    shutdown: CancellationToken,
    /// Stops claiming new tasks (a child of `shutdown`): cancelled first when the process is
    /// asked to stop, so the submits in flight can finish.
    draining: CancellationToken,
    /// When the process stopped claiming: one shutdown grace counts from here, for the
    /// connections draining and the tasks in flight alike.
    stopping_since: std::sync::OnceLock<tokio::time::Instant>,
    /// This process's id in the fleet (`wrk_…`), recorded on the tasks it claims.
    worker_id: String,
}

/// Everything [`Engine::new`] needs.
pub struct EngineParts {
    /// Database.
    pub store: Store,
    /// Asset store.
    pub assets: Assets,
    /// Providers.
    pub registry: Arc<Registry>,
    /// Tuning.
    pub config: EngineConfig,
    /// Outbound policy.
    pub guard: Guard,
    /// Webhook signing secret.
    pub webhook_secret: Option<String>,
    /// Webhook bodies, in the shape of the API that created each task.
    pub webhook_bodies: WebhookRenderer,
    /// Links a vendor can fetch a stored input from, when easel has a public address
    /// (`EASEL_PUBLIC_URL`): inputs of a kind a model takes only as links
    /// ([`inputs::InputRules`]) reach it so.
    pub public_link: Option<PublicLink>,
    /// Prices and enforcement.
    pub credits: CreditSettings,
    /// Size limits (remote inputs are fetched under the upload limit).
    pub limits: Limits,
    /// How many tasks of a provider or model run at once.
    pub capacity: CapacitySettings,
}

impl Engine {
    /// Builds the engine; call [`Engine::start`] to run its loops.
    pub fn new(parts: EngineParts) -> Self {
        let shutdown = CancellationToken::new();
        Self {
            inner: Arc::new(Inner {
                store: parts.store,
                assets: parts.assets,
                registry: parts.registry,
                config: parts.config,
                guard: parts.guard,
                webhook_secret: parts.webhook_secret,
                webhook_bodies: parts.webhook_bodies,
                public_link: parts.public_link,
                credits: parts.credits,
                limits: parts.limits,
                capacity: capacity::Capacity::new(&parts.capacity),
                breakers: breakers::Seen::default(),
                queued: Notify::new(),
                leases_due: Notify::new(),
                running: Mutex::new(HashMap::new()),
                draining: shutdown.child_token(),
                stopping_since: std::sync::OnceLock::new(),
                shutdown,
                worker_id: task::new_id("wrk"),
            }),
        }
    }

    /// Starts workers, the poller, the sweeper and the webhook deliverer, keeps the leases of
    /// the tasks this process holds, and keeps its place in the fleet (see [`fleet`]; run its
    /// first beat before this).
    pub fn start(&self, run_workers: bool, membership: fleet::Membership) {
        tokio::spawn(membership.run(self.clone()));
        // Chats are held by whichever process accepted them, worker or not.
        tokio::spawn(lifecycle::hold_leases(self.clone()));
        if run_workers {
            // One log for every worker's claims: they fail together when the database is away.
            let claims = Arc::new(Mutex::new(outage_log::OutageLog::new("claiming a task")));
            for _ in 0..self.inner.config.workers.max(1) {
                tokio::spawn(worker::run(self.clone(), claims.clone()));
            }
            tokio::spawn(poller::run(self.clone()));
        }
        // Every process sweeps: expiries and lapsed claims must not wait for a worker to be
        // alive (an API-only host expires what no worker takes).
        tokio::spawn(sweeper::run(self.clone()));
        tokio::spawn(webhooks::run(self.clone()));
        tokio::spawn(breakers::follow(self.clone()));
        // Every process stores files, so every process may leave an orphan to sweep.
        tokio::spawn(
            self.inner
                .assets
                .clone()
                .sweep_orphans_until(self.inner.shutdown.clone()),
        );
        match self.inner.store.backend {
            Backend::Postgres => tokio::spawn(listen_to_the_fleet(self.clone())),
            Backend::Sqlite => tokio::spawn(lifecycle::follow_cancels(self.clone())),
        };
    }

    /// Stops claiming new tasks; what is in flight goes on (see [`Engine::shutdown`]).
    pub fn stop_claiming(&self) {
        self.inner
            .stopping_since
            .get_or_init(tokio::time::Instant::now);
        self.inner.draining.cancel();
    }

    /// When `[engine] shutdown_grace_secs` since the process stopped claiming runs out (in a
    /// grace from now, before it stopped).
    pub fn shutdown_deadline(&self) -> tokio::time::Instant {
        let since = self.inner.stopping_since.get().copied();
        since.unwrap_or_else(tokio::time::Instant::now) + self.inner.config.shutdown_grace()
    }

    /// Resolves once the process stopped claiming (it is shutting down).
    pub async fn claiming_stopped(&self) {
        self.inner.draining.cancelled().await;
    }

    /// Stops the process's part in the engine: no new task is claimed, the submits in flight
    /// get what is left of `[engine] shutdown_grace_secs` since claiming stopped (the same
    /// grace the open connections drained in) to finish and be recorded, then the process is
    /// [interrupted](Engine::interrupt).
    pub async fn shutdown(&self) {
        self.stop_claiming();
        let deadline = self.shutdown_deadline();
        let held = self.held().len();
        if held > 0 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tracing::info!(
                held,
                ?left,
                "stopping: no new tasks are claimed; waiting for the tasks in flight"
            );
        }
        while !self.held().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let left = self.held().len();
        if left > 0 {
            tracing::warn!(
                left,
                "stopping with tasks still in flight: their leases lapse and the sweeper recovers them"
            );
        }
        self.interrupt();
    }

    /// Ends the process's part at once: its loops stop and everything it holds is cancelled.
    /// A chat still answering is recorded failed (refunded) and tells its client why; a
    /// submit in flight is left to the sweeper, as after a crash (its lease lapses; it is
    /// queued again or failed as its provider's idempotence allows).
    pub fn interrupt(&self) {
        self.inner.shutdown.cancel();
    }

    /// Cancelled once the process stops claiming tasks.
    pub(crate) fn draining_token(&self) -> &CancellationToken {
        &self.inner.draining
    }

    /// This process's id in the fleet (`wrk_…`).
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The asset store.
    pub fn assets(&self) -> &Assets {
        &self.inner.assets
    }

    /// The providers.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The maker of links a vendor can fetch stored inputs from, when easel has a public
    /// address.
    pub fn public_link(&self) -> Option<&PublicLink> {
        self.inner.public_link.as_ref()
    }

    /// Outbound policy.
    pub fn guard(&self) -> Guard {
        self.inner.guard.clone()
    }

    /// Tuning.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The providers' breakers as this process last saw them.
    pub(crate) fn breakers(&self) -> &breakers::Seen {
        &self.inner.breakers
    }

    /// Prices and enforcement.
    pub fn credit_settings(&self) -> &CreditSettings {
        &self.inner.credits
    }

    /// Size limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// How many tasks of a provider or model run at once.
    pub(crate) fn capacity(&self) -> &capacity::Capacity {
        &self.inner.capacity
    }

    /// Where a queued task stands in claim order (1: claimed next); `None` unless queued.
    pub async fn queue_position(&self, task: &Task) -> anyhow::Result<Option<i64>> {
        tasks::queue_position(&self.inner.store, task).await
    }

    /// Accepts a task durably; returns it and whether an idempotent replay reused it.
    pub async fn submit(&self, new: NewTask) -> Result<(Task, bool), SubmitError> {
        lifecycle::queue(self, &new).await
    }

    /// Waits until the task is terminal (checking every 100 ms), for APIs that answer
    /// synchronously; `None` when `limit` passes first.
    pub async fn wait_terminal(
        &self,
        id: &str,
        limit: std::time::Duration,
    ) -> anyhow::Result<Option<Task>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(task) = self.fetch(id).await?
                && task.status.is_terminal()
            {
                return Ok(Some(task));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// A task by id, whoever owns it (engine-internal).
    pub async fn fetch(&self, id: &str) -> anyhow::Result<Option<Task>> {
        Ok(self.noted(tasks::fetch(&self.inner.store, id).await?))
    }

    /// Sets `task`'s [`Task::notice`] as seen at `now`: the first note that applies wins.
    fn note(&self, task: &mut Task, now: i64) {
        fleet::note_waiting(self, task);
        breakers::note_open(self, task, now);
        worker::note_retry(task, now);
        poller::note_trouble(task);
    }

    /// A task as read, with its [`Task::notice`].
    fn noted(&self, task: Option<Task>) -> Option<Task> {
        task.map(|mut task| {
            self.note(&mut task, task::now_ms());
            task
        })
    }

    /// Tasks as read, each with its [`Task::notice`].
    fn all_noted(&self, (mut tasks, more): (Vec<Task>, bool)) -> (Vec<Task>, bool) {
        let now = task::now_ms();
        for task in &mut tasks {
            self.note(task, now);
        }
        (tasks, more)
    }

    /// The client's task, or `None` (also for another client's).
    pub async fn get(&self, client_id: &str, id: &str) -> anyhow::Result<Option<Task>> {
        Ok(self.noted(tasks::get(&self.inner.store, client_id, id).await?))
    }

    /// A page of the client's tasks, newest first, and whether more remain (see
    /// [`page_of_whole_milliseconds`](crate::store::page_of_whole_milliseconds)).
    pub async fn list(
        &self,
        client_id: &str,
        filter: &TaskFilter,
    ) -> anyhow::Result<(Vec<Task>, bool)> {
        Ok(self.all_noted(tasks::list(&self.inner.store, Some(client_id), filter).await?))
    }

    /// A page of every client's tasks (or `client`'s), for the operator.
    pub async fn list_any(
        &self,
        client: Option<&str>,
        filter: &TaskFilter,
    ) -> anyhow::Result<(Vec<Task>, bool)> {
        Ok(self.all_noted(tasks::list(&self.inner.store, client, filter).await?))
    }

    /// A task's webhook deliveries, oldest first.
    pub async fn webhook_deliveries(
        &self,
        task_id: &str,
    ) -> anyhow::Result<Vec<tasks::WebhookDelivery>> {
        tasks::webhook_deliveries(&self.inner.store, task_id).await
    }

    /// Cancels the client's task, asked by `by`: a queued one at once (unless a worker claimed
    /// it meanwhile), a pending one through the provider's cancel (here if this process serves
    /// it, else at its next poll on a process that does), a submitting one by signalling its
    /// worker. Returns the task afterwards, or `None` when the client has no such task.
    pub async fn cancel(
        &self,
        client_id: &str,
        id: &str,
        by: CancelledBy,
    ) -> anyhow::Result<Option<Task>> {
        let Some(mut task) = self.get(client_id, id).await? else {
            return Ok(None);
        };
        let flagged = by != CancelledBy::Client && !task.status.is_terminal();
        if flagged {
            // Whoever ends it, its error names who asked (the terminal update reads the flag).
            lifecycle::request_cancel(self, &task.id, by).await?;
        }
        if task.status == Status::Queued {
            if lifecycle::finish(self, &task.id, lifecycle::Outcome::Withdrawn)
                .await?
                .is_some()
            {
                return self.get(client_id, id).await;
            }
            // Claimed meanwhile: cancelled as the running task it now is.
            let Some(now) = self.get(client_id, id).await? else {
                return Ok(None);
            };
            task = now;
        }
        if task.status == Status::Running {
            if !flagged {
                lifecycle::request_cancel(self, &task.id, by).await?;
            }
            if task.phase == Some(Phase::Pending) {
                // A process that does not serve the provider while another one does (a fleet's
                // API host) leaves the vendor's cancel to that one's poller, which finds the
                // request at the task's next poll; served nowhere, it is cancelled here.
                let registry = &self.inner.registry;
                let served_elsewhere = registry.provider(&task.provider).is_none()
                    && registry.declared(&task.provider).is_some();
                if !served_elsewhere {
                    self.cancel_pending(&task).await?;
                }
            } else {
                self.stop_if_held(&task.id);
            }
        }
        self.get(client_id, id).await
    }

    /// Stops the submit or chat this process holds as `id`, if it holds it: the call sees its
    /// token cancelled and the task ends as its cancel request says.
    fn stop_if_held(&self, id: &str) {
        if let Some(token) = self.inner.running.lock().expect("running lock").get(id) {
            token.cancel();
        }
    }

    /// Asks the provider to drop a pending handle, then records the cancellation.
    pub(crate) async fn cancel_pending(&self, task: &Task) -> anyhow::Result<()> {
        self.end_pending(task, lifecycle::Outcome::Cancelled).await
    }

    /// Cancels `task`, pending at its vendor, there (as far as the vendor lets it) and ends
    /// it here as `outcome` says; a failure's reason, or a cancel's, says whether the vendor's
    /// job was cancelled or may still run (and bill) there.
    pub(crate) async fn end_pending(
        &self,
        task: &Task,
        outcome: lifecycle::Outcome,
    ) -> anyhow::Result<()> {
        let at_vendor = match &task.pending_handle {
            None => None,
            Some(handle) => Some(match self.cancel_at_vendor(task, handle).await {
                Ok(()) => "it was cancelled at its vendor".to_string(),
                Err(error) => {
                    tracing::warn!(task = %task.id, %error, "provider cancel failed; cancelling locally");
                    format!(
                        "its vendor's job could not be cancelled ({error}), so it may still \
                         run, and bill, there"
                    )
                }
            }),
        };
        let outcome = match (outcome, at_vendor) {
            (lifecycle::Outcome::Failed(reason), Some(at_vendor)) => {
                lifecycle::Outcome::Failed(format!("{reason}; {at_vendor}"))
            }
            (lifecycle::Outcome::Cancelled, Some(at_vendor)) => {
                lifecycle::Outcome::CancelledAtVendor(at_vendor)
            }
            (outcome, _) => outcome,
        };
        lifecycle::finish(self, &task.id, outcome).await?;
        Ok(())
    }

    /// Asks `task`'s vendor to cancel the job `handle` names (as far as the vendor lets it);
    /// an error when its provider is not loaded here, as nothing was asked. The task is not
    /// touched.
    pub(crate) async fn cancel_at_vendor(
        &self,
        task: &Task,
        handle: &str,
    ) -> Result<(), provider::ProviderError> {
        let Some(provider) = self.inner.registry.provider(&task.provider) else {
            return Err(provider::ProviderError::Internal(format!(
                "provider {} is not loaded on this host",
                task.provider
            )));
        };
        let ctx = CallContext::detached(task.id.clone());
        crate::metrics::measure_call(&task.provider, "cancel", provider.cancel(handle, &ctx)).await
    }

    /// Registers a task this process now holds (a submit, a chat) and returns its
    /// cancellation token; its lease is kept until it is [untracked](Self::untrack).
    pub(crate) fn track(&self, id: &str) -> CancellationToken {
        let token = self.inner.shutdown.child_token();
        self.inner
            .running
            .lock()
            .expect("running lock")
            .insert(id.into(), token.clone());
        token
    }

    /// Forgets a task this process no longer holds.
    pub(crate) fn untrack(&self, id: &str) {
        self.inner.running.lock().expect("running lock").remove(id);
    }

    /// Whether this process holds task `id` (it is being submitted or streamed here).
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.inner
            .running
            .lock()
            .expect("running lock")
            .contains_key(id)
    }

    /// How many tasks this process holds (submits in flight, chats being answered).
    pub fn held_count(&self) -> usize {
        self.inner.running.lock().expect("running lock").len()
    }

    /// The tasks this process holds, with their tokens.
    pub(crate) fn held(&self) -> Vec<(String, CancellationToken)> {
        let running = self.inner.running.lock().expect("running lock");
        running
            .iter()
            .map(|(id, token)| (id.clone(), token.clone()))
            .collect()
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn queued_signal(&self) -> &Notify {
        &self.inner.queued
    }

    pub(crate) fn leases_due_signal(&self) -> &Notify {
        &self.inner.leases_due
    }

    pub(crate) fn webhook_secret(&self) -> Option<&str> {
        self.inner.webhook_secret.as_deref()
    }

    pub(crate) fn render_webhook(&self, task: &Task) -> serde_json::Value {
        (self.inner.webhook_bodies)(task)
    }
}

/// Hash of a request body for idempotency comparisons.
pub fn request_hash(body: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(body))
}

/// Wakes this host's workers when another host queues a task, and stops a task this host
/// holds as soon as another host is asked to cancel it (PostgreSQL only). What was notified
/// while the connection was down is made up as soon as it listens again: the workers look for
/// queued tasks and the held tasks' leases are renewed at once, which reads their cancels
/// ([`lifecycle::hold_leases`]).
async fn listen_to_the_fleet(engine: Engine) {
    let mut listened_before = false;
    let mut listening = outage_log::OutageLog::new("LISTEN easel_tasks, easel_cancels");
    loop {
        let listened = async {
            let mut listener = sqlx::postgres::PgListener::connect(&engine.inner.store.url).await?;
            listener
                .listen_all(["easel_tasks", "easel_cancels"])
                .await?;
            listening.worked();
            loop {
                if std::mem::replace(&mut listened_before, true) {
                    // Every idle worker looks: more than one task may have been queued.
                    engine.inner.queued.notify_waiters();
                    engine.inner.leases_due.notify_one();
                }
                // `None`: the connection was lost and, once `try_recv` returns, made again.
                while let Some(notification) = listener.try_recv().await? {
                    if notification.channel() == "easel_cancels" {
                        engine.stop_if_held(notification.payload());
                    } else {
                        engine.inner.queued.notify_one();
                    }
                }
                tracing::warn!("LISTEN easel_tasks, easel_cancels was cut; listening again");
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = engine.inner.shutdown.cancelled() => return,
            result = listened => if let Err(error) = result {
                listening.failed(&error);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            },
        }
    }
}
