//! The providers' breakers: every SQL statement on `provider_breakers`.
//!
//! Invariants: a row exists while a provider's latest submits failed unavailable, on any
//! host, and counts them; the failure that reaches the threshold, and each one after it, opens
//! the breaker until a cooldown from then; a success removes the row. The claim skips the
//! queued tasks of a provider whose breaker is open ([`CLOSED`], part of its statement). Once
//! opened (`open_until` above 0), a breaker whose cooldown is over lets one submit through, the
//! probe: [`take_probe`] holds it open again for that submit, one statement, so of the claims
//! that race for it one wins; it runs in the claim's transaction.

use sqlx::FromRow;

use crate::store::Store;

/// One provider's breaker (times in ms).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct BreakerRow {
    /// The provider.
    pub provider: String,
    /// Its submits that failed unavailable in a row.
    pub failures: i64,
    /// Until when no claim takes its tasks; 0 (or past) when closed.
    pub open_until: i64,
    /// The latest failure's reason.
    pub last_error: String,
    /// When the latest failure was recorded.
    pub updated_at: i64,
}

impl BreakerRow {
    /// Whether claims skip the provider at `now`.
    pub fn is_open(&self, now: i64) -> bool {
        self.open_until > now
    }
}

/// The claim's condition on a queued row: its provider's breaker is not open at `$2` (now).
pub const CLOSED: &str =
    " AND provider NOT IN (SELECT provider FROM provider_breakers WHERE open_until > $2)";

/// Counts one more failed submit of `provider` at `now`, opening its breaker for `cooldown`
/// ms once `threshold` failed in a row; returns the row as it is now.
pub async fn failed(
    store: &Store,
    provider: &str,
    reason: &str,
    now: i64,
    threshold: i64,
    cooldown: i64,
) -> anyhow::Result<BreakerRow> {
    Ok(sqlx::query_as(
        "INSERT INTO provider_breakers (provider, failures, open_until, last_error, updated_at) \
         VALUES ($1, 1, CASE WHEN $4 <= 1 THEN $3 + $5 ELSE 0 END, $2, $3) \
         ON CONFLICT (provider) DO UPDATE SET failures = provider_breakers.failures + 1, \
         open_until = CASE WHEN provider_breakers.failures + 1 >= $4 THEN $3 + $5 \
           ELSE provider_breakers.open_until END, \
         last_error = $2, updated_at = $3 \
         RETURNING provider, failures, open_until, last_error, updated_at",
    )
    .bind(provider)
    .bind(reason)
    .bind(now)
    .bind(threshold)
    .bind(cooldown)
    .fetch_one(&mut *store.writer().await?)
    .await?)
}

/// Whether a claim of `provider`'s task at `now` may submit it, given the breaker's state.
#[derive(Debug, PartialEq)]
pub enum Probe {
    /// No breaker was ever opened (or it closed meanwhile): submit.
    Closed,
    /// The cooldown was over and this claim took the probe, holding the breaker open until
    /// the given time for its submit: submit; its outcome opens or closes the breaker.
    Taken(BreakerRow),
    /// Open, or another claim is probing: the claim is undone.
    Held(BreakerRow),
}

/// Takes the probe of `provider`'s breaker at `now` if it was opened and its cooldown is over,
/// holding it open until `hold_until` (the probe's lease: a probe whose process died frees it
/// then). Run on the writer, within the claim's transaction.
pub async fn take_probe(
    writer: &mut sqlx::AnyConnection,
    provider: &str,
    now: i64,
    hold_until: i64,
) -> anyhow::Result<Probe> {
    let taken: Option<BreakerRow> = sqlx::query_as(
        "UPDATE provider_breakers SET open_until = $3 \
         WHERE provider = $1 AND open_until > 0 AND open_until <= $2 \
         RETURNING provider, failures, open_until, last_error, updated_at",
    )
    .bind(provider)
    .bind(now)
    .bind(hold_until)
    .fetch_optional(&mut *writer)
    .await?;
    if let Some(row) = taken {
        return Ok(Probe::Taken(row));
    }
    let row: Option<BreakerRow> = sqlx::query_as(
        "SELECT provider, failures, open_until, last_error, updated_at FROM provider_breakers \
         WHERE provider = $1",
    )
    .bind(provider)
    .fetch_optional(&mut *writer)
    .await?;
    Ok(match row {
        Some(row) if row.open_until > now => Probe::Held(row),
        _ => Probe::Closed,
    })
}

/// Closes `provider`'s breaker: a submit went through.
pub async fn succeeded(store: &Store, provider: &str) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM provider_breakers WHERE provider = $1")
        .bind(provider)
        .execute(&mut *store.writer().await?)
        .await?;
    Ok(())
}

/// Every provider's breaker that has failures, by provider.
pub async fn all(store: &Store) -> anyhow::Result<Vec<BreakerRow>> {
    Ok(sqlx::query_as(
        "SELECT provider, failures, open_until, last_error, updated_at FROM provider_breakers \
         ORDER BY provider",
    )
    .fetch_all(&store.reader)
    .await?)
}
