//! One warning per outage, not one per retry.
//!
//! The engine's background loops (claiming, polling, sweeping, renewing leases, following the
//! breakers and the fleet) retry a failing step every few hundred milliseconds; while the
//! database is away, a warning per retry and per loop buried the log (about 190 lines for a
//! few seconds' outage on one host). An [`OutageLog`] warns at a step's first failure, then at
//! most once every [`REMIND_EVERY`] with the failures counted meanwhile, and says once, at
//! `info`, that the step works again and how long it failed. The loops' retry timing is theirs;
//! only what they log goes through here.

use std::{
    fmt::Display,
    time::{Duration, Instant},
};

/// How often a step that keeps failing is mentioned again.
pub const REMIND_EVERY: Duration = Duration::from_secs(30);

/// What one loop has logged of its step's current outage.
pub struct OutageLog {
    what: String,
    outage: Option<Outage>,
}

struct Outage {
    since: Instant,
    failures: u64,
    reminded: Instant,
}

impl OutageLog {
    /// The log of a step named by `what` ("claiming a task"), logged as "{what} failed".
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            outage: None,
        }
    }

    /// Notes a step's `result` as [`failed`](Self::failed) or [`worked`](Self::worked), and
    /// gives it back.
    pub fn note<T, E: Display>(&mut self, result: Result<T, E>) -> Result<T, E> {
        match &result {
            Ok(_) => self.worked(),
            Err(error) => self.failed(error),
        }
        result
    }

    /// The step failed with `error`: a warning when this starts an outage or a reminder is
    /// due, nothing otherwise.
    pub fn failed(&mut self, error: &dyn Display) {
        match self.count_failure(Instant::now()) {
            Some(1) => tracing::warn!(%error, "{} failed", self.what),
            Some(failures) => tracing::warn!(
                %error,
                failures,
                "{} still failing after {:.0?}",
                self.what,
                self.failing_for(),
            ),
            None => {}
        }
    }

    /// The step worked: the outage, if there was one, ends and is said to.
    pub fn worked(&mut self) {
        if let Some(outage) = self.outage.take() {
            tracing::info!(
                failures = outage.failures,
                "{} works again after failing for {:.1?}",
                self.what,
                outage.since.elapsed(),
            );
        }
    }

    /// Counts a failure at `now`; the failures so far when they are to be logged.
    fn count_failure(&mut self, now: Instant) -> Option<u64> {
        let Some(outage) = &mut self.outage else {
            self.outage = Some(Outage {
                since: now,
                failures: 1,
                reminded: now,
            });
            return Some(1);
        };
        outage.failures += 1;
        if now.duration_since(outage.reminded) < REMIND_EVERY {
            return None;
        }
        outage.reminded = now;
        Some(outage.failures)
    }

    fn failing_for(&self) -> Duration {
        self.outage
            .as_ref()
            .map_or(Duration::ZERO, |outage| outage.since.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_said_once_then_reminded_and_a_new_one_said_again() {
        let mut log = OutageLog::new("claiming a task");
        let start = Instant::now();
        assert_eq!(
            log.count_failure(start),
            Some(1),
            "the first failure is said"
        );
        let retries = (1..300).map(|i| start + Duration::from_millis(100 * i));
        let said: Vec<u64> = retries.filter_map(|at| log.count_failure(at)).collect();
        assert!(
            said.is_empty(),
            "retries within a reminder are quiet: {said:?}"
        );
        let later = start + REMIND_EVERY + Duration::from_millis(50);
        assert_eq!(
            log.count_failure(later),
            Some(301),
            "the reminder counts them"
        );
        assert_eq!(log.count_failure(later + Duration::from_secs(1)), None);
        log.worked();
        assert!(log.outage.is_none());
        let again = later + Duration::from_secs(2);
        assert_eq!(
            log.count_failure(again),
            Some(1),
            "a new outage is said at once"
        );
    }
}
