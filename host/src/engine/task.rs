//! The task record and its vocabulary: statuses and phases (capabilities are
//! [`easel_provider::Capability`]).
//!
//! A task moves `queued → running → succeeded | failed | cancelled`, or `queued → expired`
//! or `queued → cancelled`. Terminal statuses never change again. While `running`, `phase`
//! says what the engine is waiting for: `submitting` (a worker holds it until `wake_at`, its
//! lease), `streaming` (the process relaying a chat holds it until `wake_at`) or `pending`
//! (the provider holds it; the poller looks again at `wake_at`).
//!
//! [`Status`] and [`Phase`] are stored as their names in TEXT columns and decoded into the
//! enums as rows are read, so nothing past the database compares status strings.

use serde::{Deserialize, Serialize};
use sqlx::{Any, Database, FromRow, encode::IsNull, error::BoxDynError};

use crate::engine::provider::GenerationRequest;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker or the provider is on it.
    Running,
    /// Outputs are in the asset store.
    Succeeded,
    /// The provider or the engine gave up; `error` says why.
    Failed,
    /// The client cancelled it.
    Cancelled,
    /// It waited in the queue longer than the configured time.
    Expired,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 6] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
        Status::Expired,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    /// Parses a stored or client-given name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True once the task can no longer change.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a running task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A worker is in the provider's `submit`, holding the task until `wake_at`.
    Submitting,
    /// The provider holds a handle; the poller asks again at `wake_at`.
    Pending,
    /// A chat whose answer the accepting process relays, holding the task until `wake_at`.
    Streaming,
}

impl Phase {
    /// Every phase.
    pub const ALL: [Phase; 3] = [Phase::Submitting, Phase::Pending, Phase::Streaming];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Submitting => "submitting",
            Phase::Pending => "pending",
            Phase::Streaming => "streaming",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// Stores an enum with `as_str`/`parse` as its name in a TEXT column, on either backend; a
/// row holding a name the enum lacks fails to decode rather than being guessed at.
macro_rules! stored_by_name {
    ($kind:ident) => {
        impl sqlx::Type<Any> for $kind {
            fn type_info() -> <Any as Database>::TypeInfo {
                <str as sqlx::Type<Any>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, Any> for $kind {
            fn encode_by_ref(
                &self,
                buf: &mut <Any as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                <&str as sqlx::Encode<'q, Any>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, Any> for $kind {
            fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let name = <String as sqlx::Decode<'r, Any>>::decode(value)?;
                Self::parse(&name).ok_or_else(|| {
                    format!("unknown task {} {name:?}", stringify!($kind).to_lowercase()).into()
                })
            }
        }
    };
}

stored_by_name!(Status);
stored_by_name!(Phase);

/// A task as stored.
#[derive(Debug, Clone, FromRow)]
pub struct Task {
    /// `job_…`.
    pub id: String,
    /// Owner; other clients get 404.
    pub client_id: String,
    /// The API dialect that created it, which also renders it (`jobs`, `pixel`, `llmage`, `sd`).
    pub api: String,
    /// Engine capability.
    pub capability: String,
    /// Provider id.
    pub provider: String,
    /// Model key inside the provider.
    pub model: String,
    /// The normalized request, JSON.
    pub request: String,
    /// Where it is in its life.
    pub status: Status,
    /// What it waits for while running.
    pub phase: Option<Phase>,
    /// 0.0..=1.0.
    pub progress: f64,
    /// The provider's handle while pending.
    pub pending_handle: Option<String>,
    /// Lease end (submitting) or next poll (pending), ms.
    pub wake_at: Option<i64>,
    /// Who asked to cancel the running task: 0 nobody, else [`CancelledBy::flag`].
    pub cancel_requested: i64,
    /// How many times a worker took it.
    pub attempts: i64,
    /// JSON array of asset ids (or text outputs as `{"text": …}`).
    pub outputs: String,
    /// Why it failed.
    pub error: Option<String>,
    /// JSON usage object.
    pub usage: Option<String>,
    /// Where to announce the terminal state.
    pub webhook_url: Option<String>,
    /// Dialect-specific fields the creating API needs to render it, JSON; and, where that API
    /// promised an image format the model does not produce itself, `image_format` (see
    /// [`outputs`](super::outputs)).
    pub extra: String,
    /// ms.
    pub created_at: i64,
    /// ms.
    pub updated_at: i64,
    /// ms.
    pub started_at: Option<i64>,
    /// ms.
    pub finished_at: Option<i64>,
    /// Micro-credits taken from the client's balance at submit; kept on success, refunded
    /// otherwise.
    pub reserved_micros: i64,
    /// The request that created it (`req_…`), when one did.
    pub request_id: Option<String>,
    /// Claims take higher first (then older); 0 unless the request or the client's default
    /// set it.
    pub priority: i64,
    /// The worker (`wrk_…`) whose claim it was last taken under.
    pub worker_id: Option<String>,
    /// Pending at its vendor: why the last poll got no answer (the vendor down, or answering
    /// what the plugin cannot read); cleared by the next answer.
    pub poll_trouble: Option<String>,
    /// Not stored: why a queued task is not being taken, as the engine saw it when it read
    /// the task (`waiting for a worker that serves <provider>`, its provider's breaker open,
    /// or when a submit its vendor refused for now is tried again), or why the last poll of a
    /// pending task got no answer.
    #[sqlx(skip)]
    pub notice: Option<String>,
}

tokio::task_local! {
    /// The id of the HTTP request being answered (`req_…`), set around each request by the
    /// API layer; a task created while answering it records it.
    pub static REQUEST_ID: String;
}

/// The id of the request being answered, if this runs inside one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The id an error answer quotes: the request's own (its `x-request-id` and log lines'), or a
/// new one for an answer made outside any request.
pub fn request_id_for_answer() -> String {
    current_request_id().unwrap_or_else(|| new_id("req"))
}

impl Task {
    /// The reservation in the decimal credits the APIs show.
    pub fn reserved_credits(&self) -> f64 {
        crate::engine::credits::to_credits(self.reserved_micros)
    }

    /// The normalized request.
    pub fn generation_request(&self) -> anyhow::Result<GenerationRequest> {
        Ok(serde_json::from_str(&self.request)?)
    }

    /// Output asset ids.
    pub fn output_asset_ids(&self) -> Vec<String> {
        self.outputs_json()
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Outputs as stored: asset id strings, or `{"text": …}` objects for chat.
    pub fn outputs_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.outputs).unwrap_or_else(|_| serde_json::json!([]))
    }

    /// Usage, parsed.
    pub fn usage_json(&self) -> Option<serde_json::Value> {
        self.usage
            .as_deref()
            .and_then(|u| serde_json::from_str(u).ok())
    }
}

/// The priorities a request or a client's default may set (0 unless set).
pub const PRIORITIES: std::ops::RangeInclusive<i64> = -1000..=1000;

/// What a client is told when `field` is not in [`PRIORITIES`].
pub fn priority_range(field: &str) -> String {
    format!(
        "{field} must be an integer from {} to {}.",
        PRIORITIES.start(),
        PRIORITIES.end()
    )
}

/// The wait after `failures` failures in a row: `first` after the first, doubled for each
/// one after it (at most 2^20 times). Webhook deliveries, refused submits and polls of an
/// unavailable vendor all back off by it.
pub fn backoff(first: std::time::Duration, failures: u32) -> std::time::Duration {
    first.saturating_mul(2u32.pow(failures.saturating_sub(1).min(20)))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A new id with `prefix`, sortable by creation time.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// What a task's id starts with (`job_…`, the jobs API's word for a task).
const TASK_PREFIX: &str = "job";

/// A new task's id.
pub fn new_task_id() -> String {
    new_id(TASK_PREFIX)
}

/// An id that sorts after every task id made before `ms` (milliseconds since the epoch) and
/// before every one made from `ms` on: a UUIDv7 opens with its millisecond, twelve hex
/// digits.
pub fn task_ids_before(ms: i64) -> String {
    format!("{TASK_PREFIX}_{:012x}", ms.max(0))
}

/// Who asked for a cancel, as a task's `cancel_requested` keeps it and its error says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelledBy {
    /// The client whose task it is (or who left the chat it was answering).
    Client,
    /// The operator, through `POST /admin/tasks/{id}/cancel`.
    Operator,
}

impl CancelledBy {
    /// The operator's cancels end with this error; the terminal update picks it from the
    /// task's flag, since the holder that ends the task does not know who asked.
    pub const OPERATOR_ERROR: &str = "Cancelled by the operator.";

    /// The `cancel_requested` value.
    pub fn flag(self) -> i64 {
        match self {
            CancelledBy::Client => 1,
            CancelledBy::Operator => 2,
        }
    }
}

/// RFC 3339 rendering of a millisecond timestamp in UTC, always with three decimals
/// (`…:24.310Z`, never `…:24.31Z` beside `…:24.312Z`).
pub fn rfc3339(ms: i64) -> String {
    const FORMAT: &[time::format_description::FormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

/// Parses an ISO 8601 time into ms: RFC 3339 (with its offset), a date and time without
/// one or a bare date (both read as UTC), or a bare millisecond number.
pub fn parse_time(text: &str) -> Option<i64> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let at = time::OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| {
            time::PrimitiveDateTime::parse(text, &Iso8601::DEFAULT).map(|t| t.assume_utc())
        })
        .or_else(|_| {
            time::Date::parse(
                text,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map(|day| day.midnight().assume_utc())
        })
        .ok()?;
    Some((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// A failed task's reason from an engine error, as its client reads it: `what` and the error,
/// except that an operating-system error (a full disk, a refused connection) or the asset
/// bucket's (its name, endpoint and credentials trouble are the operator's) is only named, its
/// text staying in the host's log.
pub fn failure_reason(what: &str, error: &anyhow::Error) -> String {
    let named = if error.chain().any(|cause| cause.is::<std::io::Error>()) {
        "an I/O error (a full disk, a refused connection; the host's log has it)."
    } else if error.chain().any(|cause| cause.is::<object_store::Error>()) {
        "the asset store refused or could not be reached (the host's log has it)."
    } else {
        return format!("{what}: {error:#}");
    };
    tracing::warn!(error = %format!("{error:#}"), "{what}");
    format!("{what}: {named}")
}

#[cfg(test)]
mod tests {
    use super::{failure_reason, parse_time, rfc3339};

    #[test]
    fn times_are_written_with_milliseconds_always() {
        assert_eq!(rfc3339(1_796_610_624_310), "2026-12-07T02:30:24.310Z");
        assert_eq!(rfc3339(1_796_610_624_000), "2026-12-07T02:30:24.000Z");
        assert_eq!(
            parse_time(&rfc3339(1_796_610_624_312)),
            Some(1_796_610_624_312)
        );
    }

    /// The client reads what failed, not the bucket's name, endpoint or credentials trouble.
    #[test]
    fn storage_trouble_is_named_not_quoted() {
        let refused = object_store::Error::Generic {
            store: "S3",
            source: "PUT http://169.254.169.254/latest/api/token: 403".into(),
        };
        let error = anyhow::Error::from(refused).context("uploading asset_1 to bucket easel");
        let reason = failure_reason("Internal error", &error);
        assert_eq!(
            reason,
            "Internal error: the asset store refused or could not be reached (the host's log has it)."
        );
        let plain = failure_reason("Internal error", &anyhow::anyhow!("no such model"));
        assert_eq!(plain, "Internal error: no such model");
    }

    #[test]
    fn times_are_iso_8601_with_or_without_an_offset() {
        let noon = 1_765_022_400_000; // 2025-12-06T12:00:00Z
        assert_eq!(parse_time("2025-12-06T12:00:00Z"), Some(noon));
        assert_eq!(parse_time("2025-12-06T14:00:00+02:00"), Some(noon));
        assert_eq!(parse_time("2025-12-06T12:00:00"), Some(noon));
        assert_eq!(parse_time("2025-12-06T12:00:00.250"), Some(noon + 250));
        assert_eq!(parse_time("2025-12-06"), Some(noon - 12 * 3600 * 1000));
        assert_eq!(parse_time("1765022400000"), Some(noon));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2025-13-06"), None);
    }
}
