//! Credits: a balance per client, reserved at submit, kept on success, returned otherwise.
//!
//! Invariants: every change of a balance happens in the same transaction as the task change
//! that causes it (the task repository's insert reserves, its terminal transition refunds,
//! each calling this module inside its own transaction), so a crash can
//! neither charge twice nor lose a refund; a balance never goes below zero; the ledger holds
//! one row per change. Prices come from `[credits] prices`, else the model's price hint.
//!
//! Amounts are stored and added as integer micro-credits ([`MICROS_PER_CREDIT`]), never as
//! floating point, so a grant of 0.3 pays for exactly three tasks at 0.1; the APIs read and
//! show decimal credits, converted at their edge ([`to_micros`], [`to_credits`]).

use serde::Serialize;

use crate::{
    engine::{
        Engine,
        task::{Task, new_id, now_ms},
    },
    store::{Backend, keys, tasks},
};

/// Micro-credits in one credit: the unit every stored amount is counted in.
pub const MICROS_PER_CREDIT: i64 = 1_000_000;

/// The largest balance a client may hold, micro-credits (a billion credits): far from
/// `i64::MAX`, so no sum of a balance and a grant can overflow.
pub const MAX_BALANCE_MICROS: i64 = 1_000_000_000 * MICROS_PER_CREDIT;

/// Decimal credits (a price, a grant) in micro-credits, rounded to the nearest one.
pub fn to_micros(credits: f64) -> i64 {
    (credits * MICROS_PER_CREDIT as f64).round() as i64
}

/// Micro-credits as the decimal credits the APIs show (0.1, not 0.09999999999999998).
pub fn to_credits(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_CREDIT as f64
}

/// Refused: the client's balance does not cover the price.
#[derive(Debug, thiserror::Error)]
#[error("Insufficient balance")]
pub struct InsufficientBalance;

/// Takes `amount` micro-credits from the client's balance for `task_id`, inside the submit
/// transaction.
pub(crate) async fn reserve(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    client_id: &str,
    task_id: &str,
    amount: i64,
    now: i64,
) -> anyhow::Result<Result<(), InsufficientBalance>> {
    let taken = sqlx::query(
        "UPDATE balances SET micros = micros - $2, updated_at = $3 \
         WHERE client_id = $1 AND micros >= $2",
    )
    .bind(client_id)
    .bind(amount)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if taken == 0 {
        return Ok(Err(InsufficientBalance));
    }
    record(tx, client_id, Some(task_id), "reserve", -amount, now).await?;
    Ok(Ok(()))
}

/// Gives a failed, cancelled or expired task's reservation back, inside its terminal
/// transaction.
pub(crate) async fn refund(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    task: &Task,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE balances SET micros = micros + $2, updated_at = $3 WHERE client_id = $1")
        .bind(&task.client_id)
        .bind(task.reserved_micros)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    record(
        tx,
        &task.client_id,
        Some(&task.id),
        "refund",
        task.reserved_micros,
        now,
    )
    .await
}

async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    client_id: &str,
    task_id: Option<&str>,
    kind: &str,
    amount: i64,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO credit_ledger (id, client_id, task_id, kind, amount_micros, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id("crd"))
    .bind(client_id)
    .bind(task_id)
    .bind(kind)
    .bind(amount)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What one model cost a client: succeeded tasks only.
#[derive(Debug, Serialize)]
pub struct ModelUsage {
    /// `provider/key`.
    pub model: String,
    /// Succeeded tasks.
    pub tasks: i64,
    /// Credits they kept.
    pub credits: f64,
}

/// A client's account.
#[derive(Debug, Serialize)]
pub struct Account {
    /// The client.
    pub client_id: String,
    /// Credits left.
    pub balance: f64,
    /// Credits held by tasks still running.
    pub reserved: f64,
    /// Spending per model.
    pub usage: Vec<ModelUsage>,
}

/// Why a grant was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantRefused {
    /// No client has this id.
    #[error("Client {0} not found.")]
    UnknownClient(String),
    /// Taking back more than the balance holds.
    #[error("The balance cannot go below zero.")]
    BelowZero,
    /// Granting past [`MAX_BALANCE_MICROS`], counting what the client's tasks hold.
    #[error("The balance, with what its tasks hold, cannot exceed 1000000000 credits.")]
    AboveMaximum,
}

impl Engine {
    /// Adds `amount` micro-credits (negative to take back) to a known client's balance in one
    /// statement (on PostgreSQL after locking its row), so two concurrent grants can neither
    /// lose one another nor drive the balance below zero, nor the balance and what its tasks
    /// hold past [`MAX_BALANCE_MICROS`] (a refund gives that back to the balance); returns the
    /// new balance in micro-credits.
    pub async fn grant_credits(
        &self,
        client_id: &str,
        amount: i64,
    ) -> anyhow::Result<Result<i64, GrantRefused>> {
        let now = now_ms();
        let refusal = if amount < 0 {
            GrantRefused::BelowZero
        } else {
            GrantRefused::AboveMaximum
        };
        if amount.unsigned_abs() > MAX_BALANCE_MICROS as u64 {
            return Ok(Err(refusal));
        }
        // The row comes from `clients`, so an unknown client gets none; a missing balance is
        // created only by a grant, an existing one changes only if it stays in range.
        let statement = if amount < 0 {
            "UPDATE balances SET micros = micros + $2, updated_at = $3 \
             WHERE client_id = $1 AND micros + $2 >= 0 RETURNING micros"
                .to_string()
        } else {
            format!(
                "INSERT INTO balances (client_id, micros, updated_at) \
                 SELECT id, $2, $3 FROM clients WHERE id = $1 \
                 ON CONFLICT (client_id) DO UPDATE SET micros = balances.micros + excluded.micros, \
                 updated_at = excluded.updated_at \
                 WHERE balances.micros + excluded.micros + ({}) <= $4 \
                 RETURNING micros",
                tasks::RESERVED_MICROS
            )
        };
        let mut writer = self.store().writer().await?;
        let mut tx = writer.begin().await?;
        if amount > 0 && self.store().backend == Backend::Postgres {
            // The balance row first: a reservation committing meanwhile (it moves credits from
            // the balance to its task) is then in the snapshot the grant's cap check reads,
            // which a check that waited on the row inside its own statement would miss.
            sqlx::query("SELECT micros FROM balances WHERE client_id = $1 FOR UPDATE")
                .bind(client_id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let mut query = sqlx::query_as(&statement)
            .bind(client_id)
            .bind(amount)
            .bind(now);
        if amount >= 0 {
            query = query.bind(MAX_BALANCE_MICROS);
        }
        let balance: Option<(i64,)> = query.fetch_optional(&mut *tx).await?;
        let Some((balance,)) = balance else {
            tx.rollback().await?;
            // Given back before the lookup, which takes a connection of its own: a refused
            // grant holding two at once could drain the pool under a burst of them.
            drop(writer);
            return Ok(Err(
                if keys::client_exists(self.store(), client_id).await? {
                    refusal
                } else {
                    GrantRefused::UnknownClient(client_id.to_string())
                },
            ));
        };
        record(&mut tx, client_id, None, "grant", amount, now).await?;
        tx.commit().await?;
        Ok(Ok(balance))
    }

    /// A client's balance, reservations and spending per model.
    pub async fn account(&self, client_id: &str) -> anyhow::Result<Account> {
        let balance: Option<(i64,)> =
            sqlx::query_as("SELECT micros FROM balances WHERE client_id = $1")
                .bind(client_id)
                .fetch_optional(&self.store().reader)
                .await?;
        Ok(Account {
            client_id: client_id.to_string(),
            balance: to_credits(balance.map_or(0, |(b,)| b)),
            reserved: to_credits(tasks::reserved_micros(self.store(), client_id).await?),
            usage: tasks::succeeded_by_model(self.store(), client_id)
                .await?
                .into_iter()
                .map(|(provider, model, tasks, micros)| ModelUsage {
                    model: format!("{provider}/{model}"),
                    tasks,
                    credits: to_credits(micros),
                })
                .collect(),
        })
    }

    /// The price in micro-credits of `count` outputs of `model_id` when balances are
    /// enforced, else 0.
    pub fn price(&self, model_id: &str, price_hint: Option<f64>, count: u32) -> i64 {
        let credits = self.credit_settings();
        if !credits.enforce {
            return 0;
        }
        let each = credits
            .prices
            .get(model_id)
            .copied()
            .or(price_hint)
            .unwrap_or(0.0);
        to_micros(each) * i64::from(count.max(1))
    }
}
