//! Per-client limits at admission: requests per minute, tasks at once and a credit budget per
//! UTC day or month, per client and optionally per model (rows in
//! [`store::limits`](crate::store::limits)).
//!
//! Invariants:
//! - A limit is decided inside the transaction that inserts the task (the task repository
//!   calls [`enforce`], as it calls the credit reservation), after the client's limit rows are
//!   locked, from the `tasks` rows themselves; so N hosts on one database enforce one limit,
//!   and every task counts from its insert on, queued and streaming ones included.
//! - Requests per minute count tasks accepted in the last 60 seconds (a sliding window), chats
//!   included; idempotent replays and refused requests are not counted, reads are not limited.
//! - Tasks at once count the client's queued and running tasks.
//! - A budget counts the credits of the period's tasks that are charged or still reserved
//!   (a refunded task gives its share back); a task is refused when its price would take the
//!   period past the budget, so nothing is ever charged beyond it. Budgets count charged
//!   credits, which exist only when `[credits] enforce` is on.
//! - What is left after an admission (or what was left when it was refused) is returned by
//!   [`enforce`] to the insert, which [`report`]s it on the caller's own task (a grouped
//!   write runs on another's), to the [`reporting`] scope the HTTP layer turns into
//!   `x-ratelimit-*` headers.

use std::cell::Cell;

use time::{Date, OffsetDateTime, Time};

use crate::{
    engine::{NewTask, credits::to_credits},
    store::{
        Backend,
        limits::{self, ClientLimit},
        tasks,
    },
};

/// One minute, the requests window, ms.
const MINUTE_MS: i64 = 60_000;

/// What the counted tasks of one limit row add up to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Tasks accepted in the last minute.
    pub in_last_minute: i64,
    /// When the oldest of those was accepted, ms.
    pub oldest_in_last_minute: Option<i64>,
    /// Tasks queued or running.
    pub live: i64,
    /// Micro-credits charged or reserved by tasks created since the budget period began.
    pub spent_micros: i64,
}

/// What the applicable limits leave (the smallest over the rows), `None` where no limit of
/// that kind applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remaining {
    /// Requests per minute: the limit and what is left of it.
    pub requests: Option<(i64, i64)>,
    /// Tasks at once: the limit and what is left of it.
    pub tasks: Option<(i64, i64)>,
    /// The budget, micro-credits: the budget and what is left of it.
    pub credits: Option<(i64, i64)>,
    /// Seconds until a refused request could pass, when one was refused and a wait lets it.
    pub retry_after_secs: Option<u64>,
}

impl Remaining {
    fn keep_smallest(slot: &mut Option<(i64, i64)>, limit: i64, left: i64) {
        if slot.is_none_or(|(_, smallest)| left < smallest) {
            *slot = Some((limit, left));
        }
    }

    /// A request the limits let through but its balance then refused took nothing after all:
    /// gives back what [`enforce`] counted it as taking.
    pub(crate) fn untaken(&mut self, new: &NewTask) {
        self.add_back(1, 1, new.price_micros);
    }

    /// Adds `requests`, `tasks` and `micros` back to what is left (a request that took
    /// nothing after all gives back what it was counted as taking); no slot shows less than
    /// nothing or more than its limit.
    fn add_back(&mut self, requests: i64, tasks: i64, micros: i64) {
        for (slot, amount) in [
            (&mut self.requests, requests),
            (&mut self.tasks, tasks),
            (&mut self.credits, micros),
        ] {
            if let Some((limit, left)) = slot {
                *left = (*left + amount).min(*limit).max(0);
            }
        }
    }
}

/// A request refused by a limit; the message names the limit.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Limited {
    /// Which kind of limit it was.
    pub kind: LimitKind,
    /// What the client is told.
    pub message: String,
    /// Seconds until it could pass; `None` when no wait lets it (a limit of zero).
    pub retry_after_secs: Option<u64>,
}

/// The kinds of a client's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tasks at once.
    Tasks,
    /// Credits per day or month.
    Budget,
}

tokio::task_local! {
    static REPORT: Cell<Option<Remaining>>;
}

/// Runs `work` and returns, with its output, what the limits left for the last admission it
/// made (or refused); `None` when no limit applied.
pub async fn reporting<F: Future>(work: F) -> (F::Output, Option<Remaining>) {
    REPORT
        .scope(Cell::new(None), async {
            let output = work.await;
            (output, REPORT.with(Cell::get))
        })
        .await
}

/// Runs `work` on a task of its own, which finishes even if the caller is dropped, within
/// the caller's request (a task it admits records the request's id), and reports what the
/// limits left for its admission to the caller's own [`reporting`] scope.
pub async fn detached<F>(work: F) -> Result<F::Output, tokio::task::JoinError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let work = reporting(work);
    let (output, remaining) = match crate::engine::task::current_request_id() {
        Some(id) => tokio::spawn(crate::engine::task::REQUEST_ID.scope(id, work)).await?,
        None => tokio::spawn(work).await?,
    };
    if let Some(remaining) = remaining {
        report(remaining);
    }
    Ok(output)
}

/// Hands what the limits left to the current task's [`reporting`] scope, if it has one.
pub(crate) fn report(remaining: Remaining) {
    let _ = REPORT.try_with(|report| report.set(Some(remaining)));
}

/// Checks `new` against its limits inside the insert transaction `tx` (see the module docs):
/// what they leave, and whether they let it through.
pub(crate) async fn enforce(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    new: &NewTask,
    now: i64,
) -> anyhow::Result<(Remaining, Result<(), Limited>)> {
    limits::lock(tx, backend, &new.client_id).await?;
    let mut remaining = Remaining::default();
    let mut refused: Option<Limited> = None;
    for limit in &new.limits {
        let model = (limit.model != limits::ALL_MODELS)
            .then_some((new.provider.as_str(), new.request.model.as_str()));
        let period = limit
            .budget_period
            .as_deref()
            .map(|p| period_bounds(p, now));
        let budget_since = period.map_or(now, |(start, _)| start);
        let usage =
            tasks::limit_usage(tx, &new.client_id, model, now - MINUTE_MS, budget_since).await?;
        let scope = scope_words(limit);
        if let Some(rpm) = limit.requests_per_minute {
            let left = rpm - usage.in_last_minute;
            if left <= 0 {
                let oldest = usage.oldest_in_last_minute.unwrap_or(now);
                refuse(
                    &mut refused,
                    Limited {
                        kind: LimitKind::Requests,
                        message: format!("Rate limit reached: {rpm} requests per minute{scope}."),
                        // `now` was taken before the lock was, so the oldest may be newer.
                        retry_after_secs: (rpm > 0)
                            .then(|| ceil_secs((oldest + MINUTE_MS - now).min(MINUTE_MS))),
                    },
                );
            }
            Remaining::keep_smallest(&mut remaining.requests, rpm, left - 1);
        }
        if let Some(most) = limit.concurrent_tasks {
            let left = most - usage.live;
            if left <= 0 {
                refuse(
                    &mut refused,
                    Limited {
                        kind: LimitKind::Tasks,
                        message: format!(
                            "Concurrency limit reached: {most} {} at once{scope}.",
                            if most == 1 { "task" } else { "tasks" }
                        ),
                        retry_after_secs: (most > 0).then_some(1),
                    },
                );
            }
            Remaining::keep_smallest(&mut remaining.tasks, most, left - 1);
        }
        if let (Some(budget), Some((_, period_end))) = (limit.budget_micros, period) {
            let left = budget - usage.spent_micros;
            if new.price_micros > 0 && new.price_micros > left {
                refuse(
                    &mut refused,
                    Limited {
                        kind: LimitKind::Budget,
                        message: format!(
                            "Budget reached: {} credits per {}{scope}.",
                            to_credits(budget),
                            limit.budget_period.as_deref().unwrap_or("day"),
                        ),
                        retry_after_secs: (budget >= new.price_micros)
                            .then(|| ceil_secs(period_end - now)),
                    },
                );
            }
            Remaining::keep_smallest(&mut remaining.credits, budget, left - new.price_micros);
        }
    }
    // A refused request took nothing: what was left before it is still left.
    let took = |amount: i64| if refused.is_some() { amount } else { 0 };
    remaining.add_back(took(1), took(1), took(new.price_micros));
    remaining.retry_after_secs = refused
        .as_ref()
        .and_then(|refusal| refusal.retry_after_secs);
    Ok((remaining, refused.map_or(Ok(()), Err)))
}

/// Keeps, of the limits that refuse a request, the one that lasts longest (one no wait passes
/// longest of all): retrying after a shorter one would only be refused again by the longer.
fn refuse(refused: &mut Option<Limited>, limited: Limited) {
    let lasts = |limited: &Limited| limited.retry_after_secs.unwrap_or(u64::MAX);
    if refused
        .as_ref()
        .is_none_or(|kept| lasts(&limited) > lasts(kept))
    {
        *refused = Some(limited);
    }
}

/// " for model m" for a per-model row, nothing for a client-wide one.
fn scope_words(limit: &ClientLimit) -> String {
    if limit.model == limits::ALL_MODELS {
        String::new()
    } else {
        format!(" for model {}", limit.model)
    }
}

fn ceil_secs(ms: i64) -> u64 {
    (ms.max(1) as u64).div_ceil(1000)
}

/// What a task created at or after each of these (ms) may still count for: the last minute's
/// requests, and the budget of the UTC day and of the UTC month holding `now`. Deleting such a
/// task would give its client back what it spent.
pub(crate) struct Counted {
    /// The last minute's start.
    pub minute: i64,
    /// Today's start, for daily budgets.
    pub day: i64,
    /// This month's start, for monthly budgets.
    pub month: i64,
}

impl Counted {
    /// The windows at `now`.
    pub(crate) fn at(now: i64) -> Self {
        Self {
            minute: now - MINUTE_MS,
            day: period_bounds("day", now).0,
            month: period_bounds("month", now).0,
        }
    }
}

/// Start and end (ms) of the UTC `day` or `month` (anything else reads as a day) holding
/// `now`.
fn period_bounds(period: &str, now: i64) -> (i64, i64) {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let day = at.date();
    let (start, end) = if period == "month" {
        let first = day.replace_day(1).expect("every month has a first day");
        let next = first
            .checked_add(time::Duration::days(31))
            .and_then(|later| later.replace_day(1).ok())
            .unwrap_or(first);
        (first, next)
    } else {
        (day, day.next_day().unwrap_or(day))
    };
    (ms_of(start), ms_of(end))
}

fn ms_of(date: Date) -> i64 {
    (date
        .with_time(Time::MIDNIGHT)
        .assume_utc()
        .unix_timestamp_nanos()
        / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_days_and_months() {
        // 2026-12-04T01:02:03Z.
        let now = 1_796_346_123_000;
        let (start, end) = period_bounds("day", now);
        assert_eq!((start, end - start), (1_796_342_400_000, 86_400_000));
        let (start, end) = period_bounds("month", now);
        // 2026-12-01 to 2027-01-01: 31 days.
        assert_eq!(start, 1_796_342_400_000 - 3 * 86_400_000);
        assert_eq!(end - start, 31 * 86_400_000);
    }

    #[test]
    fn the_longest_refusal_is_the_one_told() {
        let limited = |message: &str, retry_after_secs| Limited {
            kind: LimitKind::Requests,
            message: message.into(),
            retry_after_secs,
        };
        let mut refused = None;
        refuse(&mut refused, limited("rate", Some(60)));
        refuse(&mut refused, limited("budget", Some(9_600)));
        refuse(&mut refused, limited("tasks", Some(1)));
        let told = refused.clone().unwrap();
        assert_eq!(
            (told.message.as_str(), told.retry_after_secs),
            ("budget", Some(9_600))
        );
        // A limit of zero: no wait lets the request through, so no Retry-After is told.
        refuse(&mut refused, limited("none a minute", None));
        refuse(&mut refused, limited("rate", Some(60)));
        assert_eq!(refused.unwrap().retry_after_secs, None);
    }
}
