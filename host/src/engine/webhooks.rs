//! Webhook delivery from the outbox, at least once, across restarts.
//!
//! Invariants: a row is claimed by pushing `next_attempt_at` ahead before the attempt, so a
//! crash mid-attempt means one more attempt later, never none; a 2xx marks it delivered; any
//! other answer backs off exponentially (`webhook_backoff_secs` doubling) until
//! `webhook_max_attempts`. With a secret set, each request carries
//! `X-Zhinian-Signature: sha256=<hex HMAC-SHA256 of the raw body>`. Up to [`IN_FLIGHT`]
//! attempts run at once, each on its own: an attempt to a receiver that is slow to answer
//! holds one of the slots until it ends, not the attempts in the others; and no more than
//! [`PER_RECEIVER`] of them go to one URL, so a receiver that never answers holds at most
//! that many slots, whatever its backlog.

use std::{collections::HashMap, time::Duration};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{
    engine::{
        Engine,
        outage_log::OutageLog,
        task::{backoff, now_ms},
    },
    metrics::Delivery,
    store::tasks::{self, DueWebhook},
};

/// Outbox rows attempted at once, at most.
const IN_FLIGHT: usize = 32;

/// Attempts to one URL at once, at most (per process).
const PER_RECEIVER: usize = 8;

/// The signature header value for `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The deliverer's loop: claims due rows while attempts are free, starts each at once, and
/// claims again when one ends or every 200 ms.
pub async fn run(engine: Engine) {
    let shutdown = engine.shutdown_token().clone();
    let client = engine
        .guard()
        .client(Duration::from_secs(engine.config().webhook_timeout_secs));
    let mut attempts = tokio::task::JoinSet::new();
    // The URL of each attempt running.
    let mut urls: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut claims = OutageLog::new("claiming due webhooks");
    loop {
        while let Some(ended) = attempts.try_join_next_with_id() {
            noted(ended, &mut urls);
        }
        let free = IN_FLIGHT - attempts.len();
        if free > 0 {
            match claims.note(claim_due(&engine, free, urls.values()).await) {
                Ok(due) => {
                    let claimed = due.len();
                    for webhook in due {
                        let url = webhook.url.clone();
                        let (engine, client) = (engine.clone(), client.clone());
                        let started =
                            attempts.spawn(async move { attempt(&engine, &client, webhook).await });
                        urls.insert(started.id(), url);
                    }
                    if claimed == free {
                        // More may be due: claim again before waiting.
                        continue;
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        tokio::select! {
            Some(ended) = attempts.join_next_with_id() => noted(ended, &mut urls),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            // Attempts still running are dropped: their rows are claimed until a while after
            // their timeout, and attempted again then.
            _ = shutdown.cancelled() => return,
        }
    }
}

type Ended = Result<(tokio::task::Id, anyhow::Result<()>), tokio::task::JoinError>;

/// Forgets an attempt that ended and logs what went wrong with it; its row says the rest.
fn noted(ended: Ended, urls: &mut HashMap<tokio::task::Id, String>) {
    match ended {
        Ok((id, outcome)) => {
            urls.remove(&id);
            if let Err(error) = outcome {
                tracing::warn!(%error, "recording a webhook attempt failed");
            }
        }
        Err(error) => {
            urls.remove(&error.id());
            tracing::warn!(%error, "a webhook attempt stopped");
        }
    }
}

async fn claim_due<'a>(
    engine: &Engine,
    at_most: usize,
    running: impl Iterator<Item = &'a String>,
) -> anyhow::Result<Vec<DueWebhook>> {
    let mut per_url: HashMap<&str, i64> = HashMap::new();
    for url in running {
        *per_url.entry(url).or_default() += 1;
    }
    let now = now_ms();
    let claim_until = now + (engine.config().webhook_timeout_secs as i64 + 5) * 1000;
    tasks::claim_due_webhooks(
        engine.store(),
        now,
        claim_until,
        at_most as i64,
        PER_RECEIVER as i64,
        &per_url,
    )
    .await
}

async fn attempt(
    engine: &Engine,
    client: &reqwest::Client,
    webhook: DueWebhook,
) -> anyhow::Result<()> {
    let DueWebhook {
        id,
        task_id,
        url,
        body,
        attempts,
    } = webhook;
    let mut request = client
        .post(&url)
        .header("content-type", "application/json")
        .header("user-agent", "easel-webhooks");
    if let Some(secret) = engine.webhook_secret() {
        request = request.header("X-Zhinian-Signature", signature(secret, body.as_bytes()));
    }
    let outcome = match engine.guard().check_url(&url) {
        Err(reason) => Err(reason),
        Ok(_) => match request.body(body).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("HTTP {}", response.status())),
            Err(error) => Err(unanswered(error, engine.config().webhook_timeout_secs)),
        },
    };
    let now = now_ms();
    let attempts = attempts as u32 + 1;
    match outcome {
        Ok(()) => {
            crate::metrics::get().webhook_delivery(Delivery::Delivered);
            tasks::webhook_delivered(engine.store(), &id, attempts.into(), now).await?
        }
        Err(reason) => {
            let config = engine.config();
            let gave_up = (attempts >= config.webhook_max_attempts).then_some(now);
            crate::metrics::get().webhook_delivery(if gave_up.is_some() {
                Delivery::GaveUp
            } else {
                Delivery::Failed
            });
            let first = Duration::from_secs_f64(config.webhook_backoff_secs);
            let next = now + backoff(first, attempts).as_millis() as i64;
            let url = crate::net::shown(&url);
            tracing::info!(webhook = %id, task_id = %task_id, %url, attempts, %reason, "webhook attempt failed");
            tasks::webhook_failed(engine.store(), &id, attempts.into(), next, &reason, gave_up)
                .await?;
        }
    }
    Ok(())
}

/// Why a receiver gave no answer, as its row keeps it: reqwest's own words name only the
/// URL ("error sending request for url"), whether the receiver was silent or refused.
fn unanswered(error: reqwest::Error, timeout_secs: u64) -> String {
    if error.is_timeout() {
        return format!("no answer within {timeout_secs} s");
    }
    // anyhow's alternate form is the error with its causes, as the logs write errors; the
    // URL, which may carry the receiver's credentials, is the webhook's own field.
    format!("{:#}", anyhow::Error::from(error.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn default_backoff_spans_about_two_hours() {
        let first = Duration::from_secs(30);
        let total: f64 = (1..9).map(|n| backoff(first, n).as_secs_f64()).sum();
        assert!(
            (7000.0..8000.0).contains(&total),
            "8 retries after the first attempt span {total}s"
        );
    }
}
