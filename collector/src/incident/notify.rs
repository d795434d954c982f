//! Webhook delivery from the durable notification outbox: POST the JSON body, delete on 2xx,
//! otherwise retry with capped exponential backoff. A receiver that is down gets everything
//! later; a collector restart finds the outbox where it was. Delivery is at least once (a crash
//! between the POST and the delete sends it again); receivers dedupe by `dedup_key` + `event` +
//! the notification `seq` sent in `X-Watchstand-Notification`.
//!
//! It looks at the outbox every `every` (retries) and at once when the evaluator wakes it after
//! queueing a notification, so an incident is sent as soon as it is committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::policy::Webhook;
use super::record::{IncidentStore, Notification};
use crate::store::StoreBatch;

/// First retry delay.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// Notifications tried per pass.
const PASS_LIMIT: usize = 100;

/// Delay before attempt `attempts + 1`.
pub fn retry_delay(attempts: u32) -> Duration {
    let factor = 1u64 << attempts.min(16);
    (RETRY_MIN * u32::try_from(factor).unwrap_or(u32::MAX)).min(RETRY_MAX)
}

/// POSTs one notification; Ok on 2xx.
async fn deliver(http: &reqwest::Client, w: &Webhook, n: &Notification) -> Result<(), String> {
    let mut req = http
        .post(&w.url)
        .header("X-Watchstand-Notification", n.seq.to_string())
        .json(&n.body);
    for (k, v) in &w.headers {
        req = req.header(k, v);
    }
    if let Some(s) = &w.secret {
        req = req.header("X-Watchstand-Secret", s);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

/// Delivers due notifications every `every`, and whenever `wake` is notified, until `shutdown`.
pub async fn run(
    store: IncidentStore,
    webhooks: Vec<Webhook>,
    every: Duration,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Cannot build the webhook HTTP client; notifications stay queued.");
            return;
        }
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            () = wake.notified() => {}
        }
        let now = watchstand_shared::time::now_ms();
        let s = store.clone();
        let due = match tokio::task::spawn_blocking(move || s.due(now, PASS_LIMIT)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Cannot read the notification outbox.");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "Notification outbox task failed.");
                continue;
            }
        };
        if due.is_empty() {
            continue;
        }
        let mut batch = StoreBatch::default();
        for mut n in due {
            let Some(w) = webhooks.iter().find(|w| w.name == n.receiver) else {
                tracing::warn!(receiver = %n.receiver, seq = n.seq, "Receiver no longer configured; notification dropped.");
                IncidentStore::delivered(&mut batch, n.seq);
                continue;
            };
            match deliver(&http, w, &n).await {
                Ok(()) => {
                    tracing::info!(receiver = %w.name, event = %n.event, seq = n.seq, attempts = n.attempts + 1, "Notification delivered.");
                    IncidentStore::delivered(&mut batch, n.seq);
                }
                Err(e) => {
                    let delay = retry_delay(n.attempts);
                    n.attempts += 1;
                    n.next_at_ms = now + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    tracing::warn!(receiver = %w.name, seq = n.seq, attempts = n.attempts, retry_in = ?delay, error = %e, "Notification not delivered; will retry.");
                    n.last_error = Some(e);
                    IncidentStore::enqueue(&mut batch, &n);
                }
            }
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.commit(batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Cannot update the notification outbox; deliveries may repeat.")
            }
            Err(e) => tracing::error!(error = %e, "Notification outbox task failed."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_a_minute() {
        let d: Vec<u64> = (0..9).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(1_000), RETRY_MAX);
    }
}
