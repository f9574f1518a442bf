//! Credits: a balance per client, reserved at submit, kept on success, returned otherwise.
//!
//! Invariants: every change of a balance happens in the same transaction as the task change
//! that causes it (the task repository's insert reserves, its terminal transition refunds,
//! each calling this module inside its own transaction), so a crash can
//! neither charge twice nor lose a refund; a balance never goes below zero; the ledger holds
//! one row per change. Prices come from `[credits] prices`, else the model's price hint.

use serde::Serialize;

use crate::{
    engine::{
        Engine,
        task::{Task, new_id, now_ms},
    },
    store::tasks,
};

/// Refused: the client's balance does not cover the price.
#[derive(Debug, thiserror::Error)]
#[error("Insufficient balance")]
pub struct InsufficientBalance;

/// Takes `amount` from the client's balance for `task_id`, inside the submit transaction.
pub(crate) async fn reserve(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    client_id: &str,
    task_id: &str,
    amount: f64,
    now: i64,
) -> anyhow::Result<Result<(), InsufficientBalance>> {
    let taken = sqlx::query(
        "UPDATE balances SET credits = credits - $2, updated_at = $3 \
         WHERE client_id = $1 AND credits >= $2",
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
    sqlx::query("UPDATE balances SET credits = credits + $2, updated_at = $3 WHERE client_id = $1")
        .bind(&task.client_id)
        .bind(task.reserved_credits)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    record(
        tx,
        &task.client_id,
        Some(&task.id),
        "refund",
        task.reserved_credits,
        now,
    )
    .await
}

async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    client_id: &str,
    task_id: Option<&str>,
    kind: &str,
    amount: f64,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO credit_ledger (id, client_id, task_id, kind, amount, created_at) \
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

impl Engine {
    /// Adds `amount` (negative to take back) to a client's balance; the new balance.
    pub async fn grant_credits(&self, client_id: &str, amount: f64) -> anyhow::Result<f64> {
        let now = now_ms();
        let mut tx = self.store().writer.begin().await?;
        let (balance,): (f64,) = sqlx::query_as(
            "INSERT INTO balances (client_id, credits, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id) DO UPDATE SET credits = balances.credits + excluded.credits, \
             updated_at = excluded.updated_at RETURNING credits",
        )
        .bind(client_id)
        .bind(amount)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if balance < 0.0 {
            anyhow::bail!("the balance of {client_id} would go below zero");
        }
        record(&mut tx, client_id, None, "grant", amount, now).await?;
        tx.commit().await?;
        Ok(balance)
    }

    /// A client's balance, reservations and spending per model.
    pub async fn account(&self, client_id: &str) -> anyhow::Result<Account> {
        let balance: Option<(f64,)> =
            sqlx::query_as("SELECT credits FROM balances WHERE client_id = $1")
                .bind(client_id)
                .fetch_optional(&self.store().reader)
                .await?;
        Ok(Account {
            client_id: client_id.to_string(),
            balance: balance.map_or(0.0, |(b,)| b),
            reserved: tasks::reserved_credits(self.store(), client_id).await?,
            usage: tasks::succeeded_by_model(self.store(), client_id)
                .await?
                .into_iter()
                .map(|(provider, model, tasks, credits)| ModelUsage {
                    model: format!("{provider}/{model}"),
                    tasks,
                    credits,
                })
                .collect(),
        })
    }

    /// The price of `count` outputs of `model_id` when balances are enforced, else 0.
    pub fn price(&self, model_id: &str, price_hint: Option<f64>, count: u32) -> f64 {
        let credits = self.credit_settings();
        if !credits.enforce {
            return 0.0;
        }
        let each = credits
            .prices
            .get(model_id)
            .copied()
            .or(price_hint)
            .unwrap_or(0.0);
        each * f64::from(count.max(1))
    }
}
