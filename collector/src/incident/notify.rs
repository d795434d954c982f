//! Webhook delivery from the durable notification outbox: POST the JSON body, delete on 2xx,
//! otherwise retry with capped exponential backoff. A receiver that is down gets everything
//! later; a collector restart finds the outbox where it was. Delivery is at least once (a crash
//! between the POST and the delete sends it again); receivers dedupe by `dedup_key` + `event` +
//! the notification `seq` sent in `X-Watchstand-Notification`.
//!
//! It looks at the outbox every `every` (retries) and at once when the engine task wakes it after
//! queueing a notification, so an incident is sent as soon as it is committed.
//!
//! Pages are not held hostage by one receiver or one incident: each (receiver, incident) pair
//! is its own ordered lane — only its oldest undelivered notification may be in flight, so an
//! incident's events arrive in order (opened before acknowledged before resolved) — while
//! different lanes are delivered independently, at most [`PER_RECEIVER`] requests at a time per
//! receiver, each bounded by [`REQUEST_TIMEOUT`]. A receiver that hangs ties up only its own
//! slots and delays only its own lanes' retries; every other receiver, and its other incidents
//! once a slot frees, go on. Each outcome is committed on its own as soon as it is known.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::policy::Webhook;
use super::record::{IncidentStore, Notification};
use crate::store::StoreBatch;

/// First retry delay.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// Requests in flight to one receiver at most.
pub const PER_RECEIVER: usize = 4;
/// Longest one POST may take (connect, send, answer) before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Delay before attempt `attempts + 1`.
pub fn retry_delay(attempts: u32) -> Duration {
    let factor = 1u64 << attempts.min(16);
    (RETRY_MIN * u32::try_from(factor).unwrap_or(u32::MAX)).min(RETRY_MAX)
}

/// POSTs one notification; Ok on 2xx.
async fn deliver(http: &reqwest::Client, w: &Webhook, n: &Notification) -> Result<(), String> {
    let mut req = http
        .post(&w.url)
        .timeout(REQUEST_TIMEOUT)
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

/// The ordered lane of a notification: its receiver and its incident (a notification without
/// an incident id is a lane of its own).
fn lane(n: &Notification) -> (String, Option<u64>, u64) {
    match n.body["incident"]["id"].as_u64() {
        Some(id) => (n.receiver.clone(), Some(id), 0),
        None => (n.receiver.clone(), None, n.seq),
    }
}

/// What may be started now, oldest first: the head of every lane whose head is due and not in
/// flight. `pending` must be in seq order.
pub fn ready<'a>(
    pending: &'a [Notification],
    in_flight: &HashSet<u64>,
    now_ms: u64,
) -> Vec<&'a Notification> {
    let mut heads = HashSet::new();
    pending
        .iter()
        .filter(|n| heads.insert(lane(n)))
        .filter(|n| !in_flight.contains(&n.seq) && n.next_at_ms <= now_ms)
        .collect()
}

/// Writes the outcome of one attempt: delete on success, otherwise the next try.
fn outcome_batch(mut n: Notification, result: Result<(), String>, now: u64) -> StoreBatch {
    let mut batch = StoreBatch::default();
    match result {
        Ok(()) => {
            tracing::info!(receiver = %n.receiver, event = %n.event, seq = n.seq, attempts = n.attempts + 1, "Notification delivered.");
            IncidentStore::delivered(&mut batch, n.seq);
        }
        Err(e) => {
            let delay = retry_delay(n.attempts);
            n.attempts += 1;
            n.next_at_ms = now + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(receiver = %n.receiver, seq = n.seq, attempts = n.attempts, retry_in = ?delay, error = %e, "Notification not delivered; will retry.");
            n.last_error = Some(e);
            IncidentStore::enqueue(&mut batch, &n);
        }
    }
    batch
}

async fn commit(store: &IncidentStore, batch: StoreBatch) {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.commit(batch)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "Cannot update the notification outbox; deliveries may repeat.")
        }
        Err(e) => tracing::error!(error = %e, "Notification outbox task failed."),
    }
}

/// Wakes the notifier: the engine holds one (it wakes it when an evaluation or an operator
/// action queued a notification), and so does each delivery (its lane may go on). Wake-ups
/// coalesce: one pending wake-up is enough, more are dropped without waiting.
#[derive(Debug, Clone)]
pub struct Wake(mpsc::Sender<()>);

impl Wake {
    /// Asks the notifier to look at the outbox now (never waits).
    pub fn wake(&self) {
        // Full: a wake-up is pending already. Closed: the notifier has stopped. Either way
        // there is nothing more to do.
        if let Err(mpsc::error::TrySendError::Closed(())) = self.0.try_send(()) {
            tracing::trace!("Notifier stopped; wake-up dropped.");
        }
    }
}

/// The notifier's side of [`Wake`].
#[derive(Debug)]
pub struct Wakeups {
    rx: mpsc::Receiver<()>,
    own: Wake,
}

/// A wake-up channel for one notifier.
pub fn wake_channel() -> (Wake, Wakeups) {
    let (tx, rx) = mpsc::channel(1);
    let wake = Wake(tx);
    (wake.clone(), Wakeups { rx, own: wake })
}

/// Delivers due notifications every `every`, and whenever it is woken, until `shutdown`.
/// A request still in flight at shutdown is abandoned; its notification stays in the outbox.
pub async fn run(
    store: IncidentStore,
    webhooks: Vec<Webhook>,
    every: Duration,
    mut wakeups: Wakeups,
    shutdown: CancellationToken,
) {
    let http = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Cannot build the webhook HTTP client; notifications stay queued.");
            return;
        }
    };
    let webhooks: HashMap<String, (Arc<Webhook>, Arc<Semaphore>)> = webhooks
        .into_iter()
        .map(|w| {
            (
                w.name.clone(),
                (Arc::new(w), Arc::new(Semaphore::new(PER_RECEIVER))),
            )
        })
        .collect();
    let in_flight: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                tasks.shutdown().await;
                return;
            }
            _ = tick.tick() => {}
            Some(()) = wakeups.rx.recv() => {}
            Some(done) = tasks.join_next() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "Notification delivery task failed.");
                }
            }
        }
        let now = watchstand_shared::time::now_ms();
        // Taken before the outbox is read: a delivery that ends in between has committed its
        // outcome before leaving the set, so the read never shows it as still to send.
        let busy = in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let s = store.clone();
        let pending = match tokio::task::spawn_blocking(move || s.all_pending()).await {
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
        let mut dropped = StoreBatch::default();
        for n in ready(&pending, &busy, now) {
            let Some((w, slots)) = webhooks.get(&n.receiver) else {
                tracing::warn!(receiver = %n.receiver, seq = n.seq, "Receiver no longer configured; notification dropped.");
                IncidentStore::delivered(&mut dropped, n.seq);
                continue;
            };
            // No free slot: this lane waits for one of the receiver's requests to end (its
            // task wakes the notifier).
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue;
            };
            in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(n.seq);
            let (n, w, http, store, in_flight, wake) = (
                n.clone(),
                w.clone(),
                http.clone(),
                store.clone(),
                in_flight.clone(),
                wakeups.own.clone(),
            );
            tasks.spawn(async move {
                let result = deliver(&http, &w, &n).await;
                let seq = n.seq;
                commit(
                    &store,
                    outcome_batch(n, result, watchstand_shared::time::now_ms()),
                )
                .await;
                in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&seq);
                drop(permit);
                // The lane's next event, or a lane waiting for this slot, may go now.
                wake.wake();
            });
        }
        if !dropped.is_empty() {
            commit(&store, dropped).await;
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

    fn n(seq: u64, receiver: &str, incident: u64, next_at_ms: u64) -> Notification {
        Notification {
            seq,
            receiver: receiver.into(),
            event: "opened".into(),
            body: serde_json::json!({ "incident": { "id": incident } }),
            attempts: 0,
            next_at_ms,
            last_error: None,
        }
    }

    #[test]
    fn only_the_oldest_event_of_each_incident_and_receiver_may_go_and_lanes_are_independent() {
        let pending = vec![
            n(1, "a", 10, 0),
            n(2, "a", 10, 0),
            n(3, "b", 10, 0),
            n(4, "a", 11, 0),
            n(5, "a", 12, 5_000),
            n(6, "a", 12, 0),
        ];
        let seqs = |in_flight: &[u64], now: u64| -> Vec<u64> {
            ready(&pending, &in_flight.iter().copied().collect(), now)
                .iter()
                .map(|n| n.seq)
                .collect()
        };
        // Seq 2 waits behind 1 (same incident, same receiver); 6 waits behind 5 (backing off).
        assert_eq!(seqs(&[], 1_000), vec![1, 3, 4]);
        // Incident 10's first event hangs at receiver a: its other incidents still go.
        assert_eq!(seqs(&[1], 1_000), vec![3, 4]);
        assert_eq!(seqs(&[1, 3, 4], 6_000), vec![5]);
    }
}
