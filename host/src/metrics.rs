//! The process's Prometheus metrics: one registry, every family easel exposes at `/metrics`
//! (the `prometheus` crate's classic text format).
//!
//! Invariants:
//! - Every family is defined here, once, with its labels; the code that observes something
//!   calls one method of [`Metrics`] and never builds names or labels itself.
//! - Counters and histograms count what this process did since it started (Prometheus sums
//!   hosts); the queue and breaker gauges are read from the database at scrape time, so
//!   every host shows the whole queue and the fleet's breakers (or none, with
//!   `easel_database_up` 0, when the database cannot be read), and the in-flight gauge from
//!   this process's own tracking at scrape time.
//! - Labels are bounded: HTTP routes are the matched route templates (never raw paths),
//!   models and providers are the registry's, trap kinds a short fixed list.

use std::{
    cell::Cell,
    sync::LazyLock,
    time::{Duration, Instant},
};

use prometheus::{
    Counter, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};

/// Every family; see [`get`].
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    tasks_created: IntCounterVec,
    tasks_finished: IntCounterVec,
    tasks_requeued: IntCounterVec,
    tasks_in_flight: IntGauge,
    database_up: IntGauge,
    queue_depth: IntGaugeVec,
    queue_oldest: GaugeVec,
    breaker_open: IntGaugeVec,
    breaker_failures: IntGaugeVec,
    provider_calls: HistogramVec,
    plugin_traps: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    credits_charged: Counter,
    credits_refunded: Counter,
    diffusion_step: Histogram,
}

/// Latency buckets, seconds: 5 ms to 10 minutes (generation calls are long).
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(SECONDS_BUCKETS.to_vec());
    register(
        registry,
        HistogramVec::new(opts, labels).expect("valid metric"),
    )
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let metrics = Self {
            http_requests: counter_vec(
                r,
                "easel_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
                &["route", "method", "status"],
            ),
            http_duration: histogram_vec(
                r,
                "easel_http_request_duration_seconds",
                "Time to answer an HTTP request (to the response head), by route, method and status.",
                &["route", "method", "status"],
            ),
            tasks_created: counter_vec(
                r,
                "easel_tasks_created_total",
                "Tasks accepted, by provider, model and capability.",
                &["provider", "model", "capability"],
            ),
            tasks_finished: counter_vec(
                r,
                "easel_tasks_finished_total",
                "Tasks that reached a terminal status here, by provider, model, capability and status.",
                &["provider", "model", "capability", "status"],
            ),
            tasks_requeued: counter_vec(
                r,
                "easel_tasks_requeued_total",
                "Tasks put back in the queue here, by provider and reason (interrupted, rate_limited, upstream_unavailable).",
                &["provider", "reason"],
            ),
            tasks_in_flight: register(
                r,
                IntGauge::new(
                    "easel_tasks_in_flight",
                    "Tasks this process works on now: submits with their vendor and chats being answered; read at scrape time.",
                )
                .expect("valid metric"),
            ),
            database_up: register(
                r,
                IntGauge::new(
                    "easel_database_up",
                    "1 when this scrape read the queue and breakers from the database, 0 when it could not (those gauges are then left out).",
                )
                .expect("valid metric"),
            ),
            queue_depth: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "easel_queue_depth",
                        "Tasks waiting in the queue (all hosts), by provider; read at scrape time.",
                    ),
                    &["provider"],
                )
                .expect("valid metric"),
            ),
            queue_oldest: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "easel_queue_oldest_age_seconds",
                        "Age of the oldest queued task (all hosts), by provider; 0 when none waits.",
                    ),
                    &["provider"],
                )
                .expect("valid metric"),
            ),
            breaker_open: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "easel_provider_breaker_open",
                        "1 while a provider's breaker is open (its queued tasks wait), else 0; read at scrape time.",
                    ),
                    &["provider"],
                )
                .expect("valid metric"),
            ),
            breaker_failures: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "easel_provider_submit_failures_in_a_row",
                        "A provider's latest submits that failed unavailable in a row (all hosts); read at scrape time.",
                    ),
                    &["provider"],
                )
                .expect("valid metric"),
            ),
            provider_calls: histogram_vec(
                r,
                "easel_provider_call_duration_seconds",
                "Provider calls (submit, poll, chat, cancel), by provider, call and outcome (ok or the error kind).",
                &["provider", "call", "outcome"],
            ),
            plugin_traps: counter_vec(
                r,
                "easel_plugin_traps_total",
                "Plugin calls that trapped, by kind (cpu_deadline, memory, unreachable, other).",
                &["kind"],
            ),
            webhook_deliveries: counter_vec(
                r,
                "easel_webhook_deliveries_total",
                "Webhook delivery attempts, by outcome (delivered, failed, gave_up).",
                &["outcome"],
            ),
            credits_charged: register(
                r,
                Counter::new(
                    "easel_credits_charged_total",
                    "Credits reserved by tasks accepted here (kept unless refunded).",
                )
                .expect("valid metric"),
            ),
            credits_refunded: register(
                r,
                Counter::new(
                    "easel_credits_refunded_total",
                    "Credits given back by tasks that ended here without succeeding.",
                )
                .expect("valid metric"),
            ),
            diffusion_step: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "easel_diffusion_step_seconds",
                        "Seconds per denoising step of the native (local) diffusion model.",
                    )
                    .buckets(SECONDS_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            registry,
        };
        // Series whose labels are known before their first event start at 0, so that a rate
        // or an alert over them reads 0 rather than nothing.
        for kind in TRAP_KINDS {
            metrics.plugin_traps.with_label_values(&[kind]);
        }
        for outcome in Delivery::ALL {
            metrics
                .webhook_deliveries
                .with_label_values(&[outcome.label()]);
        }
        metrics
    }

    /// One answered HTTP request.
    pub fn http_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        // Any token is a method to HTTP; only the standard ones get a series of their own, so
        // a caller cannot grow the metrics without bound.
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "other",
        };
        let status = status.to_string();
        let labels = [route, method, status.as_str()];
        self.http_requests.with_label_values(&labels).inc();
        self.http_duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
    }

    /// A task accepted.
    pub fn task_created(&self, provider: &str, model: &str, capability: &str) {
        self.tasks_created
            .with_label_values(&[provider, model, capability])
            .inc();
    }

    /// A task that reached `status`.
    pub fn task_finished(&self, provider: &str, model: &str, capability: &str, status: &str) {
        self.tasks_finished
            .with_label_values(&[provider, model, capability, status])
            .inc();
    }

    /// A provider this process serves: its requeue series start at 0, so that an alert on
    /// requeues sees the first one (a series born at 1 has no increase to show).
    pub fn provider_served(&self, provider: &str) {
        for why in crate::engine::lifecycle::Requeued::ALL {
            self.tasks_requeued
                .with_label_values(&[provider, why.label()]);
        }
    }

    /// A task of `provider` put back in the queue, for `reason`.
    pub fn task_requeued(&self, provider: &str, reason: &str) {
        self.tasks_requeued
            .with_label_values(&[provider, reason])
            .inc();
    }

    /// One provider call that took `took` and ended as `outcome`; a plugin trap among the
    /// errors is counted by kind too.
    pub fn provider_call<T>(
        &self,
        provider: &str,
        call: &str,
        took: Duration,
        outcome: &Result<T, easel_provider::ProviderError>,
    ) {
        use easel_provider::ProviderError as E;
        let label = match outcome {
            Ok(_) => "ok",
            Err(E::InvalidRequest(_)) => "invalid_request",
            Err(E::ContentRejected(_)) => "content_rejected",
            Err(E::RateLimited { .. }) => "rate_limited",
            Err(E::Unauthorized(_)) => "unauthorized",
            Err(E::UpstreamUnavailable(_)) => "upstream_unavailable",
            Err(E::UpstreamUnreached(_)) => "upstream_unreached",
            Err(E::Cancelled) => "cancelled",
            Err(E::Internal(message)) => {
                if let Some(kind) = trap_kind(message) {
                    self.plugin_traps.with_label_values(&[kind]).inc();
                }
                "internal"
            }
        };
        self.provider_calls
            .with_label_values(&[provider, call, label])
            .observe(took.as_secs_f64());
    }

    /// One webhook delivery attempt, as it ended.
    pub fn webhook_delivery(&self, outcome: Delivery) {
        self.webhook_deliveries
            .with_label_values(&[outcome.label()])
            .inc();
    }

    /// Micro-credits reserved by an accepted task.
    pub fn credits_charged(&self, micros: i64) {
        self.credits_charged
            .inc_by(crate::engine::credits::to_credits(micros.max(0)));
    }

    /// Micro-credits a task's refund gave back.
    pub fn credits_refunded(&self, micros: i64) {
        self.credits_refunded
            .inc_by(crate::engine::credits::to_credits(micros.max(0)));
    }

    /// One denoising step of the local model.
    pub fn diffusion_step(&self, took: Duration) {
        self.diffusion_step.observe(took.as_secs_f64());
    }

    /// Sets the gauge of the tasks this process holds now.
    pub fn set_in_flight(&self, tasks: usize) {
        self.tasks_in_flight.set(tasks as i64);
    }

    /// The database could not be read at this scrape: its gauges (queue, breakers) are left
    /// out rather than shown stale, and `easel_database_up` is 0.
    pub fn set_database_unread(&self) {
        self.database_up.set(0);
        self.queue_depth.reset();
        self.queue_oldest.reset();
        self.breaker_open.reset();
        self.breaker_failures.reset();
    }

    /// Sets the queue gauges from the database's view at `now` (ms): `queued` holds
    /// `(provider, tasks, oldest created_at)`; the `providers` with nothing queued show 0.
    pub fn set_queue(&self, providers: &[String], queued: &[(String, i64, i64)], now: i64) {
        self.database_up.set(1);
        self.queue_depth.reset();
        self.queue_oldest.reset();
        for provider in providers {
            self.queue_depth
                .with_label_values(&[provider.as_str()])
                .set(0);
            self.queue_oldest
                .with_label_values(&[provider.as_str()])
                .set(0.0);
        }
        for (provider, tasks, oldest) in queued {
            self.queue_depth
                .with_label_values(&[provider.as_str()])
                .set(*tasks);
            self.queue_oldest
                .with_label_values(&[provider.as_str()])
                .set((now - oldest).max(0) as f64 / 1000.0);
        }
    }

    /// Sets the breaker gauges from the database's view at `now` (ms): `rows` are the
    /// breakers with failures; the `providers` without one show 0.
    pub fn set_breakers(
        &self,
        providers: &[String],
        rows: &[crate::store::breakers::BreakerRow],
        now: i64,
    ) {
        self.breaker_open.reset();
        self.breaker_failures.reset();
        for provider in providers {
            self.breaker_open
                .with_label_values(&[provider.as_str()])
                .set(0);
            self.breaker_failures
                .with_label_values(&[provider.as_str()])
                .set(0);
        }
        for row in rows {
            let provider = [row.provider.as_str()];
            self.breaker_open
                .with_label_values(&provider)
                .set(i64::from(row.is_open(now)));
            self.breaker_failures
                .with_label_values(&provider)
                .set(row.failures);
        }
    }

    /// The exposition: every family in Prometheus's text format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// The kind of a plugin trap, from the error the runtime made of it (`plugin trapped: …`),
/// or `None` for any other failure.
fn trap_kind(message: &str) -> Option<&'static str> {
    let reason = message.strip_prefix("plugin trapped: ")?;
    let [cpu_deadline, memory, unreachable, other] = TRAP_KINDS;
    Some(if reason.contains("CPU deadline") {
        cpu_deadline
    } else if reason.contains("memory limit exceeded") {
        memory
    } else if reason.contains("unreachable") {
        unreachable
    } else {
        other
    })
}

/// The `kind` label of `easel_plugin_traps_total`.
const TRAP_KINDS: [&str; 4] = ["cpu_deadline", "memory", "unreachable", "other"];

/// How one webhook delivery attempt ended: the `outcome` label of
/// `easel_webhook_deliveries_total`.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    /// A receiver accepted it.
    Delivered,
    /// It failed and will be tried again.
    Failed,
    /// It failed and its attempts ran out.
    GaveUp,
}

impl Delivery {
    const ALL: [Delivery; 3] = [Delivery::Delivered, Delivery::Failed, Delivery::GaveUp];

    fn label(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
            Delivery::GaveUp => "gave_up",
        }
    }
}

/// Times a provider call and records it (see [`Metrics::provider_call`]); inside
/// [`timing_upstream`], the time counts as the upstream's.
pub async fn measure_call<T>(
    provider: &str,
    call: &str,
    work: impl Future<Output = Result<T, easel_provider::ProviderError>>,
) -> Result<T, easel_provider::ProviderError> {
    let started = Instant::now();
    let outcome = work.await;
    let took = started.elapsed();
    get().provider_call(provider, call, took, &outcome);
    add_upstream(took);
    outcome
}

tokio::task_local! {
    static UPSTREAM: Cell<Option<Duration>>;
}

/// Runs `work` and returns, with its output, the time it spent waiting for providers (what
/// [`measure_call`] and [`add_upstream`] counted in it), or `None` when it called none: the
/// `upstream` part of a response's `Server-Timing`.
pub async fn timing_upstream<F: Future>(work: F) -> (F::Output, Option<Duration>) {
    UPSTREAM
        .scope(Cell::new(None), async {
            let output = work.await;
            (output, UPSTREAM.with(Cell::get))
        })
        .await
}

/// Counts `took` as time spent upstream by the request being answered, if any (a provider
/// call made elsewhere on its behalf: a worker's run, a chat's relay).
pub fn add_upstream(took: Duration) {
    let _ =
        UPSTREAM.try_with(|upstream| upstream.set(Some(upstream.get().unwrap_or_default() + took)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traps_are_told_apart_from_other_failures() {
        assert_eq!(
            trap_kind("plugin trapped: exceeded its CPU deadline of 300ms"),
            Some("cpu_deadline")
        );
        assert_eq!(
            trap_kind("plugin trapped: wasm trap: wasm `unreachable` instruction executed"),
            Some("unreachable")
        );
        // A guest's own stray access is its bug, not the operator's memory limit.
        assert_eq!(
            trap_kind("plugin trapped: wasm trap: out of bounds memory access"),
            Some("other")
        );
        assert_eq!(
            trap_kind(
                "plugin trapped: memory limit exceeded: the plugin's memories would hold 2 bytes"
            ),
            Some("memory")
        );
        assert_eq!(trap_kind("upstream said no"), None);
    }

    #[test]
    fn methods_outside_the_standard_ones_share_one_series() {
        let metrics = Metrics::new();
        for method in ["GET", "M1", "M2", "BREW"] {
            metrics.http_request("/x", method, 405, Duration::from_millis(1));
        }
        let other = metrics
            .http_requests
            .with_label_values(&["/x", "other", "405"]);
        assert_eq!(other.get(), 3);
        assert_eq!(
            metrics
                .http_requests
                .with_label_values(&["/x", "GET", "405"])
                .get(),
            1
        );
    }
}
