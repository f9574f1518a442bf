//! Every change to a stored task, and so the only place a task's status changes: each
//! function here decides when a task moves and to what, and the
//! [task repository](crate::store::tasks) stores it. Reads go to the repository directly.
//!
//! A task is created `queued` ([`queue`]), or `running` in phase `streaming` for a chat whose
//! answer the accepting process relays ([`start_streaming`]). A worker [`claim`]s a queued
//! task (`running`, `submitting`; highest priority first, within `[capacity]`) and holds its lease ([`hold_leases`]); a provider's handle makes
//! it `pending` ([`mark_pending`]), and the poller takes due ones with [`claim_due_polls`];
//! the sweeper takes held tasks whose lease lapsed with [`claim_lapsed`] and [`requeue`]s or
//! [`finish`]es them, and a worker whose vendor refused the submit for now [`requeue`]s it
//! with a time before which no claim takes it; [`finish`] ends every task.
//!
//! Invariant: a terminal transition is one transaction that updates the task only if it is
//! still queued or running (so the first outcome wins and later ones are no-ops), gives an
//! unsuccessful task's reservation back and, when the task has a webhook, inserts its outbox
//! row. Delivery happens later, from the outbox.

use std::time::Duration;

use crate::{
    engine::{
        Engine, NewTask, SubmitError, breakers,
        capacity::Slot,
        limits::Counted,
        outage_log::OutageLog,
        task::{CancelledBy, Status, Task, new_task_id, now_ms, task_ids_before},
    },
    store::{
        breakers::Probe,
        tasks::{self, Ending, Lapsed, Start},
    },
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
    /// The client cancelled it while its vendor held it; what became of the vendor's job
    /// (cancelled there, or perhaps still running and billing).
    CancelledAtVendor(String),
    /// The client cancelled it while it was queued: ends it only if no worker claimed it
    /// meanwhile (a claimed one is cancelled through its holder instead).
    Withdrawn,
    /// It waited too long in the queue: ends it only if it is still queued.
    Expired,
}

impl Outcome {
    /// A task its provider's `error` ended, logged and recorded as the error reads (a
    /// withheld secret, a plugin's fault: what the operator reading the task needs).
    pub fn failed_by(task: &str, error: &crate::engine::provider::ProviderError) -> Outcome {
        tracing::warn!(task, %error, "the provider failed the task");
        Outcome::Failed(error.to_string())
    }

    /// The stored form of this outcome, ended by the holder of `claim` when given (see
    /// [`Ending::claim`]).
    fn ending(self, claim: Option<i64>) -> Ending {
        let queued_only = matches!(self, Outcome::Withdrawn | Outcome::Expired);
        let (status, outputs, usage, error) = match self {
            Outcome::Succeeded { outputs, usage } => (
                Status::Succeeded,
                serde_json::Value::from(outputs).to_string(),
                usage.map(|u| u.to_string()),
                None,
            ),
            Outcome::Failed(reason) => (Status::Failed, "[]".to_string(), None, Some(reason)),
            Outcome::Cancelled | Outcome::Withdrawn => (
                Status::Cancelled,
                "[]".to_string(),
                None,
                Some("Cancelled by the client.".to_string()),
            ),
            Outcome::CancelledAtVendor(at_vendor) => (
                Status::Cancelled,
                "[]".to_string(),
                None,
                Some(format!("Cancelled by the client; {at_vendor}.")),
            ),
            Outcome::Expired => (
                Status::Expired,
                "[]".to_string(),
                None,
                Some("Expired while waiting in the queue.".to_string()),
            ),
        };
        Ending {
            status,
            outputs,
            usage,
            error,
            queued_only,
            claim,
        }
    }
}

/// When a lease taken now ends, ms.
fn lease_end(engine: &Engine) -> i64 {
    now_ms() + engine.config().lease().as_millis() as i64
}

/// Accepts a task durably as `queued` and wakes a worker; returns it and whether an
/// idempotent replay reused an earlier task (then nothing new is queued).
pub async fn queue(engine: &Engine, new: &NewTask) -> Result<(Task, bool), SubmitError> {
    let id = new_task_id();
    let now = now_ms();
    let (task, replayed) = match &new.idempotency {
        Some((key, hash)) => {
            tasks::insert_once(engine.store(), &id, new, (key.as_str(), hash.as_str()), now).await?
        }
        None => (
            tasks::insert(engine.store(), &id, new, now, Start::Queued).await?,
            false,
        ),
    };
    if !replayed {
        accepted(&task);
        engine.queued_signal().notify_one();
    }
    Ok((task, replayed))
}

/// Counts an accepted task and names it on the request's span, so every later log line of
/// the request carries its id.
pub(crate) fn accepted(task: &Task) {
    tracing::Span::current().record("task_id", task.id.as_str());
    let metrics = crate::metrics::get();
    metrics.task_created(&task.provider, &task.model, &task.capability);
    metrics.credits_charged(task.reserved_micros);
}

/// Accepts a chat, under the `id` its caller chose, already `running` in phase `streaming`,
/// held by this process for one lease (extended by [`hold_leases`] while it relays the answer).
pub async fn start_streaming(
    engine: &Engine,
    id: &str,
    new: &NewTask,
) -> Result<Task, SubmitError> {
    let start = Start::Streaming {
        lease_end: lease_end(engine),
    };
    let task = tasks::insert(engine.store(), id, new, now_ms(), start).await?;
    accepted(&task);
    Ok(task)
}

/// Takes the first queued task in claim order (highest priority, then oldest) of a provider
/// loaded in this process that `[capacity]` leaves room for, for a worker: `running`, phase
/// `submitting`, held for one lease under this process's worker id. A task of another
/// provider stays queued for a process that serves it (see [`fleet`]). The slot it returns
/// counts the task against this process's limits until dropped.
///
/// [`fleet`]: crate::engine::fleet
pub async fn claim(engine: &Engine) -> anyhow::Result<Option<Claimed>> {
    let providers = engine.registry().provider_ids();
    // A task whose provider's breaker another claim is probing stays queued, and the claim
    // looks again; that provider's tasks are skipped then, so few looks are needed.
    for _ in 0..CLAIM_LOOKS {
        let claiming = engine.capacity().room(engine.registry()).await;
        let (lease_end, watched) = (lease_end(engine), breakers::watched(engine));
        let claim = tasks::claim_within(
            engine.store(),
            now_ms(),
            lease_end,
            engine.worker_id(),
            &providers,
            &claiming.room,
            &watched,
        );
        let (task, probe) = match claim.await? {
            tasks::Claim::Nothing => return Ok(None),
            tasks::Claim::Held(row) => {
                let provider = row.provider.clone();
                breakers::heard(engine, &provider, Probe::Held(row));
                continue;
            }
            tasks::Claim::Taken(task, None) => (task, false),
            tasks::Claim::Taken(task, Some(probe)) => {
                let probe = breakers::heard(engine, &task.provider, probe);
                (task, probe)
            }
        };
        let slot = claiming.took(&task.provider);
        return Ok(Some(Claimed { task, slot, probe }));
    }
    Ok(None)
}

/// A task a worker claimed, to submit.
pub struct Claimed {
    /// The task, as the claim left it.
    pub task: Task,
    /// Its place within `[capacity]`, held until the submit ends.
    pub slot: Slot,
    /// Whether this submit is its provider's breaker's probe.
    pub probe: bool,
}

/// How many claims one [`claim`] makes and undoes, at most, before it claims nothing.
const CLAIM_LOOKS: usize = 3;

/// Moves a live task to its terminal status; `None` when it was already terminal.
pub async fn finish(engine: &Engine, id: &str, outcome: Outcome) -> anyhow::Result<Option<Task>> {
    end(engine, id, outcome.ending(None)).await
}

/// Ends `held`, the task as its holder claimed it: as [`finish`] does, but only while the task
/// is still running in that claim, so a holder whose lease lapsed and whose task another
/// worker claimed since changes nothing (`None`, as for a task already ended).
pub async fn finish_held(
    engine: &Engine,
    held: &Task,
    outcome: Outcome,
) -> anyhow::Result<Option<Task>> {
    end(engine, &held.id, outcome.ending(Some(held.attempts))).await
}

async fn end(engine: &Engine, id: &str, ending: Ending) -> anyhow::Result<Option<Task>> {
    let status = ending.status;
    let renderer = engine.clone();
    let webhook_body: tasks::WebhookBody =
        std::sync::Arc::new(move |task: &Task| renderer.render_webhook(task).to_string());
    let task = tasks::finish(engine.store(), id, ending, now_ms(), webhook_body).await?;
    if let Some(task) = &task {
        if engine.capacity().counts_in_database() {
            // Its slot is free: a worker waiting on a provider at its limit may claim now.
            engine.queued_signal().notify_one();
        }
        // A failure's reason (a refused output link, a vendor's refusal) is the operator's
        // to read too, not only the client's.
        let error = task.error.as_deref();
        tracing::info!(task = id, status = status.as_str(), error, "task finished");
        let metrics = crate::metrics::get();
        metrics.task_finished(
            &task.provider,
            &task.model,
            &task.capability,
            status.as_str(),
        );
        if status != Status::Succeeded {
            // The repository refunded the reservation in the same transaction.
            metrics.credits_refunded(task.reserved_micros);
        }
    }
    Ok(task)
}

/// Records a provider's pending handle for `held`, the task as its worker claimed it; from
/// here on the poller owns the task. False when the worker no longer holds it (it ended, or
/// its lease lapsed and another worker claimed it): the handle is then not recorded.
pub async fn mark_pending(
    engine: &Engine,
    held: &Task,
    handle: &str,
    poll_after: Duration,
) -> anyhow::Result<bool> {
    let now = now_ms();
    let first_poll = now + engine.config().poll_delay(poll_after).as_millis() as i64;
    tasks::mark_pending(
        engine.store(),
        &held.id,
        held.attempts,
        handle,
        first_poll,
        now,
    )
    .await
}

/// Why a task went back to the queue: the `reason` label of `easel_tasks_requeued_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeued {
    /// Its holder died mid-submit and its provider's submit is idempotent (the sweeper).
    Interrupted,
    /// The vendor refused the submit for now: rate limited.
    RateLimited,
    /// The vendor was unavailable and the provider's submit is idempotent.
    UpstreamUnavailable,
    /// As `UpstreamUnavailable`, for its provider's breaker's probe: the claim was made for the
    /// breaker's sake, so it is not counted against the task's attempts (the probe would
    /// otherwise spend them all on an outage the others wait out).
    Probe,
}

impl Requeued {
    /// Every reason, for the metric's series that start at 0.
    pub const ALL: [Requeued; 3] = [
        Requeued::Interrupted,
        Requeued::RateLimited,
        Requeued::UpstreamUnavailable,
    ];

    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Requeued::Interrupted => "interrupted",
            Requeued::RateLimited => "rate_limited",
            Requeued::UpstreamUnavailable | Requeued::Probe => "upstream_unavailable",
        }
    }
}

/// Puts task `id` of `provider`, still being submitted in `claim` (its `attempts` when
/// claimed), back in the queue, to be claimed again no sooner than `not_before` (ms) when
/// given. False, with nothing changed, when it is no longer being submitted in that claim.
pub async fn requeue(
    engine: &Engine,
    id: &str,
    claim: i64,
    provider: &str,
    why: Requeued,
    not_before: Option<i64>,
) -> anyhow::Result<bool> {
    let counted = why != Requeued::Probe;
    if !tasks::requeue(engine.store(), id, claim, not_before, counted, now_ms()).await? {
        return Ok(false);
    }
    crate::metrics::get().task_requeued(provider, why.label());
    engine.queued_signal().notify_one();
    Ok(true)
}

/// Stores progress and, for pending tasks, when to poll next and why the last poll got no
/// answer (`None`: it got one).
pub async fn record_progress(
    engine: &Engine,
    id: &str,
    progress: Option<f32>,
    wake_at: Option<i64>,
    poll_trouble: Option<&str>,
) -> anyhow::Result<()> {
    tasks::record_progress(
        engine.store(),
        id,
        progress.map(stored_progress),
        wake_at,
        poll_trouble,
        now_ms(),
    )
    .await
}

/// A fraction reported in `f32` as clients read it: widened as it is, 0.15 would read
/// 0.15000000596046448.
fn stored_progress(fraction: f32) -> f64 {
    (f64::from(fraction) * 10_000.0).round() / 10_000.0
}

/// Flags a running task for cancellation, asked by `by`; its holder, on whichever host, sees
/// the flag at its next lease extension or poll.
pub async fn request_cancel(engine: &Engine, id: &str, by: CancelledBy) -> anyhow::Result<()> {
    tasks::request_cancel(engine.store(), id, by, now_ms()).await
}

/// Deletes up to `limit` tasks that ended before `ended_before` (milliseconds), with their
/// idempotency keys and webhook records, except those whose webhook is still being delivered
/// and those a client's limits still count ([`Counted`]); returns how many went.
pub(crate) async fn delete_ended(
    engine: &Engine,
    ended_before: i64,
    limit: i64,
) -> anyhow::Result<usize> {
    let created_below = task_ids_before(ended_before);
    let counted = Counted::at(now_ms());
    tasks::delete_ended(
        engine.store(),
        &created_below,
        ended_before,
        &counted,
        limit,
    )
    .await
}

/// Claims up to `limit` pending tasks of the providers loaded here whose poll is due,
/// holding each for one lease so a crash mid-poll only delays the next poll.
pub async fn claim_due_polls(engine: &Engine, limit: i64) -> anyhow::Result<Vec<Task>> {
    let providers = engine.registry().provider_ids();
    let (now, lease_end) = (now_ms(), lease_end(engine));
    tasks::claim_due_polls(engine.store(), now, lease_end, limit, &providers).await
}

/// Keeps a claimed poll's lease (the `wake_at` [`claim_due_polls`] set) one lease ahead,
/// extending it every third of a lease, so a poll that outlasts a lease (outputs stored while
/// the bucket is slow or down) is never claimed again and run twice. Returns when the claim is
/// no longer held as set (the poll recorded its next `wake_at`, or finished the task) or the
/// database cannot tell; runs until dropped otherwise.
pub(crate) async fn hold_poll_claim(engine: &Engine, task: &Task) {
    let Some(mut held_until) = task.wake_at else {
        return;
    };
    let lease = engine.config().lease();
    loop {
        tokio::time::sleep(lease / 3).await;
        let extended_to = lease_end(engine);
        match tasks::extend_poll_claim(engine.store(), &task.id, held_until, extended_to).await {
            Ok(true) => held_until = extended_to,
            Ok(false) | Err(_) => return,
        }
    }
}

/// Claims up to `limit` held tasks whose lease lapsed, for one lease, so one sweeper
/// recovers each.
pub async fn claim_lapsed(engine: &Engine, limit: i64) -> anyhow::Result<Vec<Lapsed>> {
    tasks::claim_lapsed(engine.store(), now_ms(), lease_end(engine), limit).await
}

/// Keeps the leases of every task this process holds (a worker's submit, a chat's stream:
/// the tasks it [tracks](Engine::track)) for as long as it holds them: every third of a lease,
/// one statement extends them all, and a cancel requested on another host cancels the task's
/// token here; at once when [asked](Engine::leases_due_signal) (after a lost notification).
/// Returns at shutdown: the leases then lapse and the sweeper decides, exactly as
/// after a crash.
pub(crate) async fn hold_leases(engine: Engine) {
    let lease = engine.config().lease();
    let shutdown = engine.shutdown_token().clone();
    let mut wait = lease / 3;
    let mut renewals = OutageLog::new("extending the leases of held tasks");
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = engine.leases_due_signal().notified() => {}
            () = shutdown.cancelled() => return,
        }
        wait = lease / 3;
        let held = engine.held();
        if held.is_empty() {
            continue;
        }
        let ids: Vec<&str> = held.iter().map(|(id, _)| id.as_str()).collect();
        match renewals.note(tasks::extend_leases(engine.store(), &ids, lease_end(&engine)).await) {
            Ok(cancel_requested) => held
                .iter()
                .filter(|(id, _)| cancel_requested.contains(id))
                .for_each(|(_, token)| token.cancel()),
            // Retried within a second: once the database is back, the leases are renewed
            // before the sweepers that could not reach it either judge them.
            Err(_) => wait = wait.min(Duration::from_secs(1)),
        }
    }
}

/// How often a process on SQLite reads whether another process sharing the file asked to
/// cancel a task it holds (PostgreSQL notifies the holder instead).
const CANCEL_READ_EVERY: Duration = Duration::from_millis(250);

/// Stops, within [`CANCEL_READ_EVERY`], a task this process holds whose cancel another process
/// on the same SQLite file asked for: one read each time while it holds any, none otherwise.
/// Returns at shutdown.
pub(crate) async fn follow_cancels(engine: Engine) {
    let shutdown = engine.shutdown_token().clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(CANCEL_READ_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        let held = engine.held();
        if held.is_empty() {
            continue;
        }
        let ids: Vec<&str> = held.iter().map(|(id, _)| id.as_str()).collect();
        match tasks::cancels_requested(engine.store(), &ids).await {
            Ok(requested) => held
                .iter()
                .filter(|(id, _)| requested.contains(id))
                .for_each(|(_, token)| token.cancel()),
            // The lease renewal reads them too; it says when the database is away.
            Err(error) => tracing::debug!(%error, "reading the held tasks' cancels failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stored_progress;

    #[test]
    fn progress_is_stored_as_reported_not_widened() {
        assert_eq!(stored_progress(0.15), 0.15);
        assert_eq!(stored_progress(0.6), 0.6);
        assert_eq!(stored_progress(1.0), 1.0);
    }
}
