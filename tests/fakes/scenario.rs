//! What a fake plays: the [`Scenario`] a prompt asks for, and the vendor-neutral task
//! lifecycle ([`Tasks`]) that scenarios drive: how many polls a task reports running, whether
//! it then succeeds or fails moderation, whether easel cancelled it, and, for capacity tests,
//! how long every task takes at least and how many were in flight at once.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The story a fake plays for one request, chosen by the prompt's `scenario:<name>` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// The task succeeds on the first poll (a synchronous call answers at once).
    Success,
    /// The task reports running on the first poll and succeeds on the second.
    PendingThenSuccess,
    /// The task never leaves the running state (for cancel).
    StaysPending,
    /// Submit is refused: the key is wrong (401-class).
    AuthRejected,
    /// Submit is refused: rate limit or quota (429-class) with `Retry-After: 7`.
    RateLimited,
    /// Submit is refused by moderation.
    ContentRejected,
    /// Submit is refused: a bad parameter (400-class).
    BadParameter,
    /// Submit fails with a server error (5xx).
    UpstreamDown,
    /// Submit is accepted; the task then fails because the output was moderated.
    FailsModeration,
}

impl Scenario {
    /// Every scenario, in a stable order.
    pub const ALL: [Scenario; 9] = [
        Scenario::Success,
        Scenario::PendingThenSuccess,
        Scenario::StaysPending,
        Scenario::AuthRejected,
        Scenario::RateLimited,
        Scenario::ContentRejected,
        Scenario::BadParameter,
        Scenario::UpstreamDown,
        Scenario::FailsModeration,
    ];

    /// The errors a submit can be refused with.
    pub const SUBMIT_ERRORS: [Scenario; 5] = [
        Scenario::AuthRejected,
        Scenario::RateLimited,
        Scenario::ContentRejected,
        Scenario::BadParameter,
        Scenario::UpstreamDown,
    ];

    /// The token that selects this scenario in a prompt.
    pub fn token(self) -> &'static str {
        match self {
            Scenario::Success => "scenario:success",
            Scenario::PendingThenSuccess => "scenario:pending-then-success",
            Scenario::StaysPending => "scenario:stays-pending",
            Scenario::AuthRejected => "scenario:auth-rejected",
            Scenario::RateLimited => "scenario:rate-limited",
            Scenario::ContentRejected => "scenario:content-rejected",
            Scenario::BadParameter => "scenario:bad-parameter",
            Scenario::UpstreamDown => "scenario:upstream-down",
            Scenario::FailsModeration => "scenario:fails-moderation",
        }
    }

    /// The scenario a prompt asks for; a prompt without a token plays [`Scenario::Success`].
    pub fn from_text(text: &str) -> Scenario {
        Scenario::ALL
            .into_iter()
            .find(|s| text.split_whitespace().any(|word| word == s.token()))
            .unwrap_or(Scenario::Success)
    }

    /// Polls answered "running" before the task ends; `None`: it never ends.
    fn running_polls(self) -> Option<u32> {
        match self {
            Scenario::PendingThenSuccess => Some(1),
            Scenario::StaysPending => None,
            _ => Some(0),
        }
    }

    /// The error class a submit must be refused with, if this scenario refuses it.
    pub fn submit_error(self) -> Option<Scenario> {
        Scenario::SUBMIT_ERRORS.contains(&self).then_some(self)
    }
}

/// The `Retry-After` every rate-limited answer carries, seconds.
pub const RETRY_AFTER_SECS: u64 = 7;
/// What a rate-limited job's error says when the plugin passed `Retry-After` on.
pub const RETRY_AFTER_PASSED_ON: &str = "(retry after 7s)";

/// Where a task stands when it is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Still queued or generating.
    Running,
    /// Done; the result files are ready.
    Succeeded,
    /// Ended by moderation of the output.
    FailedModeration,
}

/// A task the fake accepted.
#[derive(Debug, Clone)]
struct Task {
    scenario: Scenario,
    polls: u32,
    cancelled: bool,
    accepted: Instant,
    /// Reported finished (or cancelled): no longer in flight.
    ended: bool,
}

/// The vendor-neutral task lifecycle: ids, scenarios, poll counts, cancellation, and the
/// tasks in flight: accepted and not yet reported finished or cancelled.
#[derive(Debug, Default)]
pub struct Tasks {
    next: Mutex<u32>,
    tasks: Mutex<HashMap<String, Task>>,
    /// Every task reports running until it is this old.
    slow: Mutex<Duration>,
    /// In flight now, and the most ever at once.
    in_flight: Mutex<(usize, usize)>,
}

impl Tasks {
    /// Accepts a task playing `scenario`; returns its id (`<prefix>-<n>`).
    pub fn create(&self, prefix: &str, scenario: Scenario) -> String {
        let mut next = self.next.lock().unwrap();
        *next += 1;
        let id = format!("{prefix}-{next}");
        self.tasks.lock().unwrap().insert(
            id.clone(),
            Task {
                scenario,
                polls: 0,
                cancelled: false,
                accepted: Instant::now(),
                ended: false,
            },
        );
        let mut in_flight = self.in_flight.lock().unwrap();
        in_flight.0 += 1;
        in_flight.1 = in_flight.1.max(in_flight.0);
        id
    }

    /// Makes every task report running until it is at least `duration` old: a slow vendor.
    pub fn take_at_least(&self, duration: Duration) {
        *self.slow.lock().unwrap() = duration;
    }

    /// The most tasks that were ever in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().1
    }

    /// Counts `task` out of flight, once.
    fn end(&self, task: &mut Task) {
        if !task.ended {
            task.ended = true;
            self.in_flight.lock().unwrap().0 -= 1;
        }
    }

    /// Counts a poll of `id` and says where it stands; `None` for an unknown id.
    pub fn poll(&self, id: &str) -> Option<Phase> {
        let mut tasks = self.tasks.lock().unwrap();
        let task = tasks.get_mut(id)?;
        task.polls += 1;
        let running = match task.scenario.running_polls() {
            None => true,
            Some(n) => task.polls <= n,
        } || task.accepted.elapsed() < *self.slow.lock().unwrap();
        if !running {
            self.end(task);
        }
        Some(if running {
            Phase::Running
        } else if task.scenario == Scenario::FailsModeration {
            Phase::FailedModeration
        } else {
            Phase::Succeeded
        })
    }

    /// Marks `id` cancelled; false for an unknown id.
    pub fn cancel(&self, id: &str) -> bool {
        match self.tasks.lock().unwrap().get_mut(id) {
            Some(task) => {
                task.cancelled = true;
                self.end(task);
                true
            }
            None => false,
        }
    }

    /// The scenario `id` plays.
    pub fn scenario(&self, id: &str) -> Option<Scenario> {
        self.tasks.lock().unwrap().get(id).map(|t| t.scenario)
    }

    /// How often `id` was polled.
    pub fn polls(&self, id: &str) -> u32 {
        self.tasks.lock().unwrap().get(id).map_or(0, |t| t.polls)
    }

    /// Whether `id` was cancelled.
    pub fn was_cancelled(&self, id: &str) -> bool {
        self.tasks
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|t| t.cancelled)
    }

    /// The id of a task playing `scenario`.
    pub fn id_for(&self, scenario: Scenario) -> Option<String> {
        self.id_for_kind(scenario, "")
    }

    /// The id of the task playing `scenario` whose id starts with `prefix` (each test
    /// submits one task per scenario and kind).
    pub fn id_for_kind(&self, scenario: Scenario, prefix: &str) -> Option<String> {
        let tasks = self.tasks.lock().unwrap();
        tasks
            .iter()
            .find(|(id, t)| t.scenario == scenario && id.starts_with(prefix))
            .map(|(id, _)| id.clone())
    }
}
